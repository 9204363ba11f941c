"""The kind walkthrough's files agree with each other and are valid manifests.

kind-config.yaml must map the NodePort of examples/district-kind.yaml to the host port
the README and the upload script use; the demo PostgreSQL manifests must be valid
Kubernetes objects whose database Secret is the one the operator hands the importer
Jobs by default; the Helm values for kind must pass the chart's schema and name the
images the Makefile builds.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from tests.support.chart import ROOT, one, render
from tests.support.manifests import KUBERNETES_VERSIONS, validate_strictly
from visitor_sync_operator.settings import OperatorSettings
from visitor_sync_operator.spec import parse_spec

HOST_PORT = 2222
EXAMPLE = yaml.safe_load((ROOT / "examples" / "district-kind.yaml").read_text())
POSTGRES = [doc for doc in yaml.safe_load_all((ROOT / "deploy/kind/postgres.yaml").read_text())
            if doc]
MAKEFILE = (ROOT / "Makefile").read_text()


def _named(kind: str, name: str) -> dict[str, Any]:
    return next(o for o in POSTGRES if o["kind"] == kind and o["metadata"]["name"] == name)


def _make_variable(name: str) -> str:
    match = re.search(rf"^{name}\s*\?=\s*(\S+)$", MAKEFILE, re.MULTILINE)
    assert match, f"Makefile sets no {name}"
    return match.group(1)


def test_kind_maps_the_districts_node_port_to_the_hosts_loopback() -> None:
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert (config["kind"], config["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    spec = parse_spec(EXAMPLE["spec"])
    assert spec.sftp.service_type == "NodePort"
    mappings = [m for node in config["nodes"] for m in node.get("extraPortMappings", [])]
    assert {"containerPort": spec.sftp.node_port, "hostPort": HOST_PORT,
            "listenAddress": "127.0.0.1", "protocol": "TCP"} in mappings
    assert f'port="${{SFTP_PORT:-{HOST_PORT}}}"' in (ROOT / "deploy/kind/upload.sh").read_text()
    assert f"sftp -P {HOST_PORT} " in (ROOT / "README.md").read_text()


def test_makefile_has_every_walkthrough_step() -> None:
    targets = set(re.findall(r"^([a-z-]+):", MAKEFILE, re.MULTILINE))
    assert {"kind-up", "images", "postgres", "install", "district", "upload", "run", "watch",
            "kind-down"} <= targets
    assert "--config kind-config.yaml" in MAKEFILE
    assert "apply -f examples/district-kind.yaml" in MAKEFILE


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_demo_postgres_manifests_are_valid(version) -> None:
    for manifest in POSTGRES:
        validate_strictly(manifest, version)


def test_demo_postgres_runs_under_the_restricted_standard() -> None:
    deployment = _named("Deployment", "postgres")
    namespace = _named("Namespace", deployment["metadata"]["namespace"])
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = pod["containers"][0]["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}


def test_database_secret_is_the_one_the_importer_jobs_read() -> None:
    defaults = OperatorSettings()
    secret = _named("Secret", defaults.database_secret)
    assert secret["metadata"]["namespace"] == EXAMPLE["metadata"]["namespace"]
    assert any(o["kind"] == "Namespace" and o["metadata"]["name"] == EXAMPLE["metadata"][
        "namespace"] for o in POSTGRES)
    url = make_url(secret["stringData"][defaults.database_secret_key])
    assert url.drivername == "postgresql+psycopg"
    credentials = _named("Secret", "postgres")["stringData"]
    assert (url.username, url.password, url.database) == (
        credentials["POSTGRES_USER"], credentials["POSTGRES_PASSWORD"],
        credentials["POSTGRES_DB"])
    assert "demo-only" in url.password
    service = _named("Service", "postgres")
    assert url.host == (f"{service['metadata']['name']}.{service['metadata']['namespace']}"
                        ".svc.cluster.local")
    assert url.port == service["spec"]["ports"][0]["port"]


def test_kind_values_install_the_images_the_makefile_loads() -> None:
    values = yaml.safe_load((ROOT / "deploy/kind/values.yaml").read_text())
    env = {item["name"]: item.get("value") for item in one(render(values), "Deployment")[
        "spec"]["template"]["spec"]["containers"][0]["env"]}
    tag = _make_variable("TAG")
    assert env["VISITOR_SYNC_IMAGE"] == f"{_make_variable('IMAGE_REPO')}:{tag}"
    assert env["VISITOR_SYNC_SFTP_IMAGE"] == f"{_make_variable('SFTP_IMAGE_REPO')}:{tag}"
    assert env["VISITOR_SYNC_IMAGE_PULL_POLICY"] in ("Never", "IfNotPresent"), (
        "images loaded with `kind load` must not be pulled")
    assert EXAMPLE["metadata"]["namespace"] in values["watchNamespaces"]
