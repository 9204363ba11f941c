"""The district's SFTP server: sshd ConfigMap, volume, Deployment, Service, NetworkPolicy.

Pure functions of the district, the operator settings and the secret
material; the sshd_config comes from the importer package's renderer, the
same one the tests start a real sshd with.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from visitor_sync.sftp.server import ACCOUNT_UID, SshdSettings, entrypoint_environment
from visitor_sync.sftp.server import render_sshd_config as render
from visitor_sync_operator.builders.secrets import HOST_KEY_FILES, IMPORTER_KEY_FILE, Material
from visitor_sync_operator.district import District
from visitor_sync_operator.settings import OperatorSettings
from visitor_sync_operator.spec import ServiceType

COMPONENT = "sftp"
#: The port sshd listens on inside the pod (unprivileged); the Service maps spec.sftp.port.
CONTAINER_PORT = 2222
IMPORTER_USER = "importer"
CONFIG_DIRECTORY = "/etc/visitor-sync/config"
SECRETS_DIRECTORY = "/etc/visitor-sync/secrets"
DATA_DIRECTORY = "/srv/sftp"
HOST_KEY_DIRECTORY = "/etc/ssh/keys"
AUTHORIZED_KEYS_DIRECTORY = "/etc/ssh/authorized_keys"
#: Pod annotation whose change rolls the server when its configuration or secrets change.
CHECKSUM_ANNOTATION = "sync.visitoraware.io/config-checksum"
#: Linux capabilities sshd and the entrypoint need (docs/sftp.md says why, each tested).
CAPABILITIES = ["CHOWN", "SETUID", "SETGID", "SYS_CHROOT", "KILL"]


def sshd_settings(district: District) -> SshdSettings:
    """The server's settings from the spec (raises ``ValueError`` when they cannot work)."""
    sftp = district.spec.sftp
    return SshdSettings(
        port=CONTAINER_PORT, root=DATA_DIRECTORY, district_user=district.spec.sftp_username(),
        importer_user=IMPORTER_USER, password_login=sftp.password_login,
        district_authorized_keys=(f"{AUTHORIZED_KEYS_DIRECTORY}/district"
                                  if sftp.authorized_keys else None),
        importer_authorized_keys=f"{AUTHORIZED_KEYS_DIRECTORY}/importer",
        allowed_networks=list(sftp.source_ranges),
        host_keys=[f"{HOST_KEY_DIRECTORY}/{file}" for file in HOST_KEY_FILES.values()])


def config_map(district: District) -> dict[str, Any]:
    data = {"sshd_config": render(sshd_settings(district))}
    if district.spec.sftp.authorized_keys:
        data["district-authorized-keys"] = "\n".join(district.spec.sftp.authorized_keys) + "\n"
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": district.metadata(district.sftp_name, COMPONENT), "data": data}


def volume_claim(district: District) -> dict[str, Any]:
    sftp = district.spec.sftp
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": sftp.storage_size}}}
    if sftp.storage_class_name:
        spec["storageClassName"] = sftp.storage_class_name
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": district.metadata(district.sftp_name, COMPONENT), "spec": spec}


def checksum(district: District, material: Material) -> str:
    """Changes when anything the running sshd read at start-up changes."""
    inputs = {"config": config_map(district)["data"], "password": material.password,
              "host_keys": {k: v.decode() for k, v in material.host_keys.items()},
              "importer": material.importer_public_line}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _secrets_volume(district: District) -> dict[str, Any]:
    """Everything the entrypoint reads from SFTP_SECRETS, projected under its file names."""
    sources: list[dict[str, Any]] = [
        {"secret": {"name": district.host_keys_secret,
                    "items": [{"key": file, "path": file} for file in HOST_KEY_FILES.values()]}},
        {"secret": {"name": district.importer_key_secret,
                    "items": [{"key": f"{IMPORTER_KEY_FILE}.pub",
                               "path": "importer-authorized-keys"}]}},
    ]
    if district.spec.sftp.password_login:
        sources.append({"secret": {"name": district.credentials_secret,
                                   "items": [{"key": "password", "path": "district-password"}]}})
    if district.spec.sftp.authorized_keys:
        sources.append({"configMap": {"name": district.sftp_name,
                                      "items": [{"key": "district-authorized-keys",
                                                 "path": "district-authorized-keys"}]}})
    return {"name": "secrets", "projected": {"sources": sources, "defaultMode": 0o400}}


def deployment(district: District, settings: OperatorSettings,
               material: Material) -> dict[str, Any]:
    environment = entrypoint_environment(
        sshd_settings(district), uid=ACCOUNT_UID,
        config_path=f"{CONFIG_DIRECTORY}/sshd_config", secrets_directory=SECRETS_DIRECTORY)
    probe = {"tcpSocket": {"port": "sftp"}, "periodSeconds": 10, "timeoutSeconds": 3}
    container = {
        "name": "sshd",
        "image": settings.sftp_image,
        "imagePullPolicy": settings.image_pull_policy,
        "ports": [{"name": "sftp", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "env": [{"name": name, "value": value} for name, value in environment.items()],
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_DIRECTORY},
            {"name": "config", "mountPath": CONFIG_DIRECTORY, "readOnly": True},
            {"name": "secrets", "mountPath": SECRETS_DIRECTORY, "readOnly": True},
        ],
        "startupProbe": {**probe, "periodSeconds": 2, "failureThreshold": 30},
        "readinessProbe": probe,
        "livenessProbe": {**probe, "failureThreshold": 6},
        "resources": district.spec.sftp_server.resources.model_dump(),
        # Root with five capabilities: sshd's privilege separation and chroot need them;
        # useradd and chpasswd write /etc, so the root filesystem stays writable.
        "securityContext": {
            "runAsUser": 0, "runAsNonRoot": False, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": False,
            "capabilities": {"drop": ["ALL"], "add": CAPABILITIES},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": district.metadata(district.sftp_name, COMPONENT),
        "spec": {
            "replicas": 1,
            # Two sshd on one ReadWriteOnce volume cannot work: stop the old one first.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": district.selector(COMPONENT)},
            "template": {
                "metadata": {"labels": district.labels(COMPONENT),
                             "annotations": {CHECKSUM_ANNOTATION: checksum(district, material)}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 30,
                    **settings.pull_secrets(),
                    "containers": [container],
                    "volumes": [
                        {"name": "data", "persistentVolumeClaim": {
                            "claimName": district.sftp_name}},
                        {"name": "config", "configMap": {
                            "name": district.sftp_name,
                            "items": [{"key": "sshd_config", "path": "sshd_config"}]}},
                        _secrets_volume(district),
                    ],
                },
            },
        },
    }


def service(district: District) -> dict[str, Any]:
    sftp = district.spec.sftp
    port: dict[str, Any] = {"name": "sftp", "port": sftp.port, "targetPort": "sftp",
                            "protocol": "TCP"}
    spec: dict[str, Any] = {"type": sftp.service_type.value,
                            "selector": district.selector(COMPONENT), "ports": [port]}
    if sftp.node_port is not None:
        port["nodePort"] = sftp.node_port
    if sftp.service_type is not ServiceType.CLUSTER_IP and sftp.source_ranges:
        # Keep the client's address, or sshd's AllowUsers user@CIDR would see the node's.
        spec["externalTrafficPolicy"] = "Local"
        if sftp.service_type is ServiceType.LOAD_BALANCER:
            spec["loadBalancerSourceRanges"] = [str(network) for network in sftp.source_ranges]
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": district.metadata(district.sftp_name, COMPONENT), "spec": spec}


def network_policy(district: District) -> dict[str, Any]:
    """SFTP from the district's source ranges and its own importer pods; nothing out."""
    ranges = [str(network) for network in district.spec.sftp.source_ranges] \
        or ["0.0.0.0/0", "::/0"]
    port = [{"protocol": "TCP", "port": CONTAINER_PORT}]
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": district.metadata(district.sftp_name, COMPONENT),
        "spec": {
            "podSelector": {"matchLabels": district.selector(COMPONENT)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {"from": [{"ipBlock": {"cidr": cidr}} for cidr in ranges], "ports": port},
                {"from": [{"podSelector": {"matchLabels": district.selector("importer")}}],
                 "ports": port},
            ],
            "egress": [],
        },
    }
