"""Make a district's children match its spec: the desired state applied, drift repaired.

Secrets are read before anything is built, because what they hold (host keys,
the importer's key, the password) goes into the ConfigMaps and the pod's
checksum; an absent piece is generated once, and the password is replaced
only when a new rotation token is asked for.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from visitor_sync.sftp.credentials import generate_password
from visitor_sync_operator.builders import children
from visitor_sync_operator.builders.secrets import Material, material_from
from visitor_sync_operator.district import District
from visitor_sync_operator.kube import Kube, check_controlled
from visitor_sync_operator.schedule import Schedule
from visitor_sync_operator.settings import OperatorSettings
from visitor_sync_operator.spec import ServiceType

#: Annotation asking for a new district password (any new value, e.g. a date).
ROTATE_ANNOTATION = "sync.visitoraware.io/rotate-credentials"


@dataclass(frozen=True)
class SftpState:
    """What the district needs to know about its server, and whether it is up."""

    ready: bool
    message: str
    endpoint: str | None
    host_key_fingerprints: list[str]


@dataclass(frozen=True)
class Provisioned:
    material: Material
    #: "Kind/name" of every child created or patched (empty when nothing drifted)
    written: list[str]
    sftp: SftpState
    cron_job: dict[str, Any]


def read_material(kube: Kube, district: District, rotate: bool
                  ) -> tuple[Material, dict[str, dict[str, Any] | None]]:
    """The district's secret material (stored, generated where absent, rotated if asked),
    and its Secrets as read, by name (``None``: absent)."""
    stored = {name: kube.get("v1", "Secret", district.namespace, name)
              for name in (district.credentials_secret, district.host_keys_secret,
                           district.importer_key_secret)}
    material = material_from(*stored.values())
    if rotate:
        material = dataclasses.replace(material, password=generate_password())
    return material, stored


def provision(kube: Kube, district: District, settings: OperatorSettings, schedule: Schedule,
              approve_held_run: str | None, rotate: bool = False) -> Provisioned:
    """Apply every child (all built and read first: a builder's error or a child of someone
    else's leaves nothing half-made)."""
    material, secrets = read_material(kube, district, rotate)
    desired = children(district, settings, material, schedule, approve_held_run)
    current = [secrets[child["metadata"]["name"]] if child["kind"] == "Secret"  # just read
               else kube.get(child["apiVersion"], child["kind"], district.namespace,
                             child["metadata"]["name"]) for child in desired]
    for child, found in zip(desired, current, strict=True):
        if found is not None:
            check_controlled(found, child)
    written: list[str] = []
    applied: dict[str, dict[str, Any]] = {}
    for child, found in zip(desired, current, strict=True):
        result, changed = kube.apply_over(found, child)
        applied[child["kind"]] = result
        if changed:
            written.append(f"{child['kind']}/{child['metadata']['name']}")
    sftp = sftp_state(district, material, applied["Deployment"], applied["Service"])
    return Provisioned(material, written, sftp, applied["CronJob"])


def sftp_state(district: District, material: Material, deployment: dict[str, Any],
               service: dict[str, Any]) -> SftpState:
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation")
    ready = (status.get("readyReplicas") or 0) >= 1 and (
        generation is None or (status.get("observedGeneration") or 0) >= generation)
    message = ("the SFTP server is accepting connections" if ready else
               f"waiting for the SFTP server pod ({status.get('readyReplicas') or 0}/1 ready)")
    return SftpState(ready, message, endpoint(district, service),
                     material.host_fingerprints())


def endpoint(district: District, service: dict[str, Any]) -> str | None:
    """``sftp://user@host:port`` as the district reaches it, once it has an address."""
    user = district.spec.sftp_username()
    spec = service.get("spec") or {}
    port = (spec.get("ports") or [{}])[0]
    kind = district.spec.sftp.service_type
    if kind is ServiceType.LOAD_BALANCER:
        ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress")
        if not ingress:
            return None
        host = ingress[0].get("hostname") or ingress[0].get("ip")
        return f"sftp://{user}@{host}:{port.get('port', district.spec.sftp.port)}"
    if kind is ServiceType.NODE_PORT:
        node_port = port.get("nodePort") or district.spec.sftp.node_port
        return f"sftp://{user}@<node-address>:{node_port}" if node_port else None
    return f"sftp://{user}@{district.sftp_host}:{district.spec.sftp.port}"

