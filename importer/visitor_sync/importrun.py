"""One ``visitor-sync import``: the run, its report, and the exit-code contract.

Its own module so that the CLI's other commands (and ``--help``) do not load the
database layer, SFTP and e-mail to start. The exit statuses are in :mod:`visitor_sync.exits`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NoReturn

import click
from pydantic import ValidationError
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from visitor_sync.config import ALL_HELD, ImportConfig
from visitor_sync.db.database import SchemaTooNew, connect, migrate
from visitor_sync.exits import (
    EXIT_BUSY,
    EXIT_DATABASE,
    EXIT_TERMINATED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)
from visitor_sync.failures import describe_failure
from visitor_sync.locking import DistrictBusy
from visitor_sync.notify import SmtpSettings, SmtpSettingsError, notify
from visitor_sync.pipeline import Importer, Progress, pending_held
from visitor_sync.report import render_text
from visitor_sync.sftp.factory import SourceConfigError, open_source
from visitor_sync.sftp.source import SftpUnavailable
from visitor_sync.summary import TERMINATION_MESSAGE_LIMIT, ImportSummary
from visitor_sync.termination import Terminated, stop_on_sigterm


def run_import(*, district_id: str | None, source: str, sftp_key: Path | None,
               sftp_password_file: Path | None, known_hosts: Path | None, db_url: str,
               config_file: Path | None, quiet_period: int | None,
               max_deactivate_percent: float | None, pickup_default: str | None,
               approve_held: str | None, outbox: Path | None, recipients: tuple[str, ...],
               output: str, termination_log: Path | None, progress: Progress | None) -> None:
    """The ``import`` command (see its help); exits with the contract's status."""
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
                                   progress=progress).run()
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
