"""Student data stays in the database and the district's e-mail.

Every column of every file the district sends carries a sentinel value; three runs go
through the operator, its Job and the real importer (the test plays the kubelet): a
normal run with row errors quoting the sentinels, a run whose update the database
refuses by a constraint (PostgreSQL quotes the whole failing row in its detail), and a
run that crashes after its files were applied (the exception carries the run's summary,
reasons and all). Whatever anyone without access to student data can read (the
importer's log and output, its termination message, the resource's status and Events,
the operator's metrics) must name files, lines, columns and codes only.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path
from typing import Any

import kopf
import pytest
from prometheus_client import generate_latest
from sqlalchemy import Engine, select

from tests.support.kube import Cluster, running_operator
from tests.support.kubelet import ContainerRun, report_job, run_job
from tests.support.operator import NAMESPACE, RUN_REQUEST, annotate, jobs, wait_status
from tests.support.runs import database, make_inbox, open_database
from tests.support.sshd import SftpServer
from tests.test_operator_end_to_end import network, prepare
from visitor_sync.db.schema import ImportIssue, Student
from visitor_sync.failures import report_crash
from visitor_sync.samples import write_district
from visitor_sync_operator.main import build_registry
from visitor_sync_operator.metrics import Metrics
from visitor_sync_operator.settings import OperatorSettings

#: Every sentinel starts so (compared without case: e-mail addresses are lower-cased).
MARK = "sntl"
#: How long the operator may take to react (four runs on a busy 2-core machine).
REACTION_TIMEOUT = 60.0
#: The first name the database is made to refuse in the constraint run.
GUARDED = "SntlGuarded"


def sentinel_export(directory: Path) -> list[Path]:
    """The sample district's files with a sentinel in every column of every file: column
    ``c`` of row ``c % rows`` becomes ``Sntl<file>c<column>`` (valid text in a name, a
    row error in a date, a flag or a key other rows refer to)."""
    written = write_district(directory, students=120)
    for number, path in enumerate(written):
        with path.open(newline="", encoding="utf-8") as stream:
            header, *rows = list(csv.reader(stream))
        for column in range(len(header)):
            rows[column % len(rows)][column] = f"Sntl{number}c{column}"
        with path.open("w", newline="", encoding="utf-8") as stream:
            csv.writer(stream).writerows([header, *rows])
    return written


def leaks(text: str) -> list[str]:
    """The lines of ``text`` that carry a sentinel."""
    return [line for line in text.splitlines() if MARK in line.lower()]


def guard_students(engine: Engine) -> None:
    """The database refuses a student named :data:`GUARDED` (a real constraint violation)."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql(
                f"ALTER TABLE students ADD CONSTRAINT sentinel_guard "
                f"CHECK (first_name <> '{GUARDED}') NOT VALID")
        else:
            for event in ("INSERT", "UPDATE"):
                connection.exec_driver_sql(
                    f"CREATE TRIGGER sentinel_guard_{event.lower()} BEFORE {event} ON students "
                    f"WHEN NEW.first_name = '{GUARDED}' "
                    f"BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: sentinel_guard'); END")


def unguard_students_and_refuse_summaries(engine: Engine) -> None:
    """Drop the guard; make recording a run's summary fail, so the importer crashes after
    applying its files with the summary (reasons quoting sentinels) in the exception."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("ALTER TABLE students DROP CONSTRAINT sentinel_guard")
            connection.exec_driver_sql(
                "CREATE FUNCTION refuse_summary() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN RAISE EXCEPTION 'summary refused: %%', NEW.summary::text; END $$")
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse_summary BEFORE UPDATE ON import_runs FOR EACH ROW "
                "WHEN (NEW.summary IS NOT NULL) EXECUTE FUNCTION refuse_summary()")
        else:
            for event in ("insert", "update"):
                connection.exec_driver_sql(f"DROP TRIGGER sentinel_guard_{event}")
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse_summary BEFORE UPDATE ON import_runs "
                "WHEN NEW.summary IS NOT NULL BEGIN SELECT RAISE(ABORT, 'summary refused'); END")


def name_a_student_guarded(students: Path) -> None:
    """Rename a valid student (line 51: no sentinel, no sample error) :data:`GUARDED`."""
    with students.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.reader(stream))
    rows[50][1] = GUARDED
    with students.open("w", newline="", encoding="utf-8") as stream:
        csv.writer(stream).writerows(rows)


def upload(server: SftpServer, paths: list[Path]) -> None:
    with server.sftp() as sftp:
        for path in paths:
            sftp.put(str(path), f"/upload/{path.name}")


@pytest.mark.asyncio
async def test_no_cell_value_reaches_logs_termination_messages_status_events_or_metrics(
        cluster: Cluster, sftp_server: SftpServer, db_url: str, tmp_path: Path) -> None:
    await prepare(cluster, sftp_server, db_url, safety={"quietPeriodSeconds": 0})
    export = sentinel_export(tmp_path / "export")
    students = next(path for path in export if path.name == "students.csv")
    metrics = Metrics()
    registry = build_registry(OperatorSettings(namespaces=[NAMESPACE]), metrics)
    readable: dict[str, str] = {}  # what people without access to student data can read
    containers: dict[str, ContainerRun] = {}

    async def one_run(token: str) -> dict[str, Any]:
        await annotate(cluster, RUN_REQUEST, token)
        await wait_status(cluster, lambda b: b["status"].get("lastHandledRunRequest") == token,
                          timeout=REACTION_TIMEOUT)
        job = next(j for j in await jobs(cluster)
                   if j["metadata"]["annotations"]["sync.visitoraware.io/run-request"] == token)
        container = await run_job(cluster, job, tmp_path / token, network(sftp_server))
        containers[token] = container
        await report_job(cluster, job, container.exit_code, container.reported_message)
        body = await wait_status(cluster, lambda b: (b["status"].get("lastImport") or {}).get(
            "job") == job["metadata"]["name"] and not b["status"].get("activeJob"),
            timeout=REACTION_TIMEOUT)
        readable.update({
            f"{token} stdout": container.stdout, f"{token} stderr": container.stderr,
            f"{token} termination message": container.reported_message,
            f"{token} status": json.dumps(body["status"], indent=1)})
        return body

    engine = open_database(db_url)
    try:
        async with running_operator(cluster, registry=registry, namespaces=[NAMESPACE],
                                    memo=kopf.Memo()):
            await wait_status(cluster, lambda b: b.get("status", {}).get("sftp"))

            upload(sftp_server, export)
            normal = await one_run("normal")
            assert normal["status"]["lastImport"]["result"] == "partial"

            guard_students(engine)
            name_a_student_guarded(students)  # an update the database refuses
            upload(sftp_server, [students])
            refused = await one_run("refused")
            assert containers["refused"].exit_code == 1, containers["refused"].stderr
            assert refused["status"]["lastImport"]["result"] == "failed"

            unguard_students_and_refuse_summaries(engine)
            crashed = await one_run("crashed")  # students.csv stayed for this run
            assert containers["crashed"].exit_code == 1, containers["crashed"].stderr
            assert crashed["status"]["lastImport"]["result"] == "failed"
            # A database failure ends the run with one line naming codes, never the text
            # (on PostgreSQL the refusal quotes the whole summary, sentinels included).
            assert containers["crashed"].termination_message.startswith("database_error: ")

            # Whatever a pod's message holds (an older importer's traceback, a library's
            # output), the operator quotes none of it.
            await annotate(cluster, RUN_REQUEST, "foreign")
            await wait_status(cluster,
                              lambda b: b["status"].get("lastHandledRunRequest") == "foreign",
                              timeout=REACTION_TIMEOUT)
            (job,) = [j for j in await jobs(cluster) if j["metadata"]["annotations"][
                "sync.visitoraware.io/run-request"] == "foreign"]
            await report_job(cluster, job, 1, "Traceback (most recent call last):\n"
                             "ValueError: invalid literal for int(): 'SntlForeign'")
            foreign = await wait_status(cluster, lambda b: (b["status"].get("lastImport") or {})
                                        .get("job") == job["metadata"]["name"],
                                        timeout=REACTION_TIMEOUT)
            readable["foreign status"] = json.dumps(foreign["status"], indent=1)
            assert "exit status 1" in foreign["status"]["lastImport"]["message"]

            events = await cluster.list("v1", "Event", namespace=NAMESPACE)
        readable["events"] = json.dumps(events, indent=1)
        readable["metrics"] = generate_latest(metrics.registry).decode()

        # The sentinels did reach the places meant for them: the records and the reasons.
        with engine.connect() as connection:
            names = connection.scalars(select(Student.first_name)).all()
            reasons = connection.scalars(select(ImportIssue.reason)).all()
        assert any(MARK in name.lower() for name in names)
        assert any(MARK in reason.lower() for reason in reasons)
        assert any("database_error" in line for line in containers["crashed"].stderr.splitlines())
    finally:
        engine.dispose()

    leaked = {place: lines for place, text in readable.items() if (lines := leaks(text))}
    assert not leaked, f"sentinels in {sorted(leaked)}: " + json.dumps(
        {place: lines[:2] for place, lines in leaked.items()}, indent=1)


def test_the_import_command_at_info_level_prints_no_cell_value(
        db_url: str, tmp_path: Path) -> None:
    """``visitor-sync -v import`` on a folder: log lines at every level it emits, the
    text report and the JSON report, and the termination log."""
    inbox = make_inbox(tmp_path)
    sentinel_export(inbox)
    name_a_student_guarded(inbox / "students.csv")
    with database(db_url) as engine:
        guard_students(engine)  # the students file fails on the constraint
    outputs = []
    for output in ("text", "json"):
        termination = tmp_path / f"termination-{output}"
        done = subprocess.run(
            ["visitor-sync", "-v", "import", "--district", "testdistrict", "--source",
             str(inbox), "--db", db_url, "--quiet-period", "0", "--format", output,
             "--termination-log", str(termination)],
            capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, done.stderr  # the refused file is an infrastructure failure
        assert "database failure while importing students.csv" in done.stderr
        outputs += [done.stdout, done.stderr, termination.read_text()]
    leaked = [line for text in outputs for line in leaks(text)]
    assert not leaked, "\n".join(leaked[:10])


def test_a_crash_is_told_by_its_type_and_place_never_its_message(capsys) -> None:
    """The importer's excepthook: an uncaught error's message may quote a cell value, and
    a Job's log tail becomes its termination message when it dies without one."""
    try:
        int("SntlCrash")
    except ValueError as error:
        report_crash(ValueError, error, error.__traceback__)
    told = capsys.readouterr().err
    assert told.startswith("visitor-sync: internal_error: the importer crashed: ValueError")
    assert "test_pii_outputs.py" in told and not leaks(told), told
