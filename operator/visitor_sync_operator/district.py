"""One DistrictSync resource as the builders see it: identity, spec, names and labels.

Every child's name, labels and owner reference come from here, so builders,
handlers and tests agree on them without repeating string formats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from visitor_sync_operator.spec import API_VERSION, KIND, DistrictSyncSpec, parse_spec

#: Longest resource name: children add up to 23 characters and Job names must fit 63.
MAX_NAME_LENGTH = 40
MANAGER = "visitor-sync-operator"
#: Label carrying the owning resource's name on every child (and on Job pods).
DISTRICT_LABEL = "sync.visitoraware.io/district"
#: What the importer's CronJob and ConfigMap add to the district's name.
IMPORTER_SUFFIX = "-import"


class InvalidResource(ValueError):
    """The resource cannot be reconciled as it is; the message says what to fix."""


@dataclass(frozen=True)
class District:
    """A parsed DistrictSync: what every builder takes."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: DistrictSyncSpec

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> District:
        """The resource from its API body (raises ``InvalidResource`` or pydantic's error)."""
        metadata = body.get("metadata", {})
        name = metadata.get("name", "")
        if len(name) > MAX_NAME_LENGTH:
            raise InvalidResource(f"metadata.name {name!r} is longer than {MAX_NAME_LENGTH} "
                                  "characters: the names of its Jobs would not fit")
        return cls(name=name, namespace=metadata.get("namespace", ""),
                   uid=metadata.get("uid", ""), generation=metadata.get("generation", 0),
                   spec=parse_spec(body.get("spec") or {}))

    # -- names -------------------------------------------------------------------------

    @property
    def sftp_name(self) -> str:
        """Deployment, Service, PVC, ConfigMap and NetworkPolicy of the SFTP server."""
        return f"{self.name}-sftp"

    @property
    def credentials_secret(self) -> str:
        return f"{self.name}-sftp-credentials"

    @property
    def host_keys_secret(self) -> str:
        return f"{self.name}-sftp-host-keys"

    @property
    def importer_key_secret(self) -> str:
        return f"{self.name}-importer-key"

    @property
    def importer_name(self) -> str:
        """The importer's CronJob and ConfigMap."""
        return f"{self.name}{IMPORTER_SUFFIX}"

    @property
    def sftp_host(self) -> str:
        """The SFTP Service's name inside the cluster (what the importer connects to)."""
        return f"{self.sftp_name}.{self.namespace}.svc"

    # -- metadata ----------------------------------------------------------------------

    def labels(self, component: str) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": "visitor-sync",
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": "visitor-sync",
            "app.kubernetes.io/managed-by": MANAGER,
            DISTRICT_LABEL: self.name,
        }

    def selector(self, component: str) -> dict[str, str]:
        """The labels that pick this district's pods of a component (stable over upgrades)."""
        return {"app.kubernetes.io/instance": self.name,
                "app.kubernetes.io/component": component, DISTRICT_LABEL: self.name}

    def owner_reference(self) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": KIND, "name": self.name, "uid": self.uid,
                "controller": True, "blockOwnerDeletion": True}

    def metadata(self, name: str, component: str, **extra: Any) -> dict[str, Any]:
        """A child's metadata: name, namespace, labels and the owner reference."""
        return {"name": name, "namespace": self.namespace, "labels": self.labels(component),
                "ownerReferences": [self.owner_reference()], **extra}
