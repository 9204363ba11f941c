"""Shared steps of the operator tests: the operator running, resources, waiting on status."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import kopf

from tests.support.kube import Cluster, OperatorRun, running_operator, wait_for
from visitor_sync_operator.main import build_registry
from visitor_sync_operator.metrics import Metrics
from visitor_sync_operator.settings import OperatorSettings

NAMESPACE = "districts"
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
RUN_REQUEST = "sync.visitoraware.io/run-requested-at"
APPROVE = "sync.visitoraware.io/approve-held"
TIMEOUT = 10.0


def district(name: str = NAME, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": KIND,
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"districtId": name, "displayName": name.title(), **spec}}


@asynccontextmanager
async def operating(cluster: Cluster, resync: float = 300) -> AsyncIterator[OperatorRun]:
    """The operator watching the districts namespace, with its memo's handles."""
    await cluster.create({"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": NAMESPACE}})
    settings = OperatorSettings(namespaces=[NAMESPACE], resync_seconds=resync)
    registry = build_registry(settings, Metrics())
    async with running_operator(cluster, registry=registry, namespaces=[NAMESPACE],
                                memo=kopf.Memo()) as run:
        yield run


async def resource(cluster: Cluster, name: str = NAME) -> dict[str, Any]:
    found = await cluster.get(API, KIND, name, namespace=NAMESPACE)
    assert found is not None
    return found


def condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (body.get("status") or {}).get("conditions") or []
                 if c["type"] == kind), {})


async def wait_status(cluster: Cluster, check: Any, name: str = NAME,
                      timeout: float = TIMEOUT) -> dict[str, Any]:
    """The resource once ``check(body)`` holds."""
    async def holds() -> bool:
        body = await cluster.get(API, KIND, name, namespace=NAMESPACE)
        return body is not None and bool(check(body))

    await wait_for(holds, timeout=timeout, message=lambda: json.dumps(
        cluster.peek(API, KIND, name, namespace=NAMESPACE), indent=1, default=str)[:3000])
    return await resource(cluster, name)


async def annotate(cluster: Cluster, key: str, value: str, name: str = NAME) -> None:
    await cluster.patch(API, KIND, name, {"metadata": {"annotations": {key: value}}},
                        namespace=NAMESPACE)


async def children(cluster: Cluster) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for api_version, kind, name in CHILDREN:
        body = await cluster.get(api_version, kind, name, namespace=NAMESPACE)
        if body is not None:
            found[(kind, name)] = body
    return found


async def posted(cluster: Cluster, reason: str) -> list[dict[str, Any]]:
    """The namespace's Events once one with ``reason`` is there (kopf posts them later)."""
    async def listed() -> bool:
        events = await cluster.list("v1", "Event", namespace=NAMESPACE)
        return any(event.get("reason") == reason for event in events)

    await wait_for(listed, timeout=5, message=f"no {reason} Event")
    return await cluster.list("v1", "Event", namespace=NAMESPACE)


async def make_sftp_ready(cluster: Cluster) -> None:
    """What the Deployment controller and kubelet would do once the pod is up."""
    await cluster.patch_status("apps/v1", "Deployment", "springfield-sftp",
                               {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1,
                                "observedGeneration": 1}, namespace=NAMESPACE)


async def jobs(cluster: Cluster) -> list[dict[str, Any]]:
    return await cluster.list("batch/v1", "Job", namespace=NAMESPACE)
