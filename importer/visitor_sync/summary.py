"""``ImportSummary``: what one run did, for people, the CR status and the database.

The importer prints it (``--format json``), stores it on the run row and
writes a compact form to the Job's termination message (<4 KiB), which the
operator reads back with the same model.
"""

from __future__ import annotations

import enum
from datetime import datetime

from pydantic import BaseModel, Field

from visitor_sync.issues import Issue

TERMINATION_MESSAGE_LIMIT = 4096
#: fields the termination message leaves out: the operator needs only their counts
_NOT_FOR_OPERATOR = {"pending_held"}


class FileStatus(enum.StrEnum):
    APPLIED = "applied"
    REJECTED = "rejected"
    HELD = "held"
    #: still being uploaded (or changed while read): left for the next run
    WAITING = "waiting"
    #: the infrastructure failed while applying it: nothing applied, left for the next run
    FAILED = "failed"
    #: a file of a format we know but do not use (Clever's sections.csv): reported, removed
    IGNORED = "ignored"


class RunResult(enum.StrEnum):
    SUCCESS = "success"
    PARTIAL = "partial"
    HELD = "held"
    FAILED = "failed"
    #: every file waited (quiet period): nothing was read, the next run reads them
    WAITING = "waiting"


class ReportEmail(enum.StrEnum):
    """What became of the run's report e-mail (the report itself is always in the database)."""

    SENT = "sent"
    #: SMTP (or writing the outbox) failed, after retries where they help; the run is
    #: unaffected and the report is not resent
    FAILED = "failed"
    #: not needed (``notifications.when``), no recipients, or nowhere to deliver it
    SKIPPED = "skipped"
    #: no SMTP: written as an .eml file to the local outbox
    WRITTEN = "written"


class Counts(BaseModel):
    """What a file's rows came to (the CR status sums them per file type)."""

    rows_read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deactivated: int = 0
    rejected_rows: int = 0
    errors: int = 0
    warnings: int = 0


#: The per-file counts, in the order reports show them.
COUNT_FIELDS = tuple(Counts.model_fields)


class FileOutcome(Counts):
    file: str
    type: str | None = None
    status: FileStatus
    duration_ms: int = 0
    held_reason: str | None = None
    #: why a waiting file waits, and for how long
    waiting_reason: str | None = None
    #: the first issues of the file, in line order; every issue is in the database
    issues: list[Issue] = Field(default_factory=list)


class PendingHeld(BaseModel):
    """A held file still awaiting approval (``--approve-held RUN_ID`` applies it)."""

    file: str
    run_id: str
    held_at: datetime
    reason: str | None = None


class ImportSummary(BaseModel):
    run_id: str
    district_id: str
    result: RunResult
    started_at: datetime
    finished_at: datetime
    files: list[FileOutcome] = Field(default_factory=list)
    #: files left out of a compacted summary (see :meth:`termination_message`)
    files_omitted: int = 0
    #: the report e-mail's fate, set after the run (``None``: not attempted, e.g. validate)
    report_email: ReportEmail | None = None
    #: why it was skipped or how it failed, for operators (never credentials)
    report_email_detail: str | None = None
    #: invitation e-mails delivered by this run (sent, or written to the outbox)
    invitations_sent: int = 0
    #: invitation e-mails that failed in this run (they stay queued for the next run)
    invitations_failed: int = 0
    #: held files of the district still awaiting approval after this run (any run's)
    held_pending: int = 0
    #: when the oldest of them was held
    oldest_held_at: datetime | None = None
    #: those files, for people (the termination message leaves them out: it counts them)
    pending_held: list[PendingHeld] = Field(default_factory=list)

    @property
    def needs_attention(self) -> bool:
        """Whether the run had errors, rejected or held files (``notifications.when: failure``)."""
        return self.errors > 0 or any(
            outcome.status in (FileStatus.REJECTED, FileStatus.HELD, FileStatus.FAILED)
            for outcome in self.files)

    @property
    def infrastructure_failed(self) -> bool:
        """Whether a file failed for reasons a retry may fix (the CLI exits non-zero)."""
        return any(outcome.status is FileStatus.FAILED for outcome in self.files)

    @property
    def errors(self) -> int:
        return sum(outcome.errors for outcome in self.files)

    def totals(self) -> dict[str, int]:
        return {key: sum(getattr(outcome, key) for outcome in self.files)
                for key in COUNT_FIELDS}

    def without_values(self) -> ImportSummary:
        """The summary for outputs that people without access to student data read (the
        pod's log and termination message, hence the resource's status, Events and
        metrics): issues keep file, line, column and code; their reasons, which may quote
        the district's values, stay in the database and the district's e-mail."""
        public = self.model_copy(deep=True)
        for outcome in public.files:
            for issue in outcome.issues:
                issue.reason = ""
        return public

    def termination_message(self) -> str:
        """The summary as JSON under 4 KiB, without values (:meth:`without_values`):
        issues are trimmed first, then trailing files."""
        compact = self.without_values()
        for keep in (3, 1, 0):
            for outcome in compact.files:
                outcome.issues = outcome.issues[:keep]
            text = compact.model_dump_json(exclude_defaults=True, exclude=_NOT_FOR_OPERATOR)
            if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
                return text
        while compact.files:
            compact.files.pop()
            compact.files_omitted += 1
            text = compact.model_dump_json(exclude_defaults=True, exclude=_NOT_FOR_OPERATOR)
            if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
                break
        return text


def run_result(files: list[FileOutcome]) -> RunResult:
    """waiting: every file waits for the next run (none was read); failed: a file failed
    for infrastructure reasons, or nothing was applied and something was rejected; held:
    a file awaits approval; partial: some rows or files in error; success: everything
    applied cleanly (or there was nothing to do)."""
    statuses = {outcome.status for outcome in files}
    if statuses == {FileStatus.WAITING}:
        return RunResult.WAITING
    if FileStatus.FAILED in statuses:
        return RunResult.FAILED
    if FileStatus.REJECTED in statuses and FileStatus.APPLIED not in statuses \
            and FileStatus.HELD not in statuses:
        return RunResult.FAILED
    if FileStatus.HELD in statuses:
        return RunResult.HELD
    if FileStatus.REJECTED in statuses or any(outcome.errors for outcome in files):
        return RunResult.PARTIAL
    return RunResult.SUCCESS
