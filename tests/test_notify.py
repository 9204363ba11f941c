"""The report and invitation e-mails, received by a real SMTP server (aiosmtpd on 127.0.0.1).

Imports run for real (the CLI, or the importer then ``notify``) against SQLite and
PostgreSQL (``db_url``); messages go over real sockets, with real STARTTLS/TLS
(certificates made with ``cryptography``) and AUTH. Nothing is mocked: "SMTP down"
is a closed port, a temporary failure is the server answering 451.
"""

from __future__ import annotations

import csv
import email
import email.policy
import io
import json
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select

from tests.support.runs import DISTRICT, database, issues, make_config, make_importer, write
from tests.support.smtp import Certificates, SmtpServer, make_certificates, start_server
from visitor_sync.cli import main
from visitor_sync.db.schema import ImportRun, Invitation
from visitor_sync.issues import Issue, Severity
from visitor_sync.mail import report_message
from visitor_sync.notify import (
    ENV_PREFIX,
    SmtpSecurity,
    SmtpSettings,
    SmtpSettingsError,
    notify,
)
from visitor_sync.report import csv_safe
from visitor_sync.summary import FileOutcome, FileStatus, ImportSummary, ReportEmail, RunResult

NAME = "<script>alert('x')</script> & Sons ISD"
SENDER = "Visitor Sync <no-reply@visitor-sync.test>"
ADMINS = ["sis-admin@district.example.org", "it@district.example.org"]
STUDENT_HEADER = ("Student ID", "First Name", "Last Name", "Date of Birth", "Grade",
                  "School ID", "School Name", "Active")
#: unknown columns: each is a warning whose column starts with a formula or is markup
ODD_COLUMNS = ("=SUM(A1)", "<script>alert(1)</script>")
USER_HEADER = ("Email", "Name", "Role", "School IDs", "Active")
USERS = [["ann@example.org", "Ann Admin", "administrator", "", "1"],
         ["bob@example.org", "Bob Teacher", "teacher", "0101", "1"],
         ["cy@example.org", "Cy Operator", "operator", "0101", "0"]]


def student(number: int, born: str = "2014-03-02") -> list[str]:
    return [f"S{number:03d}", f"First{number}", f"Last{number}", born, "5", "0101",
            "Lincoln Elementary", "1"]


def write_students(inbox: Path, good: int = 3, bad: int = 0, odd_columns: bool = False) -> None:
    """``good`` valid students, then ``bad`` rows with an impossible date (one error each)."""
    extra = ODD_COLUMNS if odd_columns else ()
    rows = [student(n) for n in range(1, good + 1)]
    rows += [student(n, born="13/45/2010") for n in range(good + 1, good + bad + 1)]
    write(inbox, "students.csv", (*STUDENT_HEADER, *extra),
          [[*row, *("x" for _ in extra)] for row in rows])


def write_users(inbox: Path, rows: list[list[str]] = USERS) -> None:
    write(inbox, "users.csv", USER_HEADER, rows)


# -- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = start_server()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("smtp-tls"))


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def smtp_env(port: int, **settings: str) -> dict[str, str]:
    """``VISITOR_SYNC_SMTP_*`` for a plain server on 127.0.0.1:``port`` (no retry delay)."""
    values = {"host": "127.0.0.1", "port": str(port), "security": "none", "sender": SENDER,
              "retry_delay": "0", "timeout": "5", **settings}
    return {f"{ENV_PREFIX}{name.upper()}": value for name, value in values.items()}


def settings_for(port: int, **settings: Any) -> SmtpSettings:
    return SmtpSettings(**{"host": "127.0.0.1", "port": port, "security": "none",
                           "sender": SENDER, "retry_delay": 0, "timeout": 5, **settings})


def run_cli(db_url: str, inbox: Path, tmp_path: Path, *args: str,
            env: dict[str, str] | None = None, **notifications: Any
            ) -> tuple[Result, ImportSummary]:
    """``visitor-sync import --format json`` with only the given SMTP environment."""
    config = tmp_path / "import.json"
    config.write_text(json.dumps({"district_id": DISTRICT, "district_name": NAME,
                                  "notifications": notifications}))
    environment: dict[str, str | None] = {
        f"{ENV_PREFIX}{name.upper()}": None for name in SmtpSettings.model_fields}
    environment.update(env or {})
    result = CliRunner().invoke(main, [
        "import", "--source", str(inbox), "--db", db_url, "--config", str(config),
        "--quiet-period", "0", "--format", "json", *args], env=environment)
    assert result.exit_code == 0, (result.output, result.exception)
    return result, ImportSummary.model_validate_json(result.stdout)


def run_and_notify(engine: Engine, inbox: Path, smtp: SmtpSettings | None,
                   sleeps: list[float] | None = None, outbox: Path | None = None,
                   **config: Any) -> ImportSummary:
    """A real import, then :func:`notify` with the same configuration."""
    summary = make_importer(engine, inbox, **config).run()
    return notify(engine, summary, make_config(**config), smtp=smtp, outbox=outbox,
                  sleep=(sleeps if sleeps is not None else []).append)


def run_row(engine: Engine, run_id: str) -> tuple[bool, dict[str, Any]]:
    with engine.connect() as connection:
        row = connection.execute(select(ImportRun.report_sent, ImportRun.summary).where(
            ImportRun.id == run_id)).one()
    return row.report_sent, row.summary


def invitation_rows(engine: Engine) -> dict[str, tuple[bool, int, str | None]]:
    """email -> (sent, attempts, last_error)."""
    with engine.connect() as connection:
        rows = connection.execute(select(Invitation.email, Invitation.sent_at,
                                         Invitation.attempts, Invitation.last_error))
        return {row.email: (row.sent_at is not None, row.attempts, row.last_error)
                for row in rows}


class Html(HTMLParser):
    """The tags, tables (rows of cell texts) and headings of an HTML body."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.text: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.feed(source)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        self.text.append(data)


def bodies(message: EmailMessage) -> tuple[str, str]:
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and html is not None
    return plain.get_content(), html.get_content()


def attachment_rows(message: EmailMessage) -> list[dict[str, str]]:
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "errors.csv"
    assert attachment.get_content_type() == "text/csv"
    content = attachment.get_content()
    assert content.startswith("\ufeff")  # UTF-8 BOM: spreadsheets read names right
    return list(csv.DictReader(io.StringIO(content[1:], newline="")))


def reports(server: SmtpServer) -> list[EmailMessage]:
    return [item.message for item in server.received if item.message["X-Visitor-Sync-Run"]]


def invitations(server: SmtpServer) -> list[EmailMessage]:
    return [item.message for item in server.received if not item.message["X-Visitor-Sync-Run"]]


# -- the report ------------------------------------------------------------------------------


def test_report_over_smtp(db_url: str, inbox: Path, tmp_path: Path,
                          smtp_server: SmtpServer) -> None:
    """Subject, both bodies (escaped, capped with a note), all errors in a safe errors.csv."""
    write_students(inbox, good=3, bad=12, odd_columns=True)
    _, summary = run_cli(db_url, inbox, tmp_path, env=smtp_env(smtp_server.port),
                         recipients=ADMINS, max_listed_errors=5)
    assert (summary.report_email, summary.report_email_detail) == (ReportEmail.SENT, None)

    (received,) = smtp_server.received
    assert received.mail_from == "no-reply@visitor-sync.test"
    assert received.rcpt_tos == ADMINS
    message = received.message
    assert message["Subject"] == (f"[visitor-sync] {NAME}: import partial - 3 created, "
                                  "0 updated, 0 deactivated, 12 errors")
    assert message["From"] == SENDER and message["To"] == ", ".join(ADMINS)
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Visitor-Sync-Run"] == summary.run_id
    with database(db_url) as engine:
        stored = issues(engine, summary)
        sent, recorded = run_row(engine, summary.run_id)
        assert sent is True
        # reasons (cell values) are in the issue rows only, not in the run row or the output
        assert ImportSummary.model_validate(recorded) == summary
        assert summary.files[0].issues and not any(
            issue.reason for outcome in summary.files for issue in outcome.issues)
    assert len(stored) == 14  # 12 bad dates + 2 unknown columns (warnings)

    text, html = bodies(message)
    assert NAME in text and "9 more in errors.csv" in text
    assert "students.csv  applied  3        0        0          0            12" in text
    # HTML: every district value escaped; the parsed text gives them back verbatim
    assert "<script" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)" in html
    page = Html(html)
    assert "script" not in page.tags
    assert f"{NAME}: import partial" in page.text
    files, errors = page.tables
    assert files == [["file", "status", "created", "updated", "unchanged", "deactivated",
                      "rejected", "held", "errors"],
                     ["students.csv", "applied", "3", "0", "0", "0", "12", "0", "12"]]
    listed = [[issue.file, str(issue.line or ""), issue.column or "",
               issue.code + (" (warning)" if issue.severity is Severity.WARNING else ""),
               issue.reason] for issue in stored[:5]]
    assert errors == [["file", "line", "column", "error", "reason"], *listed]
    assert ["students.csv", "1", ODD_COLUMNS[1], "unknown_column (warning)"] in [
        row[:4] for row in errors]
    assert "9 more in errors.csv" in page.text

    rows = attachment_rows(message)
    assert [(row["file"], row["line"], row["column"], row["severity"], row["error"],
             row["reason"]) for row in rows] == [
        (csv_safe(issue.file), str(issue.line or ""), csv_safe(issue.column),
         issue.severity.value, issue.code, csv_safe(issue.reason)) for issue in stored]
    assert {row["column"] for row in rows if row["error"] == "unknown_column"} == {
        "'=SUM(A1)", ODD_COLUMNS[1]}
    assert not [cell for row in rows for cell in row.values()
                if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]


def test_report_of_held_and_rejected_files_names_them_escaped() -> None:
    """The message builder alone: held rows and reason, rejected files, the subject's counts."""
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    summary = ImportSummary(
        run_id="run-1", district_id=DISTRICT, result=RunResult.HELD, started_at=now,
        finished_at=now, files=[
            FileOutcome(file="students.csv", type="students", status=FileStatus.HELD,
                        rows_read=40, held_reason="would deactivate 60% of <students>"),
            FileOutcome(file="<b>x</b>.csv", status=FileStatus.REJECTED, errors=1)])
    problem = Issue(file="<b>x</b>.csv", code="unrecognised_file", reason="not known")
    message = report_message(summary, [problem], ADMINS, "North\r\nBcc: evil@example.org",
                             max_listed_errors=0)
    assert message["Subject"] == ("[visitor-sync] North Bcc: evil@example.org: import held - "
                                  "0 created, 0 updated, 0 deactivated, 1 errors, "
                                  "1 file rejected, 1 file held")
    assert message["Bcc"] is None
    text, html = bodies(message)
    assert "students.csv is held: would deactivate 60% of <students>" in text
    assert "1 more in errors.csv" in text
    page = Html(html)
    assert page.tags.count("table") == 1  # no errors listed at all (max 0)
    assert page.tables[0][1:] == [
        ["students.csv", "held", "0", "0", "0", "0", "0", "40", "0"],
        ["<b>x</b>.csv", "rejected", "0", "0", "0", "0", "0", "0", "1"]]
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;.csv" in html
    assert len(attachment_rows(message)) == 1


def test_report_of_a_run_that_only_waited_says_why_and_until_when() -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    reason = ("changed 3 s ago, within the quiet period of 60 s (it may still be "
              "uploading); the first run after 57 s reads it")
    summary = ImportSummary(
        run_id="run-1", district_id=DISTRICT, result=RunResult.WAITING, started_at=now,
        finished_at=now, files=[FileOutcome(file="students.csv", type="students",
                                            status=FileStatus.WAITING, waiting_reason=reason)])
    message = report_message(summary, [], ADMINS, "North")
    assert message["Subject"].startswith("[visitor-sync] North: import waiting - ")
    text, html = bodies(message)
    assert "none was read yet; the next run imports them" in text
    assert f"students.csv is waiting: {reason}" in text
    assert f"<b>students.csv</b> is waiting: {reason}" in html


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_report_over_tls_with_auth(db_url: str, inbox: Path, tmp_path: Path,
                                   certificates: Certificates, security: str) -> None:
    """STARTTLS (required by the server, with AUTH) and implicit TLS, trusting a private CA."""
    password = "s3cret pass"
    password_file = tmp_path / "smtp-password"
    password_file.write_text(password + "\n")
    starttls = security == "starttls"
    server = start_server(tls=certificates.server_context(), implicit_tls=not starttls,
                          credentials=("importer", password) if starttls else None)
    try:
        auth = {"username": "importer", "password_file": str(password_file)} if starttls else {}
        write_students(inbox, bad=1)
        _, summary = run_cli(db_url, inbox, tmp_path, env=smtp_env(
            server.port, security=security, ca_file=str(certificates.ca_file), **auth),
            recipients=ADMINS)
        assert summary.report_email is ReportEmail.SENT
        (received,) = server.received
        assert received.tls
        assert received.login == ("importer" if starttls else None)
        assert received.message["Subject"].startswith(f"[visitor-sync] {NAME}: import partial")
    finally:
        server.stop()


@pytest.mark.parametrize("problem", ["untrusted-certificate", "wrong-password", "no-starttls",
                                     "missing-password-file"])
def test_tls_and_auth_failures_are_reported_not_retried(
        db_url: str, inbox: Path, tmp_path: Path, certificates: Certificates,
        caplog: pytest.LogCaptureFixture, problem: str) -> None:
    """Nothing is ever sent in clear or to an unverified server; a refusal is not retried."""
    password = "right horse battery"
    password_file = tmp_path / "smtp-password"
    password_file.write_text("wrong staple" if problem == "wrong-password" else password)
    if problem == "missing-password-file":
        password_file = tmp_path / "not-mounted"
    server = (start_server() if problem == "no-starttls" else start_server(
        tls=certificates.server_context(), credentials=("importer", password)))
    settings = settings_for(server.port, security=SmtpSecurity.STARTTLS, username="importer",
                            password_file=password_file,
                            ca_file=None if problem == "untrusted-certificate"
                            else certificates.ca_file)
    sleeps: list[float] = []
    try:
        with database(db_url) as engine:
            write_students(inbox, bad=1)
            write_users(inbox)
            summary = run_and_notify(engine, inbox, settings, sleeps,
                                     notifications={"recipients": ADMINS})
            assert summary.report_email is ReportEmail.FAILED
            assert run_row(engine, summary.run_id)[0] is False
            # the server counts as down: invitations wait, untried
            assert set(invitation_rows(engine).values()) == {(False, 0, None)}
    finally:
        server.stop()
    detail = summary.report_email_detail or ""
    expected = {"untrusted-certificate": "SSLCertVerificationError",
                "wrong-password": "SMTPAuthenticationError: 535",
                "no-starttls": "SMTPNotSupportedError",
                "missing-password-file": "cannot read the SMTP password file"}[problem]
    assert expected in detail
    assert server.received == [] and sleeps == []
    for text in (detail, caplog.text, summary.model_dump_json()):
        assert "wrong staple" not in text and password not in text


# -- when to send ----------------------------------------------------------------------------


@pytest.mark.parametrize(("when", "errors", "sent"), [
    ("failure", True, True), ("failure", False, False), ("always", False, True),
    ("never", True, False)])
def test_when_the_report_is_sent(db_url: str, inbox: Path, smtp_server: SmtpServer,
                                 when: str, errors: bool, sent: bool) -> None:
    write_students(inbox, bad=2 if errors else 0)
    with database(db_url) as engine:
        summary = run_and_notify(engine, inbox, settings_for(smtp_server.port),
                                 notifications={"recipients": ADMINS, "when": when})
        assert run_row(engine, summary.run_id)[0] is sent
    assert summary.report_email is (ReportEmail.SENT if sent else ReportEmail.SKIPPED)
    assert len(smtp_server.received) == int(sent)
    if not sent:
        assert when in (summary.report_email_detail or "")


@pytest.mark.parametrize(("status", "errors", "attention"), [
    (FileStatus.APPLIED, 0, False), (FileStatus.WAITING, 0, False),
    (FileStatus.APPLIED, 1, True), (FileStatus.REJECTED, 1, True),
    (FileStatus.HELD, 0, True), (FileStatus.FAILED, 1, True)])
def test_failure_means_errors_rejected_or_held_files(status: FileStatus, errors: int,
                                                     attention: bool) -> None:
    now = datetime.now(UTC)
    summary = ImportSummary(run_id="r", district_id=DISTRICT, result=RunResult.SUCCESS,
                            started_at=now, finished_at=now, files=[
                                FileOutcome(file="a.csv", status=status, errors=errors,
                                            warnings=3)])
    assert summary.needs_attention is attention


def test_no_recipients_means_no_report(db_url: str, inbox: Path,
                                       smtp_server: SmtpServer) -> None:
    write_students(inbox, bad=1)
    with database(db_url) as engine:
        summary = run_and_notify(engine, inbox, settings_for(smtp_server.port))
    assert (summary.report_email, summary.report_email_detail) == (
        ReportEmail.SKIPPED, "no recipients (notifications.recipients)")
    assert smtp_server.received == []


# -- SMTP failures ---------------------------------------------------------------------------


def test_smtp_down_is_retried_reported_and_not_resent(
        db_url: str, inbox: Path, tmp_path: Path, smtp_server: SmtpServer,
        caplog: pytest.LogCaptureFixture) -> None:
    """Closed port: 3 tries, exit 0, the run row says not sent; the next run sends only its own."""
    write_students(inbox, good=3, bad=1)
    write_users(inbox)
    caplog.set_level(logging.WARNING, logger="visitor_sync")
    down = closed_port()
    _, first = run_cli(db_url, inbox, tmp_path, env=smtp_env(down, retry_delay="0.01"),
                       recipients=ADMINS)
    assert first.report_email is ReportEmail.FAILED
    detail = first.report_email_detail or ""
    assert "ConnectionRefusedError" in detail and "gave up after 3 attempts" in detail
    retries = [record for record in caplog.records if "SMTP attempt" in record.getMessage()]
    assert [record.getMessage().split(" failed")[0] for record in retries] == [
        "SMTP attempt 1/3 to 127.0.0.1", "SMTP attempt 2/3 to 127.0.0.1"]
    assert first.result is RunResult.PARTIAL  # imported all the same
    assert [outcome.created for outcome in first.files if outcome.file == "students.csv"] == [3]

    with database(db_url) as engine:
        sent, stored = run_row(engine, first.run_id)
        assert sent is False and stored["report_email"] == "failed"
        assert stored["report_email_detail"] == detail
        assert set(invitation_rows(engine).values()) == {(False, 0, None)}

    # SMTP is back; the inbox is empty: only this run's report (always) and the invitations
    _, second = run_cli(db_url, inbox, tmp_path, env=smtp_env(smtp_server.port),
                        recipients=ADMINS, when="always")
    assert second.report_email is ReportEmail.SENT and second.invitations_sent == 2
    assert [message["X-Visitor-Sync-Run"] for message in reports(smtp_server)] == [
        second.run_id]
    assert sorted(str(message["To"]) for message in invitations(smtp_server)) == [
        "ann@example.org", "bob@example.org"]
    with database(db_url) as engine:
        assert run_row(engine, first.run_id)[0] is False
        assert run_row(engine, second.run_id)[0] is True


def test_backoff_doubles_between_tries(db_url: str, inbox: Path) -> None:
    write_students(inbox, bad=1)
    sleeps: list[float] = []
    with database(db_url) as engine:
        summary = run_and_notify(engine, inbox, settings_for(
            closed_port(), attempts=4, retry_delay=0.5), sleeps,
            notifications={"recipients": ADMINS})
    assert sleeps == [0.5, 1.0, 2.0]
    assert summary.report_email is ReportEmail.FAILED
    assert "gave up after 4 attempts" in (summary.report_email_detail or "")


def test_a_temporary_refusal_is_retried_and_delivered_once(
        db_url: str, inbox: Path, smtp_server: SmtpServer) -> None:
    smtp_server.recorder.fail_data = 2  # 451 twice, then accepted
    write_students(inbox, bad=1)
    sleeps: list[float] = []
    with database(db_url) as engine:
        summary = run_and_notify(engine, inbox, settings_for(smtp_server.port, retry_delay=0.01),
                                 sleeps, notifications={"recipients": ADMINS})
        assert run_row(engine, summary.run_id)[0] is True
    assert summary.report_email is ReportEmail.SENT
    assert sleeps == [0.01, 0.02]
    assert len(smtp_server.received) == 1


# -- invitations -----------------------------------------------------------------------------


def test_each_new_account_is_invited_once(db_url: str, inbox: Path, tmp_path: Path,
                                          smtp_server: SmtpServer) -> None:
    env = smtp_env(smtp_server.port)
    write_users(inbox)
    _, first = run_cli(db_url, inbox, tmp_path, env=env, recipients=ADMINS)
    assert (first.report_email, first.invitations_sent) == (ReportEmail.SKIPPED, 2)
    welcome = {str(message["To"]): message for message in invitations(smtp_server)}
    assert sorted(welcome) == ["ann@example.org", "bob@example.org"]  # Cy is inactive
    ann = welcome["ann@example.org"]
    assert ann["Subject"] == f"Welcome to {NAME} visitor management"
    assert ann["From"] == SENDER
    text, html = bodies(ann)
    assert "Hello Ann Admin" in text and f"{NAME} has created" in text
    assert "with the role administrator" in text
    assert "with the role teacher" in bodies(welcome["bob@example.org"])[0]
    assert "<script" not in html and NAME in "".join(Html(html).text)

    write_users(inbox, [*USERS, ["dan@example.org", "Dan New", "site_admin", "0101", "1"]])
    _, second = run_cli(db_url, inbox, tmp_path, env=env, recipients=ADMINS)
    _, third = run_cli(db_url, inbox, tmp_path, env=env, recipients=ADMINS)
    assert (second.invitations_sent, third.invitations_sent) == (1, 0)
    sent_to = [str(message["To"]) for message in invitations(smtp_server)]
    assert sorted(sent_to) == ["ann@example.org", "bob@example.org", "dan@example.org"]
    assert "with the role site administrator" in bodies(invitations(smtp_server)[-1])[0]
    with database(db_url) as engine:
        assert invitation_rows(engine) == {email: (True, 1, None) for email in sent_to}


def test_a_refused_invitation_is_tried_again_next_run(
        db_url: str, inbox: Path, smtp_server: SmtpServer,
        caplog: pytest.LogCaptureFixture) -> None:
    smtp_server.recorder.refuse = {"bob@example.org"}
    write_users(inbox)
    with database(db_url) as engine:
        first = run_and_notify(engine, inbox, settings_for(smtp_server.port))
        assert (first.invitations_sent, first.invitations_failed) == (1, 1)
        rows = invitation_rows(engine)
        assert rows["ann@example.org"] == (True, 1, None)
        sent, attempts, error = rows["bob@example.org"]
        assert (sent, attempts) == (False, 1) and "550" in (error or "")
        # the server's reply quotes the address (a users.csv value): the log must not
        assert "bob@example.org" in (error or "")
        logged = [record.getMessage() for record in caplog.records
                  if "not sent" in record.getMessage()]
        assert logged and not any("bob@example.org" in line.lower() for line in logged)

        smtp_server.recorder.refuse = set()
        second = run_and_notify(engine, inbox, settings_for(smtp_server.port))
        assert (second.invitations_sent, second.invitations_failed) == (1, 0)
        assert invitation_rows(engine)["bob@example.org"] == (True, 2, None)
    assert [str(message["To"]) for message in invitations(smtp_server)] == [
        "ann@example.org", "bob@example.org"]


# -- without SMTP ----------------------------------------------------------------------------


def test_without_smtp_the_outbox_gets_eml_files(db_url: str, inbox: Path,
                                                tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    write_students(inbox, bad=1)
    write_users(inbox)
    _, first = run_cli(db_url, inbox, tmp_path, "--outbox", str(outbox),
                       "--recipient", "me@district.example.org")
    assert (first.report_email, first.invitations_sent) == (ReportEmail.WRITTEN, 2)
    report = outbox / f"report-{first.run_id}.eml"
    names = sorted(path.name for path in outbox.iterdir())
    assert len(names) == 3 and report.name in names
    message = _read_eml(report)
    assert message["To"] == "me@district.example.org"
    assert message["Subject"].startswith(f"[visitor-sync] {NAME}: import partial")
    assert len(attachment_rows(message)) == 1
    invited = sorted(str(_read_eml(outbox / name)["To"]) for name in names
                     if name.startswith("invitation-"))
    assert invited == ["ann@example.org", "bob@example.org"]
    with database(db_url) as engine:
        assert run_row(engine, first.run_id)[0] is False  # written, not sent
        assert {sent for sent, _, _ in invitation_rows(engine).values()} == {True}

    _, second = run_cli(db_url, inbox, tmp_path, "--outbox", str(outbox))
    assert (second.report_email, second.invitations_sent) == (ReportEmail.SKIPPED, 0)
    assert sorted(path.name for path in outbox.iterdir()) == names


def test_with_neither_smtp_nor_outbox_nothing_is_lost(db_url: str, inbox: Path,
                                                      tmp_path: Path) -> None:
    write_students(inbox, bad=1)
    write_users(inbox)
    _, summary = run_cli(db_url, inbox, tmp_path, recipients=ADMINS)
    assert (summary.report_email, summary.report_email_detail) == (
        ReportEmail.SKIPPED, "no SMTP settings and no outbox: nothing was sent")
    with database(db_url) as engine:
        assert set(invitation_rows(engine).values()) == {(False, 0, None)}  # still owed
        assert run_row(engine, summary.run_id)[1]["report_email"] == "skipped"
        assert len(issues(engine, summary)) == 1  # the report stays in the database


def test_demo_writes_the_report_and_invitations(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--workdir", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    outbox = tmp_path / "demo" / "outbox"
    (report,) = outbox.glob("report-*.eml")
    message = _read_eml(report)
    assert message["Subject"].startswith("[visitor-sync] Springfield Public Schools: import ")
    assert message["To"] == "sis-admin@springfield.example.org"
    errors = int(message["Subject"].split(", ")[-1].split()[0])
    assert sum(row["severity"] == "error" for row in attachment_rows(message)) == errors > 0
    assert len(list(outbox.glob("invitation-*.eml"))) == 4
    assert "report e-mail: written" in result.output


def _read_eml(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


# -- settings --------------------------------------------------------------------------------


def test_smtp_settings_come_from_the_environment(tmp_path: Path) -> None:
    assert SmtpSettings.from_env({}) is None
    assert SmtpSettings.from_env({f"{ENV_PREFIX}HOST": ""}) is None  # empty = unset
    base = {f"{ENV_PREFIX}HOST": "mail.example.org", f"{ENV_PREFIX}SENDER": SENDER}
    ports = {security: SmtpSettings.from_env({**base, f"{ENV_PREFIX}SECURITY": security})
             for security in ("starttls", "tls", "none")}
    assert {name: settings.effective_port for name, settings in ports.items()
            if settings is not None} == {"starttls": 587, "tls": 465, "none": 25}
    default = SmtpSettings.from_env(base)
    assert default is not None
    assert (default.security, default.attempts, default.timeout) == (
        SmtpSecurity.STARTTLS, 3, 30)
    assert list(default.delays()) == [2, 4]


@pytest.mark.parametrize(("extra", "message"), [
    ({"PASSWORD": "hunter2"}, "VISITOR_SYNC_SMTP_PASSWORD: Extra inputs are not permitted"),
    ({"SECURITY": "none", "USERNAME": "u", "PASSWORD_FILE": "/run/p"}, "unencrypted"),
    ({"USERNAME": "u"}, "username and password_file go together"),
    ({"SENDER": "nobody"}, "is not an e-mail address"),
    ({"PORT": "0"}, "VISITOR_SYNC_SMTP_PORT"),
])
def test_bad_smtp_settings_are_refused_without_echoing_secrets(
        extra: dict[str, str], message: str) -> None:
    environ = {f"{ENV_PREFIX}HOST": "mail.example.org", f"{ENV_PREFIX}SENDER": SENDER,
               **{f"{ENV_PREFIX}{name}": value for name, value in extra.items()}}
    with pytest.raises(SmtpSettingsError, match=message) as raised:
        SmtpSettings.from_env(environ)
    assert "hunter2" not in str(raised.value)


def test_import_refuses_bad_smtp_settings_before_touching_files(tmp_path: Path,
                                                                inbox: Path) -> None:
    write_students(inbox)
    result = CliRunner().invoke(main, [
        "import", "--district", DISTRICT, "--source", str(inbox),
        "--db", f"sqlite:///{tmp_path}/x.db"], env={f"{ENV_PREFIX}HOST": "mail.example.org"})
    assert result.exit_code == 2
    assert "VISITOR_SYNC_SMTP_SENDER" in result.output
    assert (inbox / "students.csv").exists()
