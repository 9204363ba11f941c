"""The district lock dies with its run: a killed importer never blocks its district.

The lock once was a row that only its own run deleted; after ``kill -9`` every
run of the district exited 75 for six hours. Now it is a PostgreSQL session
advisory lock or a file lock beside the SQLite database.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from sqlalchemy import Engine, select

from tests.support.processes import start_command
from tests.support.runs import DISTRICT, database, make_inbox, run_import, write
from tests.support.waiting import wait_for
from visitor_sync.db.database import READ_ONLY
from visitor_sync.db.schema import ImportRun
from visitor_sync.locking import DistrictBusy, district_lock
from visitor_sync.summary import RunResult

STUDENTS = ("Student ID", "First Name", "Last Name", "Date of Birth", "Grade", "School ID")
#: Longest a district may stay locked after its run was killed (issue 12).
FREE_WITHIN_SECONDS = 5.0


def students(count: int) -> list[list[str]]:
    return [[f"S{n:06d}", "Ann", "Lee", "2015-01-02", "3", "001"] for n in range(count)]


def import_arguments(db_url: str, inbox: Path, *options: str) -> list[str]:
    return ["import", "--district", DISTRICT, "--source", str(inbox), "--db", db_url,
            "--quiet-period", "0", *options]


def running_run(engine: Engine) -> str | None:
    """The id of the district's run in progress (recorded once it holds the lock), read
    as a reader: on SQLite a writer's transaction would wait for the run's own."""
    with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
        return connection.scalar(select(ImportRun.id).where(
            ImportRun.district_id == DISTRICT, ImportRun.result == "running"))


def test_a_killed_run_leaves_the_district_free_at_once(db_url: str, tmp_path: Path) -> None:
    inbox = make_inbox(tmp_path)
    write(inbox, "students.csv", STUDENTS, students(20_000))
    with database(db_url) as engine:
        run = start_command(import_arguments(db_url, inbox), tmp_path / "killed")
        wait_for("the run to hold the district", lambda: running_run(engine))
        run.signal(signal.SIGKILL)
        assert run.finish() == -signal.SIGKILL
        killed = time.monotonic()

        summary = run_import(engine, inbox)
        free_after = time.monotonic() - killed

        assert summary.result is RunResult.SUCCESS
        assert free_after < FREE_WITHIN_SECONDS
        assert list(inbox.iterdir()) == []


def test_a_second_run_is_refused_while_a_run_holds_the_district(
        db_url: str, tmp_path: Path) -> None:
    inbox = make_inbox(tmp_path)
    write(inbox, "students.csv", STUDENTS, students(10))
    with database(db_url) as engine, district_lock(engine, DISTRICT):
        try:
            run_import(engine, inbox)
        except DistrictBusy as busy:
            assert str(busy) == f"another import of district {DISTRICT!r} is running"
        else:
            raise AssertionError("a second run started while the district was held")
        assert [path.name for path in inbox.iterdir()] == ["students.csv"]


def test_the_lock_is_released_when_a_run_ends(db_url: str, tmp_path: Path) -> None:
    inbox = make_inbox(tmp_path)
    write(inbox, "students.csv", STUDENTS, students(10))
    with database(db_url) as engine:
        run_import(engine, inbox)
        with district_lock(engine, DISTRICT):
            pass  # would raise DistrictBusy if the run had kept it


def test_other_districts_are_not_held(db_url: str, tmp_path: Path) -> None:
    inbox = make_inbox(tmp_path)
    write(inbox, "students.csv", STUDENTS, students(10))
    with database(db_url) as engine, district_lock(engine, "another-district"):
        assert run_import(engine, inbox).result is RunResult.SUCCESS
