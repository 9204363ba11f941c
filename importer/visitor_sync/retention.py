"""Retention: what the importer no longer needs goes, at the end of every run.

In the database, in one transaction of its own (a failure leaves everything for the
next run and never touches the run's outcome): deactivated records past
``deactivated_record_days``, error reasons (which quote the district's values) past
``error_text_days``, and runs past ``run_history_days`` with everything recorded
about them. In the drop box: held-area files no pending held record refers to, and
leftovers (temporary upload names, sub-folders) untouched for
``drop_box_leftover_days``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from sqlalchemy import Connection, Select, delete, exists, false, select, update

from visitor_sync.config import Retention
from visitor_sync.db.schema import (
    RECORD_TABLES,
    HeldFile,
    ImportFileResult,
    ImportIssue,
    ImportRun,
    Invitation,
)
from visitor_sync.sources import Source

#: Runs deleted per statement (bounded IN lists).
CHUNK = 500


@dataclass
class Purged:
    """What one application of the retention settings removed."""

    records: int = 0
    error_texts: int = 0
    runs: int = 0
    invitations: int = 0
    held_files: int = 0
    leftovers: int = 0

    def __str__(self) -> str:
        return ", ".join(f"{getattr(self, field.name)} {field.name.replace('_', ' ')}"
                         for field in fields(self))


def purge_database(connection: Connection, district_id: str, retention: Retention,
                   now: datetime) -> Purged:
    """Delete and erase what the retention settings no longer keep, for one district."""
    purged = Purged()
    deactivated_before = now - timedelta(days=retention.deactivated_record_days)
    for table in RECORD_TABLES.values():
        purged.records += connection.execute(delete(table).where(
            table.c.district_id == district_id, table.c.active == false(),
            table.c.deactivated_at < deactivated_before)).rowcount

    def results_of(runs: Select[tuple[str]] | list[str]) -> Select[tuple[int]]:
        return select(ImportFileResult.id).where(ImportFileResult.run_id.in_(runs))

    texts_before = now - timedelta(days=retention.error_text_days)
    runs_with_old_texts = select(ImportRun.id).where(ImportRun.district_id == district_id,
                                                     ImportRun.started_at < texts_before)
    purged.error_texts = connection.execute(update(ImportIssue).where(
        ImportIssue.file_result_id.in_(results_of(runs_with_old_texts)),
        ImportIssue.reason != "").values(reason="")).rowcount
    purged.error_texts += connection.execute(update(Invitation).where(
        Invitation.district_id == district_id, Invitation.queued_at < texts_before,
        Invitation.last_error.is_not(None)).values(last_error=None)).rowcount

    history_before = now - timedelta(days=retention.run_history_days)
    old_runs = select(ImportRun.id).where(
        ImportRun.district_id == district_id, ImportRun.started_at < history_before,
        ImportRun.result != "running",
        ~exists().where(HeldFile.run_id == ImportRun.id, HeldFile.state == "pending"))
    expired = list(connection.scalars(old_runs))
    for start in range(0, len(expired), CHUNK):
        runs = expired[start:start + CHUNK]
        connection.execute(delete(ImportIssue).where(
            ImportIssue.file_result_id.in_(results_of(runs))))
        connection.execute(delete(ImportFileResult).where(ImportFileResult.run_id.in_(runs)))
        connection.execute(delete(HeldFile).where(HeldFile.run_id.in_(runs)))
        purged.runs += connection.execute(delete(ImportRun).where(
            ImportRun.id.in_(runs))).rowcount
    purged.invitations = connection.execute(delete(Invitation).where(
        Invitation.district_id == district_id, Invitation.sent_at.is_not(None),
        Invitation.queued_at < history_before)).rowcount
    return purged


def sweep_drop_box(source: Source, pending_locations: set[str], retention: Retention,
                   now: datetime, purged: Purged) -> None:
    """Remove held-area files no pending held record refers to, and old leftovers."""
    for location in source.held_locations():
        if location not in pending_locations:
            source.discard_held(location)
            purged.held_files += 1
    cutoff = (now - timedelta(days=retention.drop_box_leftover_days)).timestamp()
    for leftover in source.leftovers(cutoff):
        source.remove_leftover(leftover)
        purged.leftovers += 1
