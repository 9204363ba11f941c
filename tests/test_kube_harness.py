"""The Kubernetes test harness (tests.support.kube): the emulator's API semantics, and the real
kopf engine running a small demo operator against it.

The operator's tests rely on these behaviours; each test here fails if the harness (or a
kmock, kopf or kubernetes upgrade) stops providing one of them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kopf
import kubernetes
import pytest

from tests.support.kube import (
    DISTRICTSYNCS,
    HARNESS_USER_AGENT,
    Cluster,
    KubeApiError,
    labels_match,
    rbac_rules,
    running_operator,
    wait_for,
)

CR_API = f"{DISTRICTSYNCS.group}/{DISTRICTSYNCS.version}"
CR_KIND = "DistrictSync"


def districtsync(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": CR_API,
        "kind": "DistrictSync",
        "metadata": {"name": name, "labels": {"district": name}},
        "spec": {"schedule": "0 * * * *", **spec},
    }


@contextlib.asynccontextmanager
async def watching(cluster: Cluster, path: str, **params: str) -> AsyncIterator[list[Any]]:
    """Collect the events of a watch on ``path`` (already established on entry)."""
    events: list[Any] = []
    established = len(cluster.emulator.watches)
    async with (
        aiohttp.ClientSession() as session,
        session.get(cluster.url + path, params={"watch": "true", **params}) as response,
    ):

        async def pump() -> None:
            async for line in response.content:
                if line.strip():
                    events.append(json.loads(line))

        task = asyncio.create_task(pump())
        try:
            await wait_for(lambda: len(cluster.emulator.watches) > established)
            yield events
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# -- the emulator ----------------------------------------------------------------------------

KINDS = [
    ("v1", "Secret", {"type": "Opaque", "data": {"a": "MQ=="}}),
    ("v1", "ConfigMap", {"data": {"sshd_config": "Port 22\n"}}),
    ("v1", "PersistentVolumeClaim", {"spec": {"accessModes": ["ReadWriteOnce"]}}),
    ("v1", "Service", {"spec": {"ports": [{"port": 22}]}}),
    ("apps/v1", "Deployment", {"spec": {"replicas": 1}}),
    ("networking.k8s.io/v1", "NetworkPolicy", {"spec": {"podSelector": {}}}),
    ("batch/v1", "CronJob", {"spec": {"schedule": "*/5 * * * *"}}),
    ("batch/v1", "Job", {"spec": {"backoffLimit": 0}}),
    ("v1", "Event", {"reason": "Synced", "involvedObject": {"kind": "DistrictSync"}}),
    ("events.k8s.io/v1", "Event", {"reason": "Synced", "note": "ok", "action": "Sync"}),
    ("v1", "Namespace", {}),
    (CR_API, "DistrictSync", {"spec": {"schedule": "0 * * * *"}}),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("api_version", "kind", "content"), KINDS, ids=[k[1] for k in KINDS])
async def test_kind_supports_crud_and_watch(cluster, api_version, kind, content):
    namespace = None if kind == "Namespace" else "default"
    body = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x1"}, **content}
    async with watching(cluster, cluster.path(api_version, kind, namespace=namespace)) as events:
        created = await cluster.create(body)
        assert created["metadata"]["uid"] and created["kind"] == kind
        tracks_generation = kind in {"Deployment", "NetworkPolicy", "CronJob", "Job", CR_KIND}
        assert ("generation" in created["metadata"]) == tracks_generation
        assert await cluster.get(api_version, kind, "x1") == created
        listed = await cluster.list(api_version, kind, namespace=namespace)
        assert "x1" in [item["metadata"]["name"] for item in listed]
        patched = await cluster.patch(api_version, kind, "x1", {"metadata": {"labels": {"a": "b"}}})
        assert patched["metadata"]["labels"] == {"a": "b"}
        op = {"op": "add", "path": "/metadata/annotations", "value": {"n": "1"}}
        patched = await cluster.patch(api_version, kind, "x1", [op])
        assert patched["metadata"]["annotations"] == {"n": "1"}
        await cluster.delete(api_version, kind, "x1")
        assert await cluster.get(api_version, kind, "x1") is None
        await wait_for(lambda: any(e["type"] == "DELETED" for e in events))
    # A watch without a resourceVersion first replays what exists (the 4 core namespaces).
    assert [
        (e["type"], e["object"]["metadata"]["name"])
        for e in events
        if e["object"]["metadata"]["name"] == "x1"
    ] == [
        ("ADDED", "x1"),
        ("MODIFIED", "x1"),
        ("MODIFIED", "x1"),
        ("DELETED", "x1"),
    ]


@pytest.mark.asyncio
async def test_server_fills_metadata_and_versions(cluster):
    created = await cluster.create(districtsync("d1"))
    meta = created["metadata"]
    assert meta["namespace"] == "default"  # from the URL
    assert meta["generation"] == 1 and meta["creationTimestamp"].endswith("Z")
    first = int(meta["resourceVersion"])

    labelled = await cluster.patch(
        CR_API, "DistrictSync", "d1", {"metadata": {"labels": {"x": "y"}}}
    )
    assert int(labelled["metadata"]["resourceVersion"]) > first
    assert labelled["metadata"]["generation"] == 1  # metadata is not the spec
    respec = await cluster.patch(CR_API, "DistrictSync", "d1", {"spec": {"schedule": "@daily"}})
    assert respec["metadata"]["generation"] == 2
    again = await cluster.patch(CR_API, "DistrictSync", "d1", {"spec": {"schedule": "@daily"}})
    assert again == respec  # a no-op write changes nothing, not even the resourceVersion
    hijack = {"metadata": {"uid": "forged", "generation": 9}}
    kept = await cluster.patch(CR_API, "DistrictSync", "d1", hijack)
    assert kept["metadata"]["uid"] == meta["uid"] and kept["metadata"]["generation"] == 2

    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"generateName": "kopf-event-"}}
    names = {(await cluster.create(event))["metadata"]["name"] for _ in range(3)}
    assert len(names) == 3 and all(name.startswith("kopf-event-") for name in names)

    with pytest.raises(KubeApiError) as conflict:
        await cluster.create(districtsync("d1"))
    assert conflict.value.status == 409
    with pytest.raises(KubeApiError) as missing:
        await cluster.create(districtsync("d2"), namespace="nowhere")
    assert missing.value.status == 404


@pytest.mark.asyncio
@pytest.mark.parametrize(("api_version", "kind"), [(CR_API, "DistrictSync"), ("batch/v1", "Job")])
async def test_status_subresource_is_separate(cluster, api_version, kind):
    body = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "s1"}}
    created = await cluster.create({**body, "spec": {"a": 1}, "status": {"forged": True}})
    assert "status" not in created

    ignored = await cluster.patch(api_version, kind, "s1", {"status": {"succeeded": 1}})
    assert "status" not in ignored and ignored == created  # not even a new resourceVersion
    patch = {"spec": {"a": 2}, "status": {"succeeded": 1}}
    path = cluster.path(api_version, kind, "s1", namespace="default", subresource="status")
    updated = await cluster.request(
        "PATCH", path, body=patch, content_type="application/merge-patch+json"
    )
    assert updated["status"] == {"succeeded": 1} and updated["spec"] == {"a": 1}
    assert await cluster.patch_status(api_version, kind, "s1", {"succeeded": 2})
    assert cluster.peek(api_version, kind, "s1")["status"] == {"succeeded": 2}

    with pytest.raises(KubeApiError) as no_status:
        await cluster.patch_status("v1", "ConfigMap", "s1", {})
    assert no_status.value.status == 404


@pytest.mark.asyncio
async def test_patch_flavours_and_what_is_not_emulated(cluster):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"}, "data": {"a": "1"}}
    created = await cluster.create(cm)
    merged = await cluster.patch("v1", "ConfigMap", "c1", {"data": {"a": None, "b": "2"}})
    assert merged["data"] == {"b": "2"}  # RFC 7386: null deletes

    stale_test = [{"op": "test", "path": "/metadata/resourceVersion", "value": "1"}]
    with pytest.raises(KubeApiError) as failed_test:
        await cluster.patch("v1", "ConfigMap", "c1", stale_test)
    assert failed_test.value.status == 422  # what kopf expects, not a 500

    replaced = dict(merged, data={"c": "3"})
    put = await cluster.request(
        "PUT", cluster.path("v1", "ConfigMap", "c1", namespace="default"), body=replaced
    )
    assert put["data"] == {"c": "3"}
    with pytest.raises(KubeApiError) as stale_put:
        await cluster.request(
            "PUT", cluster.path("v1", "ConfigMap", "c1", namespace="default"), body=created
        )
    assert stale_put.value.status == 409

    # Strategic merge patch on built-ins is applied as a merge patch: lists are REPLACED.
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d1"},
        "spec": {
            "template": {"spec": {"containers": [{"name": "sshd", "image": "a", "ports": []}]}}
        },
    }
    await cluster.create(deploy)
    smp = {"spec": {"template": {"spec": {"containers": [{"name": "sshd", "image": "b"}]}}}}
    strategic = "application/strategic-merge-patch+json"
    after = await cluster.patch("apps/v1", "Deployment", "d1", smp, content_type=strategic)
    assert after["spec"]["template"]["spec"]["containers"] == [{"name": "sshd", "image": "b"}]

    await cluster.create(districtsync("d1"))
    cr = cluster.path(CR_API, "DistrictSync", "d1", namespace="default")
    scale = cluster.path("apps/v1", "Deployment", "d1", namespace="default", subresource="scale")
    collection = cluster.path("v1", "ConfigMap", namespace="default")
    refused = [
        ("PATCH", cr, strategic, 415),  # the real server refuses SMP for custom resources too
        ("DELETE", collection, "application/json", 405),  # deletecollection
        ("PATCH", scale, "application/merge-patch+json", 404),  # subresources but status
    ]
    for method, path, content_type, status in refused:
        with pytest.raises(KubeApiError) as error:
            await cluster.request(method, path, body={}, content_type=content_type)
        assert error.value.status == status, (method, path, content_type)

    # Server-side apply: creates what is absent, then merges (no field ownership).
    apply = "application/apply-patch+yaml"
    config = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "applied", "namespace": "default"}, "data": {"a": "1"}}
    path = cluster.path("v1", "ConfigMap", "applied", namespace="default")
    await cluster.request("PATCH", path, body=config, content_type=apply)
    await cluster.request("PATCH", path, body={**config, "data": {"b": "2"}},
                          content_type=apply)
    applied = await cluster.get("v1", "ConfigMap", "applied", namespace="default")
    assert applied["data"] == {"a": "1", "b": "2"}  # the real server would drop "a"


@pytest.mark.asyncio
async def test_selectors_and_secrets(cluster):
    for name, tier in (("a", "web"), ("b", "db"), ("c", None)):
        labels = {"tier": tier} if tier else {}
        await cluster.create({"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": name, "labels": labels}})  # fmt: skip

    async def names(**selectors: str) -> list[str]:
        return sorted(
            o["metadata"]["name"] for o in await cluster.list("v1", "ConfigMap", **selectors)
        )

    assert await names(labels="tier=web") == ["a"]
    assert await names(labels="tier!=web") == ["b", "c"]
    assert await names(labels="tier in (web,db)") == ["a", "b"]
    assert await names(labels="!tier") == ["c"]
    assert await names(fields="metadata.name=b") == ["b"]
    assert labels_match({"a": "1", "b": "2"}, "a=1,b notin (3, 4),b")
    assert not labels_match({"a": "1"}, "a==1,b")

    path = cluster.path("v1", "ConfigMap", namespace="default")
    async with watching(cluster, path, labelSelector="tier=db") as events:
        await cluster.patch("v1", "ConfigMap", "a", {"data": {"x": "1"}})
        await cluster.patch("v1", "ConfigMap", "b", {"data": {"x": "1"}})
        await wait_for(lambda: len(events) >= 2)
        await asyncio.sleep(0.05)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "b"),
        ("MODIFIED", "b"),
    ]

    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
    created = await cluster.create({**secret, "stringData": {"password": "hunter2"}})
    assert "stringData" not in created
    assert base64.b64decode(created["data"]["password"]) == b"hunter2"


@pytest.mark.asyncio
async def test_watch_from_a_resource_version_replays_only_newer_objects(cluster):
    await cluster.create(districtsync("old"))
    listing = await cluster.request(
        "GET", cluster.path(CR_API, "DistrictSync", namespace="default")
    )
    assert listing["kind"] == "DistrictSyncList"
    await cluster.create(districtsync("new"))
    path = cluster.path(CR_API, "DistrictSync", namespace="default")
    async with watching(
        cluster, path, resourceVersion=listing["metadata"]["resourceVersion"]
    ) as events:
        await wait_for(lambda: events)
        await asyncio.sleep(0.05)
    assert [e["object"]["metadata"]["name"] for e in events] == ["new"]


@pytest.mark.asyncio
async def test_sync_kubernetes_client_in_a_thread(cluster):
    """The typed client needs uids (ownerReferences) and SMP for built-ins; never on the loop."""
    core = kubernetes.client.CoreV1Api(cluster.api_client())
    owner = await cluster.create(districtsync("d1"))
    reference = {"apiVersion": CR_API, "kind": "DistrictSync", "name": "d1",
                 "uid": owner["metadata"]["uid"], "controller": True}  # fmt: skip
    body = {"metadata": {"name": "c1", "labels": {"app": "sftp"}, "ownerReferences": [reference]},
            "data": {"a": "1"}}  # fmt: skip
    await asyncio.to_thread(core.create_namespaced_config_map, "default", body)
    await asyncio.to_thread(core.patch_namespaced_config_map, "c1", "default", {"data": {"b": "2"}})
    read = await asyncio.to_thread(core.read_namespaced_config_map, "c1", "default")
    assert read.data == {"a": "1", "b": "2"}
    assert read.metadata.owner_references[0].uid == owner["metadata"]["uid"]
    listed = await asyncio.to_thread(
        core.list_namespaced_config_map, "default", label_selector="app=sftp"
    )
    assert [item.metadata.name for item in listed.items] == ["c1"]
    custom = kubernetes.client.CustomObjectsApi(cluster.api_client())
    await asyncio.to_thread(
        custom.patch_namespaced_custom_object_status, DISTRICTSYNCS.group, DISTRICTSYNCS.version,
        "default", "districtsyncs", "d1", {"status": {"phase": "Ready"}},
    )  # fmt: skip
    assert cluster.peek(CR_API, "DistrictSync", "d1")["status"] == {"phase": "Ready"}
    agents = {r.user_agent for r in cluster.requests if r.path.endswith(("/c1", "/d1/status"))}
    assert agents == {HARNESS_USER_AGENT}


# -- the real kopf engine with a demo operator -----------------------------------------------


def demo_registry() -> kopf.OperatorRegistry:
    """A DistrictSync gets a ConfigMap child; a finished child Job is reported in its status.

    Handlers use the sync ``kubernetes`` client, so they are ``def`` (kopf runs them in
    threads), and record their calls in ``memo.calls``.
    """
    registry = kopf.OperatorRegistry()

    @kopf.on.create(DISTRICTSYNCS.group, DISTRICTSYNCS.version, "districtsyncs",
                    registry=registry, id="render")  # fmt: skip
    def render(
        body: kopf.Body, name: str, namespace: str, memo: kopf.Memo, **_: Any
    ) -> dict[str, str]:
        memo.calls.append(f"render {name}")
        child = {"metadata": {"name": f"{name}-sshd"}, "data": {"schedule": body.spec["schedule"]}}
        kopf.adopt(child, owner=body)
        kubernetes.client.CoreV1Api().create_namespaced_config_map(namespace, child)
        kopf.info(body, reason="ChildCreated", message=f"ConfigMap {name}-sshd")
        return {"configMap": f"{name}-sshd"}

    @kopf.on.delete(DISTRICTSYNCS.group, DISTRICTSYNCS.version, "districtsyncs", registry=registry)
    def cleanup(name: str, memo: kopf.Memo, **_: Any) -> None:
        memo.calls.append(f"cleanup {name}")

    @kopf.on.event("batch", "v1", "jobs", registry=registry, labels={"district": kopf.PRESENT})
    def job_event(body: kopf.Body, namespace: str, memo: kopf.Memo, **_: Any) -> None:
        if not body.status.get("succeeded"):
            return
        memo.calls.append(f"job {body.metadata.name}")
        kubernetes.client.CustomObjectsApi().patch_namespaced_custom_object_status(
            DISTRICTSYNCS.group, DISTRICTSYNCS.version, namespace, "districtsyncs",
            body.metadata.labels["district"], {"status": {"lastJob": body.metadata.name}},
        )  # fmt: skip

    return registry


@pytest.mark.asyncio
async def test_operator_end_to_end(cluster):
    memo = kopf.Memo(calls=[])
    started = time.monotonic()
    async with running_operator(cluster, registry=demo_registry(), memo=memo) as operator:
        startup = time.monotonic() - started
        owner = await cluster.create(districtsync("d1"))

        child = await cluster.wait_for_object("v1", "ConfigMap", "d1-sshd")
        assert child["data"] == {"schedule": "0 * * * *"}
        [reference] = child["metadata"]["ownerReferences"]
        assert reference["uid"] == owner["metadata"]["uid"] and reference["controller"] is True
        cr = await cluster.wait_for_object(
            CR_API, "DistrictSync", "d1", lambda o: "render" in o.get("status", {})
        )
        assert cr["status"]["render"] == {"configMap": "d1-sshd"}
        assert "kopf.zalando.org/last-handled-configuration" in cr["metadata"]["annotations"]

        # The test plays the Job controller: the Job's status goes through /status.
        job = {"apiVersion": "batch/v1", "kind": "Job", "spec": {"backoffLimit": 0},
               "metadata": {"name": "d1-run-1", "labels": {"district": "d1"}}}  # fmt: skip
        await cluster.create(job)
        await cluster.patch_status("batch/v1", "Job", "d1-run-1", {"succeeded": 1})
        await cluster.wait_for_object(
            CR_API, "DistrictSync", "d1", lambda o: o["status"].get("lastJob")
        )

        def events() -> list[Any]:
            items = cluster.emulator.objects.items()
            return [o.raw for (res, _, _), o in items if res.plural == "events" and not o.deleted]

        uid = owner["metadata"]["uid"]
        posted = await wait_for(
            lambda: [e for e in events() if e["involvedObject"].get("uid") == uid]
        )
        reasons = {(e["reason"], e["type"], e["message"]) for e in posted}
        assert ("ChildCreated", "Normal", "ConfigMap d1-sshd") in reasons

        # Settled: an idle operator writes nothing (and the create handler ran exactly once).
        await asyncio.sleep(0.2)
        idle_since = len(cluster.requests)
        await asyncio.sleep(0.4)
        idle = [r for r in cluster.requests[idle_since:] if r.is_write]
        assert idle == [], [str(r) for r in idle]
        assert memo.calls == ["render d1", "job d1-run-1"]

        await cluster.delete(CR_API, "DistrictSync", "d1")  # blocked by kopf's finalizer
        await wait_for(lambda: cluster.peek(CR_API, "DistrictSync", "d1") is None)
        assert memo.calls[-1] == "cleanup d1"
        stopping = time.monotonic()
    shutdown = time.monotonic() - stopping
    assert startup < 3 and shutdown < 2, (startup, shutdown)  # typically 0.15 s and 0.01 s

    rules = rbac_rules(operator.requests)
    assert rules[("", "configmaps")] == {"create"}
    assert rules[("", "events")] == {"create"}
    assert rules[("sync.visitoraware.io", "districtsyncs")] == {"list", "watch", "patch"}
    assert rules[("sync.visitoraware.io", "districtsyncs/status")] == {"patch"}
    assert rules[("batch", "jobs")] == {"list", "watch"}
    assert not any(r.by_harness for r in operator.requests)


@pytest.mark.asyncio
async def test_operator_stop_spares_foreign_tasks_and_connections(cluster):
    """kopf stops only its own tasks: the test's task and kmock's keep-alive connections live."""
    core = kubernetes.client.CoreV1Api(cluster.api_client())
    bystander = asyncio.create_task(asyncio.sleep(3600))
    async with running_operator(cluster, registry=demo_registry()):
        late_bystander = asyncio.create_task(asyncio.sleep(3600))
        await asyncio.to_thread(core.list_namespace)  # a keep-alive connection to kmock
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 1
    assert not bystander.done() and not late_bystander.done()
    bystander.cancel()
    late_bystander.cancel()
    assert (await asyncio.to_thread(core.read_namespace, "default")).metadata.name == "default"


@pytest.mark.asyncio
async def test_operator_serving_a_missing_namespace_fails_fast(cluster):
    with pytest.raises(TimeoutError, match="do they exist"):
        async with running_operator(
            cluster, registry=demo_registry(), namespaces=["nowhere"], startup_timeout=0.5
        ):
            pass  # pragma: no cover


@pytest.mark.asyncio
@pytest.mark.looptime
async def test_hourly_timer_under_looptime(cluster):
    loop = asyncio.get_running_loop()
    registry = kopf.OperatorRegistry()
    fired: list[float] = []

    @kopf.timer(DISTRICTSYNCS.group, DISTRICTSYNCS.version, "districtsyncs",
                interval=3600, registry=registry)  # fmt: skip
    def hourly(**_: Any) -> None:
        fired.append(loop.time())  # a thread: the loop's (fake) clock, not get_running_loop()

    def quiet(settings: kopf.OperatorSettings) -> None:
        settings.posting.enabled = False

    started = time.monotonic()
    async with running_operator(cluster, registry=registry, settings_hook=quiet) as operator:
        await cluster.create(districtsync("d1"))
        await wait_for(lambda: fired)
        await asyncio.sleep(3 * 3600 + 60)  # three hours of loop time in milliseconds
    assert len(fired) == 4  # at creation, then hourly
    assert all(3600 <= later - earlier < 3700 for earlier, later in itertools.pairwise(fired))
    assert time.monotonic() - started < 5
    assert "events" not in {r.resource for r in operator.requests}  # the settings hook applied


@pytest.mark.asyncio
async def test_operator_failure_is_raised_not_hidden(cluster):
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def broken(**_: Any) -> None:
        raise kopf.PermanentError("misconfigured")

    started = time.monotonic()
    with pytest.raises(Exception, match="handlers failed") as failure:
        async with running_operator(cluster, registry=registry):
            pass  # pragma: no cover
    assert type(failure.value).__name__ == "ActivityError"  # kopf's, from its startup
    assert "misconfigured" in str([o.exception for o in failure.value.outcomes.values()])
    assert time.monotonic() - started < 2  # not the 5 s startup timeout, nor kopf's 5 s exit
