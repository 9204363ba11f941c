"""The operator's pure parts: spec, CRD, schedule and every child it builds.

Every built manifest is validated strictly against the real Kubernetes schemas
(kubernetes-validate), for the oldest and the newest Kubernetes we support; the
CRD file must be what the models generate; the examples must be valid resources.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from tests.support.manifests import KUBERNETES_VERSIONS, validate_strictly
from visitor_sync.config import ImportConfig
from visitor_sync.notify import SmtpSettings
from visitor_sync.sftp.keys import fingerprint, generate_key
from visitor_sync_operator.builders import children, importer, secrets, sftp
from visitor_sync_operator.builders.secrets import Material, decode, material_from
from visitor_sync_operator.crd import build_crd, render_crd
from visitor_sync_operator.district import District, InvalidResource
from visitor_sync_operator.schedule import schedule_at
from visitor_sync_operator.settings import OperatorSettings, SmtpServer
from visitor_sync_operator.spec import default_schedule

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
NOW = datetime(2026, 11, 28, 18, 5, tzinfo=UTC)
MATERIAL = Material.generate()


def district(spec: dict[str, Any] | None = None, name: str = "springfield") -> District:
    return District.from_body({
        "metadata": {"name": name, "namespace": "districts", "uid": "uid-1", "generation": 3},
        "spec": {"districtId": "springfield", "displayName": "Springfield", **(spec or {})}})


def build(spec: dict[str, Any] | None = None, settings: OperatorSettings | None = None,
          approve: str | None = None) -> dict[str, dict[str, Any]]:
    """Every child, by kind."""
    built = district(spec)
    objects = children(built, settings or OperatorSettings(), MATERIAL,
                       schedule_at(built, NOW), approve)
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


FULL_SPEC = yaml.safe_load((ROOT / "examples" / "district-full.yaml").read_text())["spec"]
SMTP = OperatorSettings(smtp=SmtpServer(host="smtp.example.org", sender="noreply@example.org",
                                        username="mailer", password_secret="smtp",
                                        ca_config_map="smtp-ca"),
                        image_pull_secrets=["registry-credentials"])


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("spec", "settings"), [
    pytest.param({}, OperatorSettings(), id="minimal"),
    pytest.param(FULL_SPEC, SMTP, id="full"),
    pytest.param({"sftp": {"serviceType": "NodePort", "nodePort": 30022}}, OperatorSettings(),
                 id="node-port"),
])
def test_every_child_is_valid_kubernetes(spec, settings, version) -> None:
    built = build(spec, settings)
    built["Job/run-now"] = importer.run_now_job(
        district(spec), built["CronJob/springfield-import"], "token")
    for manifest in built.values():
        validate_strictly(manifest, version)


def test_children_are_labelled_and_owned_by_the_resource() -> None:
    for key, manifest in build().items():
        metadata = manifest["metadata"]
        assert metadata["namespace"] == "districts", key
        assert metadata["ownerReferences"] == [{
            "apiVersion": "sync.visitoraware.io/v1alpha1", "kind": "DistrictSync",
            "name": "springfield", "uid": "uid-1", "controller": True,
            "blockOwnerDeletion": True}], key
        labels = metadata["labels"]
        assert labels["app.kubernetes.io/instance"] == "springfield", key
        assert labels["app.kubernetes.io/managed-by"] == "visitor-sync-operator", key


def test_the_expected_children_and_nothing_else() -> None:
    assert sorted(build()) == [
        "ConfigMap/springfield-import", "ConfigMap/springfield-sftp",
        "CronJob/springfield-import", "Deployment/springfield-sftp",
        "NetworkPolicy/springfield-sftp", "PersistentVolumeClaim/springfield-sftp",
        "Secret/springfield-importer-key", "Secret/springfield-sftp-credentials",
        "Secret/springfield-sftp-host-keys", "Service/springfield-sftp"]


def test_importer_pod_meets_the_restricted_pod_security_standard() -> None:
    job = build(FULL_SPEC, SMTP)["CronJob/springfield-import"]["spec"]["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    (container,) = pod["containers"]
    assert (pod["automountServiceAccountToken"], pod["restartPolicy"]) == (False, "Never")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "runAsNonRoot": True, "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}}
    assert {mount["mountPath"] for mount in container["volumeMounts"]} >= {"/tmp"}
    assert not any("hostPath" in volume for volume in pod["volumes"])
    assert job["activeDeadlineSeconds"] == 3600
    assert job["ttlSecondsAfterFinished"] > 0


def test_district_pods_pull_with_the_configured_secrets_only_when_there_are_some() -> None:
    def pods(settings: OperatorSettings) -> list[dict]:
        built = build(FULL_SPEC, settings)
        return [built["Deployment/springfield-sftp"]["spec"]["template"]["spec"],
                built["CronJob/springfield-import"]["spec"]["jobTemplate"]["spec"][
                    "template"]["spec"]]

    assert [pod["imagePullSecrets"] for pod in pods(SMTP)] == [
        [{"name": "registry-credentials"}]] * 2
    assert not any("imagePullSecrets" in pod for pod in pods(OperatorSettings()))


def test_cron_job_never_overlaps_runs_and_keeps_history_bounded() -> None:
    cron = build({"schedule": "*/15 * * * *", "timeZone": "Europe/Berlin"})[
        "CronJob/springfield-import"]["spec"]
    assert (cron["schedule"], cron["timeZone"], cron["concurrencyPolicy"], cron["suspend"]) == (
        "*/15 * * * *", "Europe/Berlin", "Forbid", False)
    assert cron["successfulJobsHistoryLimit"] <= 5 and cron["failedJobsHistoryLimit"] <= 5
    assert cron["startingDeadlineSeconds"] > 0


def test_importer_configuration_is_one_mounted_import_config() -> None:
    built = build(FULL_SPEC, approve="5f0c6a52-0000-4000-8000-000000000000")
    data = built["ConfigMap/springfield-import"]["data"]
    config = ImportConfig.model_validate_json(data["import-config.json"])
    assert (config.district_id, config.max_deactivate_percent, config.quiet_period_seconds,
            config.held_retention_days, config.accepted_types, config.approve_held_run,
            config.pickup_default) == (
        "shelbyville-isd", 5, 120, 30, ["students", "visitors", "employees", "users"],
        "5f0c6a52-0000-4000-8000-000000000000", "deny")
    assert [str(r) for r in config.notifications.recipients] == FULL_SPEC["notifications"][
        "recipients"]
    assert config.retention.model_dump() == {
        "deactivated_record_days": 730, "error_text_days": 30, "run_history_days": 400,
        "drop_box_leftover_days": 3}
    container = built["CronJob/springfield-import"]["spec"]["jobTemplate"]["spec"]["template"][
        "spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--config") + 1] == "/etc/visitor-sync/import/import-config.json"
    assert args[args.index("--termination-log") + 1] == container["terminationMessagePath"]
    env = {item["name"]: item for item in container["env"]}
    assert env["VISITOR_SYNC_DB"]["valueFrom"]["secretKeyRef"] == {
        "name": "visitor-sync-database", "key": "url"}
    assert all("value" not in item or "password" not in item["value"].lower()
               for item in container["env"] if item["name"] != "VISITOR_SYNC_SMTP_PASSWORD_FILE")


def test_importer_reads_smtp_settings_that_the_importer_accepts() -> None:
    container = build(FULL_SPEC, SMTP)["CronJob/springfield-import"]["spec"]["jobTemplate"][
        "spec"]["template"]["spec"]["containers"][0]
    environment = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    settings = SmtpSettings.from_env(environment)
    assert (settings.host, settings.username, str(settings.password_file),
            str(settings.ca_file)) == ("smtp.example.org", "mailer",
                                       "/etc/visitor-sync/smtp/password",
                                       "/etc/visitor-sync/smtp-ca/ca.crt")
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert {"/etc/visitor-sync/smtp", "/etc/visitor-sync/smtp-ca"} <= mounts


def test_known_hosts_pins_the_host_keys_under_the_name_the_importer_dials() -> None:
    built = build({"sftp": {"port": 2022}})
    known_hosts = built["ConfigMap/springfield-import"]["data"]["known_hosts"].splitlines()
    source = importer.source_url(district({"sftp": {"port": 2022}}))
    assert source == "sftp://importer@springfield-sftp.districts.svc:2022/district/upload"
    assert {line.split()[0] for line in known_hosts} == {"[springfield-sftp.districts.svc]:2022"}
    assert [fingerprint(" ".join(line.split()[1:])) for line in known_hosts] == (
        MATERIAL.host_fingerprints())


def test_sftp_server_gets_exactly_its_capabilities_and_a_checksum() -> None:
    deployment = build()["Deployment/springfield-sftp"]["spec"]
    assert deployment["strategy"] == {"type": "Recreate"} and deployment["replicas"] == 1
    (container,) = deployment["template"]["spec"]["containers"]
    assert container["securityContext"]["capabilities"] == {
        "drop": ["ALL"], "add": ["CHOWN", "SETUID", "SETGID", "SYS_CHROOT", "KILL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["SFTP_CONFIG"] == "/etc/visitor-sync/config/sshd_config"
    assert env["SFTP_DISTRICT_USER"] == "springfield"
    assert "readinessProbe" in container and "livenessProbe" in container


def _differences(before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    return sorted(key for key in before if before[key] != after[key])


@pytest.mark.parametrize(("change", "affected"), [
    pytest.param({"notifications": {"recipients": ["it@springfield.example.org"]}},
                 ["ConfigMap/springfield-import"], id="notifications"),
    pytest.param({"schedule": "0 5 * * *"}, ["CronJob/springfield-import"], id="schedule"),
    pytest.param({"sftp": {"sourceRanges": ["198.51.100.0/24"]}},
                 ["ConfigMap/springfield-sftp", "Deployment/springfield-sftp",
                  "NetworkPolicy/springfield-sftp", "Service/springfield-sftp"],
                 id="source-ranges"),
    pytest.param({"importer": {"resources": {"limits": {"memory": "4Gi"}}}},
                 ["CronJob/springfield-import"], id="importer-resources"),
    pytest.param({"sftp": {"storageSize": "20Gi"}},
                 ["PersistentVolumeClaim/springfield-sftp"], id="storage"),
])
def test_a_spec_change_touches_only_what_it_affects(change, affected) -> None:
    assert _differences(build(), build(change)) == affected


def test_sftp_server_restarts_when_authorized_keys_change_not_for_importer_settings() -> None:
    key = generate_key("ed25519").public_line
    checksum = sftp.CHECKSUM_ANNOTATION

    def annotation(spec: dict) -> str:
        return build(spec)["Deployment/springfield-sftp"]["spec"]["template"]["metadata"][
            "annotations"][checksum]

    assert annotation({}) != annotation({"sftp": {"authorizedKeys": [key]}})
    assert annotation({}) == annotation({"safety": {"maxDeactivatePercent": 50}})


def test_network_policy_admits_source_ranges_and_own_importer_only() -> None:
    policy = build({"sftp": {"sourceRanges": ["203.0.113.0/24"]}})[
        "NetworkPolicy/springfield-sftp"]["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["egress"] == []
    sources = [peer for rule in policy["ingress"] for peer in rule["from"]]
    assert sources == [{"ipBlock": {"cidr": "203.0.113.0/24"}}, {"podSelector": {"matchLabels": {
        "app.kubernetes.io/instance": "springfield", "app.kubernetes.io/component": "importer",
        "sync.visitoraware.io/district": "springfield"}}}]
    service = build({"sftp": {"sourceRanges": ["203.0.113.0/24"]}})["Service/springfield-sftp"]
    assert service["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24"]
    assert service["spec"]["externalTrafficPolicy"] == "Local"


def test_secret_material_is_kept_and_only_what_is_missing_is_generated() -> None:
    built = district()
    stored = {
        "credentials": secrets.credentials_secret(built, MATERIAL),
        "host_keys": secrets.host_keys_secret(built, MATERIAL),
        "importer_key": secrets.importer_key_secret(built, MATERIAL),
    }
    assert material_from(stored["credentials"], stored["host_keys"],
                         stored["importer_key"]) == MATERIAL
    regenerated = material_from(stored["credentials"], None, stored["importer_key"])
    assert (regenerated.password, regenerated.importer_key) == (
        MATERIAL.password, MATERIAL.importer_key)
    assert regenerated.host_keys != MATERIAL.host_keys
    assert decode(stored["credentials"]) == {"username": b"springfield",
                                             "password": MATERIAL.password.encode()}


def test_run_now_job_is_the_cron_job_template_named_after_the_token() -> None:
    built = district()
    cron = build()["CronJob/springfield-import"]
    first = importer.run_now_job(built, cron, "2026-11-28T18:00:00Z")
    assert first["metadata"]["name"] == importer.run_now_job(built, cron, "2026-11-28T18:00:00Z")[
        "metadata"]["name"]
    assert first["metadata"]["name"] != importer.run_now_job(built, cron, "other")["metadata"][
        "name"]
    assert len(first["metadata"]["name"]) <= 63
    assert first["spec"] == cron["spec"]["jobTemplate"]["spec"]
    assert first["metadata"]["annotations"]["sync.visitoraware.io/run-request"] == (
        "2026-11-28T18:00:00Z")


# -- spec and schedule ---------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "message"), [
    ({"districtId": "Spring Field"}, "districtId"),
    ({"schedule": "every hour"}, "not a five-field cron expression"),
    ({"timeZone": "Mars/Olympus"}, "not an IANA time zone"),
    ({"sftp": {"passwordLogin": False}}, "could not log in"),
    ({"sftp": {"authorizedKeys": ["ssh-dss AAAAB3NzaC1kc3MAAACBAP"]}}, "not accepted"),
    ({"acceptedFileTypes": ["grades"]}, "unknown file type 'grades'"),
    ({"pauseWindows": [{"start": "2026-08-01", "end": "2026-07-01"}]}, "ends"),
    ({"sftp": {"sourceRanges": ["10.0.0.300/8"]}}, "sourceRanges"),
    ({"sftp": {"storgeSize": "1Gi"}}, "storgeSize"),
    ({"import": {"pickupDefault": "maybe"}}, "pickupDefault"),
])
def test_bad_spec_is_refused_with_a_specific_message(spec, message) -> None:
    with pytest.raises(ValidationError, match=message):
        district(spec)


def test_overlong_name_is_refused_before_anything_is_built() -> None:
    with pytest.raises(InvalidResource, match="longer than 40"):
        district(name="a" * 41)


def test_default_schedule_is_hourly_stable_and_spread_over_the_hour() -> None:
    minutes = [int(default_schedule("districts", f"district-{n}").split()[0])
               for n in range(1000)]
    assert default_schedule("districts", "springfield") == default_schedule(
        "districts", "springfield")
    assert all(default_schedule("d", f"x{n}").endswith(" * * * *") for n in range(10))
    assert len(set(minutes)) == 60
    assert max(minutes.count(minute) for minute in range(60)) < 3 * 1000 / 60


def test_pause_window_suspends_runs_until_it_ends_in_the_district_time_zone() -> None:
    paused = district({"schedule": "0 * * * *", "timeZone": "America/Chicago", "pauseWindows": [
        {"start": "2026-11-28", "end": "2026-11-30", "reason": "roster rollover"}]})
    schedule = schedule_at(paused, NOW)
    assert (schedule.suspended, schedule.reason) == (
        True, "paused from 2026-11-28 to 2026-11-30: roster rollover")
    assert schedule.next_run.isoformat() == "2026-12-01T00:00:00-06:00"
    assert not schedule_at(paused, datetime(2026, 12, 1, 6, 30, tzinfo=UTC)).suspended


def test_suspended_district_has_no_next_run() -> None:
    schedule = schedule_at(district({"suspend": True}), NOW)
    assert (schedule.suspended, schedule.next_run) == (True, None)


# -- the CRD -------------------------------------------------------------------------------


def test_crd_file_is_generated_from_the_models() -> None:
    assert (ROOT / "crds" / "districtsync.yaml").read_text() == render_crd(), (
        "crds/districtsync.yaml is stale: python3 -m visitor_sync_operator.crd "
        "> crds/districtsync.yaml")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_crd_is_a_valid_structural_definition(version) -> None:
    crd = build_crd()
    validate_strictly(crd, version)

    def walk(node: dict, path: str) -> None:
        assert "$ref" not in node and "anyOf" not in node, path
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        assert node.get("additionalProperties") is not False, path
        # A defaulted {} would reach the operator as explicit empty settings and hide the
        # model's own defaults (e.g. the importer's resources).
        assert not (node.get("type") == "object" and "default" in node), path
        if "items" in node:
            assert "maxItems" in node, f"{path}: CEL cost estimation needs maxItems"
        for name, child in (node.get("properties") or {}).items():
            walk(child, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], f"{path}.{key}")

    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    walk(schema, "")
    spec = schema["properties"]["spec"]
    assert spec["properties"]["districtId"]["x-kubernetes-validations"][0]["rule"] == (
        "self == oldSelf")
    assert all(node.get("description") for node in spec["properties"].values())


def _crd_schema() -> dict:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("example", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_examples_are_valid_resources(example: Path) -> None:
    resource = yaml.safe_load(example.read_text())
    jsonschema.validate(resource, _crd_schema(),
                        format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    built = District.from_body({**resource, "metadata": {**resource["metadata"], "uid": "u"}})
    assert built.spec.display_name


def test_crd_schema_refuses_what_the_model_refuses() -> None:
    schema = _crd_schema()
    bad = {"apiVersion": "sync.visitoraware.io/v1alpha1", "kind": "DistrictSync",
           "metadata": {"name": "x"},
           "spec": {"districtId": "UPPER", "displayName": "x",
                    "notifications": {"when": "sometimes"},
                    "import": {"pickupDefault": "maybe"}}}
    errors = sorted(error.message for error in
                    jsonschema.Draft7Validator(schema).iter_errors(bad))
    assert len(errors) == 3, errors
    assert json.dumps(errors).count("UPPER") == 1 and "sometimes" in json.dumps(errors)
    assert "maybe" in json.dumps(errors)
