"""Vendor layouts end to end (FORMATS.md "Vendor layouts", issue 3).

``students_ascender.csv``, ``visitors_ascender.csv`` and ``visitors_powerschool.csv``
are column mappings onto the canonical students and visitors types. A clean export
stores exactly the canonical records, and the canonical file of the same records
afterwards changes nothing (the mapping lands in the same columns); every conversion
error is reported on the vendor column as the district wrote it; a vendor file and
another file of its kind in one run are never merged; ``visitor-sync validate`` gives
the same report; the mapping tables of docs/formats.md say what the code maps.
Imports run on SQLite and PostgreSQL, through the CLI and the Importer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from tests.support import runs
from tests.support.runs import database, issues, make_inbox, outcome, run_import, table_rows, write
from visitor_sync.cli import main
from visitor_sync.db.schema import KEY_SEPARATOR, Base
from visitor_sync.filetypes import FILE_TYPES
from visitor_sync.summary import ImportSummary

DOC = Path(__file__).resolve().parents[1] / "docs" / "formats.md"

#: FORMATS.md "Vendor layouts": layout | vendor header | the canonical header it becomes
#: ("-": only the input of a conversion) | required (as the canonical column is)
CONTRACT_TABLE = """
students_ascender    | Student ID          | Student ID        | yes
students_ascender    | Student Last Name   | Last Name         | yes
students_ascender    | Student First Name  | First Name        | yes
students_ascender    | Student Middle Name | Middle Name       | no
students_ascender    | Campus ID           | School ID         | yes
students_ascender    | Grade               | Grade             | yes
students_ascender    | Home Room           | Homeroom          | no
students_ascender    | Date of Birth       | Date of Birth     | yes
students_ascender    | Email Address       | Email             | no
students_ascender    | Campus Name         | School Name       | no
students_ascender    | Sex                 | Gender            | no
visitors_ascender    | Stu ID             | Student ID        | no
visitors_ascender    | Contact ID         | Visitor ID        | yes
visitors_ascender    | Contact Last Name  | Last Name         | yes
visitors_ascender    | Contact First Name | First Name        | yes
visitors_ascender    | Relationship       | Relationship      | no
visitors_ascender    | Contact Phone      | Phone             | no
visitors_ascender    | Contact Email      | Email             | no
visitors_ascender    | Pickup Auth        | Can Pickup        | no
students_powerschool | Student_Number              | Student ID        | yes
students_powerschool | SchoolID                    | School ID         | yes
students_powerschool | First_Name                  | First Name        | yes
students_powerschool | Middle_Name                 | Middle Name       | no
students_powerschool | Last_Name                   | Last Name         | yes
students_powerschool | Grade_Level                 | Grade             | yes
students_powerschool | Gender                      | Gender            | no
students_powerschool | DOB                         | Date of Birth     | yes
students_powerschool | Enroll_Status               | Active            | no
visitors_powerschool | New Contact Identifier      | -                 | no
visitors_powerschool | Contact ID                  | Visitor ID        | yes
visitors_powerschool | First Name                  | First Name        | yes
visitors_powerschool | Middle Name                 | Middle Name       | no
visitors_powerschool | Last Name                   | Last Name         | yes
visitors_powerschool | Gender                      | Sex               | no
visitors_powerschool | Is Active                   | Active            | no
visitors_powerschool | Email Address               | Email             | no
visitors_powerschool | Phone Number Priority Order | -                 | no
visitors_powerschool | phoneNumberAsEntered        | Phone             | no
visitors_powerschool | studentNumber               | Student ID        | no
visitors_powerschool | Relationship Type           | Relationship      | no
visitors_powerschool | Contact Has Custody         | Has Custody       | no
visitors_powerschool | Contact Allow School Pickup | Can Pickup        | no
visitors_powerschool | Is Emergency Contact        | Emergency Contact | no
"""


def _contract() -> dict[str, list[tuple[str, str, str]]]:
    contract: dict[str, list[tuple[str, str, str]]] = {}
    for line in CONTRACT_TABLE.strip().splitlines():
        layout, *mapping = (cell.strip() for cell in line.split("|"))
        contract.setdefault(layout, []).append((mapping[0], mapping[1], mapping[2]))
    return contract


CONTRACT = _contract()


def vendor_header(layout: str) -> tuple[str, ...]:
    return tuple(header for header, _, _ in CONTRACT[layout])


# -- records and the canonical files holding them ---------------------------------------

STUDENT_COLUMNS = {"student_id": "Student ID", "first_name": "First Name",
                   "last_name": "Last Name", "middle_name": "Middle Name",
                   "date_of_birth": "Date of Birth", "grade": "Grade", "school_id": "School ID",
                   "gender": "Gender"}
VISITOR_COLUMNS = {"visitor_id": "Visitor ID", "first_name": "First Name",
                   "last_name": "Last Name", "email": "Email", "phone": "Phone"}
LINK_COLUMNS = {"student_id": "Student ID", "relationship": "Relationship",
                "can_pickup": "Can Pickup", "emergency_contact": "Emergency Contact",
                "has_custody": "Has Custody"}
#: a Has Custody cell as stored (empty: the file did not say)
CUSTODY = {"": None, "1": True, "0": False}
VISITORS_HEADER = (*VISITOR_COLUMNS.values(), *LINK_COLUMNS.values())
SCHOOL_COLUMNS = ("school_id", "name", "active")
RECORD_TABLES = ("students", "schools", "visitors", "visitor_student_links")

Records = list[tuple[Any, ...]]
#: (table, columns, rows as ``table_rows`` sorts them)
Expected = tuple[str, tuple[str, ...], Records]


def cell(value: object) -> str:
    """A stored value as a canonical file writes it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def canonical_students(students: Records, schools: Records) -> tuple[tuple[str, ...],
                                                                     list[list[str]]]:
    """``students.csv`` (header, rows) of student records (with their schools' names)."""
    names = {school[0]: school[1] for school in schools}
    rows = []
    for record in students:
        values = dict(zip(STUDENT_COLUMNS, record, strict=False))
        rows.append([*map(cell, values.values()), cell(names[values["school_id"]])])
    return (*STUDENT_COLUMNS.values(), "School Name"), rows


def canonical_visitors(table: str) -> tuple[str, tuple[str, ...], list[list[str]]]:
    """``visitors.csv`` of a ``|`` table in ``VISITORS_HEADER`` order."""
    rows = [[cell.strip() for cell in line.split("|")] for line in table.strip().splitlines()]
    return "visitors.csv", VISITORS_HEADER, rows


def visitors_expected(table: str) -> list[Expected]:
    """The visitors and links the canonical file of ``table`` stores."""
    _, _, rows = canonical_visitors(table)
    visitors = {tuple(value or None for value in row[:len(VISITOR_COLUMNS)]) for row in rows}
    links = [(row[0], *row[len(VISITOR_COLUMNS):-3], row[-3] == "1", row[-2] == "1",
              CUSTODY[row[-1]], True) for row in rows]
    return [("visitors", (*VISITOR_COLUMNS, "active"),
             sorted(((*visitor, True) for visitor in visitors), key=lambda record: record[0])),
            ("visitor_student_links", ("visitor_id", *LINK_COLUMNS, "active"),
             sorted(links, key=lambda record: record[:2]))]




def ascender_student(student: str, last: str, first: str, middle: str, born: str, grade: str,
                     campus: str, campus_name: str, sex: str) -> tuple[str, ...]:
    """A row of Ascender's Cafeteria Export layout (plus the earlier Campus Name, Sex)."""
    return (student, last, first, middle, campus, grade, "", born, "", campus_name, sex)


# Ascender: Austin-style campus numbers (leading zeros), YYYYMMDD birth dates, EE grades.
ASCENDER_STUDENT_ROWS = [
    ascender_student("104233", "Garza", "Sofia", "Isabel", "20200105", "KG", "001",
                     "Travis Elementary", "F"),
    ascender_student("104871", "Garza", "Mateo", "", "20150105", "05", "001",
                     "Travis Elementary", "M"),
    ascender_student("098112", "Okafor", "Chidi", "Emeka", "20080229", "12", "041",
                     "Lanier High School", "M"),
    ascender_student("110560", "Brown", "Ava", "", "20210704", "EE", "002",
                     "Pease Early Childhood", "F"),
]
ASCENDER_STUDENTS = [
    ("098112", "Chidi", "Okafor", "Emeka", date(2008, 2, 29), "12", "041", "M", True),
    ("104233", "Sofia", "Garza", "Isabel", date(2020, 1, 5), "KG", "001", "F", True),
    ("104871", "Mateo", "Garza", None, date(2015, 1, 5), "05", "001", "M", True),
    ("110560", "Ava", "Brown", None, date(2021, 7, 4), "PR", "002", "F", True),
]
ASCENDER_SCHOOLS = [("001", "Travis Elementary", True), ("002", "Pease Early Childhood", True),
                    ("041", "Lanier High School", True)]

ASCENDER_VISITOR_ROWS = [
    ("104233", "C5501", "Garza", "Maria", "Mother", "(512) 555-0147", "Maria.Garza@Example.com",
     "Y"),
    ("104871", "C5501", "Garza", "Maria", "Mother", "(512) 555-0147", "Maria.Garza@Example.com",
     "Y"),
    ("104233", "C5502", "Garza", "Luis", "Father", "512-555-0190", "", "N"),
    ("098112", "C7730", "Okafor", "Ngozi", "Mother", "5125550123", "ngozi.okafor@example.net",
     "y"),
    ("110560", "C8812", "Brown", "Linda", "Grandmother", "(737) 555-0111", "", ""),
]
#: What the Ascender contacts above are, as canonical visitors.csv rows.
ASCENDER_VISITORS = """
C5501 | Maria | Garza  | maria.garza@example.com  | (512) 555-0147 | 104233 | Mother      | 1 | 0 |
C5501 | Maria | Garza  | maria.garza@example.com  | (512) 555-0147 | 104871 | Mother      | 1 | 0 |
C5502 | Luis  | Garza  |                          | 512-555-0190   | 104233 | Father      | 0 | 0 |
C7730 | Ngozi | Okafor | ngozi.okafor@example.net | 5125550123     | 098112 | Mother      | 1 | 0 |
C8812 | Linda | Brown  |                          | (737) 555-0111 | 110560 | Grandmother | 0 | 0 |
"""

# PowerSchool: the district sends canonical students.csv next to its contacts export.
POWERSCHOOL_STUDENTS = [
    ("20190877", "Noah", "Johnson", None, date(2012, 10, 9), "06", "105", None, True),
    ("20230145", "Liam", "Patel", None, date(2017, 4, 22), "02", "103", "M", True),
    ("20230146", "Emma", "Patel", "Rose", date(2019, 8, 30), "KG", "103", "F", True),
]
POWERSCHOOL_SCHOOLS = [("103", "Zilker Elementary", True), ("105", "Bowie Middle School", True)]


def contact_row(student: str, contact: str, first: str, last: str, relationship: str,
                email: str, phone: str, pickup: str, custody: str,
                emergency: str) -> tuple[str, ...]:
    """A PowerSchool contacts row holding a contact and one relationship (the export may
    also spread them over several rows: tests/test_powerschool.py)."""
    return ("", contact, first, "", last, "", "", email, "1" if phone else "", phone, student,
            relationship, custody, pickup, emergency)


POWERSCHOOL_CONTACT_ROWS = [
    contact_row("20230145", "31001", "Priya", "Patel", "Mother", "Priya.Patel@Example.org",
                "555-201-3344", "1", "1", "1"),
    contact_row("20230146", "31001", "Priya", "Patel", "Mother", "Priya.Patel@Example.org",
                "555-201-3344", "1", "1", "1"),
    # custody never grants pickup: Contact Allow School Pickup alone decides
    contact_row("20230145", "31002", "Raj", "Patel", "Father", "", "555-201-3345", "0", "1",
                "0"),
    contact_row("20190877", "31050", "Denise", "Johnson", "Aunt", "djohnson@example.com",
                "(555) 330-9876", "1", "0", "1"),
    contact_row("20190877", "31051", "Mark", "Johnson", "Stepfather", "", "", "0", "0", "1"),
]
#: A PowerSchool student export (its own layout): pre-K as -1/-2, kindergarten as 0,
#: Enroll_Status 2 (transferred out) is not active.
POWERSCHOOL_STUDENT_ROWS = [
    ("20230145", "103", "Liam", "", "Patel", "2", "M", "04/22/2017", "0"),
    ("20230146", "103", "Emma", "Rose", "Patel", "0", "F", "08/30/2019", "0"),
    ("20240201", "103", "Mia", "", "Chen", "-1", "F", "05/14/2021", "0"),
    ("20240202", "103", "Leo", "", "Chen", "-2", "M", "06/02/2022", "0"),
    ("20190877", "105", "Noah", "", "Johnson", "6", "", "10/09/2012", "2"),
]
POWERSCHOOL_STUDENTS_STORED = [
    ("20190877", "Noah", "Johnson", None, date(2012, 10, 9), "06", "105", None, False),
    ("20230145", "Liam", "Patel", None, date(2017, 4, 22), "02", "103", "M", True),
    ("20230146", "Emma", "Patel", "Rose", date(2019, 8, 30), "KG", "103", "F", True),
    ("20240201", "Mia", "Chen", None, date(2021, 5, 14), "PK", "103", "F", True),
    ("20240202", "Leo", "Chen", None, date(2022, 6, 2), "PK", "103", "M", True),
]
#: What the PowerSchool contacts above are, as canonical visitors.csv rows.
POWERSCHOOL_VISITORS = """
31001 | Priya | Patel | priya.patel@example.org | 555-201-3344 | 20230145 | Mother | 1 | 1 | 1
31001 | Priya | Patel | priya.patel@example.org | 555-201-3344 | 20230146 | Mother | 1 | 1 | 1
31002 | Raj | Patel | | 555-201-3345 | 20230145 | Father | 0 | 0 | 1
31050 | Denise | Johnson | djohnson@example.com | (555) 330-9876 | 20190877 | Aunt | 1 | 1 | 0
31051 | Mark | Johnson | | | 20190877 | Stepfather | 0 | 1 | 0
"""

#: Same-run files a visitors layout refers to: file name -> (header, rows).
ROSTERS: dict[str, tuple[Sequence[str], Sequence[Sequence[str]]]] = {
    "students_ascender.csv": (vendor_header("students_ascender"), ASCENDER_STUDENT_ROWS),
    # every student of both vendors, so that any visitors file can link
    "students.csv": canonical_students(ASCENDER_STUDENTS + POWERSCHOOL_STUDENTS,
                                       ASCENDER_SCHOOLS + POWERSCHOOL_SCHOOLS),
}


@dataclass(frozen=True)
class Layout:
    """A vendor layout as these tests drive it."""

    name: str
    #: a clean, realistic export in the vendor header's order
    rows: list[tuple[str, ...]]
    #: what the clean export must leave; the first table is the file's primary one
    expected: list[Expected]
    #: the canonical file of the same records: (file name, header, rows)
    canonical: tuple[str, tuple[str, ...], list[list[str]]]
    #: (table, vendor headers of its record key) of every table the layout fills
    fills: tuple[tuple[str, tuple[str, ...]], ...]
    #: a valid row whose keys no clean row uses; rows in error are made from it
    spare: tuple[str, ...]
    #: cells changing the first row without changing its key (a duplicate key)
    same_key: dict[str, str]
    #: the ``ROSTERS`` file written next to the layout's file
    roster: str | None = None

    @property
    def file(self) -> str:
        return f"{self.name}.csv"

    @property
    def header(self) -> tuple[str, ...]:
        return vendor_header(self.name)

    def row(self, index: int) -> dict[str, str]:
        return dict(zip(self.header, self.rows[index], strict=True))

    def write(self, directory: Path, rows: Sequence[dict[str, str]] | None = None,
              header: Sequence[str] | None = None) -> list[Path]:
        """The roster and the layout's file (its clean rows unless ``rows`` are given)."""
        paths = [] if self.roster is None else [write(directory, self.roster,
                                                      *ROSTERS[self.roster])]
        cells = self.rows if rows is None else [list(row.values()) for row in rows]
        return [*paths, write(directory, self.file, header or self.header, cells)]


def record_keys(rows: Sequence[dict[str, str]], key: Sequence[str]) -> list[str]:
    return sorted({KEY_SEPARATOR.join(row[header] for header in key) for row in rows})


VISITOR_FILLS = {
    "visitors_ascender": (("visitors", ("Contact ID",)),
                          ("visitor_student_links", ("Contact ID", "Stu ID"))),
    "visitors_powerschool": (("visitors", ("Contact ID",)),
                             ("visitor_student_links", ("Contact ID", "studentNumber"))),
}


LAYOUTS = {layout.name: layout for layout in (
    Layout("students_ascender", ASCENDER_STUDENT_ROWS,
           [("students", (*STUDENT_COLUMNS, "active"), ASCENDER_STUDENTS),
            ("schools", SCHOOL_COLUMNS, ASCENDER_SCHOOLS)],
           ("students.csv", *canonical_students(ASCENDER_STUDENTS, ASCENDER_SCHOOLS)),
           (("students", ("Student ID",)),),
           ascender_student("120004", "Lee", "Jun", "", "20160315", "04", "001",
                            "Travis Elementary", "M"),
           {"Student First Name": "Sophia"}),
    Layout("visitors_ascender", ASCENDER_VISITOR_ROWS,
           visitors_expected(ASCENDER_VISITORS), canonical_visitors(ASCENDER_VISITORS),
           VISITOR_FILLS["visitors_ascender"],
           ("104233", "C9001", "Garza", "Elena", "Grandmother", "512-555-0100", "", "Y"),
           {"Contact Phone": "512-555-0999"}, roster="students_ascender.csv"),
    Layout("visitors_powerschool", POWERSCHOOL_CONTACT_ROWS,
           visitors_expected(POWERSCHOOL_VISITORS), canonical_visitors(POWERSCHOOL_VISITORS),
           VISITOR_FILLS["visitors_powerschool"],
           contact_row("20230146", "31099", "Anita", "Patel", "Grandmother", "", "555-201-0000",
                       "1", "0", "0"),
           {"Relationship Type": "Guardian"}, roster="students.csv"),
    Layout("students_powerschool", POWERSCHOOL_STUDENT_ROWS,
           [("students", (*STUDENT_COLUMNS, "active"), POWERSCHOOL_STUDENTS_STORED),
            ("schools", SCHOOL_COLUMNS, [(school, None, True) for school in ("103", "105")])],
           ("students.csv", (*STUDENT_COLUMNS.values(), "Active"),
            [[*map(cell, record)] for record in POWERSCHOOL_STUDENTS_STORED]),
           (("students", ("Student_Number",)),),
           ("20230199", "103", "Zoe", "", "Patel", "1", "F", "02/01/2018", "0"),
           {"First_Name": "Noa"}),
)}


# -- helpers ------------------------------------------------------------------------------

@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    return make_inbox(tmp_path)


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every column of every record table, to prove a run changed nothing."""
    return {table: table_rows(engine, table, *Base.metadata.tables[table].c.keys())
            for table in RECORD_TABLES}


def brief(found: Sequence[Any]) -> list[tuple[Any, ...]]:
    """``(file, line, column, code, severity)`` of stored issues."""
    return [(issue.file, issue.line, issue.column, issue.code, issue.severity)
            for issue in found]


def cli_import(db_url: str, inbox: Path) -> ImportSummary:
    """``visitor-sync import --format json`` of the inbox: the run summary it prints."""
    result = CliRunner().invoke(main, [
        "import", "--district", runs.DISTRICT, "--source", str(inbox), "--db", db_url,
        "--quiet-period", "0", "--format", "json"])
    assert result.exit_code == 0, result.output
    return ImportSummary.model_validate_json(result.stdout)


def validate(paths: Sequence[Path]) -> tuple[int, list[tuple[Any, ...]], list[str]]:
    """``visitor-sync validate --format json`` of ``paths``: exit status, the report's
    ``(file, line, column, code, severity)`` entries and their reasons."""
    result = CliRunner().invoke(main, ["validate", "--format", "json", *map(str, paths)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    report = json.loads(result.stdout)
    return (result.exit_code,
            [(entry["file"], entry["line"], entry["column"], entry["code"], entry["severity"])
             for entry in report],
            [entry["reason"] for entry in report])


# -- clean exports ------------------------------------------------------------------------

@pytest.mark.parametrize("name", LAYOUTS)
def test_clean_export_stores_the_canonical_records(db_url: str, tmp_path: Path,
                                                   name: str) -> None:
    """Dates converted, grades normalised, schools created, links with their flags; then
    the canonical file of the same records is *unchanged* throughout."""
    layout = LAYOUTS[name]
    vendor = make_inbox(tmp_path, "vendor")
    layout.write(vendor)
    records = len(layout.expected[0][2])
    with database(db_url) as engine:
        summary = cli_import(db_url, vendor)
        assert brief(issues(engine, summary)) == []
        assert (outcome(summary, layout.file).status, outcome(summary, layout.file).created) == (
            "applied", records)
        for table, columns, expected in layout.expected:
            assert table_rows(engine, table, *columns) == expected, table
        before = snapshot(engine)
        canonical = make_inbox(tmp_path, "canonical")
        file, header, rows = layout.canonical
        write(canonical, file, header, rows)
        again = run_import(engine, canonical)
        assert brief(issues(engine, again)) == []
        counts = outcome(again, file)
        assert (counts.status, counts.created, counts.updated, counts.unchanged,
                counts.deactivated) == ("applied", 0, 0, records, 0)
        assert snapshot(engine) == before


#: layout | flags | can_pickup, emergency_contact stored
PICKUP = [
    ("visitors_ascender", {"Pickup Auth": "Y"}, (True, False)),
    ("visitors_ascender", {"Pickup Auth": "n"}, (False, False)),
    ("visitors_ascender", {"Pickup Auth": ""}, (False, False)),  # empty: no pickup
    ("visitors_powerschool", {"Contact Allow School Pickup": "1", "Contact Has Custody": "0",
                              "Is Emergency Contact": "0"}, (True, False)),
    # custody never grants pickup
    ("visitors_powerschool", {"Contact Allow School Pickup": "0", "Contact Has Custody": "1",
                              "Is Emergency Contact": "1"}, (False, True)),
    ("visitors_powerschool", {"Contact Allow School Pickup": "0", "Contact Has Custody": "0",
                              "Is Emergency Contact": "1"}, (False, True)),
    ("visitors_powerschool", {"Contact Allow School Pickup": "1", "Contact Has Custody": "1",
                              "Is Emergency Contact": "0"}, (True, False)),
]


@pytest.mark.parametrize(("name", "flags", "stored"), PICKUP,
                         ids=["-".join((name, *flags.values())) for name, flags, _ in PICKUP])
def test_vendor_flags_become_can_pickup(db_url: str, inbox: Path, name: str,
                                        flags: dict[str, str], stored: tuple[bool, bool]) -> None:
    layout = LAYOUTS[name]
    layout.write(inbox, [{**layout.row(0), **flags}])
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert brief(issues(engine, summary)) == []
        assert table_rows(engine, "visitor_student_links", "can_pickup",
                          "emergency_contact") == [stored]


def test_custody_is_stored_and_never_grants_pickup(db_url: str, tmp_path: Path) -> None:
    """Contact Has Custody is stored as stated, on update too; Contact Allow School Pickup
    alone decides pickup (custody used to grant it: a file saying pickup 0 stored 1)."""
    layout = LAYOUTS["visitors_powerschool"]
    raj = layout.row(2)
    assert (raj["Contact Allow School Pickup"], raj["Contact Has Custody"]) == ("0", "1")
    with database(db_url) as engine:
        for number, custody in enumerate(("1", "0")):
            run = make_inbox(tmp_path, f"run{number}")
            layout.write(run, [{**raj, "Contact Has Custody": custody}])
            run_import(engine, run)
            assert table_rows(engine, "visitor_student_links", "visitor_id", "can_pickup",
                              "has_custody", "active") == [("31002", False, custody == "1", True)]


# -- conversion errors --------------------------------------------------------------------

TOMORROW = (date.today() + timedelta(days=1)).strftime("%Y%m%d")


def row_error(name: str, column: str, value: str | None, code: str) -> Any:
    """A row in error in the layout's ``column`` (``value`` None: a repeated key)."""
    return pytest.param(name, column, value, code, id=f"{name}-{column}-{value}-{code}")


ROW_ERRORS = [
    row_error("students_ascender", "Date of Birth", "20151345", "invalid_date"),
    row_error("students_ascender", "Date of Birth", "2015-13-01", "invalid_date"),
    row_error("students_ascender", "Date of Birth", TOMORROW, "invalid_date"),
    # the earlier, invented MMDDYYYY is never guessed
    row_error("students_ascender", "Date of Birth", "01052015", "invalid_date"),
    row_error("students_ascender", "Grade", "Z", "invalid_grade"),
    row_error("students_ascender", "Student ID", "", "missing_value"),
    row_error("students_ascender", "Student ID", None, "duplicate_key"),
    row_error("visitors_ascender", "Pickup Auth", "maybe", "invalid_boolean"),
    row_error("visitors_ascender", "Stu ID", "999999", "unknown_student"),
    row_error("visitors_ascender", "Contact ID", None, "duplicate_key"),
    row_error("visitors_powerschool", "Contact Allow School Pickup", "2", "invalid_boolean"),
    row_error("visitors_powerschool", "Contact Has Custody", "2", "invalid_boolean"),
    row_error("visitors_powerschool", "Is Emergency Contact", "2", "invalid_boolean"),
    row_error("visitors_powerschool", "studentNumber", "999999", "unknown_student"),
    row_error("visitors_powerschool", "Contact ID", None, "duplicate_key"),
    row_error("students_powerschool", "Grade_Level", "-3", "invalid_grade"),
    row_error("students_powerschool", "Enroll_Status", "A", "invalid_enroll_status"),
    row_error("students_powerschool", "DOB", "2015-13-01", "invalid_date"),
    row_error("students_powerschool", "Student_Number", None, "duplicate_key"),
]


def rows_with_error(layout: Layout, column: str, value: str | None) -> list[dict[str, str]]:
    """A valid row, the row in error (line 3), a valid row."""
    if value is None:
        bad = {**layout.row(0), **layout.same_key}
    else:
        bad = {**dict(zip(layout.header, layout.spare, strict=True)), column: value}
    return [layout.row(0), bad, layout.row(1)]


@pytest.mark.parametrize(("name", "column", "value", "code"), ROW_ERRORS)
def test_conversion_error_is_reported_on_the_vendor_column(
        db_url: str, inbox: Path, name: str, column: str, value: str | None, code: str) -> None:
    """Only the row in error is skipped; the vendor header is the issue's column."""
    layout = LAYOUTS[name]
    rows = rows_with_error(layout, column, value)
    layout.write(inbox, rows)
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert brief(issues(engine, summary)) == [(layout.file, 3, column, code, "error")]
        assert outcome(summary, layout.file).rejected_rows == 1
        for table, key in layout.fills:
            assert table_rows(engine, table, "record_key", "active") == [
                (record, True) for record in record_keys([rows[0], rows[2]], key)], table


@pytest.mark.parametrize(("name", "column", "value", "code"), ROW_ERRORS)
def test_validate_reports_the_conversion_error(tmp_path: Path, name: str, column: str,
                                               value: str | None, code: str) -> None:
    layout = LAYOUTS[name]
    paths = layout.write(tmp_path, rows_with_error(layout, column, value))
    status, report, _ = validate(paths)
    assert (status, report) == (1, [(layout.file, 3, column, code, "error")])


@pytest.mark.parametrize(("name", "column", "value", "code"),
                         [case for case in ROW_ERRORS if case.values[2]])
def test_reason_quotes_the_value_as_written(tmp_path: Path, name: str, column: str,
                                            value: str, code: str) -> None:
    """FORMATS.md: the reason names the column and the value from the file, so the
    district can find it (not a value the importer rewrote)."""
    layout = LAYOUTS[name]
    _, _, (reason,) = validate(layout.write(tmp_path, rows_with_error(layout, column, value)))
    assert reason.startswith(f"{column} '{value}' "), reason


#: The layout visitors_powerschool.csv had before issue 11 (one row per contact and
#: student): its headers stay accepted.
EARLIER_POWERSCHOOL_HEADER = ("Student_Number", "ContactID", "First_Name", "Last_Name",
                              "Relationship", "Email_Address", "Phone", "School_Pickup",
                              "Has_Custody", "Emergency_Contact")


def test_earlier_powerschool_headers_still_match(db_url: str, inbox: Path) -> None:
    """The earlier headers, spelled with spaces and in capitals as FORMATS.md once wrote
    them, match the same fields; issues name the header as written."""
    layout = LAYOUTS["visitors_powerschool"]
    header = [name.replace("_", " ").upper() for name in EARLIER_POWERSCHOOL_HEADER]
    rows = [("20230145", "31001", "Priya", "Patel", "Mother", "", "555-201-3344", "1", "1", "0"),
            ("20230146", "31001", "Priya", "Patel", "Mother", "", "555-201-3344", "0", "2", "0")]
    write(inbox, "students.csv", *ROSTERS["students.csv"])
    write(inbox, layout.file, header, rows)
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert brief(issues(engine, summary)) == [(layout.file, 3, "HAS CUSTODY",
                                                   "invalid_boolean", "error")]
        assert table_rows(engine, "visitor_student_links", "record_key", "can_pickup",
                          "has_custody") == [(f"31001{KEY_SEPARATOR}20230145", True, True)]


def test_earlier_ascender_headers_still_match(db_url: str, inbox: Path) -> None:
    """The headers students_ascender.csv had before issue 11 stay accepted; its dates
    are now Ascender's YYYYMMDD."""
    write(inbox, "students_ascender.csv",
          ("Stu ID", "Last Name", "First Name", "Middle Name", "DOB", "Grd Lvl", "Campus ID",
           "Campus Name", "Sex"),
          [("104233", "Garza", "Sofia", "Isabel", "20200105", "KG", "001", "Travis Elementary",
            "F")])
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert brief(issues(engine, summary)) == []
        assert table_rows(engine, "students", *STUDENT_COLUMNS, "active") == [
            ASCENDER_STUDENTS[1]]


MISSING = [pytest.param(name, header, id=f"{name}-{header}")
           for name, mapping in CONTRACT.items() for header, _, required in mapping
           if required == "yes"]


@pytest.mark.parametrize(("name", "missing"), MISSING)
def test_missing_vendor_column_rejects_the_file(db_url: str, tmp_path: Path, name: str,
                                                missing: str) -> None:
    """After a clean run, the same export without a required column is rejected with one
    ``missing_column`` naming the vendor header, and changes nothing."""
    layout = LAYOUTS[name]
    first, second = make_inbox(tmp_path, "first"), make_inbox(tmp_path, "second")
    layout.write(first)
    kept = [header for header in layout.header if header != missing]
    write(second, layout.file, kept,
          [[row[header] for header in kept] for row in map(layout.row, range(len(layout.rows)))])
    with database(db_url) as engine:
        run_import(engine, first)
        before = snapshot(engine)
        summary = run_import(engine, second)
        assert brief(issues(engine, summary)) == [(layout.file, 1, missing, "missing_column",
                                                   "error")]
        assert outcome(summary, layout.file).status == "rejected"
        assert snapshot(engine) == before
    assert list(second.iterdir()) == []


def test_layout_of_an_accepted_kind_is_accepted(db_url: str, inbox: Path) -> None:
    """``accepted_types`` naming a kind accepts its vendor layouts; naming one layout
    accepts only that one."""
    LAYOUTS["visitors_ascender"].write(inbox)
    with database(db_url) as engine:
        summary = run_import(engine, inbox,
                             accepted_types=["students", "visitors_powerschool"])
        assert [(file.file, file.status) for file in summary.files] == [
            ("students_ascender.csv", "applied"), ("visitors_ascender.csv", "rejected")]
        assert brief(issues(engine, summary)) == [
            ("visitors_ascender.csv", None, None, "type_not_accepted", "error")]


# -- one file per kind ----------------------------------------------------------------------

#: Which column holds a file's primary record key.
PRIMARY_KEY = {"students.csv": "Student ID", "students_ascender.csv": "Student ID",
               "visitors.csv": "Visitor ID", "visitors_ascender.csv": "Contact ID",
               "visitors_powerschool.csv": "Contact ID",
               "students_powerschool.csv": "Student_Number"}
FILES: dict[str, tuple[Sequence[str], Sequence[Sequence[str]]]] = {
    "students.csv": canonical_students(POWERSCHOOL_STUDENTS, POWERSCHOOL_SCHOOLS),
    "visitors.csv": canonical_visitors(ASCENDER_VISITORS)[1:],
    **{layout.file: (layout.header, layout.rows) for layout in LAYOUTS.values()},
}
#: files of one kind sent together | the kind's primary table
COMPETING = {
    "students+students_ascender": (("students.csv", "students_ascender.csv"), "students"),
    "visitors+visitors_powerschool": (("visitors.csv", "visitors_powerschool.csv"), "visitors"),
    "visitors_ascender+visitors_powerschool": (
        ("visitors_ascender.csv", "visitors_powerschool.csv"), "visitors"),
}


def primary_keys(file: str) -> list[str]:
    header, rows = FILES[file]
    return record_keys([dict(zip(header, row, strict=True)) for row in rows],
                       [PRIMARY_KEY[file]])


@pytest.mark.parametrize("name", COMPETING)
def test_two_files_of_one_kind_are_never_merged(db_url: str, inbox: Path, name: str) -> None:
    """Exactly one is applied, the other rejected whole with ``duplicate_source``."""
    files, table = COMPETING[name]
    assert not set(primary_keys(files[0])) & set(primary_keys(files[1]))
    if table == "visitors":
        write(inbox, "students.csv", *ROSTERS["students.csv"])
    for file in files:
        write(inbox, file, *FILES[file])
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        status = {file: outcome(summary, file).status for file in files}
        assert sorted(status.values()) == ["applied", "rejected"]
        (applied,) = [file for file in files if status[file] == "applied"]
        (rejected,) = [file for file in files if status[file] == "rejected"]
        found = issues(engine, summary)
        assert brief(found) == [(rejected, None, None, "duplicate_source", "error")]
        assert repr(applied) in found[0].reason
        assert outcome(summary, rejected).rows_read == 0
        assert table_rows(engine, table, "record_key") == [
            (key,) for key in primary_keys(applied)]
    assert list(inbox.iterdir()) == []


# -- validate -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", LAYOUTS)
def test_validate_accepts_a_clean_export(tmp_path: Path, name: str) -> None:
    assert validate(LAYOUTS[name].write(tmp_path)) == (0, [], [])


def test_validate_reports_a_directory_of_vendor_files(tmp_path: Path) -> None:
    """References are checked against the vendor students of the run; the second
    visitors file is a ``duplicate_source``; exit status 1."""
    students, visitors = LAYOUTS["students_ascender"], LAYOUTS["visitors_ascender"]
    # the visitors layout writes its clean roster: the students file in error comes after
    visitors.write(tmp_path, [*map(visitors.row, range(len(visitors.rows))),
                              {**visitors.row(2), "Stu ID": "120002"},
                              {**visitors.row(3), "Contact ID": "C7731", "Pickup Auth": "maybe"}])
    students.write(tmp_path, [*map(students.row, range(len(students.rows))),
                              {**students.row(0), "Student ID": "120001",
                               "Date of Birth": "20151345"},
                              {**students.row(0), "Student ID": "120002", "Grade": "Z"}])
    write(tmp_path, "visitors_powerschool.csv", *FILES["visitors_powerschool.csv"])
    status, report, _ = validate(sorted(tmp_path.iterdir()))
    assert status == 1
    assert sorted(report, key=str) == [
        ("students_ascender.csv", 6, "Date of Birth", "invalid_date", "error"),
        ("students_ascender.csv", 7, "Grade", "invalid_grade", "error"),
        ("visitors_ascender.csv", 7, "Stu ID", "unknown_student", "error"),
        ("visitors_ascender.csv", 8, "Pickup Auth", "invalid_boolean", "error"),
        ("visitors_powerschool.csv", None, None, "duplicate_source", "error"),
    ]


def test_validate_warnings_alone_exit_zero(tmp_path: Path) -> None:
    """An extra Ascender column is only a warning."""
    layout = LAYOUTS["students_ascender"]
    path = write(tmp_path, layout.file, [*layout.header, "Ethnicity"],
                 [[*row, "H"] for row in layout.rows])
    assert validate([path])[:2] == (0, [(layout.file, 1, "Ethnicity", "unknown_column",
                                         "warning")])


# -- the mapping tables of docs/formats.md --------------------------------------------------

def cells(line: str) -> list[str]:
    return [part.strip() for part in re.split(r"(?<!\\)\|", line)[1:-1]]


def documented_mapping(file: str) -> tuple[str, list[tuple[str, str, str]]]:
    """The header of the "becomes" column and every (column, becomes, required) row of
    the table under ``### file``."""
    section = DOC.read_text(encoding="utf-8").split(f"\n### {file}\n", 1)[1].split("\n#", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("|")]
    header = cells(table[0])
    (becomes,) = [name for name in header if name.startswith("becomes")]
    rows = [dict(zip(header, cells(line), strict=True)) for line in table[2:]]
    return becomes, [(row["column"].strip("`"), row[becomes].strip("`").split(" (")[0],
                      row["required"]) for row in rows]


def code_mapping(name: str) -> list[tuple[str, str, str]]:
    """(vendor header, canonical header, required) as the code declares the layout."""
    layout = FILE_TYPES[name]
    canonical = FILE_TYPES[layout.kind]
    required = layout.required_headers()
    return [(header, canonical.header_of(row_field) if row_field in canonical.row_fields
             else "-", "yes" if header in required else "no")
            for header, row_field in layout.header_fields.items()]


@pytest.mark.parametrize("name", CONTRACT)
def test_code_mapping_is_the_contract(name: str) -> None:
    layout = FILE_TYPES[name]
    assert (layout.kind, layout.file_names) == (name.split("_")[0], (f"{name}.csv",))
    assert list(layout.headers) == list(layout.header_fields)
    assert code_mapping(name) == CONTRACT[name]


@pytest.mark.parametrize("name", CONTRACT)
def test_docs_mapping_table_is_the_code(name: str) -> None:
    becomes, documented = documented_mapping(f"{name}.csv")
    canonical = FILE_TYPES[FILE_TYPES[name].kind].file_names[0]
    assert becomes == f"becomes `{canonical}` column"
    assert documented == code_mapping(name)
