"""The Helm chart: what it renders, for the default values and with every feature on.

Rendered offline by Helm's own library (helm-python-sdk). Every built-in object is
validated strictly against the real Kubernetes schemas (kubernetes-validate) for the
oldest and newest Kubernetes we test; the Prometheus Operator's kinds, which
kubernetes-validate does not know, against the minimal schemas below (the fields of
monitoring.coreos.com/v1 the chart uses, no others allowed). The operator's
permissions are compared with ``rbac.RULES``, its environment is parsed by the
operator's own settings class, and the CRD must be ``crds/districtsync.yaml``.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import helm_python
import jsonschema
import pytest
import yaml

from tests.support.chart import (
    CHART,
    NAMESPACE,
    RELEASE,
    ROOT,
    declared_values,
    default_values,
    full_values,
    one,
    render,
    render_templates,
)
from tests.support.manifests import KUBERNETES_VERSIONS, validate_strictly
from visitor_sync_operator import rbac
from visitor_sync_operator.settings import DEFAULT_IMAGE, DEFAULT_SFTP_IMAGE, OperatorSettings

ALERTS = CHART / "files" / "alerts.yaml"
DASHBOARDS = CHART / "files" / "dashboards"
#: The job label the alerts and the dashboard select the operator by.
JOB = "visitor-sync-operator"
MONITORING_KINDS = {"ServiceMonitor", "PrometheusRule"}

_DURATION = {"type": "string", "pattern": r"^(0|([0-9]+(ms|s|m|h|d|w|y))+)$"}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {"type": "object", "required": ["name", "namespace"], "properties": {
    "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
    "namespace": {"type": "string"}, "labels": _STRING_MAP, "annotations": _STRING_MAP}}
#: monitoring.coreos.com/v1, cut down to the fields the chart sets (names and types as in
#: the Prometheus Operator's CRDs); anything else is refused, so a typo cannot pass.
MONITORING_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "ServiceMonitor"}, "metadata": _METADATA,
            "spec": {
                "type": "object", "additionalProperties": False,
                "required": ["selector", "endpoints"],
                "properties": {
                    "jobLabel": {"type": "string"},
                    "namespaceSelector": {
                        "type": "object", "additionalProperties": False,
                        "properties": {"any": {"type": "boolean"}, "matchNames": {
                            "type": "array", "items": {"type": "string"}}}},
                    "selector": {"type": "object", "additionalProperties": False,
                                 "properties": {"matchLabels": _STRING_MAP}},
                    "endpoints": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "additionalProperties": False,
                        "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                                       "honorLabels": {"type": "boolean"},
                                       "interval": _DURATION, "scrapeTimeout": _DURATION}}},
                }}}},
    "PrometheusRule": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "PrometheusRule"}, "metadata": _METADATA,
            "spec": {
                "type": "object", "additionalProperties": False, "required": ["groups"],
                "properties": {"groups": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False,
                    "required": ["name", "rules"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1}, "interval": _DURATION,
                        "rules": {"type": "array", "minItems": 1, "items": {
                            "type": "object", "additionalProperties": False,
                            "required": ["expr"],
                            "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                            "properties": {
                                "alert": {"type": "string"}, "record": {"type": "string"},
                                "expr": {"type": "string", "minLength": 1}, "for": _DURATION,
                                "keep_firing_for": _DURATION, "labels": _STRING_MAP,
                                "annotations": _STRING_MAP}}}}}}}}}},
}


@pytest.fixture(scope="module")
def defaults() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def full() -> list[dict[str, Any]]:
    return render(full_values())


@pytest.fixture(params=["defaults", "full"])
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return request.getfixturevalue(request.param)


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def _env(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The operator's settings: literal values (the pod's identity aside)."""
    env = [item for item in _container(objects)["env"] if item["name"] != "POD_ID"]
    assert all(set(item) == {"name", "value"} for item in env), "only literal settings"
    return {item["name"]: item["value"] for item in env}


def test_the_operator_is_named_after_its_pod(rendered) -> None:
    """kopf's identity: without it kopf asks the user database, which uid 10001 is not in."""
    (identity,) = [item for item in _container(rendered)["env"] if item["name"] == "POD_ID"]
    assert identity["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


# -- lint and schemas ----------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, "full"])
def test_chart_lints_clean(values) -> None:
    report = helm_python.lint(CHART, full_values() if values else None, strict=True,
                              namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, report


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_builtin_object_is_valid_kubernetes(rendered, version) -> None:
    builtin = [o for o in rendered if o["kind"] not in MONITORING_KINDS]
    for manifest in builtin:
        validate_strictly(manifest, version)


def test_monitoring_objects_match_their_schemas(full) -> None:
    monitoring = [o for o in full if o["kind"] in MONITORING_KINDS]
    assert {o["kind"] for o in monitoring} == MONITORING_KINDS
    for manifest in monitoring:
        jsonschema.validate(manifest, MONITORING_SCHEMAS[manifest["kind"]])


def test_the_vendored_schemas_refuse_misspelt_fields(full) -> None:
    """Otherwise the test above could not fail for the mistakes it is there to catch."""
    monitor = json.loads(json.dumps(one(full, "ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["honorlabels"] = True
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, MONITORING_SCHEMAS["ServiceMonitor"])
    rule = json.loads(json.dumps(one(full, "PrometheusRule")))
    rule["spec"]["groups"][0]["rules"][0]["expression"] = "up"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(rule, MONITORING_SCHEMAS["PrometheusRule"])


def test_the_defaults_install_only_what_needs_no_other_operator(defaults) -> None:
    kinds = sorted(o["kind"] for o in defaults)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                     "Deployment", "Service", "ServiceAccount"]


def test_the_full_values_turn_every_feature_on(full) -> None:
    kinds = {o["kind"] for o in full}
    assert kinds == {"ConfigMap", "CustomResourceDefinition", "Deployment", "PrometheusRule",
                     "Role", "RoleBinding", "Service", "ServiceAccount", "ServiceMonitor"}


def test_every_object_is_labelled_for_the_release(rendered) -> None:
    for manifest in rendered:
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/part-of"] == "visitor-sync"


BAD_VALUES = [
    pytest.param({"image": {"tag": 1}}, id="tag-not-a-string"),
    pytest.param({"image": {"pullPolicy": "Sometimes"}}, id="unknown-pull-policy"),
    pytest.param({"sftpImage": {"digest": "latest"}}, id="digest-not-sha256"),
    pytest.param({"watchNamespaces": "districts"}, id="namespaces-not-a-list"),
    pytest.param({"watchNamespaces": ["districts-*"]}, id="namespace-pattern"),
    pytest.param({"database": {"secretName": "Bad_Name"}}, id="secret-name"),
    pytest.param({"database": {"password": "hunter2"}}, id="inline-database-password"),
    pytest.param({"smtp": {"enabled": True, "password": "hunter2", "host": "smtp",
                           "sender": "a@b.c"}}, id="inline-smtp-password"),
    pytest.param({"smtp": {"enabled": True}}, id="smtp-without-host-and-sender"),
    pytest.param({"smtp": {"enabled": "yes"}}, id="enabled-not-a-boolean"),
    pytest.param({"smtp": {"port": "587"}}, id="port-not-an-integer"),
    pytest.param({"smtp": {"security": "ssl"}}, id="unknown-smtp-security"),
    pytest.param({"operator": {"metricsPort": 70000}}, id="port-out-of-range"),
    pytest.param({"operator": {"resyncSeconds": 0}}, id="resync-zero"),
    pytest.param({"operator": {"runAsUser": 0}}, id="root"),
    pytest.param({"operator": {"resources": {"limits": {"memory": "lots"}}}}, id="quantity"),
    pytest.param({"metrics": {"serviceMonitor": {"enabled": True, "interval": 30}}},
                 id="interval-not-a-duration"),
    pytest.param({"metrics": {"prometheusRule": {"labels": {"release": 1}}}},
                 id="label-not-a-string"),
    pytest.param({"rbac": {"create": True, "extraRules": []}}, id="unknown-nested-key"),
    pytest.param({"replicaCount": 2}, id="unknown-top-level-key"),
]


@pytest.mark.parametrize("values", BAD_VALUES)
def test_values_schema_refuses_wrong_values(values) -> None:
    with pytest.raises(helm_python.HelmValuesError) as error:
        render(values)
    assert "schema" in str(error.value)


def test_schema_describes_exactly_the_default_values() -> None:
    """Every key in values.yaml is declared in the schema, and every declared key has a default."""
    schema = json.loads((CHART / "values.schema.json").read_text())

    def value_paths(values: dict[str, Any], declared: set[str], prefix: str = "") -> set[str]:
        found = set()
        for key, value in values.items():
            found.add(prefix + key)
            if isinstance(value, dict) and any(p.startswith(f"{prefix}{key}.") for p in declared):
                found |= value_paths(value, declared, f"{prefix}{key}.")
        return found

    declared = declared_values(schema) - {"global"}
    assert value_paths(default_values(), declared) == declared


def test_every_value_has_a_comment() -> None:
    """values.yaml is the chart's reference: no key without a line saying what it does."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    schema = json.loads((CHART / "values.schema.json").read_text())
    stack: list[tuple[int, dict[str, Any]]] = [(-1, schema)]
    uncommented = []
    for number, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][\w-]*):", line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        while stack[-1][0] >= indent:
            stack.pop()
        declared = stack[-1][1].get("properties", {}).get(key)
        if declared is None:
            continue  # inside a free-form map such as resources
        previous = next(text for text in reversed(lines[:number]) if text.strip())
        if not previous.strip().startswith("#"):
            uncommented.append(key)
        stack.append((indent, declared))
    assert not uncommented


# -- the operator's Deployment -------------------------------------------------------------


def test_operator_runs_once(rendered) -> None:
    spec = one(rendered, "Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}, "kopf standalone must never run twice"
    assert _container(rendered)["command"] == ["visitor-sync", "operator"]


def test_pod_meets_the_restricted_pod_security_standard(rendered) -> None:
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not any(pod.get(key) for key in ("hostNetwork", "hostPID", "hostIPC"))
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert all(set(volume) <= {"name", "emptyDir", "configMap", "secret", "projected"}
               for volume in pod["volumes"])
    # The read-only root needs a writable temp dir (the dynamic client's discovery cache).
    tmp = next(m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    assert pod["automountServiceAccountToken"] is True, "the operator needs the API"


def test_probes_ask_kopfs_liveness_endpoint_on_the_health_port(rendered) -> None:
    container = _container(rendered)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    env = _env(rendered)
    assert ports == {"metrics": int(env["VISITOR_SYNC_METRICS_PORT"]),
                     "health": int(env["VISITOR_SYNC_HEALTH_PORT"])}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def _read(env: dict[str, str] | None, monkeypatch: pytest.MonkeyPatch) -> OperatorSettings:
    """The settings the operator would start with, given exactly ``env``."""
    for name in [name for name in os.environ if name.startswith("VISITOR_SYNC_")]:
        monkeypatch.delenv(name)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    return OperatorSettings()


def test_default_environment_means_the_operators_defaults(defaults, monkeypatch) -> None:
    settings = _read(_env(defaults), monkeypatch)
    assert settings == _read(None, monkeypatch)
    assert (settings.image, settings.sftp_image) == (DEFAULT_IMAGE, DEFAULT_SFTP_IMAGE)
    assert settings.namespaces == [] and settings.smtp is None


def test_full_environment_is_read_by_the_operator_as_meant(full, monkeypatch) -> None:
    settings = _read(_env(full), monkeypatch)
    values = full_values()
    assert settings.namespaces == values["watchNamespaces"]
    assert settings.image == f"{values['image']['repository']}:{values['image']['tag']}"
    assert settings.sftp_image == (f"{values['sftpImage']['repository']}@"
                                   f"{values['sftpImage']['digest']}")
    assert settings.image_pull_policy == values["image"]["pullPolicy"]
    assert (settings.database_secret, settings.database_secret_key) == (
        values["database"]["secretName"], values["database"]["secretKey"])
    smtp = values["smtp"]
    assert settings.smtp is not None
    assert (settings.smtp.host, settings.smtp.port, settings.smtp.security.value,
            settings.smtp.sender, settings.smtp.username, settings.smtp.password_secret) == (
        smtp["host"], smtp["port"], smtp["security"], smtp["sender"], smtp["username"],
        smtp["passwordSecret"])
    assert (settings.metrics_port, settings.health_port, settings.resync_seconds) == (
        values["operator"]["metricsPort"], values["operator"]["healthPort"],
        values["operator"]["resyncSeconds"])


def test_no_secret_value_is_ever_rendered(rendered) -> None:
    assert "Secret" not in {o["kind"] for o in rendered}
    names = set(_env(rendered))
    assert not {n for n in names if "PASSWORD" in n} - {"VISITOR_SYNC_SMTP__PASSWORD_SECRET"}


def test_image_tags_default_to_the_app_version() -> None:
    env = _env(render({"image": {"repository": "r/op"}, "sftpImage": {"repository": "r/sftp",
                                                                      "tag": "7"}}))
    assert env["VISITOR_SYNC_IMAGE"] == "r/op:0.1.0"
    assert env["VISITOR_SYNC_SFTP_IMAGE"] == "r/sftp:7"


# -- RBAC ----------------------------------------------------------------------------------


def _permissions(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples: the rules' meaning, whatever their grouping."""
    for rule in rules:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, "no names, no URLs, no extras"
    return {(group, resource, verb) for rule in rules for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


EXPECTED = {(rule.api_group, resource, verb) for rule in rbac.RULES
            for resource in rule.resources for verb in rule.verbs}


def test_clusterwide_mode_grants_exactly_the_operators_rules(defaults) -> None:
    role, binding = one(defaults, "ClusterRole"), one(defaults, "ClusterRoleBinding")
    assert _permissions(role["rules"]) == EXPECTED
    assert not any("*" in item for triple in EXPECTED for item in triple)
    account = one(defaults, "ServiceAccount")["metadata"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"],
                                    "namespace": account["namespace"]}]
    pod = one(defaults, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["name"]


def test_namespaced_mode_grants_them_only_in_the_watched_namespaces(full) -> None:
    watched = full_values()["watchNamespaces"]
    assert not [o for o in full if o["kind"].startswith("Cluster")
                and o["kind"] != "CustomResourceDefinition"]
    roles = [o for o in full if o["kind"] == "Role"]
    bindings = [o for o in full if o["kind"] == "RoleBinding"]
    assert sorted(o["metadata"]["namespace"] for o in roles) == sorted(watched)
    assert sorted(o["metadata"]["namespace"] for o in bindings) == sorted(watched)
    account = one(full, "ServiceAccount")["metadata"]
    for role in roles:
        assert _permissions(role["rules"]) == EXPECTED
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"],
                                        "namespace": NAMESPACE}]
    assert json.loads(_env(full)["VISITOR_SYNC_NAMESPACES"]) == watched


def test_rbac_can_be_left_to_the_cluster_admin() -> None:
    objects = render({"rbac": {"create": False}, "serviceAccount": {"create": False,
                                                                    "name": "given"}})
    assert not [o for o in objects if "Role" in o["kind"] or o["kind"] == "ServiceAccount"]
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == \
        "given"


# -- the CRD ---------------------------------------------------------------------------------


def test_chart_carries_the_generated_crd_file() -> None:
    copy = CHART / "files" / "crds" / "districtsync.yaml"
    assert copy.read_text() == (ROOT / "crds" / "districtsync.yaml").read_text(), (
        "the chart's CRD differs from crds/districtsync.yaml: run scripts/sync-chart-crd")


def test_rendered_crd_is_the_generated_one_kept_on_uninstall(defaults) -> None:
    crd = json.loads(json.dumps(one(defaults, "CustomResourceDefinition")))
    generated = yaml.safe_load((ROOT / "crds" / "districtsync.yaml").read_text())
    metadata = crd["metadata"]
    assert metadata.pop("annotations") == {"helm.sh/resource-policy": "keep"}
    labels = metadata.pop("labels")
    assert generated["metadata"].pop("labels").items() <= labels.items()
    assert crd == generated


def test_crd_can_be_managed_outside_the_chart() -> None:
    kinds = {o["kind"] for o in render({"crds": {"install": False}})}
    assert "CustomResourceDefinition" not in kinds


# -- monitoring ------------------------------------------------------------------------------


def test_metrics_service_reaches_the_operators_metrics_port(rendered) -> None:
    service = one(rendered, "Service")
    pod = one(rendered, "Deployment")["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_service_monitor_names_the_job_the_alerts_select(full) -> None:
    monitor, service = one(full, "ServiceMonitor"), one(full, "Service")
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == JOB
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["honorLabels"] is True, "the series' namespace is the district's"
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    jobs = set(re.findall(r'job="([^"]+)"', ALERTS.read_text()))
    assert jobs == {JOB}, "the alerts select the operator by another job name"


def test_prometheus_rule_embeds_the_alerts_file_unchanged(full) -> None:
    rule = one(full, "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_dashboards_configmap_is_found_by_grafanas_sidecar(full) -> None:
    config_map = one(full, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Visitor Sync"}
    files = sorted(DASHBOARDS.glob("*.json"))
    assert sorted(config_map["data"]) == [path.name for path in files]
    for path in files:
        assert json.loads(config_map["data"][path.name]) == json.loads(path.read_text())


# -- NOTES.txt -------------------------------------------------------------------------------


def test_notes_tell_the_next_steps() -> None:
    notes = render_templates()[f"{CHART.name}/templates/NOTES.txt"]
    assert "create secret generic visitor-sync-database" in notes
    assert "kubectl apply -f examples/district.yaml" in notes
    assert "get dsync -w" in notes
    assert "sync.visitoraware.io/run-requested-at=" in notes
    assert "{.status.lastHandledRunRequest}" in notes
