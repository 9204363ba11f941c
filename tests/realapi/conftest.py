"""The real-API tier: one control plane per test session (per xdist worker), the chart's
CRD and RBAC installed on it, and per test a fresh namespace with the operator watching it.

The binaries come from ``KUBEBUILDER_ASSETS`` (``scripts/kube-assets`` fills it). Without
them the tier is skipped on a workstation and FAILS in CI (``CI=true``): a skipped tier
would look green while proving nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.controlplane import ControlPlane, ControlPlaneUnavailableError, assets_dir
from tests.support.realapi import (
    RELEASE_NAMESPACE,
    Api,
    Kubelet,
    OperatorProcess,
    audit_policy,
    install_chart,
    service_account_kubeconfig,
)

#: Admission plugins beyond the defaults: OpenShift's default, strictest on ownership.
ADMISSION = "--enable-admission-plugins=OwnerReferencesPermissionEnforcement"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.realapi)


@dataclass(frozen=True)
class Installed:
    """The control plane with the chart installed: who is who, and where the logs are."""

    plane: ControlPlane
    admin: Api
    #: the operator's identity: the chart's ServiceAccount, with the chart's RBAC only
    operator_kubeconfig: Path
    operator_user: str
    audit_log: Path
    kubelet: Kubelet


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    try:
        assets = assets_dir()
    except ControlPlaneUnavailableError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the real-API tier cannot run in CI: {error}", pytrace=False)
        pytest.skip(f"no Kubernetes binaries: {error}")
    state = tmp_path_factory.mktemp("controlplane")
    plane = ControlPlane(assets, state, controller_manager=True, apiserver_args=[
        ADMISSION, f"--audit-policy-file={audit_policy(state / 'audit-policy.yaml')}",
        f"--audit-log-path={state / 'audit.log'}"])
    with plane:
        yield plane


@pytest.fixture(scope="session")
def installed(control_plane: ControlPlane) -> Installed:
    admin = Api(control_plane.kubeconfig("admin"))
    account = install_chart(admin)
    kubeconfig = service_account_kubeconfig(
        control_plane, admin, account, control_plane.state_dir / "operator-sa.kubeconfig")
    return Installed(control_plane, admin, kubeconfig,
                     f"system:serviceaccount:{RELEASE_NAMESPACE}:{account}",
                     control_plane.state_dir / "audit.log", Kubelet(admin))


@pytest.fixture
def namespace(installed: Installed) -> Iterator[str]:
    """A fresh namespace per test: tests never see each other's districts."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    installed.admin.create({"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": name}})
    yield name
    installed.admin.delete("v1", "Namespace", name)


StartOperator = Callable[..., OperatorProcess]


@pytest.fixture
def start_operator(installed: Installed, namespace: str, tmp_path: Path
                   ) -> Iterator[StartOperator]:
    """Starts ``visitor-sync operator`` as the chart's ServiceAccount, watching the test's
    namespace (``resync_seconds``, ``kubeconfig`` and ``namespaces`` overridable); stops
    every one it started at the end.

    At the end their log must hold no traceback: an operator that logs one on a path a
    test took has a bug there even when the test's assertions held.
    """
    started: list[OperatorProcess] = []
    log = tmp_path / "operator.log"

    def start(resync_seconds: float = 3600, kubeconfig: Path | None = None,
              namespaces: list[str] | None = None) -> OperatorProcess:
        process = OperatorProcess(kubeconfig or installed.operator_kubeconfig,
                                  namespaces or [namespace], log, resync_seconds).start()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.process is not None and process.process.poll() is None:
            process.stop()
    text = log.read_text(errors="replace") if log.exists() else ""
    assert "Traceback" not in text, text[-5000:]


@pytest.fixture
def operator(start_operator: StartOperator) -> OperatorProcess:
    """The operator with the default (hourly: out of the test's way) resync."""
    return start_operator()
