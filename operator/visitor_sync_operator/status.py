"""The ``DistrictSync`` status: its shape (for the CRD) and how conditions change.

Conventions of Flux and CloudNativePG: ``observedGeneration``, conditions with
``type/status/reason/message/lastTransitionTime`` (the time changes only when
the status does), tokens of handled requests echoed back.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from visitor_sync.summary import COUNT_FIELDS, Counts, FileStatus, ImportSummary, RunResult


class StatusModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ConditionType(enum.StrEnum):
    READY = "Ready"
    SFTP_READY = "SFTPReady"
    LAST_IMPORT_SUCCEEDED = "LastImportSucceeded"
    STALLED = "Stalled"


class Condition(StatusModel):
    type: str = Field(description="Ready, SFTPReady, LastImportSucceeded or Stalled.")
    status: str = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason, for machines.")
    message: str = Field(description="What it means and what to do, for people.")
    last_transition_time: datetime = Field(description="When status last changed.")
    observed_generation: int | None = Field(None, description="Generation it was set for.")


class SftpStatus(StatusModel):
    endpoint: str | None = Field(None, description="sftp://user@host:port/ the district "
                                 "uses (host once the Service has an address).")
    service: str = Field(description="The Service in front of the SFTP server.")
    username: str = Field(description="The district's login name.")
    credentials_secret: str = Field(description="Secret with the district's username and "
                                    "password (give them to the district securely).")
    host_key_fingerprints: list[str] = Field(
        default_factory=list, description="SHA256 fingerprints of the server's host keys, "
        "for the district to verify on first connection.")


class TypeCounts(Counts, StatusModel):
    """The importer's per-file counts, summed per file type, camelCase."""


class LastImport(StatusModel):
    job: str = Field(description="The Job that ran it.")
    job_uid: str | None = Field(None, description="That Job's uid: a run is recorded once.")
    run_id: str | None = Field(None, description="Run id in the database and reports "
                               "(absent when the Job ended without a summary).")
    started_at: datetime | None = None
    finished_at: datetime
    result: str = Field(description="success, partial, held, failed, or waiting (every "
                        "file was within the quiet period: nothing was read).")
    counts: dict[str, TypeCounts] = Field(default_factory=dict,
                                          description="Per file type, summed over files.")
    files: int = Field(0, description="Files handled (applied, rejected, held, waiting, "
                       "failed, ignored).")
    errors: int = Field(0, description="Errors found in the files.")
    held_files: list[str] = Field(default_factory=list,
                                  description="Files this run held for approval.")
    message: str = Field("", description="What happened, with the first errors.")


class DistrictSyncStatus(StatusModel):
    """What the operator last saw and did."""

    observed_generation: int | None = Field(None, description="The spec generation the "
                                            "children were last reconciled for.")
    conditions: list[Condition] = Field(default_factory=list)
    sftp: SftpStatus | None = None
    schedule: str | None = Field(None, description="The cron schedule in effect.")
    next_run_time: datetime | None = Field(None, description="Next scheduled run (absent "
                                           "while suspended or paused).")
    active_job: str | None = Field(None, description="Importer Job running now, if any.")
    last_import: LastImport | None = None
    last_successful_import_time: datetime | None = None
    consecutive_failed_runs: int = Field(0, description="Failed runs in a row.")
    held_files_pending: int = Field(0, description="Held files awaiting approval, as of the "
                                    "last run.")
    oldest_held_file_time: datetime | None = None
    last_handled_run_request: str | None = Field(
        None, description="The last sync.visitoraware.io/run-requested-at token acted on.")
    last_handled_approval: str | None = Field(
        None, description="The last sync.visitoraware.io/approve-held run id passed to runs.")
    last_handled_rotation: str | None = Field(
        None, description="The last sync.visitoraware.io/rotate-credentials token acted on "
        "(the district password was replaced then).")


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as Kubernetes writes times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: str | None) -> datetime | None:
    """A Kubernetes time (RFC 3339, ``Z``) as an aware datetime; ``None`` stays ``None``."""
    return datetime.fromisoformat(value) if value else None


def set_condition(conditions: list[dict[str, Any]], type_: ConditionType, status: bool | None,
                  reason: str, message: str, generation: int | None,
                  at: datetime | None = None) -> list[dict[str, Any]]:
    """``conditions`` with one condition set; its transition time moves only on a change."""
    value = {True: "True", False: "False", None: "Unknown"}[status]
    previous = next((c for c in conditions if c.get("type") == type_.value), None)
    changed = previous is None or previous.get("status") != value
    condition = {
        "type": type_.value, "status": value, "reason": reason, "message": message,
        "lastTransitionTime": (timestamp(at or now()) if changed
                               else previous.get("lastTransitionTime") or timestamp(at or now())),
        "observedGeneration": generation,
    }
    if previous is None:
        return [*conditions, condition]
    return [condition if c is previous else c for c in conditions]


def replacing(current: Any, wanted: Any) -> Any:
    """The JSON merge patch that turns ``current`` into exactly ``wanted``.

    A merge patch merges maps: sending ``wanted`` alone would keep keys that ``current``
    has and ``wanted`` lacks (the counts of a file type an earlier run had survived into
    a run without it). Those keys are deleted here (``None``).
    """
    if not isinstance(current, dict) or not isinstance(wanted, dict):
        return wanted
    return {key: replacing(current.get(key), value) for key, value in wanted.items()} | {
        key: None for key in current if key not in wanted}


def condition_status(conditions: list[dict[str, Any]], type_: ConditionType) -> str | None:
    return next((c.get("status") for c in conditions if c.get("type") == type_.value), None)


def counts_by_type(summary: ImportSummary) -> dict[str, dict[str, int]]:
    """Per-type sums of the per-file counts (zero counts left out to keep the status short)."""
    totals: dict[str, dict[str, int]] = {}
    for outcome in summary.files:
        if outcome.status is FileStatus.WAITING:
            continue  # not read: nothing to count
        into = totals.setdefault(outcome.type or "unknown", {})
        for field in COUNT_FIELDS:
            count = getattr(outcome, field)
            if count:
                key = TypeCounts.model_fields[field].alias or field
                into[key] = into.get(key, 0) + count
    return totals


def failed_in_a_row(previous: int, result: RunResult | None) -> int:
    """Consecutive failed runs after a run with ``result`` (``None``: no summary = failed);
    a run that only waited neither fails nor ends a series of failures."""
    if result is RunResult.WAITING:
        return previous
    return previous + 1 if result in (None, RunResult.FAILED) else 0
