"""The real-API tier's parts: a client, the chart's install, the operator process, a kubelet.

The control plane is :mod:`tests.support.controlplane`; this module installs what the
chart would (CRD, ServiceAccount, RBAC) and runs the deployed entry point
(``visitor-sync operator``) as the chart's ServiceAccount, with only the chart's RBAC.
No kubelet runs: :class:`Kubelet` writes the Pod status a kubelet would, and the real
Job controller (kube-controller-manager) turns it into the Job's conditions.

Every API request is in the apiserver's audit log (:func:`audit_policy`), so tests
count the operator's reads and writes where the server saw them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

from tests.support import chart
from tests.support.controlplane import ControlPlane, free_port

TIMEOUT = 30.0
POLL = 0.05
MERGE_PATCH = "application/merge-patch+json"
#: Where the chart installs the operator (its ServiceAccount is the operator's identity).
RELEASE_NAMESPACE = chart.NAMESPACE


def wait_until(check: Callable[[], Any], timeout: float = TIMEOUT,
               message: Callable[[], str] | str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy (returned), or fail saying what."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: "
                                 f"{message() if callable(message) else message}")
        time.sleep(POLL)


def audit_policy(path: Path) -> Path:
    """Log who did what (metadata only: no Secret values in the log)."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "audit.k8s.io/v1", "kind": "Policy",
        "omitStages": ["RequestReceived"], "rules": [{"level": "Metadata"}]}))
    return path


class Api:
    """A synchronous client as one identity: plain dicts in and out, 404 is ``None``."""

    def __init__(self, kubeconfig: Path) -> None:
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(str(kubeconfig), client_configuration=configuration)
        self.dynamic = DynamicClient(kubernetes.client.ApiClient(configuration))

    def resource(self, api_version: str, kind: str) -> Any:
        return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None
            ) -> dict[str, Any] | None:
        try:
            return self.resource(api_version, kind).get(name=name, namespace=namespace).to_dict()
        except NotFoundError:
            return None

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in (labels or {}).items()) or None
        found = self.resource(api_version, kind).get(namespace=namespace,
                                                      label_selector=selector).to_dict()
        return list(found.get("items") or [])

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        namespace = body["metadata"].get("namespace")
        return self.resource(body["apiVersion"], body["kind"]).create(
            body=body, namespace=namespace).to_dict()

    def patch(self, api_version: str, kind: str, name: str, patch: dict[str, Any],
              namespace: str | None = None, *, subresource: str | None = None
              ) -> dict[str, Any]:
        resource = self.resource(api_version, kind)
        if subresource:
            resource = resource.subresources[subresource]
        return resource.patch(body=patch, name=name, namespace=namespace,
                              content_type=MERGE_PATCH).to_dict()

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
               propagation: str | None = None) -> None:
        body = {"propagationPolicy": propagation} if propagation else None
        self.resource(api_version, kind).delete(name=name, namespace=namespace, body=body)

    def apply(self, body: dict[str, Any], manager: str = "test") -> dict[str, Any]:
        """Server-side apply, as ``kubectl apply --server-side`` does."""
        return self.resource(body["apiVersion"], body["kind"]).server_side_apply(
            body=body, name=body["metadata"]["name"],
            namespace=body["metadata"].get("namespace"), field_manager=manager,
            force_conflicts=True).to_dict()

    def table(self, api_version: str, kind: str, namespace: str) -> dict[str, Any]:
        """The server's own rendering of a list (what ``kubectl get`` prints)."""
        resource = self.resource(api_version, kind)
        answer = self.dynamic.request("get", resource.path(namespace=namespace), header_params={
            "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}, serialize=False)
        table: dict[str, Any] = json.loads(answer.data)
        return table

    def events(self, namespace: str) -> list[dict[str, Any]]:
        return self.list("v1", "Event", namespace)


# -- the chart's install --------------------------------------------------------------


def install_chart(admin: Api, values: dict[str, Any] | None = None,
                  release: str = chart.RELEASE) -> str:
    """Apply the chart's CRD, ServiceAccount and RBAC; return the ServiceAccount's name.

    The operator's Deployment and Service are left out: the tests run the operator here.
    """
    wanted = {"CustomResourceDefinition", "ServiceAccount", "ClusterRole",
              "ClusterRoleBinding", "Role", "RoleBinding"}
    objects = [o for o in chart.render(values, release=release) if o["kind"] in wanted]
    if admin.get("v1", "Namespace", RELEASE_NAMESPACE) is None:
        admin.create({"apiVersion": "v1", "kind": "Namespace",
                      "metadata": {"name": RELEASE_NAMESPACE}})
    for body in objects:
        admin.apply(body, manager="helm")
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    for crd in crds:
        wait_until(lambda crd=crd: _established(admin, crd["metadata"]["name"]),
                   message=f"CRD {crd['metadata']['name']} established")
    (account,) = [o for o in objects if o["kind"] == "ServiceAccount"]
    return str(account["metadata"]["name"])


def _established(admin: Api, name: str) -> bool:
    crd = admin.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name) or {}
    return any(c.get("type") == "Established" and c.get("status") == "True"
               for c in (crd.get("status") or {}).get("conditions") or [])


def service_account_kubeconfig(plane: ControlPlane, admin: Api, account: str,
                               path: Path) -> Path:
    """A kubeconfig with a fresh token of ``account`` (TokenRequest, as a pod gets one)."""
    request = admin.dynamic.resources.get(api_version="v1", kind="ServiceAccount") \
        .subresources["token"].create(
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                  "spec": {"expirationSeconds": 7200}},
            name=account, namespace=RELEASE_NAMESPACE)
    token = request.to_dict()["status"]["token"]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": plane.server, "certificate-authority": str(plane.pki.ca_cert)}}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": account}}],
        "current-context": "local"}))
    path.chmod(0o600)
    return path


# -- the operator, as deployed ----------------------------------------------------------


def console_script(name: str) -> str:
    """The console script installed beside this interpreter (not whatever PATH finds)."""
    return str(Path(sys.executable).with_name(name))


class OperatorProcess:
    """``visitor-sync operator`` watching some namespaces, with its own log."""

    def __init__(self, kubeconfig: Path, namespaces: Iterable[str], log: Path,
                 resync_seconds: float = 300, environment: dict[str, str] | None = None
                 ) -> None:
        self.kubeconfig = kubeconfig
        self.namespaces = list(namespaces)
        self.log_path = log
        self.resync_seconds = resync_seconds
        self.environment = environment or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0

    def start(self) -> OperatorProcess:
        self.metrics_port, health_port = free_port(), free_port()
        environment = {
            "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8", "KUBECONFIG": str(self.kubeconfig),
            "VISITOR_SYNC_RESYNC_SECONDS": str(self.resync_seconds), **self.environment}
        namespaces = [arg for ns in self.namespaces for arg in ("--namespace", ns)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [console_script("visitor-sync"), "-v", "operator", *namespaces,
                 "--metrics-port", str(self.metrics_port), "--health-port", str(health_port)],
                env=environment, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = TIMEOUT) -> int:
        """Signal the process (SIGKILL: a crash) and wait for its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()


# -- the audit log: what the server saw the operator do ---------------------------------


@dataclass(frozen=True)
class Audited:
    user: str
    verb: str
    resource: str
    subresource: str | None
    namespace: str | None
    name: str | None
    code: int
    at: datetime

    @property
    def is_write(self) -> bool:
        return self.verb in ("create", "update", "patch", "delete", "deletecollection")


def audited(log: Path, user: str, since: datetime | None = None) -> list[Audited]:
    """The requests ``user`` made (from the audit log), optionally only after ``since``."""
    found = []
    for line in log.read_text().splitlines():
        event = json.loads(line)
        if event.get("user", {}).get("username") != user:
            continue
        at = datetime.fromisoformat(event["stageTimestamp"])
        if since is not None and at < since:
            continue
        target = event.get("objectRef") or {}
        found.append(Audited(user, event["verb"], target.get("resource", ""),
                             target.get("subresource"), target.get("namespace"),
                             target.get("name"),
                             int((event.get("responseStatus") or {}).get("code") or 0), at))
    return found


def moment() -> datetime:
    return datetime.now(UTC)


# -- the kubelet's part -----------------------------------------------------------------


class Kubelet:
    """Finishes a Job's pod as a kubelet would; the real Job controller does the rest."""

    def __init__(self, admin: Api) -> None:
        self.admin = admin

    def pod_of(self, job: dict[str, Any]) -> dict[str, Any]:
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        return wait_until(lambda: next(iter(self.admin.list(
            "v1", "Pod", namespace, {"batch.kubernetes.io/job-name": name})), None),
            message=f"the Job controller made no pod for Job {name}")

    def start(self, job: dict[str, Any]) -> dict[str, Any]:
        """The pod runs (its container started)."""
        pod = self.pod_of(job)
        now = _now()
        return self.admin.patch("v1", "Pod", pod["metadata"]["name"], {"status": {
            "phase": "Running", "startTime": now,
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
            "containerStatuses": [_container(job, {"running": {"startedAt": now}})]}},
            pod["metadata"]["namespace"], subresource="status")

    def finish(self, job: dict[str, Any], exit_code: int, message: str,
               reason: str | None = None) -> dict[str, Any]:
        """The container ended with ``exit_code`` and this termination message."""
        pod = self.pod_of(job)
        now = _now()
        terminated = {"exitCode": exit_code, "message": message, "startedAt": now,
                      "finishedAt": now,
                      "reason": reason or ("Completed" if exit_code == 0 else "Error")}
        return self.admin.patch("v1", "Pod", pod["metadata"]["name"], {"status": {
            "phase": "Succeeded" if exit_code == 0 else "Failed", "startTime": now,
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now}],
            "containerStatuses": [_container(job, {"terminated": terminated})]}},
            pod["metadata"]["namespace"], subresource="status")


def _container(job: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return {"name": container["name"], "image": container["image"], "imageID": "",
            "ready": "running" in state, "restartCount": 0, "started": "running" in state,
            "state": state}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
