"""One import run: every ready file of a district validated, applied and accounted for.

Order of a run: take the district lock, expire old held files, list the
inbox, then per file (dependencies first: students before visitors) one
transaction that stages, checks, plans and applies it *and* records its
outcome, and only after that commit remove the file (or move it to the held
area). A crash at any point leaves the database as before the file and the
file where it was.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, cast

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from visitor_sync import checks
from visitor_sync.config import ALL_HELD, ImportConfig
from visitor_sync.csvfile import CsvTable, FileFacts, inspect_file
from visitor_sync.db.schema import (
    District,
    HeldFile,
    ImportFileResult,
    ImportIssue,
    ImportRun,
    SyncedRecord,
)
from visitor_sync.failures import describe_failure, frames
from visitor_sync.filetypes import by_header, file_type_for, format_named, provided_kinds
from visitor_sync.filetypes.base import FileType
from visitor_sync.issuelog import IssueLog
from visitor_sync.issues import FileRejected, Issue
from visitor_sync.locking import district_lock
from visitor_sync.planning import Work, classify, in_run_order, kind_of, member_types
from visitor_sync.reconcile import Counts, TargetSync
from visitor_sync.rejections import RejectedRecords
from visitor_sync.retention import purge_database, sweep_drop_box
from visitor_sync.safety import absent_field_defaults
from visitor_sync.sources import (
    FileChanged,
    Inbox,
    Source,
    SourceUnavailable,
    Waiting,
    held_location,
    ready,
)
from visitor_sync.staging import Stage
from visitor_sync.summary import (
    FileOutcome,
    FileStatus,
    ImportSummary,
    PendingHeld,
    RunResult,
    run_result,
)
from visitor_sync.termination import (
    Terminated,
    deferred,
    raise_if_stopped_by,
    stop_if_asked,
)
from visitor_sync.validation import Member, RowValidator, csv_member

log = logging.getLogger(__name__)

class Progress(Protocol):
    """Receives progress of long files (a terminal progress bar, or nothing)."""

    def file_started(self, name: str, total_bytes: int) -> None: ...
    def file_advanced(self, bytes_done: int) -> None: ...
    def file_finished(self) -> None: ...


class Importer:
    """Runs imports for one district from one source into one database.

    :meth:`for_validation` makes a run that applies into a scratch database,
    never touches the files, and checks references only against types present
    in the run.
    """

    def __init__(self, engine: Engine, source: Source, config: ImportConfig, *,
                 approve_held: str | None = None, trigger: str = "manual",
                 progress: Progress | None = None) -> None:
        self.engine = engine
        self.source: Inbox = source
        self._drop_box: Source | None = source
        self.config = config
        self.district_id = config.district_id
        self.approve_held = approve_held
        self.trigger = trigger
        self.progress = progress
        self.run_id = str(uuid.uuid4())
        self.waiting: list[Waiting] = []
        self._file_started = 0.0
        #: the types of the tables this run applies
        self._present: set[FileType] = set()
        #: rows earlier files of the run rejected, to explain references to them
        self._rejected = RejectedRecords()
        #: kinds an earlier file of the run already provided besides its own (Clever's
        #: students.csv provides visitors), with that file's name
        self._provided: dict[str, str] = {}

    @classmethod
    def for_validation(cls, scratch: Engine, inbox: Inbox, config: ImportConfig,
                       progress: Progress | None = None) -> Importer:
        importer = cls(scratch, cast(Source, inbox), config, trigger="validate",
                       progress=progress)
        importer._drop_box = None
        return importer

    @property
    def validate_only(self) -> bool:
        return self._drop_box is None

    def _filled_by_run(self, model: type) -> bool:
        """Whether a file of this run fills the table of ``model``."""
        return any(target.model is model
                   for file_type in self._present for target in file_type.targets)

    def _needs_applying(self, file_type: FileType) -> bool:
        """Validation applies a file only when another file of the run refers to its records."""
        models = {target.model for target in file_type.targets}
        return not self.validate_only or any(
            reference.model in models
            for present in self._present for reference in present.references)

    @property
    def drop_box(self) -> Source:
        assert self._drop_box is not None, "a validation run never changes its files"
        return self._drop_box

    # -- the run ------------------------------------------------------------------------

    def run(self) -> ImportSummary:
        started = datetime.now(UTC)
        self._ensure_district(started)
        with district_lock(self.engine, self.district_id) as lock:
            with self.engine.begin() as connection:
                # With the lock held, a run still marked running died mid-way.
                connection.execute(update(ImportRun).where(
                    ImportRun.district_id == self.district_id, ImportRun.result == "running")
                    .values(result="aborted", finished_at=started))
                connection.execute(insert(ImportRun).values(
                    id=self.run_id, district_id=self.district_id, started_at=started,
                    result="running", trigger=self.trigger))
            outcomes: list[FileOutcome] = []
            left: list[Work] = []
            try:
                if not self.validate_only:
                    self._expire_held(started)
                left = self._plan()
                self._present = {member for item in left if item.rejection is None
                                 for member in member_types(item.file_type)}
                while left:
                    outcomes += self._process(left[0])
                    left.pop(0)
                    stop_if_asked()  # a SIGTERM that came while the file was being removed
                    lock.check()
            except Terminated as stop:
                stop.summary = self._stopped(started, outcomes, left)
                raise
            summary = self._finish(started, outcomes)
            if not self.validate_only:
                self._apply_retention()
            return summary

    def _finish(self, started: datetime, outcomes: list[FileOutcome],
                result: RunResult | None = None) -> ImportSummary:
        """The run's summary, recorded on its run row."""
        outcomes = outcomes + [_waiting(waiting.file.name, waiting.reason)
                               for waiting in self.waiting]
        held = pending_held(self.engine, self.district_id)
        summary = ImportSummary(run_id=self.run_id, district_id=self.district_id,
                                result=result or run_result(outcomes), started_at=started,
                                finished_at=datetime.now(UTC), files=outcomes,
                                held_pending=len(held), pending_held=held,
                                oldest_held_at=min((file.held_at for file in held),
                                                   default=None))
        with self.engine.begin() as connection:
            connection.execute(update(ImportRun).where(ImportRun.id == self.run_id).values(
                finished_at=summary.finished_at, result=summary.result.value,
                summary=summary.without_values().model_dump(mode="json")))
        return summary

    def _stopped(self, started: datetime, outcomes: list[FileOutcome],
                 left: list[Work]) -> ImportSummary:
        """What a run stopped by SIGTERM did (a failed run): the file in progress was
        rolled back and stays, like the files it did not reach. Recorded when the
        database allows."""
        outcomes = [*outcomes, *(FileOutcome(
            file=item.name, type=_type_name(item), status=FileStatus.FAILED, errors=1,
            issues=FileRejected(
                "interrupted", "the run was stopped (SIGTERM) while applying the file; nothing "
                "from it was applied and it stays for the next run").issues(item.name))
            for item in left[:1]), *(
            FileOutcome(file=item.name, type=_type_name(item), status=FileStatus.WAITING,
                        waiting_reason="the run was stopped (SIGTERM) before it was read")
            for item in left[1:])]
        try:
            return self._finish(started, outcomes, RunResult.FAILED)
        except SQLAlchemyError:  # the next run marks this one aborted
            return ImportSummary(run_id=self.run_id, district_id=self.district_id,
                                 result=RunResult.FAILED, started_at=started,
                                 finished_at=datetime.now(UTC), files=outcomes)

    def _apply_retention(self) -> None:
        """The retention settings, once the run is recorded; a failure only postpones them
        to the next run (nothing of this run depends on them)."""
        now = datetime.now(UTC)
        retention = self.config.retention
        try:
            with self.engine.begin() as connection:
                purged = purge_database(connection, self.district_id, retention, now)
                pending = set(connection.scalars(select(HeldFile.location).where(
                    HeldFile.district_id == self.district_id, HeldFile.state == "pending")))
            sweep_drop_box(self.drop_box, pending, retention, now, purged)
        except (SQLAlchemyError, SourceUnavailable, OSError) as error:
            log.warning("retention was not applied this run: %s", describe_failure(error))
            return
        log.info("retention: removed %s", purged)

    def _ensure_district(self, now: datetime) -> None:
        with self.engine.connect() as connection:
            if connection.scalar(select(District.id).where(District.id == self.district_id)):
                return
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(District).values(
                    id=self.district_id, name=self.config.district_name, created_at=now))
        except IntegrityError:
            pass  # another run created it at the same moment

    # -- what to process ----------------------------------------------------------------

    def _plan(self) -> list[Work]:
        listed = self.source.list_files()
        settled, self.waiting = ready(listed, time.time(), self.config.quiet_period_seconds)
        work, by_kind = classify(settled, self.source, self.config.accepted_types,
                                 self.config.limits)
        if not self.validate_only:
            work += self._held_work(by_kind)
        return in_run_order(work)

    def _held_work(self, inbox: dict[str, Work]) -> list[Work]:
        """Approved held files join the run; a newer inbox file of a type supersedes them."""
        with self.engine.connect() as connection:
            pending = list(connection.execute(
                select(HeldFile.id, HeldFile.run_id, HeldFile.file_name, HeldFile.file_type,
                       HeldFile.location)
                .where(HeldFile.district_id == self.district_id, HeldFile.state == "pending")
                .order_by(HeldFile.held_at)))
        work: list[Work] = []
        for held in pending:
            kind = kind_of(format_named(held.file_type))
            newer = inbox.get(kind)
            if newer is not None:
                newer.superseded.append(held.id)
            elif self.approve_held in (ALL_HELD, held.run_id):
                item = Work(held.file_name, format_named(held.file_type),
                             lambda held=held: self.drop_box.fetch_held(held.location),
                             held=held)
                inbox[kind] = item
                work.append(item)
        return work

    # -- one file -----------------------------------------------------------------------

    def _process(self, item: Work) -> list[FileOutcome]:
        self._file_started = time.perf_counter()
        if item.ignored:
            outcome = self._record_ignored(item)
            if not self.validate_only:
                self._dispose(item, outcome.status)
            return [outcome]
        try:
            if item.rejection is not None:  # decided from the listing: never downloaded
                outcomes = [self._record_failure(item, item.rejection, FileStatus.REJECTED)]
            else:
                with item.fetch() as path:
                    outcomes = self._outcomes(item, path)
        except FileChanged:
            return [_waiting(item.name, "it changed while it was being read (still "
                                        "uploading); the next run reads it")]
        except FileNotFoundError:
            if item.held is None:
                raise
            return [self._record_failure(item, FileRejected(
                "held_file_missing", "the held file is no longer in the held area; "
                "upload the file again"), FileStatus.REJECTED)]
        except SQLAlchemyError as error:
            raise_if_stopped_by(error)
            # Not the district's fault: the file stays where it is for the next run. When
            # the database is gone, recording this fails too and the CLI says why, once.
            log.info("database failure while importing %s: %s", item.name,
                     describe_failure(error, self.engine.url))
            log.debug("database failure while importing %s", item.name, exc_info=True)
            return [self._record_failure(item, FileRejected(
                "database_error", f"the database failed while applying the file "
                f"({type(error).__name__}); nothing from it was applied and it will be "
                "tried again in the next run"), FileStatus.FAILED)]
        except SourceUnavailable:
            raise  # the drop box is gone: no other file can be read either
        except Exception as error:  # a bug must not block the district's other files
            raise_if_stopped_by(error)
            log.error("unexpected failure while importing %s: %s\n%s", item.name,
                      describe_failure(error), frames(error))
            return [self._record_failure(item, FileRejected(
                "internal_error", f"the importer failed on this file ({type(error).__name__}); "
                "nothing from it was applied, it stays for the next run and support has "
                "been told by the logs"), FileStatus.FAILED)]
        if not self.validate_only:
            with deferred():  # recorded: removing it must not be cut short by SIGTERM
                self._dispose(item, _overall(outcomes))
        return outcomes

    def _outcomes(self, item: Work, path: Path) -> list[FileOutcome]:
        """Apply the file in one transaction with its recorded outcome, or reject it whole."""
        try:
            if isinstance(item.file_type, FileType):
                return self._apply_csv(item, item.file_type, path)
            assert item.file_type is not None
            facts = inspect_file(path, self.config.limits, text=False)
            with (self.engine.begin() as connection,
                  item.file_type.members(path, item.name, self.config.limits,
                                         _KnownRecords(connection, self.district_id)) as members):
                return self._apply(connection, item, members, facts)
        except FileRejected as rejected:
            return [self._record_failure(item, rejected, FileStatus.REJECTED)]

    def _apply_csv(self, item: Work, file_type: FileType, path: Path) -> list[FileOutcome]:
        facts = inspect_file(path, self.config.limits)
        with (CsvTable(path, facts.encoding, self.config.limits) as table,
              self.engine.begin() as connection):
            layout = by_header(file_type, table.header)
            if (earlier := self._provided.get(layout.kind)) is not None:
                raise FileRejected(
                    "duplicate_source", f"{earlier!r} in the same run already provides the "
                    f"{layout.kind}; send one file per type")
            member = csv_member(table, layout, item.name, facts.size)
            if facts.fell_back_to_cp1252:
                member.warnings.append(Issue.warning(
                    item.name, "encoding_fallback", "the file is not valid UTF-8 and was "
                    "read as Windows-1252; export it as UTF-8"))
            outcomes = self._apply(connection, item, [member], facts)
            self._provided.update(dict.fromkeys(provided_kinds(layout), item.name))
            return outcomes

    def _apply(self, connection: Connection, item: Work, members: list[Member],
               facts: FileFacts) -> list[FileOutcome]:
        """Load, check and apply every member; if the safety hold stops one, none is applied."""
        if not members:  # e.g. a OneRoster manifest marking every table absent
            outcome = FileOutcome(file=item.name, type=_type_name(item),
                                  status=FileStatus.APPLIED)
            result_id = self._file_result(connection, item.name, _type_name(item),
                                          size=facts.size, sha256=facts.sha256)
            self._finish_file_result(connection, result_id, outcome)
            self._resolve_held(connection, item, "applied")
            return [outcome]
        if connection.dialect.name == "postgresql":  # room for the set-based steps' hash tables
            connection.exec_driver_sql("SET LOCAL work_mem = '256MB'")
        logs = []
        for member in members:
            result_id = self._file_result(connection, member.label, member.file_type.name,
                                          size=facts.size, sha256=facts.sha256)
            logs.append((result_id, IssueLog(connection, result_id)))
        with connection.begin_nested() as applying:
            loaded = [self._load(connection, member, log)
                      for member, (_, log) in zip(members, logs, strict=True)]
            held_reason = None if item.held is not None else next(
                (reason for _, reason, _, _ in loaded if reason is not None), None)
            if held_reason is not None:
                applying.rollback()
        if held_reason is not None:
            connection.execute(insert(HeldFile).values(
                district_id=self.district_id, run_id=self.run_id, file_name=item.name,
                file_type=_type_name(item), location=held_location(self.run_id, item.name),
                size=facts.size, sha256=facts.sha256, held_at=datetime.now(UTC),
                reason=held_reason))
        outcomes = []
        for member, (result_id, log), (counts, _, rows_read, rejected_rows) in zip(
                members, logs, loaded, strict=True):
            log.flush()
            if held_reason is not None:
                counts = Counts()
            outcome = FileOutcome(
                file=member.label, type=member.file_type.name,
                status=FileStatus.APPLIED if held_reason is None else FileStatus.HELD,
                rows_read=rows_read, created=counts.created, updated=counts.updated,
                unchanged=counts.unchanged, deactivated=counts.deactivated,
                rejected_rows=rejected_rows, errors=log.errors, warnings=log.warnings,
                held_reason=held_reason, issues=log.first)
            self._finish_file_result(connection, result_id, outcome)
            outcomes.append(outcome)
        self._resolve_held(connection, item, "applied" if held_reason is None else None)
        return outcomes

    def _load(self, connection: Connection, member: Member, log: IssueLog) -> tuple[
            Counts, str | None, int, int]:
        """Stage, check and apply one member: its counts, hold reason, rows read and rejected."""
        log.extend(member.warnings)
        stage = Stage(member.file_type)
        stage.create(connection)
        # cells assumed for columns the header lacks (the district's pickup_default); like
        # any absent column's, they are what new records get: stored records keep theirs
        validator = RowValidator(member, stage, log, absent_field_defaults(
            member.file_type, set(member.columns.written), self.config))
        if self.progress is not None:
            self.progress.file_started(member.label, member.total_bytes)
        stage.load(connection, validator.staged_rows(
            self.progress.file_advanced if self.progress else None))
        if self.progress is not None:
            self.progress.file_finished()
        columns, label = member.columns, member.label
        log.extend(checks.duplicate_keys(connection, stage, columns, label))
        for reference in member.file_type.references:
            if not self.validate_only or self._filled_by_run(reference.model):
                log.extend(checks.unknown_references(connection, stage, columns, reference,
                                                     self.district_id, label, self._rejected))
        log.extend(checks.conflicting_rows(connection, stage, columns, label))
        counts, held_reason = Counts(), None
        if self._needs_applying(member.file_type):
            syncs = [TargetSync(stage, target, self.district_id, member.given)
                     for target in member.file_type.targets]
            now = datetime.now(UTC)
            # every target is applied; the primary one's counts are the member's, and
            # any target the safety hold stops (visitors or their links) holds the file
            applied = [sync.apply(connection, self.run_id, now) for sync in syncs]
            counts = applied[0]
            held_reason = next((reason for sync, target_counts in zip(syncs, applied, strict=True)
                                if (reason := sync.hold_reason(
                                    target_counts, self.config.max_deactivate_percent))), None)
        rejected_rows = stage.skipped_rows(connection)
        if rejected_rows:
            self._rejected.remember(connection, stage, label, log.file_result_id)
        stage.drop(connection)
        return counts, held_reason, validator.rows_read, rejected_rows

    def _record_failure(self, item: Work, rejected: FileRejected,
                        status: FileStatus) -> FileOutcome:
        """Record a file that could not be applied (its own transaction: the file's is gone)."""
        issues = rejected.issues(item.name)
        outcome = FileOutcome(file=item.name, type=_type_name(item), status=status,
                              errors=len(issues), issues=issues)
        with self.engine.begin() as connection:
            result_id = self._file_result(connection, item.name, _type_name(item))
            log = IssueLog(connection, result_id)
            log.extend(issues)
            log.flush()
            self._finish_file_result(connection, result_id, outcome)
            if status is FileStatus.REJECTED:
                self._resolve_held(connection, item, "rejected")
        return outcome

    def _record_ignored(self, item: Work) -> FileOutcome:
        """Record a known file this product does not use, with a warning saying so."""
        warning = Issue.warning(
            item.name, "unused_file", f"{item.name!r} is a Clever file this import does not "
            "use (it reads Clever's students.csv, schools.csv and teachers.csv); it is "
            "ignored, which is not an error")
        outcome = FileOutcome(file=item.name, status=FileStatus.IGNORED, warnings=1,
                              issues=[warning])
        with self.engine.begin() as connection:
            result_id = self._file_result(connection, item.name, None)
            log = IssueLog(connection, result_id)
            log.add(warning)
            log.flush()
            self._finish_file_result(connection, result_id, outcome)
        return outcome

    def _file_result(self, connection: Connection, file_name: str, file_type: str | None,
                     **facts: object) -> int:
        return connection.execute(insert(ImportFileResult).values(
            run_id=self.run_id, file_name=file_name, file_type=file_type,
            status="processing", **facts).returning(ImportFileResult.id)).scalar_one()

    def _resolve_held(self, connection: Connection, item: Work, state: str | None) -> None:
        """Close the held record an approved file came from, and those it supersedes."""
        now = datetime.now(UTC)
        if item.held is not None and state is not None:
            connection.execute(update(HeldFile).where(HeldFile.id == item.held.id).values(
                state=state, resolved_at=now))
        if item.superseded and state != "rejected":
            connection.execute(update(HeldFile).where(HeldFile.id.in_(item.superseded)).values(
                state="superseded", resolved_at=now))

    def _finish_file_result(self, connection: Connection, result_id: int,
                            outcome: FileOutcome) -> None:
        outcome.duration_ms = round((time.perf_counter() - self._file_started) * 1000)
        connection.execute(update(ImportFileResult).where(ImportFileResult.id == result_id).values(
            status=outcome.status.value, rows_read=outcome.rows_read, created=outcome.created,
            updated=outcome.updated, unchanged=outcome.unchanged,
            deactivated=outcome.deactivated, rejected_rows=outcome.rejected_rows,
            errors=outcome.errors, warnings=outcome.warnings, duration_ms=outcome.duration_ms,
            detail=outcome.held_reason))

    # -- after the outcome is recorded --------------------------------------------------

    def _dispose(self, item: Work, status: FileStatus) -> None:
        """Remove the processed file, or move a held one aside; never before recording."""
        if item.held is not None:
            self.drop_box.discard_held(item.held.location)
        elif item.source_file is not None:
            if status is FileStatus.HELD:
                if not self.drop_box.hold(item.source_file, self.run_id):
                    self._supersede_replaced_hold(item)
            elif status is not FileStatus.FAILED:
                self.drop_box.remove(item.source_file)
        if item.superseded and status is not FileStatus.REJECTED:
            with self.engine.connect() as connection:
                locations = connection.scalars(select(HeldFile.location).where(
                    HeldFile.id.in_(item.superseded)))
                for location in locations:
                    self.drop_box.discard_held(location)

    def _supersede_replaced_hold(self, item: Work) -> None:
        """The district replaced a file while it was being held: the new one is next."""
        with self.engine.begin() as connection:
            connection.execute(update(HeldFile).where(
                HeldFile.run_id == self.run_id, HeldFile.file_name == item.name).values(
                state="superseded", resolved_at=datetime.now(UTC)))

    def _expire_held(self, now: datetime) -> None:
        cutoff = now - timedelta(days=self.config.held_retention_days)
        # One writing statement: on SQLite a transaction that reads before it writes
        # fails at once ("database is locked") when another district's run wrote since.
        with self.engine.begin() as connection:
            expired = list(connection.execute(update(HeldFile).where(
                HeldFile.district_id == self.district_id, HeldFile.state == "pending",
                HeldFile.held_at < cutoff).values(state="expired", resolved_at=now)
                .returning(HeldFile.location)))
        for row in expired:
            self.drop_box.discard_held(row.location)


def _overall(outcomes: list[FileOutcome]) -> FileStatus:
    """A file's status from its members': held if any was held, else the first's."""
    statuses = [outcome.status for outcome in outcomes]
    return FileStatus.HELD if FileStatus.HELD in statuses else statuses[0]


@dataclass(frozen=True)
class _KnownRecords:
    """A container's view of the district's records, inside the file's transaction."""

    connection: Connection
    district_id: str

    def keys_by_sourced_id(self, model: type[SyncedRecord],
                           sourced_ids: Iterable[str]) -> dict[str, str]:
        table = model.__table__  # type: ignore[attr-defined]
        wanted = sorted(set(sourced_ids))
        found: dict[str, str] = {}
        for start in range(0, len(wanted), 1000):
            rows = self.connection.execute(
                select(table.c.sourced_id, table.c.record_key).where(
                    table.c.district_id == self.district_id,
                    table.c.sourced_id.in_(wanted[start:start + 1000])))
            found.update((sourced_id, key) for sourced_id, key in rows)
        return found


def _type_name(item: Work) -> str | None:
    return item.file_type.name if item.file_type is not None else None


def _waiting(name: str, reason: str) -> FileOutcome:
    """A file left for a later run, typed by its name (it was not read)."""
    file_format = file_type_for(name)
    return FileOutcome(file=name, type=file_format.name if file_format else None,
                       status=FileStatus.WAITING, waiting_reason=reason)


def pending_held(engine: Engine, district_id: str) -> list[PendingHeld]:
    """The district's held files still awaiting approval, oldest first."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(HeldFile.file_name, HeldFile.run_id, HeldFile.held_at, HeldFile.reason)
            .where(HeldFile.district_id == district_id, HeldFile.state == "pending")
            .order_by(HeldFile.held_at, HeldFile.id))
        return [PendingHeld(file=row.file_name, run_id=row.run_id, reason=row.reason,
                            held_at=row.held_at.replace(tzinfo=UTC)
                            if row.held_at.tzinfo is None else row.held_at)
                for row in rows]


def stored_issues(engine: Engine, run_id: str) -> Iterator[Issue]:
    """Every issue of a run, in file order then line order, streamed from the database."""
    query = (select(ImportIssue.file, ImportIssue.line, ImportIssue.column, ImportIssue.code,
                    ImportIssue.reason, ImportIssue.severity)
             .join(ImportFileResult).where(ImportFileResult.run_id == run_id)
             .order_by(ImportFileResult.id, ImportIssue.line, ImportIssue.id))
    with engine.connect() as connection:
        for row in connection.execute(query.execution_options(yield_per=1000)):
            yield Issue.model_validate(row._asdict())
