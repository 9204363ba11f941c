"""FORMATS.md "Rules for every CSV": encodings, dialect, headers, values, line numbers and
the report itself, mostly through ``visitor-sync validate --format json`` and, where the
stored value matters, through a real import on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.support.runs import csv_bytes, database, issues, make_inbox, run_import, table_rows
from visitor_sync.cli import main

HEADER = ("Student ID", "First Name", "Last Name", "Date of Birth", "Grade", "School ID",
          "Homeroom", "Active")
REPORT_KEYS = {"file", "line", "column", "code", "reason", "severity"}


def student(number: int, **changes: str) -> list[str]:
    """A valid students.csv row; ``changes`` by field name (``Date_of_Birth`` etc.)."""
    row = {"Student ID": f"{number:06d}", "First Name": "Ana", "Last Name": "Lopez",
           "Date of Birth": "2015-03-04", "Grade": "3", "School ID": "001", "Homeroom": "",
           "Active": "1"}
    row.update({name.replace("_", " "): value for name, value in changes.items()})
    return list(row.values())


def students(*rows: list[str], header: tuple[str, ...] = HEADER, **dialect: str) -> bytes:
    return csv_bytes(header, rows, **dialect)


def validate(directory: Path, content: bytes, name: str = "students.csv",
             ) -> tuple[int, list[dict[str, Any]]]:
    """``visitor-sync validate --format json`` of one file: exit status and the report."""
    path = directory / name
    path.write_bytes(content)
    result = CliRunner().invoke(main, ["validate", "--format", "json", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    report = json.loads(result.stdout)
    assert all(set(entry) == REPORT_KEYS for entry in report), report
    assert {entry["file"] for entry in report} <= {name}
    return result.exit_code, report


def brief(report: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(entry["line"], entry["column"], entry["code"], entry["severity"])
            for entry in report]


# -- encodings and dialects -------------------------------------------------------------

#: Cells a naive reader breaks: non-ASCII (cp1252's right quote U+2019 is not Latin-1), a
#: delimiter, a quote and a line break inside fields.
LAST_NAME = "O\u2019Brien, Jr"
AWKWARD = student(1, First_Name="José", Last_Name=LAST_NAME, Homeroom='Room "A"\nEast')
BAD_DATE = student(2, Date_of_Birth="13/45/2010")
FALLBACK = (None, None, "encoding_fallback", "warning")
DIALECTS = [
    pytest.param({}, [], id="utf8-lf"),
    pytest.param({"newline": "\r\n"}, [], id="utf8-crlf"),
    pytest.param({"encoding": "utf-8-sig", "newline": "\r\n"}, [], id="bom-crlf"),
    pytest.param({"encoding": "cp1252"}, [FALLBACK], id="cp1252"),
    pytest.param({"delimiter": ";", "encoding": "utf-8-sig"}, [], id="semicolon-bom"),
    pytest.param({"delimiter": "\t", "encoding": "cp1252", "newline": "\r\n"}, [FALLBACK],
                 id="tab-cp1252-crlf"),
]


@pytest.mark.parametrize(("dialect", "warnings"), DIALECTS)
def test_dialects_and_encodings_validate_alike(tmp_path: Path, dialect: dict[str, str],
                                               warnings: list[tuple[Any, ...]]) -> None:
    status, report = validate(tmp_path, students(AWKWARD, BAD_DATE, **dialect))
    # The awkward row spans lines 2-3, so the bad date is on physical line 4.
    assert brief(report) == [*warnings, (4, "Date of Birth", "invalid_date", "error")]
    assert status == 1


@pytest.mark.parametrize(("dialect", "warnings"), DIALECTS)
def test_dialects_and_encodings_store_the_same_text(db_url: str, tmp_path: Path,
                                                    dialect: dict[str, str],
                                                    warnings: list[tuple[Any, ...]]) -> None:
    inbox = make_inbox(tmp_path)
    (inbox / "students.csv").write_bytes(students(AWKWARD, student(2), **dialect))
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        found = [(issue.line, issue.column, issue.code, issue.severity)
                 for issue in issues(engine, summary)]
        assert found == warnings
        assert table_rows(engine, "students", "student_id", "first_name", "last_name",
                          "homeroom") == [
            ("000001", "José", LAST_NAME, 'Room "A"\nEast'),
            ("000002", "Ana", "Lopez", None)]


def test_bytes_invalid_in_utf8_and_cp1252_reject_the_file(tmp_path: Path) -> None:
    content = students(student(1)) + b"000002,Ana,Lo\x81\x8dpez,2015-03-04,3,001,,1\n"
    status, report = validate(tmp_path, content)
    assert brief(report) == [(3, None, "invalid_encoding", "error")]
    assert "0x81" in report[0]["reason"] and "UTF-8" in report[0]["reason"]
    assert status == 1


# -- line numbers -----------------------------------------------------------------------

@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("blank", ["", ",,,,,,,", "   "], ids=["empty", "commas", "spaces"])
def test_line_numbers_are_physical(tmp_path: Path, newline: str, blank: str) -> None:
    """Blank lines are skipped but counted; a quoted field counts all of its lines, blank
    ones included."""
    lines = [",".join(HEADER), blank,
             '000001,"Ann, Marie","O""Neil",2015-01-02,3,001,"Room 1', "", 'East wing",1',
             "000002,Bob,Lee,2015-13-01,3,001,,1", blank, blank,
             "000003,Cy,Lee,2015-01-02,Z,001,,1", blank]
    status, report = validate(tmp_path, newline.join(lines).encode())
    assert brief(report) == [(6, "Date of Birth", "invalid_date", "error"),
                             (9, "Grade", "invalid_grade", "error")]
    assert status == 1


def test_blank_lines_before_the_header_count(tmp_path: Path) -> None:
    content = b"\n\n" + students(student(1), student(2, Grade="Z"),
                                 header=(*HEADER, "Locker"))
    status, report = validate(tmp_path, content)
    assert brief(report) == [(3, "Locker", "unknown_column", "warning"),
                             (5, "Grade", "invalid_grade", "error")]
    assert status == 1


# -- headers ----------------------------------------------------------------------------

HEADER_SPELLINGS = [
    *(("Student ID", written, "", "missing_value") for written in (
        "Student ID", "student_id", "StudentID", " STUDENT-ID ", "student  id", "Student Number",
        "Stu ID")),
    *(("Date of Birth", written, "x", "invalid_date") for written in (
        "DOB", "dob", "Birth Date", "date of birth", "DATE_OF_BIRTH", "Birthdate")),
]


@pytest.mark.parametrize(("canonical", "written", "value", "code"), [
    pytest.param(*case, id=case[1].replace(" ", "_")) for case in HEADER_SPELLINGS])
def test_header_spellings_and_aliases(tmp_path: Path, canonical: str, written: str, value: str,
                                      code: str) -> None:
    """Any spelling of a header matches, and issues name the column as it is written."""
    header = tuple(written if name == canonical else name for name in HEADER)
    row = student(2)
    row[HEADER.index(canonical)] = value
    status, report = validate(tmp_path, students(student(1), row, header=header))
    assert brief(report) == [(3, written.strip(), code, "error")]
    assert report[0]["reason"].startswith(f"{written.strip()} ")
    assert status == 1


def test_unknown_columns_are_warnings_only(tmp_path: Path) -> None:
    header = (*HEADER, "Favourite Colour", "Locker #")
    rows = [[*student(1), "blue", "12"], [*student(2), "", "not a number"]]
    status, report = validate(tmp_path, students(*rows, header=header))
    assert brief(report) == [(1, "Favourite Colour", "unknown_column", "warning"),
                             (1, "Locker #", "unknown_column", "warning")]
    assert "ignored" in report[0]["reason"]
    assert status == 0


# -- values -----------------------------------------------------------------------------

#: (column as written, table column, [(cell, stored value)])
STORED_VALUES = {
    "dates": ("Date of Birth", "date_of_birth", [
        ("2012-03-04", date(2012, 3, 4)), ("03/04/2012", date(2012, 3, 4)),
        ("3/4/2012", date(2012, 3, 4)), ("20120304", date(2012, 3, 4)),
        ("12/31/2011", date(2011, 12, 31)), ("2/29/2012", date(2012, 2, 29)),
        ("20111001", date(2011, 10, 1))]),
    "grades": ("Grade", "grade", [
        ("K", "KG"), ("kg", "KG"), ("Kindergarten", "KG"), ("5", "05"), ("05", "05"),
        ("Grade 5", "05"), ("1st", "01"), ("2nd", "02"), ("3rd", "03"), ("4th", "04"),
        ("12", "12"), ("13", "13"), ("Pre-K", "PK"), ("PK", "PK"), ("prek", "PK"),
        ("TK", "TK"), ("IT", "IT"), ("PR", "PR"), ("PS", "PS"), ("ug", "UG"),
        ("Other", "Other"),
        # codes real systems send (issue 11): PowerSchool, Texas, Aspen, OneRoster 1.2
        ("-1", "PK"), ("-2", "PK"), ("0", "KG"), ("EE", "PR"), ("PK3", "PK"), ("PK4", "PK"),
        ("KF", "KG"), ("KA", "KG"), ("KP", "KG"), ("PostGraduate", "PS"), ("13th", "13"),
        ("Ungraded", "UG")]),
    "booleans": ("Active", "active", [
        (spelling, truth) for truth, spellings in (
            (True, ("1", "true", "TRUE", "True", "yes", "YES", "Yes", "y", "Y", "t", "T")),
            (False, ("0", "false", "FALSE", "no", "No", "n", "N", "f", "F")))
        for spelling in spellings]),
}


@pytest.mark.parametrize("name", STORED_VALUES)
def test_accepted_spellings_are_stored_normalised(db_url: str, tmp_path: Path,
                                                  name: str) -> None:
    column, stored, spellings = STORED_VALUES[name]
    inbox = make_inbox(tmp_path)
    position = HEADER.index(column)
    rows = [student(number) for number in range(len(spellings))]
    for row, (cell, _) in zip(rows, spellings, strict=True):
        row[position] = cell
    (inbox / "students.csv").write_bytes(students(*rows))
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert issues(engine, summary) == []
        assert table_rows(engine, "students", "student_id", stored) == [
            (f"{number:06d}", value) for number, (_, value) in enumerate(spellings)]


REJECTED_VALUES = [
    *(("Date of Birth", value, "invalid_date", "use YYYY-MM-DD") for value in (
        "2011-02-29", "02/29/2011", "20110229", "2012-13-01", "13/01/2012", "00/10/2012",
        "2012-04-31", "2012/03/04", "04.03.2012", "3-4-2012", "3/4/12", "March 4, 2012",
        "2012-3-4", "201234", "2012-03-04T08:00", "2012-W10-1")),
    ("Date of Birth", "2999-01-01", "invalid_date", "is in the future"),
    *(("Grade", value, "invalid_grade", "use KG, PK, TK, 01-12") for value in (
        "14", "Z", "Grade Z", "0.5", "-3", "-0", "1-2", "Kinder garden", "K5")),
    *(("Active", value, "invalid_boolean", "use 1 or 0") for value in (
        "2", "maybe", "yess", "x")),
]


@pytest.mark.parametrize(("column", "value", "code", "advice"), [
    pytest.param(*case, id=f"{case[2]}-{case[1]}".replace(" ", "_")) for case in REJECTED_VALUES])
def test_other_spellings_are_row_errors(tmp_path: Path, column: str, value: str, code: str,
                                        advice: str) -> None:
    row = student(2)
    row[HEADER.index(column)] = value
    status, report = validate(tmp_path, students(student(1), row))
    assert brief(report) == [(3, column, code, "error")]
    assert report[0]["reason"].startswith(f"{column} '{value}' ")
    assert advice in report[0]["reason"]
    assert status == 1


# -- the report -------------------------------------------------------------------------

def test_report_entry_shape(tmp_path: Path) -> None:
    """The example of FORMATS.md "Error report", to the letter."""
    status, report = validate(tmp_path, students(student(1, Date_of_Birth="13/45/2010")))
    assert report == [{"file": "students.csv", "line": 2, "column": "Date of Birth",
                       "code": "invalid_date", "severity": "error",
                       "reason": "Date of Birth '13/45/2010' is not a date; use YYYY-MM-DD"}]
    assert status == 1


@pytest.mark.parametrize(("content", "expected_status", "expected"), [
    pytest.param(students(student(1), student(2)), 0, [], id="clean"),
    pytest.param(students([*student(1), "x"], header=(*HEADER, "Notes")), 0,
                 [(1, "Notes", "unknown_column", "warning")], id="warnings-only"),
    pytest.param(students(student(1), student(1)), 1,
                 [(3, "Student ID", "duplicate_key", "error")], id="row-error"),
    pytest.param(students(student(1), header=HEADER[1:]), 1,
                 [(1, "Student ID", "missing_column", "error")], id="file-error"),
])
def test_validate_exit_status(tmp_path: Path, content: bytes, expected_status: int,
                              expected: list[tuple[Any, ...]]) -> None:
    status, report = validate(tmp_path, content)
    assert brief(report) == expected
    assert status == expected_status


@pytest.mark.parametrize(("content", "advice"), [
    pytest.param(students(student(1, First_Name="")),
                 "First Name is empty; every row needs a value", id="missing_value"),
    pytest.param(students(student(1), header=(*HEADER[:-2], "Grade", "Active")),
                 "columns 'Grade' and 'Grade' both mean the same field; keep one",
                 id="duplicate_column"),
    pytest.param(students(student(1), header=tuple(h for h in HEADER if h != "Grade")),
                 "the required column 'Grade' is missing; add it to the header row",
                 id="missing_column"),
    pytest.param(students(student(7), student(7)),
                 "Student ID '000007' is already on line 2; each key may appear only once",
                 id="duplicate_key"),
    pytest.param(students([*student(1), "Smith"]),
                 "the row has 9 fields but the header has 8; quote values that contain the "
                 "delimiter", id="wrong_field_count"),
    pytest.param(b"", "the file is empty; it needs a header row", id="empty_file"),
])
def test_reasons_say_how_to_fix(tmp_path: Path, content: bytes, advice: str) -> None:
    _, report = validate(tmp_path, content)
    assert [entry["reason"] for entry in report if advice in entry["reason"]] != [], report


LONG = "9" * 300


@pytest.mark.parametrize(("header", "rows"), [
    pytest.param(HEADER, [student(1, Date_of_Birth=LONG)], id="value"),
    pytest.param((*HEADER, LONG), [student(1)], id="unknown-column"),
    pytest.param(HEADER, [student(1, Student_ID=LONG), student(2, Student_ID=LONG)],
                 id="duplicate-key"),
])
def test_quoted_values_are_truncated(tmp_path: Path, header: tuple[str, ...],
                                     rows: list[list[str]]) -> None:
    _, report = validate(tmp_path, students(*rows, header=header))
    (reason,) = [entry["reason"] for entry in report if LONG[:20] in entry["reason"]]
    assert f"'{LONG[:39]}…'" in reason
    assert LONG[:40] not in reason
    assert len(reason) < 200
