"""Issue 11 "Reports a district can act on" and issue 14 defect 2 (a run that only waited):
each message names what to fix where, and a run says what it did not do and why. Real
imports on SQLite and PostgreSQL; the CLI through click's runner."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from tests.support.runs import (
    DISTRICT,
    database,
    issues,
    make_inbox,
    outcome,
    run_import,
    table_rows,
    write,
)
from visitor_sync.cli import main
from visitor_sync.report import render_text
from visitor_sync.summary import FileStatus, RunResult
from visitor_sync_operator.runs import RunOutcome, describe, status_after

STUDENTS = ("Student ID", "First Name", "Last Name", "Date of Birth", "Grade", "School ID")
VISITORS = ("Visitor ID", "First Name", "Last Name", "Email", "Phone", "Student ID")


def student(number: int, birth: str = "2015-03-04", school: str = "001") -> list[str]:
    return [f"S{number}", "Ana", "Lee", birth, "3", school]


@pytest.fixture
def engine(db_url: str) -> Engine:
    with database(db_url) as engine:
        yield engine


def brief(engine: Engine, summary: object, file: str) -> list[tuple[object, ...]]:
    return [(issue.line, issue.column, issue.code) for issue in issues(engine, summary, file)]


# -- rows rejected because another row was ----------------------------------------------

def test_a_reference_to_a_rejected_row_names_that_row(engine: Engine, tmp_path: Path) -> None:
    """Once "send the student first", when the district did send S42 (with a bad date)."""
    inbox = make_inbox(tmp_path)
    write(inbox, "students.csv", STUDENTS, [student(1), student(42, birth="2015-02-30")])
    write(inbox, "visitors.csv", VISITORS, [["V1", "Pat", "Lee", "", "", "S42"],
                                            ["V2", "Sam", "Lee", "", "", "S77"]])
    summary = run_import(engine, inbox)
    reasons = [issue.reason for issue in issues(engine, summary, "visitors.csv")]
    assert reasons == [
        "Student ID 'S42' is not an active student of this district; student 'S42' was "
        "rejected in students.csv line 3 (invalid_date); fix that row, and this one is "
        "applied with it",
        "Student ID 'S77' is not an active student of this district; send the student "
        "first or fix the ID"]


def test_an_unknown_school_points_at_the_files_that_create_schools(engine: Engine,
                                                                   tmp_path: Path) -> None:
    """Schools come from the rows of students files (and Clever's schools.csv): "send the
    school first" asked for a file most districts do not have."""
    inbox = make_inbox(tmp_path)
    write(inbox, "students.csv", STUDENTS, [student(1)])
    write(inbox, "bus_schedule.csv", ("Student ID", "School ID", "Route", "Direction"),
          [["S1", "999", "R1", "AM"]])
    summary = run_import(engine, inbox)
    (issue,) = issues(engine, summary, "bus_schedule.csv")
    assert issue.code == "unknown_school"
    assert issue.reason == (
        "School ID '999' is not an active school of this district; schools come from "
        "schools.csv (Clever) or the rows of students.csv or students_ascender.csv or "
        "students_powerschool.csv; fix the ID, or send a row there with this school")


# -- conflicting values, line order -----------------------------------------------------

def test_conflicting_values_names_the_differing_columns(engine: Engine, tmp_path: Path) -> None:
    inbox = make_inbox(tmp_path)
    write(inbox, "students.csv", STUDENTS, [student(1), student(2), student(3)])
    write(inbox, "visitors.csv", VISITORS, [
        ["V1", "Pat", "Lee", "pat@example.org", "555-0100", "S1"],
        ["V1", "Pat", "Lee", "pat@example.org", "555-0100", "S2"],
        ["V1", "Pat", "Lee", "p.lee@example.org", "555-0199", "S3"]])
    summary = run_import(engine, inbox)
    (issue,) = issues(engine, summary, "visitors.csv")
    assert (issue.line, issue.column, issue.code) == (4, "Email", "conflicting_values")
    assert issue.reason == ("Visitor ID 'V1' differs from line 2 in Email, Phone (rows of one "
                            "record in visitors must agree); line 2 is used")


def test_the_summary_lists_a_files_issues_in_line_order(engine: Engine, tmp_path: Path) -> None:
    """Row checks run after row validation: their issues were listed after later lines'."""
    inbox = make_inbox(tmp_path)
    write(inbox, "students.csv", (*STUDENTS, "Locker"), [
        [*student(1), ""], [*student(1), ""], [*student(2, birth="x"), ""],
        [*student(3, school=""), ""]])
    summary = run_import(engine, inbox)
    assert [(issue.line, issue.code) for issue in outcome(summary, "students.csv").issues] == [
        (1, "unknown_column"), (3, "duplicate_key"), (4, "invalid_date"),
        (5, "missing_value")]


# -- held files -------------------------------------------------------------------------

def hold_a_file(engine: Engine, inbox: Path) -> str:
    """Import S0..S9, then a students.csv without five of them: held. Its run id."""
    write(inbox, "students.csv", STUDENTS, [student(number) for number in range(10)])
    run_import(engine, inbox)
    write(inbox, "students.csv", STUDENTS, [student(number) for number in range(5)])
    summary = run_import(engine, inbox)
    assert summary.result is RunResult.HELD
    return summary.run_id


def cli_import(db_url: str, inbox: Path, *options: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["import", "--district", DISTRICT, "--source", str(inbox),
                                       "--db", db_url, "--quiet-period", "0", *options])
    return result.exit_code, result.output


def test_approving_a_run_that_holds_nothing_says_so_and_imports_nothing(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    inbox = make_inbox(tmp_path)
    held_by = hold_a_file(engine, inbox)
    write(inbox, "employees.csv", ("Employee ID", "First Name", "Last Name"), [["E1", "Al", "Bo"]])
    status, output = cli_import(db_url, inbox, "--approve-held", "no-such-run")
    assert status == 2
    assert (f"run no-such-run holds no file of district {DISTRICT} awaiting approval, so "
            "nothing was approved or imported (files awaiting approval: students.csv held by "
            f"run {held_by})") in output
    assert table_rows(engine, "employees", "employee_id") == []
    assert (inbox / "employees.csv").exists()


def test_the_text_report_lists_the_files_awaiting_approval(engine: Engine, db_url: str,
                                                          tmp_path: Path) -> None:
    inbox = make_inbox(tmp_path)
    held_by = hold_a_file(engine, inbox)
    status, output = cli_import(db_url, inbox)
    assert status == 0
    assert "held files awaiting approval (1; apply them with --approve-held RUN_ID):" in output
    (listed,) = [line for line in output.splitlines() if held_by in line]
    assert listed.split()[:2] == ["students.csv", held_by]
    assert "would deactivate 5 of 10 active students" in listed


# -- waiting files (issue 14 defect 2) --------------------------------------------------

def test_a_run_that_only_waited_says_so_and_for_how_long(engine: Engine,
                                                         tmp_path: Path) -> None:
    """Once "success, 2 file(s): 0 created", with the files counted under type unknown."""
    inbox = make_inbox(tmp_path)
    write(inbox, "students.csv", STUDENTS, [student(1)])
    write(inbox, "nonsense.csv", STUDENTS, [student(1)])
    summary = run_import(engine, inbox, quiet_period_seconds=600)
    assert summary.result is RunResult.WAITING
    assert [(file.file, file.type, file.status) for file in summary.files] == [
        ("nonsense.csv", None, FileStatus.WAITING),
        ("students.csv", "students", FileStatus.WAITING)]
    reason = outcome(summary, "students.csv").waiting_reason or ""
    found = re.fullmatch(r"changed (\d+) s ago, within the quiet period of 600 s \(it may "
                         r"still be uploading\); the first run after (\d+) s reads it", reason)
    assert found is not None, reason
    assert int(found[1]) + int(found[2]) in (600, 601)  # rounding each way
    text = render_text(summary)
    assert text.startswith(f"district {DISTRICT} run {summary.run_id}: waiting (2 file(s)")
    assert f"students.csv is waiting: {reason}" in text
    # the operator's status says the same; nothing is counted, the condition is not touched
    patch = status_after(RunOutcome("job-1", "uid-1", summary.finished_at, summary, None),
                         {"consecutiveFailedRuns": 2}, 1)
    assert (patch["lastImport"]["result"], patch["lastImport"]["counts"]) == ("waiting", {})
    assert (patch["consecutiveFailedRuns"], "conditions" in patch) == (2, False)
    assert "lastSuccessfulImportTime" not in patch
    event_reason, message = describe(
        RunOutcome("job-1", "uid-1", summary.finished_at, summary, None))
    assert event_reason == "ImportWaiting"
    assert message.startswith(f"run {summary.run_id}: waiting, 2 file(s) waiting, none read; "
                              "nonsense.csv changed")


def test_a_file_dated_in_the_future_does_not_wait_forever(engine: Engine,
                                                           tmp_path: Path) -> None:
    """``put -p`` from a machine whose clock is ahead: only a client sets such a date, and it
    does so after the last byte. Within one quiet period ahead (clock skew) it waits."""
    inbox = make_inbox(tmp_path)
    far = write(inbox, "students.csv", STUDENTS, [student(1)])
    near = write(inbox, "employees.csv", ("Employee ID", "First Name", "Last Name"),
                 [["E1", "Al", "Bo"]])
    now = time.time()
    os.utime(far, (now + 86_400, now + 86_400))
    os.utime(near, (now + 30, now + 30))
    summary = run_import(engine, inbox, quiet_period_seconds=60)
    assert {file.file: file.status for file in summary.files} == {
        "students.csv": FileStatus.APPLIED, "employees.csv": FileStatus.WAITING}
    reason = outcome(summary, "employees.csv").waiting_reason or ""
    assert reason.startswith("dated 30 s in the future") or reason.startswith(
        "dated 29 s in the future"), reason
    assert "quiet period of 60 s" in reason
    assert table_rows(engine, "students", "student_id") == [("S1",)]
