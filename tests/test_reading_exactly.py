"""Issue 11, "silent wrong data": a file is read exactly or refused on the line that
cannot be read, never guessed. Each test once passed with a wrong row stored and the run
reported as a success; each runs a real import on SQLite and PostgreSQL."""

from __future__ import annotations

import codecs
from pathlib import Path

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
)
from visitor_sync.summary import FileStatus

#: ``Homeroom`` last, as in the district file the issue was found with
HEADER = ("Student ID", "First Name", "Last Name", "Date of Birth", "Grade", "School ID",
          "Homeroom")


def row(number: int, homeroom: str = "") -> str:
    return f"S{number},Ana,Lopez,2015-03-04,3,001,{homeroom}"


def roster(count: int = 30) -> list[str]:
    return [",".join(HEADER), *(row(number, f"Room {number}") for number in range(count))]


def imported(engine: Engine, inbox: Path, lines: list[str], **options: object) -> tuple[
        FileStatus, list[tuple[object, ...]]]:
    """Import ``lines`` as students.csv: the file's status and its issues in brief."""
    (inbox / "students.csv").write_bytes("\n".join([*lines, ""]).encode())
    summary = run_import(engine, inbox, **options)
    return outcome(summary, "students.csv").status, [
        (issue.line, issue.code, issue.severity.value) for issue in issues(engine, summary)]


def active_students(engine: Engine) -> int:
    return sum(active for (active,) in table_rows(engine, "students", "active"))


# -- item 1: an unclosed quote swallows rows --------------------------------------------

SWALLOWING = {
    # S2's homeroom quote is never closed; S5's quoted homeroom ends the swallow
    "closed-by-a-later-quote": [row(2, '"Portable 2'), row(3, "Room 3"), row(4, "Room 4"),
                                row(5, '"Room 5"')],
    # ... or a later value that happens to end in a quote: the CSV itself parses cleanly
    "closed-cleanly": [row(2, '"Portable 2'), row(3, "Room 3"), row(4, 'Trailer 4"')],
    # ... or nothing closes it: the rest of the file would be one value
    "never-closed": [row(2, '"Portable 2'), row(3, "Room 3"), row(4, "Room 4")],
}


@pytest.mark.parametrize("swallowing", SWALLOWING.values(), ids=SWALLOWING.keys())
def test_an_unclosed_quote_rejects_the_file_on_its_line(db_url: str, tmp_path: Path,
                                                        swallowing: list[str]) -> None:
    """Rows S3-S5 once became S2's homeroom and were deactivated (3 of 30: under the hold)."""
    inbox = make_inbox(tmp_path)
    with database(db_url) as engine:
        assert imported(engine, inbox, roster())[0] is FileStatus.APPLIED
        lines = roster()
        lines[3:3 + len(swallowing)] = swallowing  # S2 is on physical line 4
        status, found = imported(engine, inbox, lines)
        assert (status, found) == (FileStatus.REJECTED, [(4, "unclosed_quote", "error")])
        assert active_students(engine) == 30
        assert ("S2", "Room 2") in table_rows(engine, "students", "student_id", "homeroom")


def test_a_value_spanning_lines_without_the_delimiter_is_read(db_url: str,
                                                              tmp_path: Path) -> None:
    """Legitimate multi-line values (a room on two lines) stay readable; the next row is
    reported on its own physical line."""
    inbox = make_inbox(tmp_path)
    lines = [",".join(HEADER), row(1, '"Portable 2\nnear the gym"'),
             "S2,Ana,Lopez,2015-13-01,3,001,"]
    with database(db_url) as engine:
        status, found = imported(engine, inbox, lines)
        assert (status, found) == (FileStatus.APPLIED, [(4, "invalid_date", "error")])
        assert table_rows(engine, "students", "homeroom") == [("Portable 2\nnear the gym",)]


def test_text_after_a_closing_quote_is_refused_not_glued(db_url: str, tmp_path: Path) -> None:
    """``"Room "5`` was once read as ``Room 5``: a guess about what the district meant."""
    inbox = make_inbox(tmp_path)
    with database(db_url) as engine:
        status, found = imported(engine, inbox, [",".join(HEADER), row(1, '"Room "5')])
        assert (status, found) == (FileStatus.REJECTED, [(2, "malformed_csv", "error")])
        assert table_rows(engine, "students", "student_id") == []


# -- item 3: one encoding per file ------------------------------------------------------

def students_file(encoding: str, *names: str, delimiter: str = ",",
                  newline: str = "\n") -> bytes:
    rows = [[f"S{number}", name, "O\u2019Brien", "2015-03-04", "3", "001", "Room 1"]
            for number, name in enumerate(names, start=1)]
    return csv_bytes(HEADER, rows, delimiter=delimiter, newline=newline, encoding=encoding)


def test_utf8_with_one_windows_1252_line_is_refused_naming_that_line(db_url: str,
                                                                     tmp_path: Path) -> None:
    """``José`` was once stored as ``JosÃ©``: the whole file was read as Windows-1252."""
    content = students_file("utf-8", "José", "Ana") + "S3,Zoë,Lee,2015-03-04,3,001,\n".encode(
        "cp1252")
    inbox = make_inbox(tmp_path)
    with database(db_url) as engine:
        (inbox / "students.csv").write_bytes(content)
        summary = run_import(engine, inbox)
        assert outcome(summary, "students.csv").status is FileStatus.REJECTED
        (issue,) = issues(engine, summary)
        assert (issue.line, issue.code) == (4, "mixed_encoding")
        assert "0xEB" in issue.reason and "line 2 is UTF-8" in issue.reason
        assert table_rows(engine, "students", "first_name") == []


def test_a_utf8_bom_with_a_stray_byte_is_refused_not_a_missing_column(db_url: str,
                                                                      tmp_path: Path) -> None:
    """The BOM once became part of the first header: "required column 'Student ID' is
    missing"."""
    content = students_file("utf-8-sig", "Ana") + b"S2,Ren\xe9,Lee,2015-03-04,3,001,\n"
    inbox = make_inbox(tmp_path)
    with database(db_url) as engine:
        (inbox / "students.csv").write_bytes(content)
        summary = run_import(engine, inbox)
        (issue,) = issues(engine, summary)
        assert (issue.line, issue.code) == (3, "mixed_encoding")
        assert "byte order mark" in issue.reason


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_excel_unicode_text_is_read(db_url: str, tmp_path: Path, encoding: str) -> None:
    """Excel's "Unicode Text": UTF-16 with a BOM, TAB-delimited, CRLF (once "binary")."""
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE}.get(encoding, b"")
    content = bom + students_file(encoding, "José", "Zoë", delimiter="\t", newline="\r\n")
    inbox = make_inbox(tmp_path)
    with database(db_url) as engine:
        (inbox / "students.csv").write_bytes(content)
        summary = run_import(engine, inbox)
        assert (outcome(summary, "students.csv").status, issues(engine, summary)) == (
            FileStatus.APPLIED, [])
        assert table_rows(engine, "students", "student_id", "first_name", "last_name",
                          "homeroom") == [("S1", "José", "O\u2019Brien", "Room 1"),
                                          ("S2", "Zoë", "O\u2019Brien", "Room 1")]


def test_broken_utf16_is_refused_naming_the_line(db_url: str, tmp_path: Path) -> None:
    content = students_file("utf-16-le", "Ana", "Bo", delimiter="\t")
    broken = codecs.BOM_UTF16_LE + content + "S3\t".encode("utf-16-le") + b"\x00\xd8A\x00"
    inbox = make_inbox(tmp_path)
    with database(db_url) as engine:
        (inbox / "students.csv").write_bytes(broken)
        summary = run_import(engine, inbox)
        assert [(issue.line, issue.code) for issue in issues(engine, summary)] == [
            (4, "invalid_encoding")]


# -- item 4: a column left out of the header is "no information" ------------------------

VISITORS = ("Visitor ID", "First Name", "Last Name", "Email", "Student ID", "Can Pickup")


def test_a_column_absent_from_the_header_keeps_stored_values(db_url: str,
                                                             tmp_path: Path) -> None:
    """Leaving out ``School Name`` once blanked every school's name, without a warning; a
    visitors.csv without ``Can Pickup`` turned a stored "no pickup" into "pickup"."""
    inbox = make_inbox(tmp_path)
    students = [["S1", "Ana", "Lee", "2015-03-04", "3", "001", "Lincoln", "Room 1"],
                ["S2", "Bo", "Lee", "2015-03-04", "3", "002", "Adams", "Room 2"]]
    visitors = [["V1", "Pat", "Lee", "pat@example.org", "S1", "0"],
                ["V2", "Sam", "Lee", "sam@example.org", "S2", "1"]]
    with database(db_url) as engine:
        (inbox / "students.csv").write_bytes(csv_bytes((*HEADER[:-1], "School Name",
                                                        "Homeroom"), students))
        (inbox / "visitors.csv").write_bytes(csv_bytes(VISITORS, visitors))
        run_import(engine, inbox)
        # the same people without School Name, Email and Can Pickup; S2's homeroom emptied
        (inbox / "students.csv").write_bytes(csv_bytes(HEADER, [
            [*students[0][:6], "Room 9"], [*students[1][:6], ""]]))
        (inbox / "visitors.csv").write_bytes(csv_bytes(
            VISITORS[:3] + VISITORS[4:5], [[*row[:3], row[4]] for row in visitors]))
        summary = run_import(engine, inbox)
        assert {(file.file, file.status, file.updated) for file in summary.files} == {
            ("students.csv", FileStatus.APPLIED, 2), ("visitors.csv", FileStatus.APPLIED, 0)}
        assert table_rows(engine, "schools", "school_id", "name") == [
            ("001", "Lincoln"), ("002", "Adams")]
        assert table_rows(engine, "students", "student_id", "homeroom") == [
            ("S1", "Room 9"), ("S2", None)]
        assert table_rows(engine, "visitors", "visitor_id", "email") == [
            ("V1", "pat@example.org"), ("V2", "sam@example.org")]
        assert table_rows(engine, "visitor_student_links", "visitor_id", "can_pickup") == [
            ("V1", False), ("V2", True)]


def test_a_new_record_gets_the_defaults_of_columns_the_file_leaves_out(
        db_url: str, tmp_path: Path) -> None:
    inbox = make_inbox(tmp_path)
    with database(db_url) as engine:
        (inbox / "students.csv").write_bytes(csv_bytes(HEADER[:-1], [
            ["S1", "Ana", "Lee", "2015-03-04", "3", "001"]]))
        (inbox / "visitors.csv").write_bytes(csv_bytes(VISITORS[:3] + VISITORS[4:5], [
            ["V1", "Pat", "Lee", "S1"]]))
        run_import(engine, inbox)
        assert table_rows(engine, "students", "homeroom") == [(None,)]
        assert table_rows(engine, "visitor_student_links", "can_pickup",
                          "emergency_contact") == [(True, False)]


# -- item 2: a visitor is active while any of its links is ------------------------------

@pytest.mark.parametrize("first_active", ["0", "1"], ids=["inactive-first", "active-first"])
def test_a_visitor_is_active_while_any_of_its_links_is(db_url: str, tmp_path: Path,
                                                       first_active: str) -> None:
    """``V1,S0,Active=0`` then ``V1,S1,Active=1`` once stored V1 inactive (its first row)."""
    inbox = make_inbox(tmp_path)
    header = ("Visitor ID", "First Name", "Last Name", "Student ID", "Active")
    flags = {"S0": first_active, "S1": "0" if first_active == "1" else "1"}
    with database(db_url) as engine:
        (inbox / "students.csv").write_bytes(csv_bytes(HEADER[:-1], [
            [student, "Ana", "Lee", "2015-03-04", "3", "001"] for student in ("S0", "S1")]))
        (inbox / "visitors.csv").write_bytes(csv_bytes(header, [
            ["V1", "Pat", "Lee", student, active] for student, active in flags.items()] + [
            ["V2", "Sam", "Lee", student, "0"] for student in flags]))
        summary = run_import(engine, inbox)
        assert issues(engine, summary) == []
        assert table_rows(engine, "visitors", "visitor_id", "active") == [
            ("V1", True), ("V2", False)]
        assert table_rows(engine, "visitor_student_links", "visitor_id", "student_id",
                          "active") == [("V1", student, active == "1")
                                        for student, active in flags.items()] + [
            ("V2", "S0", False), ("V2", "S1", False)]


def test_a_vendor_layout_keeps_what_its_columns_cannot_say(db_url: str,
                                                           tmp_path: Path) -> None:
    """An Ascender export without its Home Room column keeps stored homerooms."""
    inbox = make_inbox(tmp_path)
    with database(db_url) as engine:
        (inbox / "students.csv").write_bytes(csv_bytes(HEADER, [
            ["S1", "Ana", "Lee", "2015-03-04", "3", "001", "Room 1"]]))
        run_import(engine, inbox)
        (inbox / "students_ascender.csv").write_bytes(csv_bytes(
            ("Stu ID", "Last Name", "First Name", "DOB", "Grd Lvl", "Campus ID"),
            [["S1", "Lee", "Ana", "20150304", "4", "001"]]))
        summary = run_import(engine, inbox)
        assert outcome(summary, "students_ascender.csv").updated == 1
        assert table_rows(engine, "students", "student_id", "grade", "homeroom") == [
            ("S1", "04", "Room 1")]
