"""The district's importer: its ImportConfig ConfigMap, the CronJob and run-now Jobs.

The importer's whole configuration is one ``ImportConfig`` document, mounted
from the ConfigMap; secrets come from the district's Secrets as files and the
database URL from a Secret reference, never as literal values in the spec.
The pod runs under the restricted Pod Security Standard.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from visitor_sync.config import ImportConfig, Notifications, Retention
from visitor_sync.exits import EXIT_USAGE
from visitor_sync.sftp.keys import known_hosts_line
from visitor_sync_operator.builders.secrets import IMPORTER_KEY_FILE, Material
from visitor_sync_operator.builders.sftp import IMPORTER_USER
from visitor_sync_operator.district import District
from visitor_sync_operator.settings import OperatorSettings

COMPONENT = "importer"
CONFIG_FILE = "import-config.json"
KNOWN_HOSTS_FILE = "known_hosts"
CONFIG_DIRECTORY = "/etc/visitor-sync/import"
KEY_DIRECTORY = "/etc/visitor-sync/importer-key"
SMTP_PASSWORD_DIRECTORY = "/etc/visitor-sync/smtp"
SMTP_CA_DIRECTORY = "/etc/visitor-sync/smtp-ca"
TERMINATION_LOG = "/dev/termination-log"
#: The importer's uid: any non-root uid (the image has no user database entry to need).
RUN_AS = 10001
#: Annotation on run-now Jobs: the request token they were made for.
RUN_REQUEST_ANNOTATION = "sync.visitoraware.io/run-request"
#: Finished Jobs are kept this long for `kubectl logs` (the operator reads them at once).
FINISHED_JOB_TTL = 24 * 3600


def import_config(district: District, approve_held_run: str | None) -> ImportConfig:
    spec = district.spec
    return ImportConfig(
        district_id=spec.district_id, district_name=spec.display_name,
        max_deactivate_percent=spec.safety.max_deactivate_percent,
        quiet_period_seconds=spec.safety.quiet_period_seconds,
        held_retention_days=spec.safety.held_retention_days,
        pickup_default=spec.import_.pickup_default,
        accepted_types=spec.accepted_file_types, approve_held_run=approve_held_run,
        retention=Retention.model_validate(spec.retention.model_dump()),
        notifications=Notifications(recipients=spec.notifications.recipients,
                                    when=spec.notifications.when,
                                    max_listed_errors=spec.notifications.max_listed_errors))


def config_map(district: District, material: Material,
               approve_held_run: str | None) -> dict[str, Any]:
    """The ImportConfig document and the known_hosts pinning the server's host keys."""
    known_hosts = "".join(
        known_hosts_line(district.sftp_host, district.spec.sftp.port, line) + "\n"
        for line in material.host_public_lines())
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": district.metadata(district.importer_name, COMPONENT),
        "data": {CONFIG_FILE: import_config(district, approve_held_run).model_dump_json(indent=2),
                 KNOWN_HOSTS_FILE: known_hosts},
    }


def source_url(district: District) -> str:
    return (f"sftp://{IMPORTER_USER}@{district.sftp_host}:{district.spec.sftp.port}"
            f"/district/upload")


def _environment(district: District, settings: OperatorSettings) -> list[dict[str, Any]]:
    database = district.spec.database
    env: list[dict[str, Any]] = [
        {"name": "VISITOR_SYNC_DB", "valueFrom": {"secretKeyRef": {
            "name": database.secret_name or settings.database_secret,
            "key": database.key or settings.database_secret_key}}},
        {"name": "HOME", "value": "/tmp"},
    ]
    smtp = settings.smtp
    if smtp is not None:
        values = {"HOST": smtp.host, "PORT": str(smtp.port) if smtp.port else None,
                  "SECURITY": smtp.security.value, "SENDER": smtp.sender,
                  "USERNAME": smtp.username,
                  "PASSWORD_FILE": (f"{SMTP_PASSWORD_DIRECTORY}/password"
                                    if smtp.password_secret else None),
                  "CA_FILE": f"{SMTP_CA_DIRECTORY}/ca.crt" if smtp.ca_config_map else None}
        env += [{"name": f"VISITOR_SYNC_SMTP_{name}", "value": value}
                for name, value in values.items() if value is not None]
    return env


def _pod_spec(district: District, settings: OperatorSettings) -> dict[str, Any]:
    mounts = [{"name": "config", "mountPath": CONFIG_DIRECTORY, "readOnly": True},
              {"name": "importer-key", "mountPath": KEY_DIRECTORY, "readOnly": True},
              {"name": "scratch", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": district.importer_name}},
        {"name": "importer-key", "secret": {
            "secretName": district.importer_key_secret, "defaultMode": 0o440,
            "items": [{"key": IMPORTER_KEY_FILE, "path": IMPORTER_KEY_FILE}]}},
        # Downloads go to /tmp; a disk-backed emptyDir because files may be 2 GiB.
        {"name": "scratch", "emptyDir": {"sizeLimit": district.spec.importer.scratch_size}},
    ]
    if settings.smtp is not None and settings.smtp.password_secret:
        mounts.append({"name": "smtp", "mountPath": SMTP_PASSWORD_DIRECTORY, "readOnly": True})
        volumes.append({"name": "smtp", "secret": {
            "secretName": settings.smtp.password_secret, "defaultMode": 0o440,
            "items": [{"key": "password", "path": "password"}]}})
    if settings.smtp is not None and settings.smtp.ca_config_map:
        mounts.append({"name": "smtp-ca", "mountPath": SMTP_CA_DIRECTORY, "readOnly": True})
        volumes.append({"name": "smtp-ca", "configMap": {
            "name": settings.smtp.ca_config_map, "items": [{"key": "ca.crt", "path": "ca.crt"}]}})
    container = {
        "name": "importer",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["visitor-sync", "import"],
        "args": ["--config", f"{CONFIG_DIRECTORY}/{CONFIG_FILE}",
                 "--source", source_url(district),
                 "--sftp-key", f"{KEY_DIRECTORY}/{IMPORTER_KEY_FILE}",
                 "--known-hosts", f"{CONFIG_DIRECTORY}/{KNOWN_HOSTS_FILE}",
                 "--format", "json", "--termination-log", TERMINATION_LOG],
        "env": _environment(district, settings),
        "volumeMounts": mounts,
        "resources": district.spec.importer.resources.model_dump(),
        "terminationMessagePath": TERMINATION_LOG,
        # A crash with no summary still leaves its last log lines for the operator.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "runAsNonRoot": True, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    return {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        **settings.pull_secrets(),
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                            "fsGroup": RUN_AS, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": volumes,
    }


def job_spec(district: District, settings: OperatorSettings) -> dict[str, Any]:
    return {
        # The importer retries what can be retried itself; a second pod helps after a
        # node or network failure, and a usage error (exit 2) fails at once.
        "backoffLimit": 1,
        "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {
            "containerName": "importer", "operator": "In", "values": [EXIT_USAGE]}}]},
        "activeDeadlineSeconds": district.spec.importer.active_deadline_seconds,
        "ttlSecondsAfterFinished": FINISHED_JOB_TTL,
        "template": {"metadata": {"labels": district.labels(COMPONENT)},
                     "spec": _pod_spec(district, settings)},
    }


def cron_job(district: District, settings: OperatorSettings, schedule: str,
             suspend: bool) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": district.metadata(district.importer_name, COMPONENT),
        "spec": {
            "schedule": schedule,
            "timeZone": district.spec.time_zone,
            "suspend": suspend,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 5,
            "jobTemplate": {"metadata": {"labels": district.labels(COMPONENT)},
                            "spec": job_spec(district, settings)},
        },
    }


def run_now_job_name(district: District, token: str) -> str:
    """One name per request token, so a retried handler cannot start a second Job."""
    return f"{district.importer_name}-run-{hashlib.sha256(token.encode()).hexdigest()[:8]}"


def run_now_job(district: District, cron: dict[str, Any], token: str) -> dict[str, Any]:
    """A Job from the CronJob's template, like ``kubectl create job --from=cronjob/...``."""
    template = copy.deepcopy(cron["spec"]["jobTemplate"])
    metadata = district.metadata(run_now_job_name(district, token), COMPONENT, annotations={
        "cronjob.kubernetes.io/instantiate": "manual", RUN_REQUEST_ANNOTATION: token})
    metadata["labels"].update(template.get("metadata", {}).get("labels", {}))
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata,
            "spec": template["spec"]}
