"""Every canonical file type end to end, on SQLite and PostgreSQL (FORMATS.md "Files").

A clean file stores normalised values; each kind of row error a type can produce is
reported with its exact code, physical line and column (the header as written) and
leaves the file's other rows applied; each file error rejects the whole file and
changes nothing in the database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.support.runs import (
    csv_bytes,
    database,
    issues,
    make_inbox,
    outcome,
    run_import,
    table_rows,
    write,
)
from visitor_sync.db.schema import KEY_SEPARATOR, Base

ROSTER_HEADER = ("Student ID", "First Name", "Last Name", "Date of Birth", "Grade", "School ID",
                 "School Name")
#: Students (and their schools) that visitors, court orders and buses refer to.
ROSTER = [("000101", "Ana", "Lopez", "2015-03-04", "K", "001", "Lincoln Elementary"),
          ("000102", "Ben", "Okafor", "2014-06-15", "1", "001", "Lincoln Elementary"),
          ("000103", "Cy", "Nguyen", "2011-09-01", "6", "002", "Roosevelt Middle")]


def error_lines(found: Sequence[Any]) -> list[tuple[int | None, str | None, str]]:
    """``(line, column, code)`` of the errors among issues (warnings left out)."""
    return [(issue.line, issue.column, issue.code) for issue in found
            if issue.severity == "error"]


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    return make_inbox(tmp_path)


def snapshot(engine: Engine, table: str) -> list[tuple[Any, ...]]:
    """Every column of every row of a table, to prove a file changed nothing."""
    return table_rows(engine, table, *Base.metadata.tables[table].c.keys())


@dataclass(frozen=True)
class Kind:
    """A canonical file type as these tests drive it."""

    file: str
    table: str
    #: headers whose values form the record key of ``table`` (the type's main table)
    key: tuple[str, ...]
    #: the required columns FORMATS.md lists for the type
    required: tuple[str, ...]
    #: a valid row numbered ``n`` (distinct keys), header -> cell
    row: Callable[[int], dict[str, str]]
    #: cells that change row 1 without changing its key (a duplicate key)
    same_key: dict[str, str] = field(default_factory=dict)
    needs_roster: bool = True

    @property
    def header(self) -> tuple[str, ...]:
        return tuple(self.row(1))

    def record_key(self, row: dict[str, str]) -> str:
        return KEY_SEPARATOR.join(row[header] for header in self.key)

    def write(self, inbox: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """The type's file, and the roster it refers to in the same run."""
        if self.needs_roster:
            write(inbox, "students.csv", ROSTER_HEADER, ROSTER)
        write(inbox, self.file, header, rows)

    def write_rows(self, inbox: Path, rows: Sequence[dict[str, str]]) -> None:
        self.write(inbox, self.header, [list(row.values()) for row in rows])


KINDS = {kind.file.removesuffix(".csv"): kind for kind in (
    Kind("students.csv", "students", ("Student ID",),
         ("Student ID", "First Name", "Last Name", "Date of Birth", "Grade", "School ID"),
         lambda n: {"Student ID": f"S{n:03d}", "First Name": "Ana", "Last Name": "Lopez",
                    "Date of Birth": "2015-03-04", "Grade": "3", "School ID": "001",
                    "Email": f"s{n}@students.example.org", "Active": "1"},
         same_key={"First Name": "Anne"}, needs_roster=False),
    Kind("visitors.csv", "visitors", ("Visitor ID",), ("Visitor ID", "First Name", "Last Name"),
         lambda n: {"Visitor ID": f"V{n:03d}", "First Name": "Maria", "Last Name": "Lopez",
                    "Date of Birth": "1985-02-03", "Email": f"v{n}@family.example.org",
                    "Phone": "555-010-0001", "Zip": "01234", "Student ID": "000101",
                    "Can Pickup": "1"}),
    Kind("employees.csv", "employees", ("Employee ID",),
         ("Employee ID", "First Name", "Last Name"),
         lambda n: {"Employee ID": f"E{n:03d}", "First Name": "Dana", "Last Name": "Reyes",
                    "Date of Birth": "1980-01-31", "Email": f"e{n}@district.example.org",
                    "Phone": "555-123-4567"},
         same_key={"Last Name": "Reyes-Ortiz"}, needs_roster=False),
    Kind("users.csv", "users", ("Email",), ("Email", "Name", "Role"),
         lambda n: {"Email": f"user{n}@district.example.org", "Name": "Ari Cohen",
                    "Role": "teacher", "Phone": "555-123-4567", "School IDs": "001"},
         same_key={"Email": "USER1@District.Example.org"}, needs_roster=False),
    Kind("volunteers.csv", "volunteers", ("Email",), ("Email", "First Name", "Last Name"),
         lambda n: {"Email": f"helper{n}@family.example.org", "First Name": "Kai",
                    "Last Name": "Moore", "Date of Birth": "1990-07-04", "Zip": "00501",
                    "Approved Until": "2027-06-30"},
         same_key={"Email": "Helper1@Family.Example.org"}, needs_roster=False),
    Kind("court_orders.csv", "court_orders", ("Case ID", "Student ID"),
         ("Case ID", "Student ID", "Restricted First Name", "Restricted Last Name",
          "Issued Date"),
         lambda n: {"Case ID": f"CV-{n:04d}", "Student ID": "000101",
                    "Restricted First Name": "John", "Restricted Last Name": "Doe",
                    "Restricted Date of Birth": "1980-05-06", "Order Type": "custody",
                    "Allow Entry": "0", "Issued Date": "2025-09-01"},
         same_key={"Order Type": "no_contact"}),
    Kind("bus_schedule.csv", "bus_assignments", ("Student ID", "Route", "Direction"),
         ("Student ID", "School ID", "Route", "Direction"),
         lambda n: {"Student ID": "000101", "School ID": "001", "Route": f"R{n}",
                    "Direction": "to_school", "Stop Time": "07:05"},
         same_key={"Direction": "AM", "Stop Time": "07:10"}),
)}


# -- clean files ------------------------------------------------------------------------

@dataclass(frozen=True)
class Clean:
    """A clean file of a type and what the database must hold afterwards."""

    header: tuple[str, ...]
    rows: list[tuple[str, ...]]
    #: (table, columns, rows sorted) the run must leave
    expected: list[tuple[str, tuple[str, ...], list[tuple[Any, ...]]]]


CLEAN = {
    "students": Clean(
        ("Student ID", "First Name", "Last Name", "Middle Name", "Preferred Name",
         "Date of Birth", "Grade", "School ID", "School Name", "Gender", "Homeroom", "Email",
         "Active"),
        [("000101", "Ana", "Lopez", "Marie", "Annie", "03/04/2015", "K", "001",
          "Lincoln Elementary", "F", "Room 7", "Ana.Lopez@Students.Example.org", "1"),
         ("000102", "Ben", "Okafor", "", "", "20140615", "5", "001", "Lincoln Elementary", "M",
          "", "", "yes"),
         ("000103", "Cy", "Nguyen", "", "", "9/1/2011", "Pre-K", "002", "Roosevelt Middle", "",
          "", "", ""),
         ("000104", "Dee", "Kim", "", "", "2012-12-31", "1st", "0003", "", "", "", "", "0")],
        [("students", ("student_id", "first_name", "middle_name", "preferred_name",
                       "date_of_birth", "grade", "school_id", "gender", "homeroom", "email",
                       "active"),
          [("000101", "Ana", "Marie", "Annie", date(2015, 3, 4), "KG", "001", "F", "Room 7",
            "ana.lopez@students.example.org", True),
           ("000102", "Ben", None, None, date(2014, 6, 15), "05", "001", "M", None, None, True),
           ("000103", "Cy", None, None, date(2011, 9, 1), "PK", "002", None, None, None, True),
           ("000104", "Dee", None, None, date(2012, 12, 31), "01", "0003", None, None, None,
            False)]),
         ("schools", ("school_id", "name", "active"),
          [("0003", None, True), ("001", "Lincoln Elementary", True),
           ("002", "Roosevelt Middle", True)])]),
    "visitors": Clean(
        ("Visitor ID", "First Name", "Last Name", "Date of Birth", "Email", "Phone", "Address",
         "City", "State", "Zip", "Student ID", "Relationship", "Can Pickup",
         "Emergency Contact"),
        [("V0001", "Maria", "Lopez", "02/03/1985", "Maria.Lopez@Example.org", "(555) 010-0001",
          "12 Oak St", "Springfield", "IL", "01234", "000101", "Mother", "", "Y"),
         ("V0002", "Tom", "Okafor", "", "", "", "", "", "", "02345-6789", "000102", "Father",
          "no", ""),
         ("V0003", "Lee", "Nguyen", "", "", "", "", "", "", "", "000103", "", "", "")],
        [("visitors", ("visitor_id", "first_name", "date_of_birth", "email", "phone",
                       "address", "city", "state", "zip", "active"),
          [("V0001", "Maria", date(1985, 2, 3), "maria.lopez@example.org", "(555) 010-0001",
            "12 Oak St", "Springfield", "IL", "01234", True),
           ("V0002", "Tom", None, None, None, None, None, None, "02345-6789", True),
           ("V0003", "Lee", None, None, None, None, None, None, None, True)]),
         ("visitor_student_links", ("visitor_id", "student_id", "relationship", "can_pickup",
                                    "emergency_contact", "active"),
          # an empty Can Pickup cell is "no pickup" (safety fields fail closed)
          [("V0001", "000101", "Mother", False, True, True),
           ("V0002", "000102", "Father", False, False, True),
           ("V0003", "000103", None, False, False, True)])]),
    "employees": Clean(
        ("Employee ID", "First Name", "Last Name", "Date of Birth", "Email", "Phone",
         "School IDs", "Title", "Active"),
        [("0042", "Dana", "Reyes", "1980-01-31", "Dana.Reyes@District.Example.org",
          "555-123-4567", "001; 002", "Teacher", "1"),
         ("0043", "Sam", "Ortiz", "", "", "", "002|001|002", "Custodian", "false")],
        [("employees", ("employee_id", "first_name", "date_of_birth", "email", "phone",
                        "school_ids", "title", "active"),
          [("0042", "Dana", date(1980, 1, 31), "dana.reyes@district.example.org",
            "555-123-4567", "001;002", "Teacher", True),
           ("0043", "Sam", None, None, None, "002;001", "Custodian", False)])]),
    "users": Clean(
        ("Email", "Name", "Role", "Phone", "School IDs"),
        [("Dana.Reyes@District.Example.org", "Dana Reyes", "Administrator", "", ""),
         ("office@district.example.org", "Sam Ortiz", "Site Administrator", "555-123-4567",
          "001;002"),
         ("teacher@district.example.org", "Ari Cohen", "teacher", "", "001")],
        [("users", ("email", "name", "role", "phone", "school_ids", "status", "active"),
          [("dana.reyes@district.example.org", "Dana Reyes", "administrator", None, None,
            "invited", True),
           ("office@district.example.org", "Sam Ortiz", "site_administrator", "555-123-4567",
            "001;002", "invited", True),
           ("teacher@district.example.org", "Ari Cohen", "teacher", None, "001", "invited",
            True)]),
         ("invitations", ("email", "name", "sent_at"),
          [("dana.reyes@district.example.org", "Dana Reyes", None),
           ("office@district.example.org", "Sam Ortiz", None),
           ("teacher@district.example.org", "Ari Cohen", None)])]),
    "volunteers": Clean(
        ("Email", "First Name", "Last Name", "Date of Birth", "Phone", "Zip", "School IDs",
         "Approved Until", "Active"),
        [("Helper.One@Family.Example.org", "Kai", "Moore", "1990-07-04", "555-010-0002",
          "00501", "001;002", "06/30/2027", ""),
         ("helper2@family.example.org", "Nia", "Patel", "", "", "", "", "", "0")],
        [("volunteers", ("email", "first_name", "date_of_birth", "phone", "zip", "school_ids",
                         "approved_until", "active"),
          [("helper.one@family.example.org", "Kai", date(1990, 7, 4), "555-010-0002", "00501",
            "001;002", date(2027, 6, 30), True),
           ("helper2@family.example.org", "Nia", None, None, None, None, None, False)])]),
    "court_orders": Clean(
        ("Case ID", "Student ID", "Restricted First Name", "Restricted Last Name",
         "Restricted Date of Birth", "Order Type", "Allow Entry", "Notify", "Issued Date",
         "Expiry Date", "Notes"),
        [("CV-2025-0113", "000101", "John", "Doe", "1980-05-06", "No Contact", "", "",
          "2025-09-01", "2099-09-01", "Call the police"),
         ("CV-2019-0042", "000102", "Jane", "Roe", "", "Restraining", "1", "0", "01/15/2019",
          "01/15/2020", ""),
         ("CV-2024-0007", "000101", "Jim", "Poe", "", "", "", "", "20240101", "", "")],
        [("court_orders", ("case_id", "student_id", "restricted_first_name",
                           "restricted_date_of_birth", "order_type", "allow_entry", "notify",
                           "issued_date", "expiry_date", "notes", "active"),
          [("CV-2019-0042", "000102", "Jane", None, "restraining", True, False,
            date(2019, 1, 15), date(2020, 1, 15), None, False),
           ("CV-2024-0007", "000101", "Jim", None, "other", False, True, date(2024, 1, 1),
            None, None, True),
           ("CV-2025-0113", "000101", "John", date(1980, 5, 6), "no_contact", False, True,
            date(2025, 9, 1), date(2099, 9, 1), "Call the police", True)])]),
    "bus_schedule": Clean(
        ("Student ID", "School ID", "Route", "Direction", "Bus Number", "Stop Name",
         "Stop Time"),
        [("000101", "001", "R1", "AM", "B-07", "Maple & 3rd", "7:05 AM"),
         ("000101", "001", "R1", "PM", "B-07", "Maple & 3rd", "3:40pm"),
         ("000102", "001", "R2", "To School", "", "", "06:50"),
         ("000103", "002", "R2", "From School", "", "", "")],
        [("bus_assignments", ("student_id", "route", "direction", "school_id", "bus_number",
                              "stop_name", "stop_time", "active"),
          [("000101", "R1", "from_school", "001", "B-07", "Maple & 3rd", "15:40", True),
           ("000101", "R1", "to_school", "001", "B-07", "Maple & 3rd", "07:05", True),
           ("000102", "R2", "to_school", "001", None, None, "06:50", True),
           ("000103", "R2", "from_school", "002", None, None, None, True)])]),
}


@pytest.mark.parametrize("name", CLEAN)
def test_clean_file_stores_normalised_values(db_url: str, inbox: Path, name: str) -> None:
    kind, clean = KINDS[name], CLEAN[name]
    kind.write(inbox, clean.header, clean.rows)
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert issues(engine, summary) == []
        assert outcome(summary, kind.file).status == "applied"
        assert outcome(summary, kind.file).created == len(clean.rows)
        for table, columns, expected in clean.expected:
            assert table_rows(engine, table, *columns) == expected, table


# -- row errors -------------------------------------------------------------------------

@dataclass(frozen=True)
class RowCase:
    """A row in error: how it differs from a valid row and what must be reported."""

    code: str
    #: the column the issue must name: the header as written in the file
    column: str | None
    #: cells that differ from a valid row
    change: dict[str, str] = field(default_factory=dict)
    #: the row repeats the key of the file's first row
    duplicate: bool = False
    extra: tuple[str, ...] = ()


#: kind | column | bad value | code: one row in error each (an empty value is a blank cell)
ROW_ERROR_TABLE = """
students     | Date of Birth            | 13/45/2010          | invalid_date
students     | Date of Birth            | 2999-01-01          | invalid_date
students     | Grade                    | Z                   | invalid_grade
students     | Email                    | not-an-email        | invalid_email
students     | Active                   | maybe               | invalid_boolean
students     | First Name               |                     | missing_value
students     | Grade                    |                     | missing_value
visitors     | Date of Birth            | 2999-01-01          | invalid_date
visitors     | Email                    | maria@example       | invalid_email
visitors     | Phone                    | 12                  | invalid_phone
visitors     | Zip                      | 1234                | invalid_zip
visitors     | Can Pickup               | perhaps             | invalid_boolean
visitors     | Last Name                |                     | missing_value
visitors     | Student ID               | 999999              | unknown_student
employees    | Date of Birth            | 02/30/1980          | invalid_date
employees    | Date of Birth            | 2999-12-31          | invalid_date
employees    | Email                    | dana.reyes          | invalid_email
employees    | Phone                    | 555                 | invalid_phone
employees    | First Name               |                     | missing_value
users        | Role                     | janitor             | invalid_role
users        | Email                    | teacher.example.org | invalid_email
users        | Phone                    | call me             | invalid_phone
users        | Name                     |                     | missing_value
users        | School IDs               |                     | missing_value
volunteers   | Approved Until           | 2027-02-30          | invalid_date
volunteers   | Date of Birth            | 2999-01-01          | invalid_date
volunteers   | Email                    | @example.org        | invalid_email
volunteers   | Zip                      | ABCDE               | invalid_zip
volunteers   | Last Name                |                     | missing_value
court_orders | Issued Date              | yesterday           | invalid_date
court_orders | Restricted Date of Birth | 2999-01-01          | invalid_date
court_orders | Order Type               | banned              | invalid_order_type
court_orders | Allow Entry              | sometimes           | invalid_boolean
court_orders | Issued Date              |                     | missing_value
court_orders | Student ID               | 999999              | unknown_student
bus_schedule | Stop Time                | 25:99               | invalid_time
bus_schedule | Direction                | sideways            | invalid_direction
bus_schedule | Route                    |                     | missing_value
bus_schedule | Student ID               | 999999              | unknown_student
bus_schedule | School ID                | 999                 | unknown_school
"""


def row_errors(name: str, kind: Kind) -> list[RowCase]:
    """The table's cases of a type, then a repeated key and a row with a surplus field."""
    table = [[cell.strip() for cell in line.split("|")]
             for line in ROW_ERROR_TABLE.strip().splitlines()]
    return [*(RowCase(code, column, {column: value})
              for kind_name, column, value, code in table if kind_name == name),
            RowCase("duplicate_key", kind.key[0], kind.same_key, duplicate=True),
            RowCase("wrong_field_count", None, extra=("surplus",))]


ROW_ERRORS = {name: row_errors(name, kind) for name, kind in KINDS.items()}


def assert_row_errors(db_url: str, inbox: Path, kind: Kind, cases: Sequence[RowCase],
                      rename: dict[str, str] | None = None) -> None:
    """A file of a valid row, one row per case, and a valid row: each case is reported on
    its own line, and exactly the two valid rows are applied."""
    good = [kind.row(1), kind.row(2)]
    bad = [[*{**kind.row(1 if case.duplicate else 100 + number), **case.change}.values(),
             *case.extra] for number, case in enumerate(cases)]
    spelled = rename or {}
    kind.write(inbox, [spelled.get(header, header) for header in kind.header],
               [list(good[0].values()), *bad, list(good[1].values())])
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        found = issues(engine, summary, kind.file)
        assert error_lines(found) == [(line, case.column, case.code)
                                      for line, case in enumerate(cases, start=3)]
        for issue in found:
            assert issue.column is None or issue.reason.startswith(issue.column), issue
        assert outcome(summary, kind.file).rejected_rows == len(cases)
        assert table_rows(engine, kind.table, "record_key", "active") == [
            (kind.record_key(row), True) for row in good]


@pytest.mark.parametrize("name", ROW_ERRORS)
def test_row_errors_are_reported_and_other_rows_apply(db_url: str, inbox: Path,
                                                      name: str) -> None:
    assert_row_errors(db_url, inbox, KINDS[name], ROW_ERRORS[name])


def as_written(name: str, canonical: str, written: str, code: str,
               value: str | None = None) -> Any:
    """A file spelling ``canonical`` as ``written`` with a row in error in that column (a
    repeated key when ``value`` is None)."""
    case = RowCase(code, written, {} if value is None else {canonical: value},
                   duplicate=value is None)
    return pytest.param(name, {canonical: written}, case, id=f"{code}-{written}".replace(" ", "_"))


@pytest.mark.parametrize(("name", "rename", "case"), [
    as_written("students", "Date of Birth", "DOB", "invalid_date", "2010-02-30"),
    as_written("students", "Student ID", "Stu ID", "duplicate_key"),
    as_written("visitors", "Student ID", "Student Number", "unknown_student", "999999"),
    as_written("bus_schedule", "School ID", "Campus ID", "unknown_school", "999"),
])
def test_issue_names_the_column_as_written(db_url: str, inbox: Path, name: str,
                                           rename: dict[str, str], case: RowCase) -> None:
    """An alias header is reported as the district wrote it, whichever check finds it."""
    assert_row_errors(db_url, inbox, KINDS[name], [case], rename)


# -- file errors ------------------------------------------------------------------------

def assert_rejected_without_change(engine: Engine, tmp_path: Path, kind: Kind,
                                   content: bytes, expected: list[tuple[Any, ...]],
                                   **config: Any) -> None:
    """After a clean first run, a second run with ``content`` as the type's file is rejected
    with exactly the ``expected`` (line, column, code) issues and changes no table."""
    first = tmp_path / "first"
    kind.write_rows(first, [kind.row(1), kind.row(2)])
    run_import(engine, first)
    tables = [kind.table, "schools", "students"]
    before = [snapshot(engine, table) for table in tables]
    second = make_inbox(tmp_path, "second")
    (second / kind.file).write_bytes(content)
    summary = run_import(engine, second, **config)
    assert error_lines(issues(engine, summary)) == expected
    assert outcome(summary, kind.file).status == "rejected"
    assert [snapshot(engine, table) for table in tables] == before
    assert not (second / kind.file).exists()


@pytest.mark.parametrize("name", KINDS)
def test_missing_required_columns_reject_the_file(db_url: str, tmp_path: Path,
                                                  name: str) -> None:
    """One missing_column issue per missing column, named as FORMATS.md names it."""
    kind = KINDS[name]
    optional = [header for header in kind.header if header not in kind.required]
    content = csv_bytes(optional, [[kind.row(3)[header] for header in optional]])
    with database(db_url) as engine:
        assert_rejected_without_change(engine, tmp_path, kind, content,
                                       [(1, header, "missing_column") for header in kind.required])


STUDENTS = KINDS["students"]


def students_file(rows: Sequence[dict[str, str]], extra_header: tuple[str, ...] = ()) -> bytes:
    return csv_bytes([*STUDENTS.header, *extra_header],
                     [[*row.values(), *(row["Student ID"] for _ in extra_header)]
                      for row in rows])


NEW_STUDENTS = [STUDENTS.row(n) for n in (3, 4, 5)]
FILE_ERRORS = [
    pytest.param(students_file(NEW_STUDENTS, ("StudentID",)), {},
                 (1, "StudentID", "duplicate_column"), id="duplicate_column"),
    pytest.param(b"", {}, (None, None, "empty_file"), id="empty_file"),
    pytest.param(b"\n\r\n\n", {}, (None, None, "empty_file"), id="empty_file-blank-lines"),
    pytest.param(students_file(NEW_STUDENTS).replace(b"Ana", b"A\x00na", 1), {},
                 (None, None, "binary_file"), id="binary_file"),
    pytest.param(students_file(NEW_STUDENTS), {"max_file_bytes": 100},
                 (None, None, "file_too_large"), id="file_too_large"),
    pytest.param(students_file([{**NEW_STUDENTS[0], "Last Name": "L" * 40},
                                {**NEW_STUDENTS[1], "Last Name": "L" * 41}]),
                 {"max_field_chars": 40}, (3, None, "field_too_long"), id="field_too_long"),
    pytest.param(students_file(NEW_STUDENTS), {"max_rows": 2}, (4, None, "too_many_rows"),
                 id="too_many_rows"),
]


@pytest.mark.parametrize(("content", "limits", "expected"), FILE_ERRORS)
def test_file_error_rejects_the_whole_file(db_url: str, tmp_path: Path, content: bytes,
                                           limits: dict[str, int],
                                           expected: tuple[Any, ...]) -> None:
    with database(db_url) as engine:
        assert_rejected_without_change(engine, tmp_path, STUDENTS, content, [expected],
                                       limits=limits)


def test_unrecognised_file_is_rejected_and_removed(db_url: str, inbox: Path) -> None:
    uploading = ["students.csv.part", "visitors.csv.filepart", ".students.csv", "~users.csv"]
    for name in ["roster.csv", *uploading]:
        (inbox / name).write_bytes(students_file(NEW_STUDENTS))
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert [(file.file, file.status) for file in summary.files] == [
            ("roster.csv", "rejected")]
        assert error_lines(issues(engine, summary)) == [(None, None, "unrecognised_file")]
        assert table_rows(engine, "students", "student_id") == []
    assert sorted(path.name for path in inbox.iterdir()) == sorted(uploading)


# -- visitors on several rows -----------------------------------------------------------

def test_visitor_rows_link_students_of_the_same_run(db_url: str, inbox: Path) -> None:
    """One visitor on three rows is one visitor with three links (the first row's details
    win, a differing row is a warning); a row without Student ID is a visitor without a
    link; students created earlier in the same run can be linked."""
    header = ("Visitor ID", "First Name", "Last Name", "Phone", "Student ID", "Relationship")
    KINDS["visitors"].write(inbox, header, [
        ("V1", "Maria", "Lopez", "555-010-0001", "000101", "Mother"),
        ("V1", "Maria", "Lopez", "555-010-0001", "000102", "Mother"),
        ("V1", "Maria", "Lopez-Diaz", "555-010-0099", "000103", "Stepmother"),
        ("V2", "Tom", "Okafor", "555-010-0002", "", ""),
    ])
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert [(file.file, file.status, file.created) for file in summary.files] == [
            ("students.csv", "applied", 3), ("visitors.csv", "applied", 2)]
        found = issues(engine, summary)
        assert [(issue.line, issue.code, issue.severity) for issue in found] == [
            (4, "conflicting_values", "warning")]
        assert "'V1'" in found[0].reason
        assert "line 2 is used" in found[0].reason
        assert table_rows(engine, "visitors", "visitor_id", "last_name", "phone") == [
            ("V1", "Lopez", "555-010-0001"), ("V2", "Okafor", "555-010-0002")]
        assert table_rows(engine, "visitor_student_links", "visitor_id", "student_id",
                          "relationship") == [
            ("V1", "000101", "Mother"), ("V1", "000102", "Mother"),
            ("V1", "000103", "Stepmother")]
