"""The operator against a real kube-apiserver: what docs/operations.md and
docs/architecture.md promise, as the server (not an emulator) sees it.

Each test has its own namespace and operator process (the chart's ServiceAccount and
RBAC, under OwnerReferencesPermissionEnforcement); the real Job controller and garbage
collector run; the tests play only the kubelet.
"""

from __future__ import annotations

from typing import Any

from tests.realapi.conftest import Installed
from tests.support.manifests import KUBERNETES_VERSIONS, validate_strictly
from tests.support.realapi import OperatorProcess, wait_until

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
