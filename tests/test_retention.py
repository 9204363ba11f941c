"""Retention: nothing is kept forever, and nothing is purged early.

Each test imports for real, then moves chosen timestamps into the past in the database
(or on disk) as time would, runs the importer again and checks what went and what
stayed: deactivated records, error reasons, run history, held-area files no record
refers to, drop-box leftovers (local folder and the real SFTP server).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import Connection, Engine, func, select, update

from tests.support.runs import (
    csv_bytes,
    database,
    make_config,
    make_inbox,
    run_import,
    table_rows,
    write,
)
from tests.support.sshd import SftpServer
from visitor_sync.db.schema import HeldFile, ImportFileResult, ImportIssue, ImportRun, Student
from visitor_sync.samples import STUDENT_HEADER, student_rows
from visitor_sync.sftp.source import SftpCredentials, SftpSource, SftpTarget, Timeouts
from visitor_sync.summary import ImportSummary, RunResult

DAY = 86400


def students(count: int, start: int = 1) -> list[list[str]]:
    return list(student_rows(count, start=start))


def put_students(inbox: Path, rows: list[list[str]]) -> None:
    write(inbox, "students.csv", STUDENT_HEADER, rows)


def age(engine: Engine, statement: object) -> None:
    with engine.begin() as connection:
        connection.execute(statement)  # type: ignore[arg-type]


def ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def hold_half(engine: Engine, inbox: Path, roster: list[list[str]]) -> ImportSummary:
    """Import ``roster``, then half of it: that file is held for approval (pending)."""
    put_students(inbox, roster)
    run_import(engine, inbox)
    put_students(inbox, roster[:len(roster) // 2])
    held = run_import(engine, inbox)
    assert held.result is RunResult.HELD
    return held


def count(engine: Engine, model: type, *where: object) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(model).where(*where)) or 0


def test_records_deactivated_longer_than_the_limit_are_deleted(db_url: str,
                                                                tmp_path: Path) -> None:
    inbox = make_inbox(tmp_path)
    roster = students(20)
    with database(db_url) as engine:
        put_students(inbox, roster)
        run_import(engine, inbox)
        put_students(inbox, roster[2:])  # two students leave the district (10%)
        run_import(engine, inbox)
        gone_long_ago, gone_lately = roster[0][0], roster[1][0]
        age(engine, update(Student).where(Student.student_id == gone_long_ago)
            .values(deactivated_at=ago(366)))

        summary = run_import(engine, inbox)

        assert summary.result is RunResult.SUCCESS
        remaining = table_rows(engine, "students", "student_id", "active")
        assert (gone_long_ago, False) not in remaining
        assert (gone_lately, False) in remaining  # deactivated a moment ago: kept
        assert sum(active for _, active in remaining) == 18

        put_students(inbox, roster)  # the student comes back: a new record
        run_import(engine, inbox)
        assert (gone_long_ago, True) in table_rows(engine, "students", "student_id", "active")


def test_a_failing_purge_leaves_the_run_recorded_and_waits_for_the_next_run(
        db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    inbox = make_inbox(tmp_path)
    roster = students(20)
    with database(db_url) as engine:
        put_students(inbox, roster)
        run_import(engine, inbox)
        put_students(inbox, roster[1:])
        run_import(engine, inbox)
        age(engine, update(Student).where(Student.student_id == roster[0][0])
            .values(deactivated_at=ago(400)))
        with engine.begin() as connection:  # the database refuses every delete of students
            if engine.dialect.name == "postgresql":
                connection.exec_driver_sql(
                    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'no deletes'; END $$")
                connection.exec_driver_sql("CREATE TRIGGER refuse BEFORE DELETE ON students "
                                           "FOR EACH ROW EXECUTE FUNCTION refuse()")
            else:
                connection.exec_driver_sql("CREATE TRIGGER refuse BEFORE DELETE ON students "
                                           "BEGIN SELECT RAISE(ABORT, 'no deletes'); END")

        refused = run_import(engine, inbox)

        assert refused.result is RunResult.SUCCESS
        assert table_rows(engine, "import_runs", "result").count(("success",)) == 3
        assert count(engine, Student) == 20  # nothing purged: one transaction
        warnings = [record.getMessage() for record in caplog.records
                    if "retention was not applied" in record.getMessage()]
        assert len(warnings) == 1 and "no deletes" not in warnings[0]

        with engine.begin() as connection:
            connection.exec_driver_sql("DROP TRIGGER refuse" + (
                " ON students" if engine.dialect.name == "postgresql" else ""))
        run_import(engine, inbox)
        assert count(engine, Student) == 19


def test_error_reasons_are_erased_after_the_limit_codes_and_lines_stay(
        db_url: str, tmp_path: Path) -> None:
    inbox = make_inbox(tmp_path)
    rows = students(5)
    rows[2][5] = "31/31/2015"  # a date that does not exist: the reason quotes it
    with database(db_url) as engine:
        put_students(inbox, rows)
        old = run_import(engine, inbox)
        age(engine, update(ImportRun).where(ImportRun.id == old.run_id)
            .values(started_at=ago(91)))
        put_students(inbox, rows)
        recent = run_import(engine, inbox)

        with engine.connect() as connection:
            issues = _issues_by_run(connection)
            stored_summaries = connection.scalars(select(ImportRun.summary)).all()
        assert issues[old.run_id] == [(4, "invalid_date", "")]
        ((line, code, reason),) = issues[recent.run_id]
        assert (line, code) == (4, "invalid_date") and "31/31/2015" in reason
        # the run rows never held reasons: the issue rows are the only copy
        assert "31/31/2015" not in str(stored_summaries)


def _issues_by_run(connection: Connection) -> dict[str, list[tuple[int, str, str]]]:
    rows = connection.execute(
        select(ImportFileResult.run_id, ImportIssue.line, ImportIssue.code, ImportIssue.reason)
        .join(ImportFileResult, ImportIssue.file_result_id == ImportFileResult.id)).all()
    found: dict[str, list[tuple[int, str, str]]] = {}
    for run_id, line, code, reason in rows:
        found.setdefault(run_id, []).append((line, code, reason))
    return found


def test_runs_older_than_the_history_limit_go_with_all_they_recorded(
        db_url: str, tmp_path: Path) -> None:
    inbox = make_inbox(tmp_path)
    roster = students(20)
    with database(db_url) as engine:
        put_students(inbox, [*roster[:3], [*roster[3][:5], "not a date", *roster[3][6:]],
                             *roster[4:]])
        first = run_import(engine, inbox)
        assert first.errors == 1
        held = hold_half(engine, inbox, roster)
        later = run_import(engine, inbox)  # nothing new: the held file stays pending
        for run in (first, held):
            age(engine, update(ImportRun).where(ImportRun.id == run.run_id)
                .values(started_at=ago(401)))

        run_import(engine, inbox)

        runs = {row[0] for row in table_rows(engine, "import_runs", "id")}
        assert first.run_id not in runs
        assert held.run_id in runs  # its held file still waits for approval
        assert later.run_id in runs
        assert count(engine, ImportFileResult, ImportFileResult.run_id == first.run_id) == 0
        assert count(engine, ImportIssue) == 0  # the only issue was the first run's
        assert count(engine, HeldFile, HeldFile.run_id == held.run_id) == 1


def _files_under(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def _make_old(path: Path, days: float) -> None:
    stamp = time.time() - days * DAY
    os.utime(path, (stamp, stamp), follow_symlinks=False)


def _leave_leftovers(upload: Path, held: Path) -> None:
    """An orphan in the held area, old and fresh temporary names and sub-folders."""
    (held / "run-gone").mkdir(parents=True)
    (held / "run-gone" / "students.csv").write_bytes(b"orphan")
    for name in ("students.csv.part", ".visitors.csv.swp", "fresh.csv.tmp"):
        (upload / name).write_bytes(b"half an upload")
    for name in ("students.csv.part", ".visitors.csv.swp"):
        _make_old(upload / name, 8)
    (upload / "archive" / "2025").mkdir(parents=True)
    (upload / "archive" / "2025" / "students.csv").write_bytes(b"last year")
    (upload / "busy" / "deep").mkdir(parents=True)
    (upload / "busy" / "deep" / "students.csv").write_bytes(b"being written")
    for path in (upload / "archive" / "2025" / "students.csv", upload / "archive" / "2025",
                 upload / "archive", upload / "busy" / "deep", upload / "busy"):
        _make_old(path, 8)  # busy/deep/students.csv itself changed just now


SWEPT = {"students.csv.part", ".visitors.csv.swp", "archive", "archive/2025",
         "archive/2025/students.csv"}
KEPT = {"fresh.csv.tmp", "busy", "busy/deep", "busy/deep/students.csv"}


def test_the_folder_sweep_removes_orphans_and_old_leftovers_only(db_url: str,
                                                                  tmp_path: Path) -> None:
    inbox = make_inbox(tmp_path)
    roster = students(20)
    with database(db_url) as engine:
        held = hold_half(engine, inbox, roster)
        pending = f"held/{held.run_id}/students.csv"
        _leave_leftovers(inbox, inbox / "held")
        assert SWEPT | KEPT | {pending, "held/run-gone/students.csv"} <= _files_under(inbox)

        run_import(engine, inbox)

    left = _files_under(inbox)
    assert pending in left  # the pending held file is what its record refers to
    assert "held/run-gone/students.csv" not in left
    assert not SWEPT & left
    assert left >= KEPT


def test_the_sftp_sweep_removes_orphans_and_old_leftovers_only(
        db_url: str, tmp_path: Path, sftp_server: SftpServer) -> None:
    with sftp_server.sftp() as sftp, sftp.open("/upload/students.csv", "wb") as stream:
        stream.write(csv_bytes(STUDENT_HEADER, students(3)))
    _leave_leftovers(sftp_server.upload, sftp_server.held)
    for path in (*sftp_server.upload.rglob("*"), *sftp_server.held.rglob("*")):
        # as if made by the district's (and importer's) uid, which the sweep runs as
        os.chown(path, sftp_server.accounts.uid, sftp_server.accounts.uid,
                 follow_symlinks=False)
    source = SftpSource(SftpTarget.parse(sftp_server.url()),
                        SftpCredentials(key_file=sftp_server.accounts.importer_key.path),
                        sftp_server.known_hosts, timeouts=Timeouts(connect=5, read=30))
    with database(db_url) as engine, source:
        summary = run_import(engine, make_inbox(tmp_path), source=source)
    assert summary.result is RunResult.SUCCESS
    left = _files_under(sftp_server.upload)
    assert not SWEPT & left
    assert left >= KEPT
    assert _files_under(sftp_server.held) == set()
    log = sftp_server.log_after('remove name "/district/upload/archive/2025/students.csv"')
    assert 'rmdir name "/district/upload/archive"' in log


def test_retention_settings_reach_the_run_and_are_bounded() -> None:
    config = make_config(retention={"deactivated_record_days": 30})
    assert config.retention.deactivated_record_days == 30
    assert config.retention.error_text_days == 90
    with pytest.raises(ValidationError):
        make_config(retention={"run_history_days": 0})
