"""What the operator does when something changes: named use cases, called by kopf.

Level-triggered on purpose: every reconcile looks at the whole resource
(spec, annotations, status) and the children as they are, so a missed event,
a restart or a retry converges to the same state, and the periodic check
repairs drift. Handlers are synchronous (kopf runs them in threads) because
the Kubernetes client is; one lock per district keeps two of them from
reconciling the same district at once.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kopf
from pydantic import ValidationError

from visitor_sync.summary import RunResult
from visitor_sync_operator.district import District, InvalidResource
from visitor_sync_operator.kube import Conflict, Gone, Kube, NotOwned, Refused, Unavailable
from visitor_sync_operator.metrics import DistrictHealth, Metrics
from visitor_sync_operator.provisioning import ROTATE_ANNOTATION, SftpState, provision
from visitor_sync_operator.runs import (
    APPROVE_ANNOTATION,
    REPORTED_ANNOTATION,
    RUN_REQUEST_ANNOTATION,
    RunOutcome,
    active_job,
    describe,
    district_of_job,
    finished,
    importer_jobs,
    owned_jobs,
    read_outcome,
    request_run,
    status_after,
    unrecorded,
)
from visitor_sync_operator.schedule import schedule_at
from visitor_sync_operator.settings import OperatorSettings
from visitor_sync_operator.spec import API_VERSION, KIND
from visitor_sync_operator.status import (
    ConditionType,
    condition_status,
    now,
    parse_timestamp,
    replacing,
    set_condition,
    timestamp,
)

log = logging.getLogger(__name__)

RUN_ID = re.compile(r"^[A-Za-z0-9-]{1,36}$")
#: Attempts at a status write whose district changed meanwhile (each re-reads it).
STATUS_ATTEMPTS = 5


@dataclass
class Operator:
    """What every handler needs, kept in kopf's memo."""

    settings: OperatorSettings
    kube: Kube
    metrics: Metrics
    _locks: defaultdict[tuple[str, str], threading.Lock] = field(
        default_factory=lambda: defaultdict(threading.Lock))
    _locks_lock: threading.Lock = field(default_factory=threading.Lock)

    def lock(self, namespace: str, name: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks[(namespace, name)]


def changed(status: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The keys of ``wanted`` whose values differ from ``status`` (nothing: no write).

    A ``None`` is "absent", as a merge patch stores it: comparing it as a value would
    make every resync write the same status again.
    """
    return {key: value for key, value in wanted.items()
            if _without_nulls(status.get(key)) != _without_nulls(value)}


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


# -- reconciling a district ------------------------------------------------------------


@dataclass(frozen=True)
class Reconciled:
    #: the status fields that must change (empty when nothing did)
    update: dict[str, Any]
    #: the district's finished Jobs no event recorded (the operator was down, the API
    #: unavailable): recorded by whoever reconciled, so no outcome is lost
    unrecorded_jobs: list[dict[str, Any]] = field(default_factory=list)


def reconcile(operator: Operator, body: dict[str, Any]) -> Reconciled:
    """Bring the district's children in line with its spec and annotations."""
    metadata, status = body.get("metadata", {}), dict(body.get("status") or {})
    namespace, name = metadata.get("namespace", ""), metadata.get("name", "")
    generation = metadata.get("generation")
    with operator.lock(namespace, name):
        try:
            district = District.from_body(dict(body))
        except (ValidationError, InvalidResource) as error:
            return Reconciled(_stall(operator, body, status, "InvalidSpec",
                                     _spec_problems(error), generation))
        annotations = dict(metadata.get("annotations") or {})
        moment = now()
        schedule = schedule_at(district, moment)
        approval = _approval(annotations.get(APPROVE_ANNOTATION))
        rotation = annotations.get(ROTATE_ANNOTATION)
        rotate = bool(rotation) and rotation != status.get("lastHandledRotation")
        try:
            provisioned = provision(operator.kube, district, operator.settings, schedule,
                                    approval, rotate)
        except NotOwned as error:
            return Reconciled(_stall(operator, body, status, "ChildNotOwned", str(error),
                                     generation))
        except (Refused, ValueError) as error:
            return Reconciled(_stall(operator, body, status, "ApplyFailed", str(error),
                                     generation))
        if provisioned.written and status.get("observedGeneration") is not None:
            kopf.info(body, reason="Reconciled",
                      message="updated " + ", ".join(provisioned.written))
        if rotate:
            kopf.info(body, reason="CredentialsRotated", message="the district's SFTP "
                      f"password was replaced (Secret {district.credentials_secret})")
        wanted = _provisioned_status(district, provisioned.sftp, status, generation)
        wanted |= {
            "schedule": schedule.cron,
            "nextRunTime": timestamp(schedule.next_run) if schedule.next_run else None,
            "lastHandledApproval": approval or status.get("lastHandledApproval"),
            "lastHandledRotation": rotation if rotate else status.get("lastHandledRotation"),
        }
        if schedule.reason:
            wanted["conditions"] = set_condition(
                wanted["conditions"], ConditionType.READY, provisioned.sftp.ready,
                "Suspended" if provisioned.sftp.ready else "SFTPNotReady",
                f"{provisioned.sftp.message}; scheduled runs do not start: {schedule.reason}",
                generation)
        jobs = owned_jobs(importer_jobs(operator.kube, district),
                          {district.uid, provisioned.cron_job["metadata"].get("uid")})
        wanted |= _run_request(operator, district, body, provisioned.cron_job, jobs)
        return Reconciled(changed(status, wanted), unrecorded(jobs))


def _provisioned_status(district: District, sftp: SftpState, status: dict[str, Any],
                        generation: int | None) -> dict[str, Any]:
    conditions = list(status.get("conditions") or [])
    conditions = set_condition(conditions, ConditionType.STALLED, False, "Reconciled",
                               "every child matches the spec", generation)
    conditions = set_condition(conditions, ConditionType.SFTP_READY, sftp.ready,
                               "ServerReady" if sftp.ready else "ServerNotReady", sftp.message,
                               generation)
    conditions = set_condition(conditions, ConditionType.READY, sftp.ready,
                               "Ready" if sftp.ready else "SFTPNotReady",
                               "the drop box is up and runs are scheduled" if sftp.ready
                               else sftp.message, generation)
    if condition_status(conditions, ConditionType.LAST_IMPORT_SUCCEEDED) is None:
        conditions = set_condition(conditions, ConditionType.LAST_IMPORT_SUCCEEDED, None,
                                   "NoRunYet", "no import has run yet", generation)
    return {
        "observedGeneration": generation,
        "conditions": conditions,
        "sftp": {
            "endpoint": sftp.endpoint, "service": district.sftp_name,
            "username": district.spec.sftp_username(),
            "credentialsSecret": district.credentials_secret,
            "hostKeyFingerprints": sftp.host_key_fingerprints,
        },
    }


def _run_request(operator: Operator, district: District, body: dict[str, Any],
                 cron_job: dict[str, Any], jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Start the run the annotation asks for, unless it was handled (echoed) already."""
    status = body.get("status") or {}
    token = (body.get("metadata", {}).get("annotations") or {}).get(RUN_REQUEST_ANNOTATION)
    wanted: dict[str, Any] = {"activeJob": active_job(jobs)}
    if not token or token == status.get("lastHandledRunRequest"):
        return wanted
    job = request_run(operator.kube, district, cron_job, token, jobs)
    if job is not None:
        kopf.info(body, reason="RunRequested",
                  message=f"started Job {job['metadata']['name']} for request {token}")
        wanted["lastHandledRunRequest"] = token
        if finished(job) is None:
            wanted["activeJob"] = job["metadata"]["name"]
    else:
        log.info("run request %s of %s/%s waits for Job %s", token, district.namespace,
                 district.name, wanted["activeJob"])
    return wanted


def _approval(value: str | None) -> str | None:
    return value.strip() if value and RUN_ID.match(value.strip()) else None


def _spec_problems(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "invalid spec: " + "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'spec'}: {problem['msg']}"
            for problem in error.errors(include_url=False))
    return str(error)


def _stall(operator: Operator, body: dict[str, Any], status: dict[str, Any], reason: str,
           message: str, generation: int | None) -> dict[str, Any]:
    """Say what to fix in the status and an Event; nothing is created or retried."""
    conditions = set_condition(list(status.get("conditions") or []), ConditionType.STALLED,
                               True, reason, message, generation)
    conditions = set_condition(conditions, ConditionType.READY, False, reason, message,
                               generation)
    update = changed(status, {"conditions": conditions, "observedGeneration": generation})
    if update:
        kopf.warn(body, reason=reason, message=message[:1000])
        operator.metrics.reconcile_errors.labels("reconcile", "permanent").inc()
    return update


# -- importer Jobs -----------------------------------------------------------------------


def job_changed(operator: Operator, job: dict[str, Any]) -> None:
    """Mirror a finished importer Job into its district's status, Events and metrics, once;
    a Job that started makes its district's ``activeJob`` (scheduled runs too)."""
    metadata = job.get("metadata") or {}
    namespace, owner = metadata.get("namespace", ""), district_of_job(job)
    if owner is None or (metadata.get("annotations") or {}).get(REPORTED_ANNOTATION):
        return
    if finished(job) is None:
        parent = operator.kube.get(API_VERSION, KIND, namespace, owner)
        if parent is not None and (parent.get("status") or {}).get("activeJob") != \
                metadata.get("name"):
            refresh(operator, namespace, owner, parent)
        return
    with operator.lock(namespace, owner):
        parent = operator.kube.get(API_VERSION, KIND, namespace, owner)
        if parent is not None:
            _record(operator, parent, job)
        with contextlib.suppress(Gone):  # deleted meanwhile (its TTL): nothing to mark
            operator.kube.patch("batch/v1", "Job", namespace, metadata["name"],
                                {"metadata": {"annotations": {REPORTED_ANNOTATION: "true"}}})
    refresh(operator, namespace, owner)  # a run request that waited for this Job starts now


def sftp_server_changed(operator: Operator, deployment: dict[str, Any], owner: str) -> None:
    """Move SFTPReady and Ready when the server's readiness changed (not at the next resync)."""
    namespace = deployment["metadata"]["namespace"]
    parent = operator.kube.get(API_VERSION, KIND, namespace, owner)
    if parent is None:
        return
    status = (deployment.get("status") or {})
    ready = "True" if (status.get("readyReplicas") or 0) >= 1 else "False"
    if condition_status((parent.get("status") or {}).get("conditions") or [],
                        ConditionType.SFTP_READY) != ready:
        refresh(operator, namespace, owner, parent)


def refresh(operator: Operator, namespace: str, name: str,
            parent: dict[str, Any] | None = None) -> None:
    """Reconcile a district outside its own handlers (a child changed) and save its status."""
    parent = parent or operator.kube.get(API_VERSION, KIND, namespace, name)
    if parent is not None:
        reconcile_and_save(operator, parent)


def reconcile_and_save(operator: Operator, body: dict[str, Any]) -> None:
    """:func:`reconcile`, then its status saved (recomputed if the district changed)."""
    missed: list[dict[str, Any]] = []

    def reconciled(body: dict[str, Any]) -> None:
        result = reconcile(operator, body)
        if result.update:
            save_status(operator, body, result.update)
        missed[:] = result.unrecorded_jobs

    _until_saved(operator, body, reconciled)
    for job in missed:
        job_changed(operator, job)


def save_status(operator: Operator, body: dict[str, Any], fields: dict[str, Any]) -> None:
    """The one way the status is written: exactly ``fields`` (maps replaced, not merged),
    and only over the version of the district they were computed from.

    Writers (reconciles, a run's outcome, the SFTP server's readiness) run in different
    threads from what each read: a write computed from an older view fails with
    :class:`Conflict` instead of overwriting a newer one (a recorded import result).
    """
    metadata, status = body["metadata"], body.get("status") or {}
    operator.kube.patch(API_VERSION, KIND, metadata["namespace"], metadata["name"], {
        "metadata": {"resourceVersion": metadata.get("resourceVersion")},
        "status": {key: replacing(status.get(key), value) for key, value in fields.items()},
    }, status=True)


def _until_saved(operator: Operator, body: dict[str, Any],
                 compute_and_save: Callable[[dict[str, Any]], None]) -> None:
    """Run ``compute_and_save`` on the district, again on a fresh read after a conflict."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    for _ in range(STATUS_ATTEMPTS):
        try:
            compute_and_save(body)
            return
        except Gone:
            return  # deleted meanwhile: no status to keep
        except Conflict:
            fresh = operator.kube.get(API_VERSION, KIND, namespace, name)
            if fresh is None:
                return
            body = fresh
    raise Unavailable(f"the status of {namespace}/{name} kept changing while it was written")


def _record(operator: Operator, parent: dict[str, Any], job: dict[str, Any]) -> None:
    def record(parent: dict[str, Any]) -> None:
        status = parent.get("status") or {}
        last = status.get("lastImport") or {}
        if last.get("jobUid") == job["metadata"].get("uid"):
            return  # recorded before a restart; the annotation did not make it
        outcome = read_outcome(operator.kube, job)
        recorded_end = parse_timestamp(last.get("finishedAt"))
        if recorded_end is not None and recorded_end > outcome.finished_at:
            return  # a run that ended later is recorded: an older one does not replace it
        wanted = status_after(outcome, status, parent["metadata"].get("generation"))
        if status.get("activeJob") == job["metadata"]["name"]:
            wanted["activeJob"] = None
        save_status(operator, parent, wanted)
        _count(operator, parent["metadata"]["namespace"], parent["metadata"]["name"], outcome)
        reason, message = describe(outcome)
        if outcome.result in (RunResult.SUCCESS, RunResult.WAITING):  # nothing failed
            kopf.info(parent, reason=reason, message=message)
        else:
            kopf.warn(parent, reason=reason, message=message)

    _until_saved(operator, parent, record)


def _count(operator: Operator, namespace: str, name: str, outcome: RunOutcome) -> None:
    if outcome.summary is None:
        operator.metrics.record_crashed_run(namespace, name)
    else:
        operator.metrics.record_run(namespace, name, outcome.summary)


# -- metrics of the fleet ----------------------------------------------------------------


def health_of(body: dict[str, Any]) -> DistrictHealth:
    """A district's gauges, from its resource's status."""
    metadata, spec = body.get("metadata") or {}, body.get("spec") or {}
    status = body.get("status") or {}
    conditions = status.get("conditions") or []
    ready = condition_status(conditions, ConditionType.READY) == "True"
    reason = next((c.get("reason") for c in conditions if c.get("type") == "Ready"), None)
    return DistrictHealth(
        namespace=metadata.get("namespace", ""), name=metadata.get("name", ""),
        district_id=str(spec.get("districtId", "")), ready=ready,
        suspended=bool(spec.get("suspend")) or reason == "Suspended",
        sftp_ready=condition_status(conditions, ConditionType.SFTP_READY) == "True",
        consecutive_failed_runs=int(status.get("consecutiveFailedRuns") or 0),
        held_files_pending=int(status.get("heldFilesPending") or 0),
        oldest_held_file_time=parse_timestamp(status.get("oldestHeldFileTime")),
        last_successful_import_time=parse_timestamp(status.get("lastSuccessfulImportTime")),
        last_run_end_time=parse_timestamp((status.get("lastImport") or {}).get("finishedAt")),
        next_run_time=parse_timestamp(status.get("nextRunTime")))
