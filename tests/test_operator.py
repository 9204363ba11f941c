"""The operator, for real: the kopf engine and our handlers against the emulated API.

kmock (tests.support.kube) plays the API server; the tests play the kubelet and the
controllers that do not exist there (a Deployment becoming ready, a Job finishing).
"""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.kube import Cluster, wait_for
from tests.support.manifests import KUBERNETES_VERSIONS, validate_strictly
from tests.support.operator import (
    API,
    APPROVE,
    CHILDREN,
    KIND,
    NAME,
    NAMESPACE,
    RUN_REQUEST,
    TIMEOUT,
    annotate,
    children,
    condition,
    district,
    jobs,
    make_sftp_ready,
    operating,
    posted,
    resource,
    wait_status,
)
from visitor_sync.config import ImportConfig

# -- provisioning ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_new_district_gets_every_child_owned_and_valid(cluster: Cluster) -> None:
    async with operating(cluster):
        await cluster.create(district())
        body = await wait_status(cluster, lambda b: b.get("status", {}).get("sftp"))
        made = await children(cluster)

    assert sorted(made) == sorted((kind, name) for _, kind, name in CHILDREN)
    for (kind, name), child in made.items():
        owners = child["metadata"]["ownerReferences"]
        assert [(o["kind"], o["name"], o["uid"], o["controller"]) for o in owners] == [
            (KIND, NAME, body["metadata"]["uid"], True)], (kind, name)
        for field in ("uid", "resourceVersion", "creationTimestamp", "generation"):
            child["metadata"].pop(field, None)
        child.pop("status", None)
        validate_strictly(child, KUBERNETES_VERSIONS[0])
    status = body["status"]
    assert status["observedGeneration"] == body["metadata"]["generation"]
    assert (status["sftp"]["username"], status["sftp"]["credentialsSecret"]) == (
        NAME, "springfield-sftp-credentials")
    assert [fp.startswith("SHA256:") for fp in status["sftp"]["hostKeyFingerprints"]] == [
        True, True]
    assert (condition(body, "Ready")["status"], condition(body, "SFTPReady")["status"],
            condition(body, "Stalled")["status"]) == ("False", "False", "False")
    assert condition(body, "LastImportSucceeded")["reason"] == "NoRunYet"
    assert status["schedule"].endswith(" * * * *") and status["nextRunTime"]


@pytest.mark.asyncio
async def test_ready_follows_the_sftp_server(cluster: Cluster) -> None:
    async with operating(cluster):
        await cluster.create(district())
        await wait_status(cluster, lambda b: condition(b, "SFTPReady"))
        await make_sftp_ready(cluster)
        body = await wait_status(cluster, lambda b: condition(b, "Ready").get("status") == "True")
    assert condition(body, "SFTPReady")["reason"] == "ServerReady"


@pytest.mark.asyncio
async def test_bad_spec_stalls_with_the_reason_and_makes_nothing(cluster: Cluster) -> None:
    async with operating(cluster):
        await cluster.create(district(schedule="every hour", sftp={"passwordLogin": False}))
        body = await wait_status(cluster, lambda b: condition(b, "Stalled"))
        assert (await children(cluster)) == {}
        stalled = condition(body, "Stalled")
        assert (stalled["status"], stalled["reason"]) == ("True", "InvalidSpec")
        assert "schedule" in stalled["message"] and "could not log in" in stalled["message"]
        assert condition(body, "Ready")["status"] == "False"
        events = await posted(cluster, "InvalidSpec")
        assert all(e["type"] == "Warning" for e in events if e["reason"] == "InvalidSpec")

        await cluster.patch(API, KIND, NAME, {"spec": {"schedule": "5 * * * *",
                                                        "sftp": {"passwordLogin": True}}},
                            namespace=NAMESPACE)
        body = await wait_status(cluster,
                                 lambda b: condition(b, "Stalled").get("status") == "False")
        assert len(await children(cluster)) == len(CHILDREN)
        assert body["status"]["schedule"] == "5 * * * *"


@pytest.mark.asyncio
async def test_spec_change_patches_only_the_children_it_affects(cluster: Cluster) -> None:
    async with operating(cluster) as run:
        await cluster.create(district())
        await wait_status(cluster, lambda b: b.get("status", {}).get("sftp"))
        before = len(cluster.requests)
        await cluster.patch(API, KIND, NAME, {"spec": {"notifications": {
            "recipients": ["it@springfield.example.org"]}}}, namespace=NAMESPACE)
        await wait_status(cluster, lambda b: b["status"]["observedGeneration"] == 2)
        await asyncio.sleep(0.3)
        writes = {(r.resource, r.name, r.subresource) for r in run.requests
                  if r.id >= before and r.is_write and r.resource != "events"}

    assert writes - {(("districtsyncs", NAME, None)), ("districtsyncs", NAME, "status")} == {
        ("configmaps", "springfield-import", None)}
    config = (await cluster.get("v1", "ConfigMap", "springfield-import",
                                namespace=NAMESPACE))["data"]["import-config.json"]
    assert ImportConfig.model_validate_json(config).notifications.recipients == [
        "it@springfield.example.org"]


@pytest.mark.asyncio
async def test_deleted_or_edited_children_are_repaired(cluster: Cluster) -> None:
    async with operating(cluster, resync=0.5):
        await cluster.create(district())
        await wait_status(cluster, lambda b: b.get("status", {}).get("sftp"))
        original = await children(cluster)
        await cluster.delete("v1", "Service", "springfield-sftp", namespace=NAMESPACE)
        await cluster.patch("v1", "ConfigMap", "springfield-sftp",
                            {"data": {"sshd_config": "PermitRootLogin yes\n"}},
                            namespace=NAMESPACE)
        await cluster.patch("v1", "Secret", "springfield-sftp-credentials",
                            {"metadata": {"labels": {"app.kubernetes.io/instance": "x"}}},
                            namespace=NAMESPACE)

        async def repaired() -> bool:
            now = await children(cluster)
            return (("Service", "springfield-sftp") in now
                    and now[("ConfigMap", "springfield-sftp")]["data"] == original[
                        ("ConfigMap", "springfield-sftp")]["data"]
                    and now[("Secret", "springfield-sftp-credentials")]["metadata"]["labels"]
                    == original[("Secret", "springfield-sftp-credentials")]["metadata"][
                        "labels"])

        await wait_for(repaired, timeout=TIMEOUT)
        after = await children(cluster)
    assert after[("Secret", "springfield-sftp-credentials")]["data"] == original[
        ("Secret", "springfield-sftp-credentials")]["data"], "the password was kept"


@pytest.mark.asyncio
async def test_idle_resync_writes_nothing(cluster: Cluster) -> None:
    async with operating(cluster, resync=0.2) as run:
        await cluster.create(district())
        await wait_status(cluster, lambda b: b.get("status", {}).get("sftp"))
        start = len(cluster.requests)
        while True:  # settled: no write for a while (the first status may take a moment)
            await asyncio.sleep(1.5)
            if not any(r.is_write for r in cluster.requests[start:]):
                break
            start = len(cluster.requests)
        await asyncio.sleep(1.5)  # several resync rounds
        reads = [r for r in run.requests if r.id >= start and not r.is_write]
        writes = [(r.method, r.path, r.body) for r in run.requests if r.id >= start and r.is_write]
    assert reads, "the resync did not run"
    assert writes == []


@pytest.mark.asyncio
async def test_deleting_the_resource_deletes_nothing_itself(cluster: Cluster) -> None:
    async with operating(cluster) as run:
        await cluster.create(district())
        await wait_status(cluster, lambda b: b.get("status", {}).get("sftp"))
        await cluster.delete(API, KIND, NAME, namespace=NAMESPACE)
        await wait_for(lambda: cluster.peek(API, KIND, NAME, namespace=NAMESPACE) is None,
                       timeout=TIMEOUT)
        await asyncio.sleep(0.2)
        deletes = [r.path for r in run.requests if r.method == "DELETE"]
    # Children go by their owner references (the cluster's garbage collector); the
    # district's data in the database is never touched by the operator.
    assert deletes == []


# -- run now, approvals, rotation --------------------------------------------------------


def handled(body: dict) -> str:
    """What kopf last handled of the resource (its diff base, written after the handlers)."""
    return (body["metadata"].get("annotations") or {}).get(
        "kopf.sync.visitoraware.io/last-handled-configuration", "")


@pytest.mark.asyncio
async def test_run_request_starts_exactly_one_job_per_token(cluster: Cluster) -> None:
    async with operating(cluster):
        await cluster.create(district(suspend=True))
        await wait_status(cluster, lambda b: b.get("status", {}).get("sftp"))
        await annotate(cluster, RUN_REQUEST, "t1")
        body = await wait_status(cluster,
                                 lambda b: b["status"].get("lastHandledRunRequest") == "t1")
        (job,) = await jobs(cluster)
        cron = await cluster.get("batch/v1", "CronJob", "springfield-import",
                                 namespace=NAMESPACE)
        assert cron["spec"]["suspend"] is True
        assert job["spec"]["template"] == cron["spec"]["jobTemplate"]["spec"]["template"]
        assert body["status"]["activeJob"] == job["metadata"]["name"]

        # Another change of the resource does not start the same request again (the
        # positive marker first: kopf has handled the change once its diff base has it).
        await cluster.patch(API, KIND, NAME, {"metadata": {"labels": {"tier": "pilot"}}},
                            namespace=NAMESPACE)
        await wait_status(cluster, lambda b: '"pilot"' in handled(b))
        assert len(await jobs(cluster)) == 1

        # A new token while the run is active waits for it to finish.
        await annotate(cluster, RUN_REQUEST, "t2")
        await wait_status(cluster, lambda b: '"t2"' in handled(b))
        assert len(await jobs(cluster)) == 1
        assert (await resource(cluster))["status"]["lastHandledRunRequest"] == "t1"

        await cluster.patch_status("batch/v1", "Job", job["metadata"]["name"], {
            "conditions": [{"type": "Complete", "status": "True",
                            "lastTransitionTime": "2026-11-28T18:20:00Z"}], "succeeded": 1},
            namespace=NAMESPACE)
        await wait_status(cluster, lambda b: b["status"].get("lastHandledRunRequest") == "t2")
        assert len(await jobs(cluster)) == 2


@pytest.mark.asyncio
async def test_approval_reaches_the_next_run_and_is_echoed(cluster: Cluster) -> None:
    run_id = "5f0c6a52-0000-4000-8000-000000000001"
    async with operating(cluster):
        await cluster.create(district())
        await wait_status(cluster, lambda b: b.get("status", {}).get("sftp"))
        await annotate(cluster, APPROVE, run_id)
        await wait_status(cluster, lambda b: b["status"].get("lastHandledApproval") == run_id)
    config = (await cluster.get("v1", "ConfigMap", "springfield-import",
                                namespace=NAMESPACE))["data"]["import-config.json"]
    assert ImportConfig.model_validate_json(config).approve_held_run == run_id


@pytest.mark.asyncio
async def test_password_changes_only_on_an_explicit_rotation(cluster: Cluster) -> None:
    async def password() -> bytes:
        secret = await cluster.get("v1", "Secret", "springfield-sftp-credentials",
                                   namespace=NAMESPACE)
        return base64.b64decode(secret["data"]["password"])

    async def checksum() -> str:
        deployment = await cluster.get("apps/v1", "Deployment", "springfield-sftp",
                                       namespace=NAMESPACE)
        return deployment["spec"]["template"]["metadata"]["annotations"][
            "sync.visitoraware.io/config-checksum"]

    async with operating(cluster):
        await cluster.create(district())
        await wait_status(cluster, lambda b: b.get("status", {}).get("sftp"))
        first, first_checksum = await password(), await checksum()
        await cluster.patch(API, KIND, NAME, {"spec": {"displayName": "Springfield SD"}},
                            namespace=NAMESPACE)
        await wait_status(cluster, lambda b: b["status"]["observedGeneration"] == 2)
        assert await password() == first

        await annotate(cluster, "sync.visitoraware.io/rotate-credentials", "2026-11-28")
        await wait_status(cluster,
                          lambda b: b["status"].get("lastHandledRotation") == "2026-11-28")
        assert await password() != first
        assert await checksum() != first_checksum, "the server restarts with the new password"


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_the_five_minute_resync_repairs_a_deleted_child(cluster: Cluster) -> None:
    """The default resync interval, fast-forwarded: nothing else would bring it back."""
    async with operating(cluster, resync=300):
        await cluster.create(district())
        await wait_status(cluster, lambda b: b.get("status", {}).get("sftp"))
        await cluster.delete("networking.k8s.io/v1", "NetworkPolicy", "springfield-sftp",
                             namespace=NAMESPACE)
        await asyncio.sleep(200)
        assert cluster.peek("networking.k8s.io/v1", "NetworkPolicy", "springfield-sftp",
                            namespace=NAMESPACE) is None, "repaired before the resync"
        await asyncio.sleep(450)
        await wait_for(lambda: cluster.peek("networking.k8s.io/v1", "NetworkPolicy",
                                            "springfield-sftp", namespace=NAMESPACE),
                       timeout=TIMEOUT)


@pytest.mark.asyncio
async def test_open_pause_window_suspends_scheduled_runs_but_not_requested_ones(
        cluster: Cluster) -> None:
    today = datetime.now(UTC).date()
    window = {"start": str(today - timedelta(days=1)), "end": str(today + timedelta(days=2)),
              "reason": "summer rollover"}
    async with operating(cluster):
        await cluster.create(district(pauseWindows=[window]))
        body = await wait_status(cluster, lambda b: b.get("status", {}).get("sftp"))
        cron = await cluster.get("batch/v1", "CronJob", "springfield-import",
                                 namespace=NAMESPACE)
        assert cron["spec"]["suspend"] is True
        ready = condition(body, "Ready")
        assert ready["reason"] == "SFTPNotReady" and "summer rollover" in ready["message"]
        next_run = datetime.fromisoformat(body["status"]["nextRunTime"].replace("Z", "+00:00"))
        assert next_run.date() > today + timedelta(days=2)

        await annotate(cluster, RUN_REQUEST, "during-the-pause")
        await wait_status(cluster, lambda b: b["status"].get("lastHandledRunRequest"))
        assert len(await jobs(cluster)) == 1

        await cluster.patch(API, KIND, NAME, {"spec": {"pauseWindows": []}},
                            namespace=NAMESPACE)
        await wait_status(cluster, lambda b: b["status"]["observedGeneration"] == 2)
        cron = await cluster.get("batch/v1", "CronJob", "springfield-import",
                                 namespace=NAMESPACE)
        assert cron["spec"]["suspend"] is False
