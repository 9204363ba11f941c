"""``visitor-sync``: validate files, run an import, or try it all with the demo."""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click
from pydantic import ValidationError
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from visitor_sync.config import ImportConfig, Notifications, NotifyWhen, PickupDefault
from visitor_sync.db.database import SchemaTooNew, connect, migrate
from visitor_sync.exits import (
    EXIT_BUSY,
    EXIT_DATABASE,
    EXIT_TERMINATED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)
from visitor_sync.failures import describe_failure, report_crash
from visitor_sync.issues import Severity
from visitor_sync.locking import DistrictBusy
from visitor_sync.notify import SmtpSettings, SmtpSettingsError, notify
from visitor_sync.pipeline import ALL_HELD, Importer, pending_held, stored_issues
from visitor_sync.report import describe, render_text
from visitor_sync.samples import write_district
from visitor_sync.sftp.factory import SourceConfigError, open_source
from visitor_sync.sftp.source import SftpUnavailable
from visitor_sync.sources import FileList, LocalFolderSource
from visitor_sync.summary import TERMINATION_MESSAGE_LIMIT, ImportSummary
from visitor_sync.termination import Terminated, stop_on_sigterm

if TYPE_CHECKING:
    from sqlalchemy import Engine


class TerminalProgress:
    """A rich progress bar per file, shown only when stderr is a terminal."""

    def __init__(self) -> None:
        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                             TimeRemainingColumn(), transient=True)
        self._task = None

    def file_started(self, name: str, total_bytes: int) -> None:
        self._bar.start()
        self._task = self._bar.add_task(name, total=total_bytes)

    def file_advanced(self, bytes_done: int) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=bytes_done)

    def file_finished(self) -> None:
        self._bar.stop()
        self._task = None


def _progress() -> TerminalProgress | None:
    return TerminalProgress() if sys.stderr.isatty() else None


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log what happens, to stderr.")
def main(verbose: bool) -> None:
    """Sync school district roster files into the visitor-management database."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.excepthook = report_crash


@main.command()
@click.option("--format", "output", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
def validate(output: str, files: tuple[Path, ...]) -> None:
    """Check FILES against the import formats without touching any database.

    Exit status 0 when no file has errors (warnings allowed), 1 otherwise.
    References (Student ID, School ID) are checked against the files given.
    """
    with tempfile.TemporaryDirectory(prefix="visitor-sync-validate-") as scratch:
        engine = connect(f"sqlite:///{scratch}/scratch.db")
        migrate(engine)
        config = ImportConfig(district_id="validate", quiet_period_seconds=0)
        summary = Importer.for_validation(engine, FileList(list(files)), config,
                                          _progress()).run()
        issues = list(stored_issues(engine, summary.run_id))
        engine.dispose()
    if output == "json":
        click.echo(json.dumps([issue.model_dump(mode="json") for issue in issues], indent=2))
    else:
        for issue in issues:
            click.echo(f"{issue.file}: {describe(issue)}")
        click.echo(f"{len(files)} file(s) checked: "
                   f"{sum(i.severity is Severity.ERROR for i in issues):,} error(s), "
                   f"{sum(i.severity is Severity.WARNING for i in issues):,} warning(s)")
    sys.exit(1 if any(issue.severity is Severity.ERROR for issue in issues) else 0)


@main.command("import")
@click.option("--district", "district_id", help="District id (or from --config).")
@click.option("--source", required=True, metavar="DIR|sftp://USER@HOST[:PORT]/PATH",
              help="The district's inbox: a folder, or its SFTP drop box.")
@click.option("--sftp-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Private key file for an sftp:// source.")
@click.option("--sftp-password-file",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File holding the password for an sftp:// source "
                   "(or $VISITOR_SYNC_SFTP_PASSWORD).")
@click.option("--known-hosts", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="known_hosts file pinning the SFTP server's host key (required for sftp://).")
@click.option("--db", "db_url", envvar="VISITOR_SYNC_DB", required=True,
              help="SQLAlchemy URL (or $VISITOR_SYNC_DB), e.g. postgresql+psycopg://... "
                   "or sqlite:///visitor-sync.db")
@click.option("--config", "config_file", type=click.Path(exists=True, path_type=Path),
              help="ImportConfig JSON document (flags override it).")
@click.option("--quiet-period", type=int, help="Seconds a file must be unchanged (default 60).")
@click.option("--max-deactivate-percent", type=float, help="Safety hold threshold (default 10).")
@click.option("--pickup-default", type=click.Choice([choice.value for choice in PickupDefault]),
              help="Pickup permission of the links a visitors file with no pickup column "
                   "creates (default allow).")
@click.option("--approve-held", is_flag=False, flag_value=ALL_HELD, default=None,
              metavar="[RUN_ID]",
              help="Apply held files: those of RUN_ID, or all pending ones when no id is given.")
@click.option("--outbox", type=click.Path(file_okay=False, path_type=Path),
              help="Without SMTP ($VISITOR_SYNC_SMTP_*), write the e-mails here as .eml.")
@click.option("--recipient", "recipients", multiple=True,
              help="Report e-mail recipient, besides the configured notifications.recipients.")
@click.option("--format", "output", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--termination-log", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the summary (compact JSON under 4 KiB) here, or why the run "
                   "could not happen; in a Job: /dev/termination-log, read by the operator.")
def import_(district_id: str | None, source: str, sftp_key: Path | None,
            sftp_password_file: Path | None, known_hosts: Path | None, db_url: str,
            config_file: Path | None, quiet_period: int | None,
            max_deactivate_percent: float | None, pickup_default: str | None,
            approve_held: str | None,
            outbox: Path | None, recipients: tuple[str, ...], output: str,
            termination_log: Path | None) -> None:
    """Import the files waiting in a district's inbox.

    Afterwards the report and pending invitations are e-mailed (SMTP settings from
    $VISITOR_SYNC_SMTP_*) or, without SMTP, written to --outbox; a mail problem is
    reported in the summary and never changes the exit status.

    The output (and the termination log) names files, lines, columns and error
    codes, never the district's values: the reasons are in the report e-mail and
    the database (and `visitor-sync validate` shows them for files at hand).

    Exit status 0 when the run completed, whatever the data said; otherwise 1: the
    database failed; 2: usage error (options, ImportConfig); 69: the SFTP server could
    not be reached, was not trusted or dropped the link; 75: another run holds the
    district; 143: stopped by SIGTERM (the file in progress rolled back).
    """
    config = _import_config(config_file, termination_log, district_id=district_id,
                            quiet_period_seconds=quiet_period,
                            max_deactivate_percent=max_deactivate_percent,
                            pickup_default=pickup_default)
    if approve_held is None:
        approve_held = config.approve_held_run
    try:
        smtp = SmtpSettings.from_env()
    except SmtpSettingsError as error:
        _give_up(f"usage error: {error}", EXIT_USAGE, termination_log)
    try:
        with stop_on_sigterm():
            engine = _connect(db_url, termination_log)
            migrate(engine)
            if approve_held not in (None, ALL_HELD):
                _check_approval(engine, config.district_id, approve_held, termination_log)
            with open_source(source, key_file=sftp_key, password_file=sftp_password_file,
                             known_hosts=known_hosts) as inbox:
                summary = Importer(engine, inbox, config, approve_held=approve_held,
                                   progress=_progress()).run()
            summary = notify(engine, summary, config, smtp=smtp, outbox=outbox,
                             recipients=recipients)
    except SourceConfigError as error:
        _give_up(f"usage error: {error}", EXIT_USAGE, termination_log)
    except DistrictBusy as busy:
        _give_up(f"{busy}", EXIT_BUSY, termination_log)
    except SftpUnavailable as error:
        _give_up(f"SFTP unavailable: {error}", EXIT_UNAVAILABLE, termination_log)
    except SchemaTooNew as error:
        _give_up(f"database_error: {error}", EXIT_DATABASE, termination_log)
    except SQLAlchemyError as error:
        _give_up(f"database_error: {describe_failure(error, make_url(db_url))}", EXIT_DATABASE,
                 termination_log)
    except Terminated as stop:
        if stop.summary is None:
            _give_up("stopped by SIGTERM before the run started", EXIT_TERMINATED,
                     termination_log)
        _report(stop.summary.without_values(), output)
        _give_up("stopped by SIGTERM: the file in progress was rolled back and stays for "
                 "the next run", EXIT_TERMINATED, termination_log,
                 stop.summary.termination_message())
    _report(summary.without_values(), output)  # a Job's output is its pod's log
    _write_termination_log(termination_log, summary.termination_message())
    if summary.infrastructure_failed:
        sys.exit(EXIT_DATABASE)


def _connect(db_url: str, termination_log: Path | None) -> Engine:
    try:
        return connect(db_url)
    except OSError as error:  # SQLite: the database's folder cannot be made
        _give_up(f"database_error: {describe_failure(error, make_url(db_url))}",
                 EXIT_DATABASE, termination_log)


def _import_config(config_file: Path | None, termination_log: Path | None,
                   **flags: object) -> ImportConfig:
    """The run's ImportConfig: the --config document, overridden by the flags given;
    a broken one is a usage error (exit 2: the Job fails at once, retrying cannot help)."""
    settings: object = {}
    if config_file is not None:
        try:
            settings = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            _give_up(f"usage error: cannot read ImportConfig {config_file}: {error}",
                     EXIT_USAGE, termination_log)
    if not isinstance(settings, dict):
        _give_up(f"usage error: ImportConfig {config_file} is not a JSON object", EXIT_USAGE,
                 termination_log)
    settings.update({key: value for key, value in flags.items() if value is not None})
    if "district_id" not in settings:
        _give_up("usage error: --district is required (or district_id in --config)",
                 EXIT_USAGE, termination_log)
    try:
        return ImportConfig.model_validate(settings)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, problem['loc'])) or 'document'}: {problem['msg']}"
            for problem in error.errors(include_url=False))
        _give_up(f"usage error: invalid ImportConfig: {problems}", EXIT_USAGE, termination_log)


def _check_approval(engine: Engine, district_id: str, run_id: str,
                    termination_log: Path | None) -> None:
    """Stop before importing when the run to approve holds nothing: a mistyped id would
    otherwise pass for an approval."""
    held = pending_held(engine, district_id)
    if any(file.run_id == run_id for file in held):
        return
    pending = ", ".join(f"{file.file} held by run {file.run_id}" for file in held) or "none"
    _give_up(f"run {run_id} holds no file of district {district_id} awaiting approval, so "
             f"nothing was approved or imported (files awaiting approval: {pending})",
             EXIT_USAGE, termination_log)


def _give_up(reason: str, status: int, termination_log: Path | None,
             message: str | None = None) -> NoReturn:
    """End a run that could not happen (or was stopped), saying why in one line on
    stderr, and ``message`` (default: the reason) in the termination log."""
    click.echo(f"visitor-sync: {reason}", err=True)
    _write_termination_log(termination_log, message or reason[:TERMINATION_MESSAGE_LIMIT])
    sys.exit(status)


def _write_termination_log(path: Path | None, message: str) -> None:
    """Best effort: the run's outcome is already recorded in the database, so a
    termination log that cannot be written is a warning, never a failed run."""
    if path is None:
        return
    try:
        path.write_text(message, encoding="utf-8")
    except OSError as error:
        click.echo(f"visitor-sync: warning: cannot write the termination log {path}: "
                   f"{error.strerror or error}", err=True)


def _report(summary: ImportSummary, output: str) -> None:
    if output == "json":
        click.echo(summary.model_dump_json(indent=2))
    else:
        click.echo(render_text(summary))


@main.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("visitor-sync-demo"), show_default=True,
              help="Where the inbox, the SQLite database and the outbox go.")
def demo(workdir: Path) -> None:
    """Import realistic sample files for a sample district into SQLite, end to end."""
    inbox, outbox = workdir / "inbox", workdir / "outbox"
    written = write_district(inbox)
    click.echo(f"wrote {len(written)} sample files to {inbox}/")
    engine = connect(f"sqlite:///{workdir / 'visitor-sync.db'}")
    migrate(engine)
    config = ImportConfig(district_id="springfield", district_name="Springfield Public Schools",
                          quiet_period_seconds=0, notifications=Notifications(
                              recipients=["sis-admin@springfield.example.org"],
                              when=NotifyWhen.ALWAYS))
    summary = Importer(engine, LocalFolderSource(inbox), config, trigger="demo",
                       progress=_progress()).run()
    summary = notify(engine, summary, config, smtp=None, outbox=outbox)
    click.echo(render_text(summary, issues_per_file=3))
    click.echo(f"\ndatabase: {workdir / 'visitor-sync.db'}\n"
               f"report e-mail: {outbox / f'report-{summary.run_id}.eml'}\n"
               f"invitation e-mails: {outbox}/invitation-*.eml")


if __name__ == "__main__":
    main()
