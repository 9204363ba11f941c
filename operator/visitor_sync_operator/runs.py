"""Importer runs: starting one on request, and reading what a finished Job did.

A run's outcome is the ``ImportSummary`` the importer wrote to its
termination message; a Job that ended without one (crash, OOM kill, deadline)
is a failed run whose message says what Kubernetes saw (the Job's condition, the
exit status and its meaning), never the pod's message text. Events and the status
name files, lines, columns and error codes, never cell values: whoever may read
the namespace's Events is not necessarily allowed to read student data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from visitor_sync.exits import MEANINGS as EXIT_MEANINGS
from visitor_sync.summary import FileStatus, ImportSummary, RunResult
from visitor_sync_operator.builders.importer import COMPONENT, run_now_job
from visitor_sync_operator.district import IMPORTER_SUFFIX, District
from visitor_sync_operator.kube import Kube
from visitor_sync_operator.spec import KIND
from visitor_sync_operator.status import (
    ConditionType,
    counts_by_type,
    failed_in_a_row,
    now,
    parse_timestamp,
    set_condition,
    timestamp,
)

#: Annotation asking for a run now (any new token, e.g. ``date +%s``), Flux-style.
RUN_REQUEST_ANNOTATION = "sync.visitoraware.io/run-requested-at"
#: Annotation approving the held files of a run (its run id).
APPROVE_ANNOTATION = "sync.visitoraware.io/approve-held"
#: Set on a Job once its outcome is in the resource's status (counted exactly once).
REPORTED_ANNOTATION = "sync.visitoraware.io/reported"
#: The label Kubernetes puts on a Job's pods.
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
IMPORTER_CONTAINER = "importer"
#: Errors quoted in an Event or the status message.
QUOTED_ERRORS = 3
EVENT_MESSAGE_LIMIT = 1000


def finished(job: dict[str, Any]) -> str | None:
    """``"Complete"`` or ``"Failed"`` once the Job has ended, else ``None``."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete",
                                                                            "Failed"):
            return str(condition["type"])
    return None


def importer_jobs(kube: Kube, district: District) -> list[dict[str, Any]]:
    return kube.list("batch/v1", "Job", district.namespace, district.selector(COMPONENT))


def owned_jobs(jobs: list[dict[str, Any]], owners: set[str]) -> list[dict[str, Any]]:
    """The Jobs controlled by one of ``owners`` (uids: the district for requested runs,
    its CronJob for scheduled ones). Labels say nothing about ownership: anyone may set
    them."""
    return [job for job in jobs if any(
        ref.get("controller") and ref.get("uid") in owners
        for ref in job["metadata"].get("ownerReferences") or [])]


def district_of_job(job: dict[str, Any]) -> str | None:
    """The DistrictSync a Job runs for, from its controller: the district (a requested
    run) or the district's CronJob (a scheduled one, named after the district)."""
    for ref in job.get("metadata", {}).get("ownerReferences") or []:
        if not ref.get("controller"):
            continue
        if ref.get("kind") == KIND:
            return str(ref["name"])
        if ref.get("kind") == "CronJob" and ref.get("name", "").endswith(IMPORTER_SUFFIX):
            return str(ref["name"])[:-len(IMPORTER_SUFFIX)]
    return None


def unrecorded(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Finished Jobs whose outcome is not recorded yet, oldest first."""
    ended = [job for job in jobs if finished(job) is not None
             and not (job["metadata"].get("annotations") or {}).get(REPORTED_ANNOTATION)]
    return sorted(ended, key=lambda job: (job.get("status") or {}).get("completionTime")
                  or job["metadata"].get("creationTimestamp") or "")


def active_job(jobs: list[dict[str, Any]]) -> str | None:
    running = [job["metadata"]["name"] for job in jobs if finished(job) is None]
    return min(running) if running else None


def request_run(kube: Kube, district: District, cron_job: dict[str, Any], token: str,
                jobs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Start the run ``token`` asks for: its Job, or ``None`` while another run is active
    (the request waits).

    The Job's name derives from the token, so a handler retried after a crash finds
    the Job it made instead of starting a second one.
    """
    job = run_now_job(district, cron_job, token)
    existing = next((j for j in jobs if j["metadata"]["name"] == job["metadata"]["name"]), None)
    if existing is not None:
        return existing
    if active_job(jobs) is not None:
        return None
    return kube.apply(job)[0]


@dataclass(frozen=True)
class RunOutcome:
    job: str
    job_uid: str | None
    finished_at: datetime
    summary: ImportSummary | None
    #: why there is no summary, from the Job's condition and the container's last words
    failure: str | None

    @property
    def result(self) -> RunResult:
        return self.summary.result if self.summary else RunResult.FAILED


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        if container.get("name") == IMPORTER_CONTAINER:
            return (container.get("state") or {}).get("terminated")
    return None


def read_outcome(kube: Kube, job: dict[str, Any]) -> RunOutcome:
    """The outcome of a finished Job, from its last terminated pod."""
    metadata = job["metadata"]
    pods = kube.list("v1", "Pod", metadata["namespace"], {JOB_NAME_LABEL: metadata["name"]})
    states = sorted((state for state in map(_terminated, pods) if state),
                    key=lambda state: state.get("finishedAt") or "")
    message = (states[-1].get("message") or "").strip() if states else ""
    condition = next((c for c in (job.get("status") or {}).get("conditions") or []
                      if c.get("type") == finished(job)), {})
    finished_at = parse_timestamp(condition.get("lastTransitionTime")) or now()
    try:
        return RunOutcome(metadata["name"], metadata.get("uid"), finished_at,
                          ImportSummary.model_validate_json(message), None)
    except ValidationError:
        pass
    why = condition.get("message") or condition.get("reason") or "the Job failed"
    if states and states[-1].get("reason") == "OOMKilled":
        why = "the importer ran out of memory (OOMKilled); raise spec.importer.resources"
    elif states and states[-1].get("exitCode") is not None:
        code = states[-1]["exitCode"]
        why += f" (exit status {code}: {EXIT_MEANINGS.get(code, 'unexpected')})"
    # The message itself is never quoted: without a summary it may be the tail of the
    # importer's log (FallbackToLogsOnError), which is no place to take text from.
    return RunOutcome(metadata["name"], metadata.get("uid"), finished_at, None,
                      f"ended without a summary: {why}; the pod's log has the details")


def describe(outcome: RunOutcome) -> tuple[str, str]:
    """(reason, message) of the run's Event and status message."""
    summary = outcome.summary
    if summary is None:
        return "ImportFailed", f"Job {outcome.job} {outcome.failure}"[:EVENT_MESSAGE_LIMIT]
    totals = summary.totals()
    counts = (f"{len(summary.files)} file(s): {totals['created']} created, "
              f"{totals['updated']} updated, {totals['deactivated']} deactivated, "
              f"{totals['errors']} error(s)")
    if summary.result is RunResult.WAITING:
        waiting = summary.files[0]
        counts = (f"{len(summary.files)} file(s) waiting, none read; {waiting.file} "
                  f"{waiting.waiting_reason or 'waits'}")
    notes = [f"{o.file} held: {o.held_reason}" for o in summary.files
             if o.status is FileStatus.HELD]
    notes += [f"{o.file} failed" for o in summary.files if o.status is FileStatus.FAILED]
    issues = [issue for outcome_ in summary.files for issue in outcome_.issues
              if issue.severity.value == "error"][:QUOTED_ERRORS]
    notes += [f"{issue.file}" + (f" line {issue.line}" if issue.line else "")
              + (f" column {issue.column}" if issue.column else "") + f": {issue.code}"
              for issue in issues]
    reason = {RunResult.SUCCESS: "ImportSucceeded", RunResult.PARTIAL: "ImportPartial",
              RunResult.HELD: "ImportHeld", RunResult.FAILED: "ImportFailed",
              RunResult.WAITING: "ImportWaiting"}[summary.result]
    message = f"run {summary.run_id}: {summary.result.value}, {counts}"
    if notes:
        message += "; " + "; ".join(notes)
    return reason, message[:EVENT_MESSAGE_LIMIT]


def status_after(outcome: RunOutcome, status: dict[str, Any],
                 generation: int | None) -> dict[str, Any]:
    """The status fields a finished run changes."""
    summary = outcome.summary
    reason, message = describe(outcome)
    held = [o.file for o in summary.files if o.status is FileStatus.HELD] if summary else []
    last_import: dict[str, Any] = {
        "job": outcome.job, "jobUid": outcome.job_uid, "result": outcome.result.value,
        "finishedAt": timestamp(outcome.finished_at), "message": message,
        "runId": summary.run_id if summary else None,
        "startedAt": timestamp(summary.started_at) if summary else None,
        "counts": counts_by_type(summary) if summary else {},
        "files": len(summary.files) if summary else 0,
        "errors": summary.errors if summary else 0,
        "heldFiles": held,
    }
    succeeded = outcome.result in (RunResult.SUCCESS, RunResult.PARTIAL)
    patch: dict[str, Any] = {
        "lastImport": last_import,
        "consecutiveFailedRuns": failed_in_a_row(status.get("consecutiveFailedRuns") or 0,
                                                 summary.result if summary else None),
    }
    if outcome.result is not RunResult.WAITING:
        # a run that only waited read nothing: the last import's verdict still stands
        patch["conditions"] = set_condition(
            status.get("conditions") or [], ConditionType.LAST_IMPORT_SUCCEEDED, succeeded,
            reason, message, generation, outcome.finished_at)
    if summary is not None:
        patch["heldFilesPending"] = summary.held_pending
        patch["oldestHeldFileTime"] = (timestamp(summary.oldest_held_at)
                                       if summary.oldest_held_at else None)
    if succeeded:
        # A partial run imported what was valid: the district's data is current.
        patch["lastSuccessfulImportTime"] = timestamp(outcome.finished_at)
    return patch
