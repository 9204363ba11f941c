"""The operator against a real kube-apiserver: what docs/operations.md and
docs/architecture.md promise, as the server (not an emulator) sees it.

Each test has its own namespace and operator process (the chart's ServiceAccount and
RBAC, under OwnerReferencesPermissionEnforcement); the real Job controller and garbage
collector run; the tests play only the kubelet.
"""

from __future__ import annotations

import hashlib
import signal
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.realapi.conftest import Installed
from tests.support.manifests import KUBERNETES_VERSIONS, validate_strictly
from tests.support.realapi import (
    OperatorProcess,
    audited,
    install_chart,
    moment,
    service_account_kubeconfig,
    wait_until,
)
from visitor_sync.config import ImportConfig
from visitor_sync.summary import FileOutcome, FileStatus, ImportSummary, RunResult

API = "sync.visitoraware.io/v1alpha1"
KIND = "DistrictSync"
NAME = "springfield"
CHILDREN = [
    ("v1", "Secret", "springfield-sftp-credentials"),
    ("v1", "Secret", "springfield-sftp-host-keys"),
    ("v1", "Secret", "springfield-importer-key"),
    ("v1", "ConfigMap", "springfield-sftp"),
    ("v1", "PersistentVolumeClaim", "springfield-sftp"),
    ("apps/v1", "Deployment", "springfield-sftp"),
    ("v1", "Service", "springfield-sftp"),
    ("networking.k8s.io/v1", "NetworkPolicy", "springfield-sftp"),
    ("v1", "ConfigMap", "springfield-import"),
    ("batch/v1", "CronJob", "springfield-import"),
]


def district(namespace: str, name: str = NAME, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"districtId": name, "displayName": name.title(), **spec}}


def condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (body.get("status") or {}).get("conditions") or []
                 if c["type"] == kind), {})


def status_when(installed: Installed, namespace: str, check: Any, name: str = NAME,
                timeout: float = 30) -> dict[str, Any]:
    """The resource once ``check(body)`` holds."""
    def holds() -> dict[str, Any] | None:
        body = installed.admin.get(API, KIND, name, namespace)
        return body if body is not None and check(body) else None

    return wait_until(holds, timeout, lambda: str(installed.admin.get(API, KIND, name,
                                                                     namespace))[:3000])


def provisioned(installed: Installed, namespace: str, name: str = NAME) -> dict[str, Any]:
    return status_when(installed, namespace, lambda b: (b.get("status") or {}).get("sftp"),
                       name)


def test_a_new_district_gets_every_child_owned_and_valid(
        installed: Installed, namespace: str, operator: OperatorProcess) -> None:
    installed.admin.create(district(namespace))
    body = provisioned(installed, namespace)

    for api_version, kind, name in CHILDREN:
        child = installed.admin.get(api_version, kind, name, namespace)
        assert child is not None, (kind, name)
        owners = child["metadata"]["ownerReferences"]
        assert [(o["kind"], o["name"], o["uid"], o["controller"]) for o in owners] == [
            (KIND, NAME, body["metadata"]["uid"], True)], (kind, name)
        for field in ("uid", "resourceVersion", "creationTimestamp", "generation",
                      "managedFields"):
            child["metadata"].pop(field, None)
        child.pop("status", None)
        validate_strictly(child, KUBERNETES_VERSIONS[-1])
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"]
    assert (condition(body, "Ready")["status"], condition(body, "Stalled")["status"]) == (
        "False", "False")


# -- helpers of the run tests ------------------------------------------------------------

RUN_REQUEST = "sync.visitoraware.io/run-requested-at"
APPROVE = "sync.visitoraware.io/approve-held"
ROTATE = "sync.visitoraware.io/rotate-credentials"


def annotate(installed: Installed, namespace: str, key: str, value: str,
             name: str = NAME) -> None:
    installed.admin.patch(API, KIND, name, {"metadata": {"annotations": {key: value}}},
                          namespace)


def summary(*files: FileOutcome, result: RunResult = RunResult.SUCCESS) -> str:
    """What the importer writes to its termination log (the contract's own model)."""
    at = datetime.now(UTC).replace(microsecond=0)
    return ImportSummary(run_id=str(uuid.uuid4()), district_id=NAME, result=result,
                         started_at=at, finished_at=at, files=list(files)
                         ).model_dump_json(exclude_defaults=True)


def applied(file: str, type_: str, **counts: int) -> FileOutcome:
    return FileOutcome(file=file, type=type_, status=FileStatus.APPLIED, **counts)


def job_named(installed: Installed, namespace: str, name: str) -> dict[str, Any]:
    return wait_until(lambda: installed.admin.get("batch/v1", "Job", name, namespace),
                      message=f"no Job {name}")


def run_job_name(token: str) -> str:
    return f"{NAME}-import-run-{hashlib.sha256(token.encode()).hexdigest()[:8]}"


def job_ended(installed: Installed, job: dict[str, Any]) -> dict[str, Any]:
    """The Job once the real Job controller has given it its final condition."""
    def ended() -> dict[str, Any] | None:
        body = installed.admin.get("batch/v1", "Job", job["metadata"]["name"],
                                   job["metadata"]["namespace"]) or {}
        done = any(c["type"] in ("Complete", "Failed") and c["status"] == "True"
                   for c in (body.get("status") or {}).get("conditions") or [])
        return body if done else None

    return wait_until(ended, message=f"Job {job['metadata']['name']} did not end")


def run_once(installed: Installed, namespace: str, token: str, message: str,
             exit_code: int = 0) -> dict[str, Any]:
    """Ask for a run, play its pod to the end, and return the status that recorded it."""
    annotate(installed, namespace, RUN_REQUEST, token)
    job = job_named(installed, namespace, run_job_name(token))
    installed.kubelet.finish(job, exit_code, message)
    job_ended(installed, job)
    return status_when(installed, namespace, lambda b: (b["status"].get("lastImport") or {})
                       .get("job") == job["metadata"]["name"])


def counted(status: dict[str, Any]) -> dict[str, dict[str, int]]:
    """``lastImport.counts`` without the zeros (the CRD's defaults, filled by the server)."""
    return {type_: {key: count for key, count in counts.items() if count}
            for type_, counts in status["lastImport"]["counts"].items()}


def reasons(installed: Installed, namespace: str) -> list[str]:
    return [e["reason"] for e in installed.admin.events(namespace)
            if e["involvedObject"]["kind"] == KIND]


# -- runs -------------------------------------------------------------------------------


def test_run_now_starts_one_job_echoes_the_token_and_records_the_outcome(
        installed: Installed, namespace: str, operator: OperatorProcess) -> None:
    installed.admin.create(district(namespace, suspend=True))
    provisioned(installed, namespace)
    body = run_once(installed, namespace, "first", summary(
        applied("students.csv", "students", rows_read=3, created=3)))

    status = body["status"]
    assert status["lastHandledRunRequest"] == "first"
    assert status.get("activeJob") is None
    assert (status["lastImport"]["result"], counted(status)) == (
        "success", {"students": {"rowsRead": 3, "created": 3}})
    assert condition(body, "LastImportSucceeded")["status"] == "True"
    assert reasons(installed, namespace).count("ImportSucceeded") == 1
    job = installed.admin.get("batch/v1", "Job", run_job_name("first"), namespace)
    assert job["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]
    assert [j["metadata"]["name"] for j in installed.admin.list("batch/v1", "Job",
                                                                namespace)] == [
        run_job_name("first")]


def test_a_request_during_an_active_run_waits_for_it(
        installed: Installed, namespace: str, operator: OperatorProcess) -> None:
    installed.admin.create(district(namespace))
    provisioned(installed, namespace)
    annotate(installed, namespace, RUN_REQUEST, "first")
    first = job_named(installed, namespace, run_job_name("first"))
    installed.kubelet.start(first)
    status_when(installed, namespace, lambda b: b["status"].get("activeJob") ==
                first["metadata"]["name"])

    annotate(installed, namespace, RUN_REQUEST, "second")
    wait_until(lambda: "run request second" in operator.log() and "waits for Job" in
               operator.log(), message=lambda: operator.log()[-2000:])
    assert installed.admin.get("batch/v1", "Job", run_job_name("second"), namespace) is None
    assert installed.admin.get(API, KIND, NAME, namespace)["status"][
        "lastHandledRunRequest"] == "first"

    installed.kubelet.finish(first, 0, summary(applied("students.csv", "students",
                                                       rows_read=1, unchanged=1)))
    second = job_named(installed, namespace, run_job_name("second"))
    body = status_when(installed, namespace, lambda b: (
        b["status"].get("lastHandledRunRequest"),
        (b["status"].get("lastImport") or {}).get("job")) == ("second",
                                                              first["metadata"]["name"]))
    assert body["status"]["activeJob"] == second["metadata"]["name"]


def test_counts_of_a_run_replace_the_previous_runs(
        installed: Installed, namespace: str, operator: OperatorProcess) -> None:
    """Issue 14 defect 3: a type the last run did not have is not in its counts."""
    installed.admin.create(district(namespace, suspend=True))
    provisioned(installed, namespace)
    run_once(installed, namespace, "first", summary(
        applied("students.csv", "students", rows_read=3, created=3),
        applied("visitors.csv", "visitors", rows_read=2, created=2)))
    body = run_once(installed, namespace, "second", summary(
        applied("students.csv", "students", rows_read=3, unchanged=3)))

    assert counted(body["status"]) == {"students": {"rowsRead": 3, "unchanged": 3}}


def test_a_run_that_ends_while_the_operator_is_down_is_recorded_once_on_restart(
        installed: Installed, namespace: str, start_operator: Any) -> None:
    first = start_operator()
    installed.admin.create(district(namespace, suspend=True))
    provisioned(installed, namespace)
    annotate(installed, namespace, RUN_REQUEST, "first")
    job = job_named(installed, namespace, run_job_name("first"))
    installed.kubelet.start(job)
    status_when(installed, namespace, lambda b: b["status"].get("activeJob"))
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL  # a crash, mid-run

    installed.kubelet.finish(job, 0, summary(applied("students.csv", "students",
                                                     rows_read=1, created=1)))
    job_ended(installed, job)
    start_operator()
    body = status_when(installed, namespace, lambda b: (b["status"].get("lastImport") or {})
                       .get("job") == job["metadata"]["name"])
    wait_until(lambda: "ImportSucceeded" in reasons(installed, namespace))

    assert body["status"].get("activeJob") is None
    assert reasons(installed, namespace).count("ImportSucceeded") == 1
    assert len(installed.admin.list("batch/v1", "Job", namespace)) == 1


def test_approval_reaches_the_runs_config_and_is_echoed(
        installed: Installed, namespace: str, operator: OperatorProcess) -> None:
    installed.admin.create(district(namespace))
    provisioned(installed, namespace)
    run_id = "5f0c6a52-0000-4000-8000-000000000001"
    annotate(installed, namespace, APPROVE, run_id)
    status_when(installed, namespace, lambda b: b["status"].get("lastHandledApproval") == run_id)
    config = installed.admin.get("v1", "ConfigMap", f"{NAME}-import", namespace)
    assert ImportConfig.model_validate_json(
        config["data"]["import-config.json"]).approve_held_run == run_id


# -- schedule ---------------------------------------------------------------------------


def test_suspend_and_pause_windows_stop_scheduled_runs_but_not_requested_ones(
        installed: Installed, namespace: str, operator: OperatorProcess) -> None:
    today = datetime.now(UTC).date()
    window = {"start": str(today - timedelta(days=1)), "end": str(today + timedelta(days=1)),
              "reason": "summer rollover"}
    installed.admin.create(district(namespace, pauseWindows=[window]))
    body = status_when(installed, namespace, lambda b: condition(b, "Ready").get("reason")
                       in ("Suspended", "SFTPNotReady") and b["status"].get("sftp"))
    cron = installed.admin.get("batch/v1", "CronJob", f"{NAME}-import", namespace)
    assert cron["spec"]["suspend"] is True
    assert "paused from" in condition(body, "Ready")["message"]
    assert body["status"]["nextRunTime"] > f"{today + timedelta(days=1)}T"

    annotate(installed, namespace, RUN_REQUEST, "during-the-pause")
    job_named(installed, namespace, run_job_name("during-the-pause"))

    installed.admin.patch(API, KIND, NAME, {"spec": {"pauseWindows": [], "suspend": True}},
                          namespace)
    body = status_when(installed, namespace, lambda b: b["status"]["observedGeneration"] == 2)
    assert "spec.suspend is true" in condition(body, "Ready")["message"]
    assert body["status"].get("nextRunTime") is None
    installed.admin.patch(API, KIND, NAME, {"spec": {"suspend": False}}, namespace)
    status_when(installed, namespace, lambda b: b["status"]["observedGeneration"] == 3
                and b["status"].get("nextRunTime"))
    cron = installed.admin.get("batch/v1", "CronJob", f"{NAME}-import", namespace)
    assert cron["spec"]["suspend"] is False


# -- secrets ----------------------------------------------------------------------------


def test_the_password_changes_only_on_an_explicit_rotation(
        installed: Installed, namespace: str, operator: OperatorProcess) -> None:
    installed.admin.create(district(namespace))
    provisioned(installed, namespace)
    secret = f"{NAME}-sftp-credentials"
    before = installed.admin.get("v1", "Secret", secret, namespace)["data"]["password"]
    checksum = _pod_checksum(installed, namespace)

    annotate(installed, namespace, ROTATE, "2026-12-03")
    status_when(installed, namespace,
                lambda b: b["status"].get("lastHandledRotation") == "2026-12-03")
    after = installed.admin.get("v1", "Secret", secret, namespace)["data"]["password"]
    assert after != before
    assert _pod_checksum(installed, namespace) != checksum, "sshd restarts with it"
    wait_until(lambda: "CredentialsRotated" in reasons(installed, namespace))


def _pod_checksum(installed: Installed, namespace: str) -> dict[str, str]:
    deployment = installed.admin.get("apps/v1", "Deployment", f"{NAME}-sftp", namespace)
    return deployment["spec"]["template"]["metadata"]["annotations"]


# -- drift, idleness ----------------------------------------------------------------------


def test_deleted_or_edited_children_are_repaired(
        installed: Installed, namespace: str, start_operator: Any) -> None:
    start_operator(resync_seconds=1)
    installed.admin.create(district(namespace))
    provisioned(installed, namespace)
    service = installed.admin.get("v1", "Service", f"{NAME}-sftp", namespace)
    assert service["spec"]["type"] == "LoadBalancer"
    installed.admin.delete("networking.k8s.io/v1", "NetworkPolicy", f"{NAME}-sftp", namespace)
    installed.admin.patch("v1", "Service", f"{NAME}-sftp", {"spec": {"type": "NodePort"}},
                          namespace)

    wait_until(lambda: installed.admin.get("networking.k8s.io/v1", "NetworkPolicy",
                                           f"{NAME}-sftp", namespace))
    wait_until(lambda: installed.admin.get("v1", "Service", f"{NAME}-sftp", namespace)[
        "spec"]["type"] == "LoadBalancer")


def test_an_idle_resync_reads_little_and_writes_nothing(
        installed: Installed, namespace: str, start_operator: Any) -> None:
    """Issue 13 items 1 and 8, as the API server's audit log saw them."""
    start_operator(resync_seconds=1)
    installed.admin.create(district(namespace))
    provisioned(installed, namespace)

    def resyncs_since(since: datetime) -> int:
        """Resyncs run since ``since``: each reads the district's credentials Secret."""
        return sum(1 for r in _operator_requests(installed, namespace, since)
                   if r.resource == "secrets" and r.name == f"{NAME}-sftp-credentials")

    settled = moment()
    wait_until(lambda: resyncs_since(settled) >= 2, message="no resync ran")
    since, events = moment(), len(installed.admin.events(namespace))
    wait_until(lambda: resyncs_since(since) >= 3, message="no resync ran")
    requests = _operator_requests(installed, namespace, since)
    resyncs = resyncs_since(since)

    assert [str(r) for r in requests if r.is_write] == []
    assert len(installed.admin.events(namespace)) == events
    reads = len([r for r in requests if not r.is_write and r.verb != "watch"])
    print(f"idle resync: {reads / resyncs:.1f} reads per district per resync")
    # Issue 13 item 8 (kopf indexes instead of reads) is not done: 11 reads, each child
    # and Secret read once, plus the Job list. More would be a regression.
    assert reads / resyncs <= 11


def _operator_requests(installed: Installed, namespace: str, since: datetime) -> list[Any]:
    return [r for r in audited(installed.audit_log, installed.operator_user, since)
            if r.namespace == namespace]


# -- ownership --------------------------------------------------------------------------


THEIRS = {
    "Service": {"apiVersion": "v1", "kind": "Service", "spec": {
        "type": "LoadBalancer", "ports": [{"port": 443}], "selector": {"app": "theirs"}}},
    "Secret": {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "data": {"password": "dGhlaXJz"}},
}


@pytest.mark.parametrize(("kind", "name"), [("Service", f"{NAME}-sftp"),
                                            ("Secret", f"{NAME}-sftp-credentials")])
def test_a_child_it_does_not_own_is_refused_not_taken_over(
        installed: Installed, namespace: str, operator: OperatorProcess, kind: str,
        name: str) -> None:
    """Issue 13 item 2: a same-named object of someone else's is left as it is."""
    theirs = installed.admin.create({**THEIRS[kind], "metadata": {
        "name": name, "namespace": namespace}})
    installed.admin.create(district(namespace))

    body = status_when(installed, namespace,
                       lambda b: condition(b, "Stalled").get("status") == "True")
    stalled = condition(body, "Stalled")
    assert stalled["reason"] == "ChildNotOwned"
    assert f"{kind} {namespace}/{name} already exists" in stalled["message"]
    after = installed.admin.get("v1", kind, name, namespace)
    assert after["metadata"]["resourceVersion"] == theirs["metadata"]["resourceVersion"]
    assert not after["metadata"].get("ownerReferences")


# -- deletion ----------------------------------------------------------------------------


def test_deleting_a_district_while_the_operator_is_down_does_not_hang(
        installed: Installed, namespace: str, start_operator: Any) -> None:
    operator = start_operator()
    installed.admin.create(district(namespace))
    provisioned(installed, namespace)
    operator.stop()

    installed.admin.delete(API, KIND, NAME, namespace)
    wait_until(lambda: installed.admin.get(API, KIND, NAME, namespace) is None,
               message="the DistrictSync is still there (a finalizer nobody removes?)")
    # The real garbage collector removes the children (owner references).
    wait_until(lambda: installed.admin.get("v1", "Service", f"{NAME}-sftp", namespace) is None)


def test_foreground_deletion_removes_children_first_without_an_error(
        installed: Installed, namespace: str, operator: OperatorProcess) -> None:
    installed.admin.create(district(namespace))
    provisioned(installed, namespace)
    installed.admin.delete(API, KIND, NAME, namespace, propagation="Foreground")
    wait_until(lambda: installed.admin.get(API, KIND, NAME, namespace) is None,
               message="the DistrictSync is still there")
    assert installed.admin.get("apps/v1", "Deployment", f"{NAME}-sftp", namespace) is None
    assert " ERROR " not in operator.log() and "[ERROR" not in operator.log()


# -- RBAC modes, printer columns ------------------------------------------------------------


def test_namespaced_rbac_mode_provisions_with_a_role_only(
        installed: Installed, namespace: str, start_operator: Any, tmp_path: Any) -> None:
    account = install_chart(installed.admin, {"watchNamespaces": [namespace]},
                            release=f"vs-{namespace}")
    kubeconfig = service_account_kubeconfig(installed.plane, installed.admin, account,
                                            tmp_path / "namespaced.kubeconfig")
    start_operator(kubeconfig=kubeconfig)
    installed.admin.create(district(namespace))
    body = provisioned(installed, namespace)
    assert condition(body, "Stalled")["status"] == "False"


def test_the_next_run_column_shows_the_time(
        installed: Installed, namespace: str, operator: OperatorProcess) -> None:
    """Issue 13 item 6 / issue 14 defect 4: kubectl rendered a future date as <invalid>."""
    installed.admin.create(district(namespace))
    body = status_when(installed, namespace,
                       lambda b: (b.get("status") or {}).get("nextRunTime"))
    table = installed.admin.table(API, KIND, namespace)
    columns = [c["name"] for c in table["columnDefinitions"]]
    (row,) = table["rows"]
    column = next(c for c in table["columnDefinitions"] if c["name"] == "Next run")
    assert column["type"] == "string"
    assert row["cells"][columns.index("Next run")] == body["status"]["nextRunTime"]


def test_a_scheduled_run_is_active_then_recorded_once_by_job_uid(
        installed: Installed, namespace: str, operator: OperatorProcess) -> None:
    """Issue 13 item 4: a CronJob's Job (owned by the CronJob, not the district) counts."""
    installed.admin.create(district(namespace))
    provisioned(installed, namespace)
    cron = installed.admin.get("batch/v1", "CronJob", f"{NAME}-import", namespace)
    template = cron["spec"]["jobTemplate"]
    job = installed.admin.create({  # what the CronJob controller makes at the hour
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"{NAME}-import-29400000", "namespace": namespace,
                     "labels": template["metadata"]["labels"],
                     "ownerReferences": [{
                         "apiVersion": "batch/v1", "kind": "CronJob", "name": f"{NAME}-import",
                         "uid": cron["metadata"]["uid"], "controller": True,
                         "blockOwnerDeletion": True}]},
        "spec": template["spec"]})
    status_when(installed, namespace,
                lambda b: b["status"].get("activeJob") == job["metadata"]["name"])

    installed.kubelet.finish(job, 0, summary(applied("students.csv", "students",
                                                     rows_read=2, created=2)))
    body = status_when(installed, namespace, lambda b: (b["status"].get("lastImport") or {})
                       .get("jobUid") == job["metadata"]["uid"])
    wait_until(lambda: "ImportSucceeded" in reasons(installed, namespace))
    assert body["status"].get("activeJob") is None
    assert reasons(installed, namespace).count("ImportSucceeded") == 1
