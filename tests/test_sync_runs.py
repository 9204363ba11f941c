"""Import runs one after another: full sync, safety hold, files, locks and atomicity.

Every test drives the real importer (or the real CLI) against a real inbox folder and
runs on SQLite and on PostgreSQL (``db_url``). Expectations come from FORMATS.md
("Full-sync semantics", "Safety hold") and DESIGN.md ("Bad input, faults and safety").
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, Row, select, text, update

from tests.support.runs import DISTRICT, make_importer, open_database, run_import, write
from tests.support.runs import outcome as outcome_of
from visitor_sync.cli import main
from visitor_sync.db.schema import (
    KEY_SEPARATOR,
    RECORD_TABLES,
    HeldFile,
    ImportFileResult,
    ImportRun,
    Invitation,
)
from visitor_sync.exits import EXIT_BUSY
from visitor_sync.locking import district_lock
from visitor_sync.pipeline import ALL_HELD, stored_issues
from visitor_sync.sources import LocalFolderSource, SourceFile
from visitor_sync.summary import FileOutcome, FileStatus, ImportSummary, RunResult

STUDENT_HEADER = ("Student ID", "First Name", "Last Name", "Date of Birth", "Grade",
                  "School ID", "School Name", "Active")
VISITOR_HEADER = ("Visitor ID", "First Name", "Last Name", "Student ID", "Relationship",
                  "Can Pickup", "Active")
USER_HEADER = ("Email", "Name", "Role", "School IDs", "Active")
EMPLOYEE_HEADER = ("Employee ID", "First Name", "Last Name")

#: Columns a deactivation or re-activation may change; every other one stays as it was.
LIFECYCLE_COLUMNS = ("active", "deactivated_at", "updated_at")


# -- building files ----------------------------------------------------------------------


def student(number: int, *, first: str | None = None, grade: str = "5",
            born: str = "2014-03-02", active: str = "1") -> list[str]:
    return [f"S{number:03d}", f"First{number}" if first is None else first, f"Last{number}",
            born, grade, "0101", "Lincoln Elementary", active]


def roster(count: int = 10, *, without: tuple[int, ...] = (),
           replace: dict[int, list[str]] | None = None) -> list[list[str]]:
    """Students S001..S<count>, some left out, some rows replaced."""
    replace = replace or {}
    return [replace.get(number, student(number)) for number in range(1, count + 1)
            if number not in without]


def visitor(visitor_id: str, student_id: str, *, first: str = "Pat",
            can_pickup: str = "1") -> list[str]:
    return [visitor_id, first, f"Parent-{visitor_id}", student_id, "Mother", can_pickup, "1"]


FAMILIES = [visitor("V1", "S001"), visitor("V1", "S002"), visitor("V2", "S003")]

USERS = [["ann@example.org", "Ann Admin", "administrator", "", "1"],
         ["bob@example.org", "Bob Teacher", "teacher", "0101", "1"],
         ["cy@example.org", "Cy Operator", "operator", "0101", "0"]]


def link_key(visitor_id: str, student_id: str) -> str:
    return f"{visitor_id}{KEY_SEPARATOR}{student_id}"


# -- reading results ---------------------------------------------------------------------


def counts(outcome: FileOutcome) -> tuple[int, int, int, int]:
    """(created, updated, unchanged, deactivated)"""
    return outcome.created, outcome.updated, outcome.unchanged, outcome.deactivated


def issues(outcome: FileOutcome) -> list[tuple[int | None, str, str | None]]:
    return [(issue.line, issue.code, issue.column) for issue in outcome.issues]


def records(engine: Engine, table_name: str) -> dict[str, dict[str, Any]]:
    """Every record of a table, by record key, with all its columns."""
    table = RECORD_TABLES[table_name]
    with engine.connect() as connection:
        rows = connection.execute(select(table).where(table.c.district_id == DISTRICT))
        return {row.record_key: row._asdict() for row in rows}


def database_state(engine: Engine) -> dict[str, dict[str, dict[str, Any]]]:
    return {name: records(engine, name) for name in RECORD_TABLES}


def row_versions(engine: Engine) -> dict[str, dict[str, str]]:
    """PostgreSQL: the ``xmin`` of every record row; it changes whenever a row is rewritten."""
    with engine.connect() as connection:
        return {name: dict(connection.execute(text(
            f"SELECT record_key, xmin::text FROM {name}")).all())
            for name in RECORD_TABLES}


def invitations(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        return sorted(connection.execute(
            select(Invitation.email, Invitation.run_id)).all())


def held_rows(engine: Engine) -> list[Row]:
    with engine.connect() as connection:
        return list(connection.execute(select(HeldFile).order_by(HeldFile.id)))


def inbox_files(inbox: Path) -> list[str]:
    """Every file left under the inbox (held area included), relative to it."""
    return sorted(str(path.relative_to(inbox)) for path in inbox.rglob("*") if path.is_file())


def cli_import(db_url: str, inbox: Path, *options: str) -> Result:
    return CliRunner().invoke(main, ["import", "--district", DISTRICT, "--source", str(inbox),
                                     "--db", db_url, "--quiet-period", "0", *options])


def cli_summary(db_url: str, inbox: Path, *options: str) -> ImportSummary:
    result = cli_import(db_url, inbox, "--format", "json", *options)
    assert result.exit_code == 0, result.output
    return ImportSummary.model_validate_json(result.stdout)


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = open_database(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


def import_students(engine: Engine, inbox: Path, rows: list[list[str]],
                    **options: Any) -> FileOutcome:
    write(inbox, "students.csv", STUDENT_HEADER, rows)
    return outcome_of(run_import(engine, inbox, **options), "students.csv")


@pytest.fixture
def ten_students(engine: Engine, inbox: Path) -> dict[str, dict[str, Any]]:
    """S001..S010 imported and active; returns their records."""
    assert counts(import_students(engine, inbox, roster())) == (10, 0, 0, 0)
    return records(engine, "students")


@dataclass
class Held:
    summary: ImportSummary
    content: bytes


@pytest.fixture
def held_run(engine: Engine, inbox: Path, ten_students: dict) -> Held:
    """A students.csv leaving out S009 and S010 (20% > 10%): held."""
    path = write(inbox, "students.csv", STUDENT_HEADER, roster(without=(9, 10)))
    content = path.read_bytes()
    return Held(run_import(engine, inbox), content)


# -- full sync across runs ---------------------------------------------------------------


def test_second_run_updates_changed_rows_and_leaves_identical_rows_alone(
        engine: Engine, inbox: Path, ten_students: dict) -> None:
    rows = roster(11, replace={1: student(1, first="Renamed"), 2: student(2, grade="7")})

    outcome = import_students(engine, inbox, rows)

    assert outcome.status is FileStatus.APPLIED
    assert counts(outcome) == (1, 2, 8, 0)
    after = records(engine, "students")
    changed = {key for key, record in ten_students.items() if after[key] != record}
    assert changed == {"S001", "S002"}
    assert (after["S001"]["first_name"], after["S002"]["grade"]) == ("Renamed", "07")
    for key in changed:
        assert after[key]["updated_at"] > ten_students[key]["updated_at"]
        assert after[key]["created_at"] == ten_students[key]["created_at"]
    assert after["S011"]["created_at"] == after["S011"]["updated_at"]
    assert after["S011"]["active"] is True


@pytest.mark.parametrize("removal", [
    pytest.param(roster(without=(10,)), id="absent-from-file"),
    pytest.param(roster(replace={10: student(10, active="0")}), id="active-0"),
])
def test_removed_student_is_deactivated_never_deleted_and_comes_back(
        engine: Engine, inbox: Path, ten_students: dict, removal: list[list[str]]) -> None:
    # 1 of 10 active students is exactly 10%: not more than the default limit, so applied.
    outcome = import_students(engine, inbox, removal)

    assert (outcome.status, counts(outcome)) == (FileStatus.APPLIED, (0, 0, 9, 1))
    after = records(engine, "students")
    assert sorted(after) == sorted(ten_students)
    gone = after.pop("S010")
    assert gone["active"] is False
    assert gone["deactivated_at"] is not None
    assert gone["deactivated_at"] == gone["updated_at"] > ten_students["S010"]["updated_at"]
    assert _without_lifecycle(gone) == _without_lifecycle(ten_students["S010"])
    assert after == {key: ten_students[key] for key in after}

    outcome = import_students(engine, inbox, roster())

    assert counts(outcome) == (0, 1, 9, 0)
    back = records(engine, "students")
    assert (back["S010"]["active"], back["S010"]["deactivated_at"]) == (True, None)
    assert back["S010"]["created_at"] == ten_students["S010"]["created_at"]
    assert back["S010"]["updated_at"] > gone["updated_at"]
    assert _without_lifecycle(back["S010"]) == _without_lifecycle(ten_students["S010"])
    del back["S010"]
    assert back == after


def _without_lifecycle(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in LIFECYCLE_COLUMNS}


def test_file_type_absent_from_the_run_changes_nothing(engine: Engine, inbox: Path) -> None:
    write(inbox, "students.csv", STUDENT_HEADER, roster())
    write(inbox, "visitors.csv", VISITOR_HEADER, FAMILIES)
    write(inbox, "users.csv", USER_HEADER, USERS)
    run_import(engine, inbox)
    before = database_state(engine)
    write(inbox, "employees.csv", EMPLOYEE_HEADER, [["E1", "Eve", "Staff"]])

    summary = run_import(engine, inbox)

    assert [(outcome.file, outcome.status) for outcome in summary.files] == [
        ("employees.csv", FileStatus.APPLIED)]
    after = database_state(engine)
    assert sorted(after.pop("employees")) == ["E1"]
    del before["employees"]
    assert after == before


# -- rows in error -----------------------------------------------------------------------


@pytest.mark.parametrize(("bad_row", "code", "column"), [
    pytest.param(student(3, first="Changed", born="2014-02-30"), "invalid_date",
                 "Date of Birth", id="impossible-date"),
    pytest.param(student(3, first="Changed", grade="Grade Z"), "invalid_grade", "Grade",
                 id="bad-grade"),
    pytest.param(student(3, first=""), "missing_value", "First Name", id="missing-name"),
    pytest.param(student(3, first="Changed", active="maybe"), "invalid_boolean", "Active",
                 id="unreadable-active"),
])
def test_row_in_error_leaves_its_record_exactly_as_it_was(
        engine: Engine, inbox: Path, ten_students: dict, bad_row: list[str], code: str,
        column: str) -> None:
    outcome = import_students(engine, inbox, roster(replace={3: bad_row}))

    assert (outcome.status, counts(outcome)) == (FileStatus.APPLIED, (0, 0, 9, 0))
    assert (outcome.errors, outcome.rejected_rows) == (1, 1)
    assert issues(outcome) == [(4, code, column)]
    assert records(engine, "students") == ten_students


def test_duplicate_key_is_an_error_for_every_later_row(
        engine: Engine, inbox: Path, ten_students: dict) -> None:
    rows = [*roster(replace={2: student(2, first="First wins")}),
            student(2, first="Second"), student(2, first="Third")]

    outcome = import_students(engine, inbox, rows)

    assert counts(outcome) == (0, 1, 9, 0)
    assert (outcome.errors, outcome.rejected_rows) == (2, 2)
    assert issues(outcome) == [(12, "duplicate_key", "Student ID"),
                               (13, "duplicate_key", "Student ID")]
    assert outcome.issues[0].reason == (
        "Student ID 'S002' is already on line 3; each key may appear only once per file")
    assert records(engine, "students")["S002"]["first_name"] == "First wins"


# -- visitor-student links ---------------------------------------------------------------


@pytest.mark.parametrize(("students_rows", "v2_row", "code", "column"), [
    pytest.param(roster(), visitor("V2", "S003", first="Changed", can_pickup="maybe"),
                 "invalid_boolean", "Can Pickup", id="invalid-value"),
    pytest.param(roster(replace={3: student(3, active="0")}),
                 visitor("V2", "S003", first="Changed"), "unknown_student", "Student ID",
                 id="student-deactivated-in-same-run"),
])
def test_absent_links_are_deactivated_and_links_in_error_are_kept(
        engine: Engine, inbox: Path, students_rows: list[list[str]], v2_row: list[str],
        code: str, column: str) -> None:
    write(inbox, "students.csv", STUDENT_HEADER, roster())
    write(inbox, "visitors.csv", VISITOR_HEADER, FAMILIES)
    assert counts(outcome_of(run_import(engine, inbox), "visitors.csv")) == (2, 0, 0, 0)
    links, visitors = records(engine, "visitor_student_links"), records(engine, "visitors")
    assert sorted(links) == [link_key("V1", "S001"), link_key("V1", "S002"),
                             link_key("V2", "S003")]
    write(inbox, "students.csv", STUDENT_HEADER, students_rows)
    write(inbox, "visitors.csv", VISITOR_HEADER, [visitor("V1", "S001"), v2_row])

    # one of three links goes: over the default 10% the links' safety hold would stop it
    outcome = outcome_of(run_import(engine, inbox, max_deactivate_percent=50), "visitors.csv")

    assert (outcome.status, counts(outcome)) == (FileStatus.APPLIED, (0, 0, 1, 0))
    assert issues(outcome) == [(3, code, column)]
    assert records(engine, "visitors") == visitors
    after = records(engine, "visitor_student_links")
    removed = after.pop(link_key("V1", "S002"))
    assert (removed["active"], removed["deactivated_at"] is not None) == (False, True)
    assert _without_lifecycle(removed) == _without_lifecycle(links[link_key("V1", "S002")])
    del links[link_key("V1", "S002")]
    assert after == links


# -- user accounts -----------------------------------------------------------------------


def test_a_new_active_user_gets_exactly_one_invitation(engine: Engine, inbox: Path) -> None:
    shouting = [[row[0].upper(), *row[1:]] for row in USERS]
    steps = [  # rows of users.csv, expected (created, updated, unchanged, deactivated)
        (USERS, (3, 0, 0, 0)),
        (shouting, (0, 0, 3, 0)),    # e-mail addresses compare without case
        (USERS[::2], (0, 0, 2, 1)),  # Bob leaves ...
        (USERS, (0, 1, 2, 0)),       # ... and comes back
    ]
    run_ids = []
    for rows, expected in steps:
        write(inbox, "users.csv", USER_HEADER, rows)
        summary = run_import(engine, inbox, max_deactivate_percent=100)
        assert counts(outcome_of(summary, "users.csv")) == expected
        run_ids.append(summary.run_id)
        assert invitations(engine) == [("ann@example.org", run_ids[0]),
                                       ("bob@example.org", run_ids[0])]
    users = records(engine, "users")
    assert {key: (user["active"], user["status"]) for key, user in users.items()} == {
        "ann@example.org": (True, "invited"), "bob@example.org": (True, "invited"),
        "cy@example.org": (False, "invited")}
    assert users["bob@example.org"]["deactivated_at"] is None


# -- unchanged re-import -----------------------------------------------------------------


def test_unchanged_reimport_writes_nothing(engine: Engine, inbox: Path) -> None:
    files = {
        "students.csv": (STUDENT_HEADER, [*roster(), student(11, active="0")]),
        "visitors.csv": (VISITOR_HEADER, FAMILIES),
        "users.csv": (USER_HEADER, USERS),
    }
    summaries, states, versions = [], [], []
    for _ in range(2):
        for name, (header, rows) in files.items():
            write(inbox, name, header, rows)
        summaries.append(run_import(engine, inbox))
        states.append((database_state(engine), invitations(engine)))
        if engine.dialect.name == "postgresql":
            versions.append(row_versions(engine))

    second = summaries[1]
    assert second.result is RunResult.SUCCESS
    assert {outcome.file: (outcome.status, counts(outcome)) for outcome in second.files} == {
        "students.csv": (FileStatus.APPLIED, (0, 0, 11, 0)),
        "visitors.csv": (FileStatus.APPLIED, (0, 0, 2, 0)),
        "users.csv": (FileStatus.APPLIED, (0, 0, 3, 0)),
    }
    assert states[1] == states[0]
    assert states[0][0]["students"]["S011"]["active"] is False
    # PostgreSQL: an UPDATE that sets the same values still writes a new row version
    # (new xmin); unchanged xmin proves no record row was rewritten at all.
    if versions:
        assert len(versions[0]["students"]) == 11
        assert versions[1] == versions[0]


# -- safety hold -------------------------------------------------------------------------


def test_file_deactivating_too_many_is_held_and_kept_aside(
        engine: Engine, inbox: Path, ten_students: dict, held_run: Held) -> None:
    summary = held_run.summary
    outcome = outcome_of(summary, "students.csv")
    reason = ("applying it would deactivate 2 of 10 active students "
              "(20.0%, more than the 10% allowed)")

    assert summary.result is RunResult.HELD
    assert (outcome.status, outcome.rows_read, outcome.held_reason) == (
        FileStatus.HELD, 8, reason)
    assert records(engine, "students") == ten_students
    location = f"held/{summary.run_id}/students.csv"
    assert inbox_files(inbox) == [location]
    assert (inbox / location).read_bytes() == held_run.content
    (row,) = held_rows(engine)
    assert (row.district_id, row.run_id, row.file_name, row.file_type, row.location,
            row.size, row.sha256, row.state, row.reason, row.resolved_at) == (
        DISTRICT, summary.run_id, "students.csv", "students", location,
        len(held_run.content), hashlib.sha256(held_run.content).hexdigest(), "pending",
        reason, None)
    with engine.connect() as connection:
        assert connection.execute(select(ImportFileResult.status, ImportFileResult.detail)
                                  .where(ImportFileResult.run_id == summary.run_id)
                                  ).all() == [("held", reason)]


@pytest.mark.parametrize(("rows", "config"), [
    pytest.param(roster(replace={n: student(n, grade="Z") for n in range(1, 11)}), {},
                 id="every-row-in-error"),
    pytest.param([], {"max_deactivate_percent": 100}, id="header-only"),
])
def test_file_without_valid_rows_is_held_while_records_exist(
        engine: Engine, inbox: Path, ten_students: dict, rows: list[list[str]],
        config: dict[str, Any]) -> None:
    outcome = import_students(engine, inbox, rows, **config)

    assert outcome.status is FileStatus.HELD
    assert outcome.held_reason == (
        "the file has no valid rows but the district has 10 active students")
    assert records(engine, "students") == ten_students
    assert [row.state for row in held_rows(engine)] == ["pending"]


def _approve_with_importer(engine: Engine, db_url: str, inbox: Path,
                           approval: str) -> ImportSummary:
    return run_import(engine, inbox, approve_held=approval)


def _approve_with_cli(engine: Engine, db_url: str, inbox: Path,
                      approval: str) -> ImportSummary:
    options = ["--approve-held"] if approval == ALL_HELD else ["--approve-held", approval]
    return cli_summary(db_url, inbox, *options)


def _approve_in_config(engine: Engine, db_url: str, inbox: Path,
                       approval: str) -> ImportSummary:
    """As the operator does: the run id in the mounted ImportConfig."""
    config = inbox.parent / "import-config.json"
    config.write_text(json.dumps({"district_id": DISTRICT, "approve_held_run": approval}))
    return cli_summary(db_url, inbox, "--config", str(config))


@pytest.mark.parametrize(("approve", "by_run_id"), [
    pytest.param(_approve_with_importer, True, id="importer-run-id"),
    pytest.param(_approve_with_importer, False, id="importer-all"),
    pytest.param(_approve_with_cli, True, id="cli-run-id"),
    pytest.param(_approve_with_cli, False, id="cli-bare-flag-means-all"),
    pytest.param(_approve_in_config, True, id="config-run-id"),
])
def test_approved_held_file_is_applied_and_cleared(
        engine: Engine, db_url: str, inbox: Path, held_run: Held, approve: Any,
        by_run_id: bool) -> None:
    held_id = held_run.summary.run_id
    unrelated = run_import(engine, inbox, approve_held="5f0c6a52-0000-4000-8000-000000000000")
    assert (unrelated.files, [row.state for row in held_rows(engine)]) == ([], ["pending"])

    summary = approve(engine, db_url, inbox, held_id if by_run_id else ALL_HELD)

    outcome = outcome_of(summary, "students.csv")
    assert (outcome.status, counts(outcome)) == (FileStatus.APPLIED, (0, 0, 8, 2))
    (row,) = held_rows(engine)
    assert (row.state, row.resolved_at is not None) == ("applied", True)
    assert inbox_files(inbox) == []
    assert not (inbox / "held" / held_id).exists()
    active = {key for key, record in records(engine, "students").items() if record["active"]}
    assert active == {f"S{number:03d}" for number in range(1, 9)}


def test_summary_counts_the_held_backlog(engine: Engine, inbox: Path, held_run: Held) -> None:
    held_at = held_rows(engine)[0].held_at
    assert (held_run.summary.held_pending, held_run.summary.oldest_held_at is not None) == (
        1, True)

    later = run_import(engine, inbox)
    assert (later.held_pending, later.oldest_held_at.replace(tzinfo=None)) == (
        1, held_at.replace(tzinfo=None))

    approved = run_import(engine, inbox, approve_held=ALL_HELD)
    assert (approved.held_pending, approved.oldest_held_at) == (0, None)


def test_termination_log_holds_the_compact_summary(db_url: str, inbox: Path,
                                                   tmp_path: Path) -> None:
    write(inbox, "students.csv", STUDENT_HEADER, roster())
    log = tmp_path / "termination-log"
    printed = cli_summary(db_url, inbox, "--termination-log", str(log))

    written = ImportSummary.model_validate_json(log.read_text())
    assert written.run_id == printed.run_id
    assert written.result is RunResult.SUCCESS
    assert [(f.file, f.created) for f in written.files] == [("students.csv", 10)]


def test_termination_log_says_why_a_run_could_not_happen(db_url: str, inbox: Path,
                                                         tmp_path: Path) -> None:
    engine = open_database(db_url)
    log = tmp_path / "termination-log"
    engine.dispose()  # the CLI migrates the database; the lock table must exist first
    assert cli_import(db_url, inbox).exit_code == 0
    engine = open_database(db_url)
    with district_lock(engine, DISTRICT):
        result = cli_import(db_url, inbox, "--termination-log", str(log))
    engine.dispose()

    assert result.exit_code == EXIT_BUSY
    assert log.read_text() == f"another import of district {DISTRICT!r} is running"


def test_newer_upload_supersedes_a_pending_held_file(
        engine: Engine, inbox: Path, held_run: Held) -> None:
    outcome = import_students(engine, inbox, roster(replace={1: student(1, first="Newer")}),
                              approve_held=ALL_HELD)

    assert (outcome.status, counts(outcome)) == (FileStatus.APPLIED, (0, 1, 9, 0))
    (row,) = held_rows(engine)
    assert (row.state, row.resolved_at is not None) == ("superseded", True)
    assert inbox_files(inbox) == []
    after = records(engine, "students")
    assert all(record["active"] for record in after.values())
    assert after["S001"]["first_name"] == "Newer"


@pytest.mark.parametrize(("age_days", "state", "active_after"), [
    pytest.param(13, "applied", 8, id="within-retention"),
    pytest.param(15, "expired", 10, id="past-retention"),
])
def test_held_file_expires_after_the_retention_period(
        engine: Engine, inbox: Path, held_run: Held, age_days: int, state: str,
        active_after: int) -> None:
    with engine.begin() as connection:
        connection.execute(update(HeldFile).values(
            held_at=datetime.now(UTC) - timedelta(days=age_days)))

    # Expiry comes first in a run: an expired file can no longer be approved.
    summary = run_import(engine, inbox, approve_held=ALL_HELD, held_retention_days=14)

    (row,) = held_rows(engine)
    assert (row.state, row.resolved_at is not None) == (state, True)
    assert [outcome.file for outcome in summary.files] == (
        ["students.csv"] if state == "applied" else [])
    assert inbox_files(inbox) == []
    assert sum(record["active"] for record in records(engine, "students").values()) == (
        active_after)


# -- files in the inbox ------------------------------------------------------------------

TEMPORARY_NAMES = ("students.csv.filepart", "visitors.csv.part", "users.csv.partial",
                   "upload.tmp", ".hidden", "~lock")


def test_processed_files_are_removed_and_temporary_names_never_touched(
        engine: Engine, inbox: Path) -> None:
    write(inbox, "students.csv", STUDENT_HEADER, roster(3))
    write(inbox, "visitors.csv", VISITOR_HEADER[1:], [row[1:] for row in FAMILIES])
    write(inbox, "notes.txt", ("hello",), [])
    untouched = {}
    for name in TEMPORARY_NAMES:
        path = write(inbox, name, STUDENT_HEADER, roster(2))
        untouched[name] = (path.read_bytes(), path.stat().st_mtime_ns)

    summary = run_import(engine, inbox)

    assert {outcome.file: (outcome.status, [issue.code for issue in outcome.issues])
            for outcome in summary.files} == {
        "students.csv": (FileStatus.APPLIED, []),
        "visitors.csv": (FileStatus.REJECTED, ["missing_column"]),
        "notes.txt": (FileStatus.REJECTED, ["unrecognised_file"]),
    }
    assert inbox_files(inbox) == sorted(TEMPORARY_NAMES)
    assert {name: ((inbox / name).read_bytes(), (inbox / name).stat().st_mtime_ns)
            for name in TEMPORARY_NAMES} == untouched
    assert sorted(records(engine, "students")) == ["S001", "S002", "S003"]


def test_file_modified_within_the_quiet_period_waits(engine: Engine, inbox: Path) -> None:
    write(inbox, "students.csv", STUDENT_HEADER, roster(3))
    settled = write(inbox, "employees.csv", EMPLOYEE_HEADER, [["E1", "Eve", "Staff"]])
    an_hour_ago = datetime.now(UTC).timestamp() - 3600
    os.utime(settled, (an_hour_ago, an_hour_ago))

    summary = run_import(engine, inbox, quiet_period_seconds=60)

    assert {outcome.file: outcome.status for outcome in summary.files} == {
        "employees.csv": FileStatus.APPLIED, "students.csv": FileStatus.WAITING}
    assert inbox_files(inbox) == ["students.csv"]
    assert records(engine, "students") == {}
    assert sorted(records(engine, "employees")) == ["E1"]


class ReplacedBeforeDisposal(LocalFolderSource):
    """Test double of the drop box: the district uploads a new version of a file right
    after the run read it, just before the run removes it or moves it to the held area."""

    def __init__(self, root: Path, replacement: list[list[str]]) -> None:
        super().__init__(root)
        self.replacement = replacement

    def _replace(self, file: SourceFile) -> None:
        path = write(self.root, file.name, STUDENT_HEADER, self.replacement)
        os.utime(path, (file.mtime + 1, file.mtime + 1))

    def remove(self, file: SourceFile) -> bool:
        self._replace(file)
        return super().remove(file)

    def hold(self, file: SourceFile, run_id: str) -> str:
        self._replace(file)
        return super().hold(file, run_id)


@pytest.mark.parametrize(("first_rows", "status"), [
    pytest.param(roster(), FileStatus.APPLIED, id="applied-then-removed"),
    pytest.param(roster(without=(9, 10)), FileStatus.HELD, id="held-then-moved"),
])
def test_file_replaced_after_reading_is_left_for_the_next_run(
        engine: Engine, inbox: Path, first_rows: list[list[str]], status: FileStatus) -> None:
    if status is FileStatus.HELD:
        import_students(engine, inbox, roster())
    replacement = roster(replace={1: student(1, first="Replacement")})
    write(inbox, "students.csv", STUDENT_HEADER, first_rows)
    source = ReplacedBeforeDisposal(inbox, replacement)

    outcome = outcome_of(run_import(engine, inbox, source=source), "students.csv")

    assert outcome.status is status
    assert "students.csv" in inbox_files(inbox)
    assert "Replacement" in (inbox / "students.csv").read_text(encoding="utf-8")
    outcome = import_students(engine, inbox, replacement)
    assert outcome.status is FileStatus.APPLIED
    assert records(engine, "students")["S001"]["first_name"] == "Replacement"


# -- atomicity ---------------------------------------------------------------------------

REJECT_LINK_INSERTS = {
    "sqlite": ["CREATE TRIGGER reject_links BEFORE INSERT ON visitor_student_links "
               "BEGIN SELECT RAISE(ABORT, 'links are read-only'); END"],
    "postgresql": ["CREATE FUNCTION reject_links() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$ BEGIN RAISE EXCEPTION 'links are read-only'; END $$",
                   "CREATE TRIGGER reject_links BEFORE INSERT ON visitor_student_links "
                   "FOR EACH ROW EXECUTE FUNCTION reject_links()"],
}
ALLOW_LINK_INSERTS = {
    "sqlite": ["DROP TRIGGER reject_links"],
    "postgresql": ["DROP TRIGGER reject_links ON visitor_student_links"],
}


def _execute(engine: Engine, statements: dict[str, list[str]]) -> None:
    with engine.begin() as connection:
        for statement in statements[engine.dialect.name]:
            connection.exec_driver_sql(statement)


@dataclass
class FailedRun:
    run_id: str
    summary: ImportSummary | None
    error: Exception | None
    before: dict[str, dict[str, dict[str, Any]]]
    visitors_file: bytes


@pytest.fixture
def failed_visitors_run(engine: Engine, inbox: Path) -> FailedRun:
    """A run whose visitors.csv fails in the database after its visitors were written
    (inserting a link raises), with an applicable students.csv before it."""
    write(inbox, "students.csv", STUDENT_HEADER, roster())
    write(inbox, "visitors.csv", VISITOR_HEADER, FAMILIES)
    run_import(engine, inbox)
    before = database_state(engine)
    _execute(engine, REJECT_LINK_INSERTS)
    write(inbox, "students.csv", STUDENT_HEADER, roster(replace={1: student(1, first="New")}))
    visitors = write(inbox, "visitors.csv", VISITOR_HEADER, [
        visitor("V1", "S001", first="Renamed"), visitor("V1", "S002"),
        visitor("V1", "S003"), visitor("V2", "S003"), visitor("V3", "S004")])
    importer = make_importer(engine, inbox)
    summary, error = None, None
    try:
        summary = importer.run()
    except Exception as raised:
        error = raised
    return FailedRun(importer.run_id, summary, error, before, visitors.read_bytes())


def test_failure_while_applying_a_file_leaves_the_database_as_before_that_file(
        engine: Engine, inbox: Path, failed_visitors_run: FailedRun) -> None:
    failed = failed_visitors_run
    if failed.error is None:  # reported instead of raised: then it must say so
        assert failed.summary is not None
        outcome = outcome_of(failed.summary, "visitors.csv")
        assert (outcome.status is not FileStatus.APPLIED, outcome.errors > 0) == (True, True)
    after = database_state(engine)
    assert after["students"]["S001"]["first_name"] == "New"
    for table in ("visitors", "visitor_student_links"):
        assert after[table] == failed.before[table]
    assert inbox_files(inbox) == ["visitors.csv"]
    assert (inbox / "visitors.csv").read_bytes() == failed.visitors_file
    with district_lock(engine, DISTRICT):
        pass  # the failed run released the district

    _execute(engine, ALLOW_LINK_INSERTS)
    outcome = outcome_of(run_import(engine, inbox), "visitors.csv")

    assert (outcome.status, counts(outcome)) == (FileStatus.APPLIED, (1, 1, 1, 0))
    assert sorted(records(engine, "visitor_student_links")) == sorted(
        link_key(v, s) for v, s in (("V1", "S001"), ("V1", "S002"), ("V1", "S003"),
                                    ("V2", "S003"), ("V3", "S004")))
    assert inbox_files(inbox) == []


def test_failed_run_is_recorded_as_finished(
        engine: Engine, failed_visitors_run: FailedRun) -> None:
    with engine.connect() as connection:
        run = connection.execute(select(ImportRun).where(
            ImportRun.id == failed_visitors_run.run_id)).one()
    assert run.finished_at is not None
    assert run.result not in ("running", "success")


# -- the district lock (more in test_district_lock.py) ------------------------------------


def test_cli_exits_75_while_the_district_is_locked(
        engine: Engine, db_url: str, inbox: Path) -> None:
    write(inbox, "students.csv", STUDENT_HEADER, roster())
    with district_lock(engine, DISTRICT):
        result = cli_import(db_url, inbox)

    assert result.exit_code == EXIT_BUSY
    assert f"another import of district {DISTRICT!r} is running" in result.stderr
    assert inbox_files(inbox) == ["students.csv"]
    assert records(engine, "students") == {}


# -- what a run reports ------------------------------------------------------------------


def test_json_output_run_row_and_stored_issues_agree(
        engine: Engine, db_url: str, inbox: Path) -> None:
    rows = roster(30, replace={n: student(n, grade="Grade Z") for n in range(6, 31)})
    write(inbox, "students.csv", (*STUDENT_HEADER, "Locker"), [[*row, "L1"] for row in rows])

    result = cli_import(db_url, inbox, "--format", "json")

    assert result.exit_code == 0, result.output
    summary = ImportSummary.model_validate_json(result.stdout)
    outcome = outcome_of(summary, "students.csv")
    assert (summary.result, outcome.status) == (RunResult.PARTIAL, FileStatus.APPLIED)
    assert (outcome.rows_read, outcome.created, outcome.rejected_rows, outcome.errors,
            outcome.warnings) == (30, 5, 25, 25, 1)
    with engine.connect() as connection:
        run = connection.execute(select(ImportRun).where(
            ImportRun.id == summary.run_id)).one()
    assert (run.result, run.district_id, run.finished_at is not None) == (
        "partial", DISTRICT, True)
    # the run row keeps the reasons; the output (a Job's log) leaves them out
    assert ImportSummary.model_validate(run.summary).without_values() == summary
    stored = list(stored_issues(engine, summary.run_id))
    assert [(issue.line, issue.code, issue.column) for issue in stored] == [
        (1, "unknown_column", "Locker"),
        *((line, "invalid_grade", "Grade") for line in range(7, 32))]
    assert all(issue.reason for issue in stored)
    assert outcome.issues == [issue.model_copy(update={"reason": ""})
                              for issue in stored[:len(outcome.issues)]]
    assert len(outcome.issues) < len(stored)
