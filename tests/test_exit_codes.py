"""The README's exit-code table is a contract: each row is run here with the real
``visitor-sync`` command, and every code the table lists has a case.

The importer Job's ``podFailurePolicy`` fails a Job at once on exit 2 and the
operator reads the termination log, so each failure must say why in one line
(never a traceback) on stderr and in ``--termination-log``.
"""

from __future__ import annotations

import json
import re
import signal
import socket
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.support.processes import Run, reading_a_file, start_command, wait_for
from tests.support.runs import DISTRICT, database, make_inbox, table_rows, write
from visitor_sync.db.schema import ImportRun
from visitor_sync.locking import district_lock
from visitor_sync.summary import FileStatus, ImportSummary, RunResult

README = Path(__file__).resolve().parent.parent / "README.md"
STUDENTS = ("Student ID", "First Name", "Last Name", "Date of Birth", "Grade", "School ID")
#: The exit codes the cases below exercise; the README's table must list exactly these.
CASES = {0, 1, 2, 69, 75, 143}


def students(count: int, bad: int = 0) -> list[list[str]]:
    return [[f"S{n:06d}", "Ann", "Lee", "2015-01-02", "Z" if n < bad else "3", "001"]
            for n in range(count)]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_import(tmp_path: Path, *arguments: str, district: str | None = DISTRICT,
               source: Path | str | None = None, db_url: str | None = None,
               environment: dict[str, str] | None = None) -> tuple[int, Run, Path]:
    """``visitor-sync import ...`` to its end: exit status, the run, its termination log."""
    log = tmp_path / "termination-log"
    run = start_import(tmp_path, *arguments, district=district, source=source, db_url=db_url,
                       environment=environment)
    return run.finish(), run, log


def start_import(tmp_path: Path, *arguments: str, district: str | None = DISTRICT,
                 source: Path | str | None = None, db_url: str | None = None,
                 environment: dict[str, str] | None = None) -> Run:
    options = ["--source", str(source if source is not None else make_inbox(tmp_path)),
               "--db", db_url or f"sqlite:///{tmp_path}/visitor-sync.db", "--quiet-period", "0",
               "--termination-log", str(tmp_path / "termination-log")]
    if district is not None:
        options += ["--district", district]
    return start_command(["import", *options, *arguments], tmp_path / "output",
                         environment)


def one_line(run: Run) -> str:
    """The run's stderr, which must be exactly one line and no traceback."""
    lines = run.err.splitlines()
    assert len(lines) == 1, run.err
    return lines[0]


def test_the_readme_table_lists_exactly_the_tested_codes() -> None:
    text = README.read_text(encoding="utf-8")
    table = text[text.index("| exit | meaning |"):]
    table = table[:table.index("\n\n")]
    assert {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)} == CASES


def test_0_a_completed_run_whatever_the_data_said(db_url: str, tmp_path: Path) -> None:
    inbox = make_inbox(tmp_path)
    write(inbox, "students.csv", STUDENTS, students(10, bad=3))
    status, run, log = run_import(tmp_path, source=inbox, db_url=db_url)
    assert status == 0, run.err
    summary = ImportSummary.model_validate_json(log.read_text())
    assert (summary.result, summary.files[0].errors) == (RunResult.PARTIAL, 3)


def test_0_an_unwritable_termination_log_after_a_committed_import_is_a_warning(
        db_url: str, tmp_path: Path) -> None:
    inbox = make_inbox(tmp_path)
    write(inbox, "students.csv", STUDENTS, students(10))
    unwritable = tmp_path / "no-such-folder" / "termination-log"
    status, run, _ = run_import(tmp_path, "--termination-log", str(unwritable), source=inbox,
                                db_url=db_url)
    assert status == 0
    assert one_line(run).startswith(
        f"visitor-sync: warning: cannot write the termination log {unwritable}: ")
    with database(db_url) as engine:
        assert len(table_rows(engine, "students", "record_key")) == 10


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_1_the_database_cannot_be_reached(engine: str, tmp_path: Path) -> None:
    inbox = make_inbox(tmp_path)
    write(inbox, "students.csv", STUDENTS, students(10))
    if engine == "postgresql":
        port = closed_port()
        url = f"postgresql+psycopg://visitor:secret@127.0.0.1:{port}/visitor_sync"
        expected = f"database_error: could not connect to 127.0.0.1:{port}: Connection refused"
    else:
        (tmp_path / "not-a-folder").write_text("")
        path = tmp_path / "not-a-folder" / "visitor-sync.db"
        url = f"sqlite:///{path}"
        expected = f"database_error: could not connect to {path}: "
    status, run, log = run_import(tmp_path, source=inbox, db_url=url)
    assert status == 1
    assert one_line(run).startswith(f"visitor-sync: {expected}")
    assert log.read_text().startswith(expected)
    assert [path.name for path in inbox.iterdir()] == ["students.csv"]


def test_1_a_schema_newer_than_the_importer_is_refused(db_url: str, tmp_path: Path) -> None:
    with database(db_url) as engine, engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    status, run, log = run_import(tmp_path, db_url=db_url)
    assert status == 1
    expected = ("database_error: the database schema is at revision 9999, newer than this "
                "importer knows")
    assert one_line(run).startswith(f"visitor-sync: {expected}")
    assert log.read_text().startswith(expected)


def _bad_json(tmp_path: Path) -> list[str]:
    (tmp_path / "import.json").write_text('{"district_id": "springfield",')
    return ["--config", str(tmp_path / "import.json")]


def _bad_field(tmp_path: Path) -> list[str]:
    (tmp_path / "import.json").write_text(json.dumps(
        {"district_id": "springfield", "max_deactivate_percent": 400, "colour": "red"}))
    return ["--config", str(tmp_path / "import.json")]


@pytest.mark.parametrize(("case", "arguments", "district", "message"), [
    pytest.param("bad JSON", _bad_json, None,
                 "usage error: cannot read ImportConfig {tmp}/import.json: Expecting ",
                 id="config-bad-json"),
    pytest.param("bad field", _bad_field, None,
                 "usage error: invalid ImportConfig: max_deactivate_percent: Input should be "
                 "less than or equal to 100; colour: Extra inputs are not permitted",
                 id="config-bad-field"),
    pytest.param("no district", lambda _: [], None,
                 "usage error: --district is required (or district_id in --config)",
                 id="missing-district"),
    pytest.param("bad district", lambda _: [], "Spring Field!",
                 "usage error: invalid ImportConfig: district_id: String should match pattern",
                 id="invalid-district"),
    pytest.param("no source", lambda tmp: ["--source", f"{tmp}/missing"], DISTRICT,
                 "usage error: --source {tmp}/missing: no such folder", id="missing-source"),
    pytest.param("approval of nothing", lambda _: ["--approve-held", "no-such-run"], DISTRICT,
                 f"run no-such-run holds no file of district {DISTRICT} awaiting approval",
                 id="approve-held-of-nothing"),
])
def test_2_usage_errors(tmp_path: Path, case: str, arguments: object, district: str | None,
                        message: str) -> None:
    assert callable(arguments)
    status, run, log = run_import(tmp_path, *arguments(tmp_path), district=district)
    expected = message.format(tmp=tmp_path)
    assert status == 2, case
    assert one_line(run).startswith(f"visitor-sync: {expected}")
    assert log.read_text().startswith(expected)


def test_69_the_sftp_server_cannot_be_reached(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    status, run, log = run_import(
        tmp_path, "--known-hosts", str(known_hosts),
        source=f"sftp://district@127.0.0.1:{closed_port()}/inbox",
        environment={"VISITOR_SYNC_SFTP_PASSWORD": "secret"})
    assert status == 69
    assert one_line(run).startswith("visitor-sync: SFTP unavailable: ")
    assert log.read_text().startswith("SFTP unavailable: ")


def test_75_another_run_holds_the_district(db_url: str, tmp_path: Path) -> None:
    inbox = make_inbox(tmp_path)
    write(inbox, "students.csv", STUDENTS, students(10))
    with database(db_url) as engine, district_lock(engine, DISTRICT):
        status, run, log = run_import(tmp_path, source=inbox, db_url=db_url)
    assert status == 75
    expected = f"another import of district {DISTRICT!r} is running"
    assert one_line(run) == f"visitor-sync: {expected}"
    assert log.read_text() == expected
    assert [path.name for path in inbox.iterdir()] == ["students.csv"]


def test_143_sigterm_rolls_back_the_file_in_progress(db_url: str, tmp_path: Path) -> None:
    inbox, scratch = make_inbox(tmp_path), make_inbox(tmp_path, "scratch")
    write(inbox, "students.csv", STUDENTS, students(60_000))
    with database(db_url) as engine:
        run = start_import(tmp_path, source=inbox, db_url=db_url,
                           environment={"TMPDIR": str(scratch)})
        wait_for("the run to read students.csv", lambda: reading_a_file(scratch))
        run.signal(signal.SIGTERM)
        assert run.finish() == 143, run.err
        assert one_line(run).startswith("visitor-sync: stopped by SIGTERM")
        summary = ImportSummary.model_validate_json((tmp_path / "termination-log").read_text())
        assert summary.result is RunResult.FAILED
        assert [(file.file, file.status, [issue.code for issue in file.issues])
                for file in summary.files] == [
            ("students.csv", FileStatus.FAILED, ["interrupted"])]
        assert table_rows(engine, "students", "record_key") == []
        assert [path.name for path in inbox.iterdir()] == ["students.csv"]
        with engine.connect() as connection:
            assert connection.scalar(select(ImportRun.result).where(
                ImportRun.id == summary.run_id)) == "failed"
        with district_lock(engine, DISTRICT):
            pass  # released
