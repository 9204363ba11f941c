"""``visitor-sync``: validate files, run an import, or try it all with the demo."""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path

import click

# Only what the commands' options need is imported here: the database layer (alembic,
# SQLAlchemy), paramiko and rich cost seconds of start-up, which `--help`, `operator`
# and `validate` should not pay for what they never use. Each command imports its own.
from visitor_sync.config import ALL_HELD, PickupDefault


class TerminalProgress:
    """A rich progress bar per file, shown only when stderr is a terminal."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

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
    from visitor_sync.failures import report_crash

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
    from visitor_sync.config import ImportConfig
    from visitor_sync.db.database import connect, migrate
    from visitor_sync.issues import Severity
    from visitor_sync.pipeline import Importer, stored_issues
    from visitor_sync.report import describe
    from visitor_sync.sources import FileList

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
    from visitor_sync.importrun import run_import

    run_import(district_id=district_id, source=source, sftp_key=sftp_key,
               sftp_password_file=sftp_password_file, known_hosts=known_hosts, db_url=db_url,
               config_file=config_file, quiet_period=quiet_period,
               max_deactivate_percent=max_deactivate_percent, pickup_default=pickup_default,
               approve_held=approve_held, outbox=outbox, recipients=recipients, output=output,
               termination_log=termination_log, progress=_progress())


@main.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("visitor-sync-demo"), show_default=True,
              help="Where the inbox, the SQLite database and the outbox go.")
def demo(workdir: Path) -> None:
    """Import realistic sample files for a sample district into SQLite, end to end."""
    from visitor_sync.config import ImportConfig, Notifications, NotifyWhen
    from visitor_sync.db.database import connect, migrate
    from visitor_sync.notify import notify
    from visitor_sync.pipeline import Importer
    from visitor_sync.report import render_text
    from visitor_sync.samples import write_district
    from visitor_sync.sources import LocalFolderSource

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
