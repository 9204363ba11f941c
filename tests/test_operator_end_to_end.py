"""A district's run end to end: resource -> operator -> Job -> importer -> status.

The operator runs for real against the emulated API; the test plays the kubelet
(tests.support.kubelet) with the very Job the operator made, running ``visitor-sync
import`` against the real sshd drop box and the real database, then reports the pod's
termination message back. What must come out: the data imported, the files gone from the
drop box, the status, conditions, Events and metrics saying what happened.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pwd
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import kopf
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from tests.support.kube import Cluster, rbac_rules, running_operator, wait_for
from tests.support.kubelet import report_job, run_job
from tests.support.operator import (
    NAMESPACE,
    RUN_REQUEST,
    annotate,
    condition,
    district,
    jobs,
    make_sftp_ready,
    posted,
    wait_status,
)
from tests.support.runs import open_database
from tests.support.sshd import SftpServer, free_port, host_keys
from visitor_sync.db.schema import Student
from visitor_sync.samples import write_district
from visitor_sync.sftp.keys import fingerprint
from visitor_sync_operator import rbac
from visitor_sync_operator.builders import importer
from visitor_sync_operator.main import build_registry
from visitor_sync_operator.metrics import Metrics
from visitor_sync_operator.settings import OperatorSettings

NAME = "springfield"


def secret(name: str, data: dict[str, bytes], owner: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    """A Secret, owned (controlled) by ``owner`` if given."""
    metadata: dict[str, Any] = {"name": name, "namespace": NAMESPACE}
    if owner is not None:
        metadata["ownerReferences"] = [{
            "apiVersion": owner["apiVersion"], "kind": owner["kind"],
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}]
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": metadata,
            "data": {key: base64.b64encode(value).decode() for key, value in data.items()}}


async def prepare(cluster: Cluster, server: SftpServer, db_url: str, **spec: Any) -> None:
    """The namespace, the database Secret, the district (before the operator runs) and
    its drop box's keys from an earlier life.

    The operator keeps what the district's own Secrets already hold (it never rotates
    silently), so the local sshd's host keys and importer key become the district's. They
    are the district's (owner reference): a Secret of someone else's would be refused.
    """
    await cluster.create({"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": NAMESPACE}})
    owner = await cluster.create(district(sftp={"username": server.accounts.district}, **spec))
    ed25519, rsa = host_keys()
    await cluster.create(secret("springfield-sftp-host-keys", {
        "ssh_host_ed25519_key": ed25519.private_openssh,
        "ssh_host_rsa_key": rsa.private_openssh}, owner))
    await cluster.create(secret("springfield-importer-key", {
        "id_ed25519": server.accounts.importer_key.pair.private_openssh}, owner))
    await cluster.create(secret("visitor-sync-database", {"url": db_url.encode()}))


def network(server: SftpServer) -> dict[str, str]:
    """Cluster DNS and the Service, as seen from this machine."""
    return {f"importer@springfield-sftp.{NAMESPACE}.svc:22":
            f"{server.accounts.importer}@{server.host}:{server.port}",
            f"springfield-sftp.{NAMESPACE}.svc ": f"[{server.host}]:{server.port} "}


def upload_samples(server: SftpServer, tmp_path: Path) -> list[str]:
    """The district's SIS pushes its export over SFTP, with its password."""
    written = write_district(tmp_path / "export", students=120)
    with server.sftp() as sftp:
        for path in written:
            sftp.put(str(path), f"/upload/{path.name}")
    return sorted(path.name for path in written)


@pytest.mark.asyncio
async def test_requested_run_imports_reports_and_counts(
        cluster: Cluster, sftp_server: SftpServer, db_url: str, tmp_path: Path) -> None:
    await prepare(cluster, sftp_server, db_url, safety={"quietPeriodSeconds": 0})
    metrics = Metrics()
    registry = build_registry(OperatorSettings(namespaces=[NAMESPACE]), metrics)
    async with running_operator(cluster, registry=registry, namespaces=[NAMESPACE],
                                memo=kopf.Memo()) as run:
        body = await wait_status(cluster, lambda b: b.get("status", {}).get("sftp"))
        assert body["status"]["sftp"]["hostKeyFingerprints"] == [
            fingerprint(key.public_line) for key in host_keys()]
        await make_sftp_ready(cluster)
        uploaded = upload_samples(sftp_server, tmp_path)

        await annotate(cluster, RUN_REQUEST, "2026-11-28T19:00:00Z")
        await wait_status(cluster, lambda b: b["status"].get("activeJob"))
        (job,) = await jobs(cluster)
        container = await run_job(cluster, job, tmp_path / "kubelet", network(sftp_server))
        assert container.exit_code == 0, container.stderr
        await report_job(cluster, job, container.exit_code, container.termination_message)

        body = await wait_status(cluster, lambda b: b["status"].get("lastImport"),
                                 timeout=15)
        events = await posted(cluster, "ImportPartial")
        reported = await cluster.get("batch/v1", "Job", job["metadata"]["name"],
                                     namespace=NAMESPACE)
        used = rbac_rules(run.requests)

    status = body["status"]
    last = status["lastImport"]
    # The samples carry two bad student rows: imported, but partial.
    assert (last["job"], last["result"], last["files"]) == (
        job["metadata"]["name"], "partial", len(uploaded))
    assert (last["counts"]["students"]["created"], last["counts"]["students"]["errors"]) == (
        118, 2)
    assert status["lastSuccessfulImportTime"] == last["finishedAt"]
    assert (status["consecutiveFailedRuns"], status.get("activeJob")) == (0, None)
    assert status["lastHandledRunRequest"] == "2026-11-28T19:00:00Z"
    assert (condition(body, "LastImportSucceeded")["status"],
            condition(body, "Ready")["status"]) == ("True", "True")
    (event,) = [e for e in events if e["reason"] == "ImportPartial"]
    assert event["type"] == "Warning" and last["runId"] in event["message"]
    assert "students.csv line 43 column Date of Birth: invalid_date" in event["message"]
    assert reported["metadata"]["annotations"]["sync.visitoraware.io/reported"] == "true"

    assert list(sftp_server.upload.iterdir()) == [], "processed files are removed"
    engine = open_database(db_url)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Student)) == 118
    engine.dispose()

    exported = generate_latest(metrics.registry).decode()
    assert (f'visitor_sync_runs_total{{district="{NAME}",namespace="{NAMESPACE}",'
            f'result="partial"}} 1.0') in exported
    assert (f'visitor_sync_rows_total{{district="{NAME}",namespace="{NAMESPACE}",'
            f'outcome="created",type="students"}} 118.0') in exported

    # This scenario makes every kind of call the operator makes: RBAC must be exactly it.
    granted = {(rule.api_group, resource): set(rule.verbs)
               for rule in rbac.RULES if rule is not rbac.OWNER_FINALIZERS
               for resource in rule.resources}
    drift_only = {(group, resource): {"patch"} for group, resource in granted
                  if "patch" in granted[(group, resource)]
                  and "patch" not in used.get((group, resource), set())}
    for key, verbs in drift_only.items():
        used.setdefault(key, set()).update(verbs)  # patched only to repair drift
    for key, verbs in used.items():
        if "patch" in verbs and "create" in granted.get(key, set()):
            verbs.add("create")  # server-side apply creates with a PATCH, needs both rights
    assert used == granted


@pytest.mark.asyncio
async def test_job_that_died_without_a_summary_is_a_failed_run(
        cluster: Cluster, sftp_server: SftpServer, db_url: str) -> None:
    await prepare(cluster, sftp_server, db_url)
    registry = build_registry(OperatorSettings(namespaces=[NAMESPACE]), Metrics())
    async with running_operator(cluster, registry=registry, namespaces=[NAMESPACE],
                                memo=kopf.Memo()):
        await wait_status(cluster, lambda b: b.get("status", {}).get("sftp"))
        await annotate(cluster, RUN_REQUEST, "oom")
        await wait_status(cluster, lambda b: b["status"].get("activeJob"))
        (job,) = await jobs(cluster)
        await report_job(cluster, job, 137, "", reason="OOMKilled")
        body = await wait_status(cluster, lambda b: b["status"].get("lastImport"))
        events = await posted(cluster, "ImportFailed")

    last = body["status"]["lastImport"]
    assert (last["result"], last.get("runId"), body["status"]["consecutiveFailedRuns"]) == (
        "failed", None, 1)
    assert "ran out of memory (OOMKilled)" in last["message"]
    assert condition(body, "LastImportSucceeded")["reason"] == "ImportFailed"
    assert any(e["type"] == "Warning" and e["reason"] == "ImportFailed" for e in events)


@pytest.mark.asyncio
async def test_a_held_file_is_approved_by_annotation_and_applied_by_the_next_run(
        cluster: Cluster, sftp_server: SftpServer, db_url: str, tmp_path: Path) -> None:
    """Support's path: a file held by the safety threshold, approved with one annotation."""
    await prepare(cluster, sftp_server, db_url, safety={"quietPeriodSeconds": 0})
    registry = build_registry(OperatorSettings(namespaces=[NAMESPACE]), Metrics())

    async def one_run(token: str, workdir: Path) -> dict[str, Any]:
        await annotate(cluster, RUN_REQUEST, token)
        await wait_status(cluster, lambda b: b["status"].get("lastHandledRunRequest") == token)
        job = next(j for j in await jobs(cluster)
                   if j["metadata"]["annotations"]["sync.visitoraware.io/run-request"] == token)
        container = await run_job(cluster, job, workdir, network(sftp_server))
        assert container.exit_code == 0, container.stderr
        await report_job(cluster, job, 0, container.termination_message)
        return await wait_status(cluster, lambda b: (b["status"].get("lastImport") or {}).get(
            "job") == job["metadata"]["name"] and not b["status"].get("activeJob"))

    async with running_operator(cluster, registry=registry, namespaces=[NAMESPACE],
                                memo=kopf.Memo()):
        await wait_status(cluster, lambda b: b.get("status", {}).get("sftp"))
        export = tmp_path / "export"
        write_district(export, students=120)
        with sftp_server.sftp() as sftp:
            sftp.put(str(export / "students.csv"), "/upload/students.csv")
        await one_run("first", tmp_path / "first")

        halved = export / "half.csv"
        lines = (export / "students.csv").read_text().splitlines(keepends=True)
        halved.write_text("".join(lines[:61]))  # the header and 60 of 120 students
        with sftp_server.sftp() as sftp:
            sftp.put(str(halved), "/upload/students.csv")
        held = await one_run("second", tmp_path / "second")
        last = held["status"]["lastImport"]
        assert (last["result"], last["heldFiles"], held["status"]["heldFilesPending"]) == (
            "held", ["students.csv"], 1)

        await annotate(cluster, "sync.visitoraware.io/approve-held", last["runId"])
        await wait_status(cluster, lambda b: b["status"].get("lastHandledApproval")
                          == last["runId"])
        approved = await one_run("third", tmp_path / "third")

    assert approved["status"]["heldFilesPending"] == 0
    assert approved["status"]["lastImport"]["counts"]["students"]["deactivated"] == 59


@pytest.mark.asyncio
async def test_visitor_sync_operator_command_serves_health_metrics_and_stops_cleanly(
        cluster: Cluster, tmp_path: Path) -> None:
    """The deployed entry point: settings from the environment, /healthz, /metrics, SIGTERM.

    It runs as the pod runs it: as the image's uid, which has no user database entry, with
    no ``USER``/``LOGNAME`` (kopf's default identity needs one of them and crashed in every
    pod). ``setpriv`` keeps only the right to read files, so the root-owned test tree and
    interpreter stay readable.
    """
    assert shutil.which("setpriv"), "util-linux's setpriv runs the operator as the pod's uid"
    with pytest.raises(KeyError):
        pwd.getpwuid(importer.RUN_AS)  # the image's uid: no user database entry, like the pod
    await cluster.create({"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": NAMESPACE}})
    metrics_port, health_port = free_port(), free_port()
    environment = {name: value for name, value in os.environ.items()
                   if name not in {"USER", "LOGNAME", "LNAME", "USERNAME", "POD_ID",
                                   "KUBERNETES_SERVICE_HOST"}}
    environment.update({"HOME": "/tmp", "KUBECONFIG": str(cluster.kubeconfig),
                        "VISITOR_SYNC_NAMESPACES": json.dumps([NAMESPACE]),
                        "VISITOR_SYNC_METRICS_PORT": str(metrics_port),
                        "VISITOR_SYNC_HEALTH_PORT": str(health_port)})
    as_the_pod = ["setpriv", f"--reuid={importer.RUN_AS}", f"--regid={importer.RUN_AS}",
                  "--clear-groups", "--inh-caps=+dac_read_search",
                  "--ambient-caps=+dac_read_search"]
    log = (tmp_path / "operator.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        *as_the_pod, str(Path(sys.executable).with_name("visitor-sync")), "operator",
        env=environment, stdout=log, stderr=log)
    try:
        async with aiohttp.ClientSession() as session:
            async def answers(port: int, path: str) -> str | None:
                try:
                    async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                        return await response.text() if response.status == 200 else None
                except aiohttp.ClientError:
                    return None

            await wait_for(lambda: answers(health_port, "/healthz"), timeout=20,
                           message=lambda: (tmp_path / "operator.log").read_text())
            await cluster.create(district())
            await wait_status(cluster, lambda b: b.get("status", {}).get("sftp"), timeout=20)
            scraped = await answers(metrics_port, "/metrics")
        assert scraped is not None
        families = {family.name: family for family in text_string_to_metric_families(scraped)}
        (info,) = families["visitor_sync_district_info"].samples
        assert info.labels == {"namespace": NAMESPACE, "district": NAME, "district_id": NAME}
        assert {sample.labels["result"] for sample in families["visitor_sync_runs"].samples
                if sample.name == "visitor_sync_runs_total"} == {
            "success", "partial", "held", "failed", "waiting"}
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(process.wait(), timeout=20)
        log.close()
    assert returncode == 0, (tmp_path / "operator.log").read_text()[-3000:]
