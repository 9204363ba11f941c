"""The ``DistrictSync`` resource: its spec as pydantic models, the source of the CRD.

``crds/districtsync.yaml`` is generated from these models (see
:mod:`visitor_sync_operator.crd`), so a description written here is what
``kubectl explain districtsync.spec`` prints. Field names are camelCase in
YAML, as in every Kubernetes API.
"""

from __future__ import annotations

import enum
import hashlib
import re
import zoneinfo
from datetime import date
from ipaddress import IPv4Network, IPv6Network
from typing import Annotated, Any

from croniter import croniter
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from visitor_sync.config import NotifyWhen, PickupDefault, Retention
from visitor_sync.filetypes import APPLY_ORDER, CONTAINERS
from visitor_sync.sftp.keys import check_authorized_keys
from visitor_sync.values import Email

GROUP = "sync.visitoraware.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "DistrictSync"
PLURAL = "districtsyncs"
SINGULAR = "districtsync"
SHORT_NAMES = ("dsync",)

#: A Kubernetes resource quantity ("500m", "2Gi", "1.5").
QUANTITY_PATTERN = r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|[mkMGTPE]i?|[KMGTPE]i)?$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
#: A Kubernetes object name such as a Secret's (RFC 1123 subdomain).
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
#: A name the SFTP server accepts for the district's login (see visitor_sync.sftp.server).
USER_NAME_PATTERN = r"^[a-z_][a-z0-9_-]{0,30}$"


def _cron(expression: str) -> str:
    if not croniter.is_valid(expression) or len(expression.split()) != 5:
        raise ValueError(f"{expression!r} is not a five-field cron expression "
                         "(minute hour day-of-month month day-of-week)")
    return expression


def _time_zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone such as America/Chicago") from None
    return name


def _authorized_key(line: str) -> str:
    """One key, checked and normalised (raises ``ValueError`` saying what is wrong)."""
    keys = check_authorized_keys(line)
    if len(keys) != 1:
        raise ValueError("expected exactly one key per list item")
    return keys[0]


def _file_kind(name: str) -> str:
    kinds = sorted({*APPLY_ORDER, *CONTAINERS})
    if name not in kinds:
        raise ValueError(f"unknown file type {name!r}; one of {', '.join(kinds)}")
    return name


CronExpression = Annotated[str, AfterValidator(_cron)]
TimeZone = Annotated[str, AfterValidator(_time_zone)]
AuthorizedKey = Annotated[str, AfterValidator(_authorized_key)]
FileKind = Annotated[str, AfterValidator(_file_kind)]
Quantity = Annotated[str, Field(pattern=QUANTITY_PATTERN)]
Network = IPv4Network | IPv6Network


class SpecModel(BaseModel):
    """camelCase in YAML, unknown fields refused (a typo must not silently do nothing)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True,
                              extra="forbid", frozen=True)


class ServiceType(enum.StrEnum):
    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    LOAD_BALANCER = "LoadBalancer"


class SftpSpec(SpecModel):
    """The district's SFTP drop box."""

    username: str | None = Field(
        None, pattern=USER_NAME_PATTERN, description="Login name of the district's account "
        "(default: derived from districtId).")
    service_type: ServiceType = Field(ServiceType.LOAD_BALANCER,
                                      description="How the district reaches the server.")
    port: int = Field(22, ge=1, le=65535, description="Port of the Service.")
    node_port: int | None = Field(None, ge=30000, le=32767, description="Fixed node port "
                                  "when serviceType is NodePort (e.g. for kind).")
    source_ranges: list[Network] = Field(
        default_factory=list, description="CIDRs the district may connect from (empty: any). "
        "Enforced by the load balancer, the NetworkPolicy and sshd itself.")
    password_login: bool = Field(True, description="Whether the district may log in with "
                                 "the generated password (keys always work).")
    authorized_keys: list[AuthorizedKey] = Field(
        default_factory=list, description="The district's SSH public keys (ed25519, or RSA "
        "of at least 3072 bits), one authorized_keys line each.")
    storage_size: Quantity = Field("5Gi", description="Size of the drop box volume.")
    storage_class_name: str | None = Field(None, description="StorageClass of the volume "
                                           "(default: the cluster's default class).")

    @model_validator(mode="after")
    def _can_log_in(self) -> SftpSpec:
        if not self.password_login and not self.authorized_keys:
            raise ValueError("passwordLogin is false and no authorizedKeys are given: the "
                             "district could not log in")
        if self.node_port is not None and self.service_type is ServiceType.CLUSTER_IP:
            raise ValueError("nodePort needs serviceType NodePort or LoadBalancer")
        return self


class DatabaseSpec(SpecModel):
    """Where the district's data goes: a Secret in the resource's namespace."""

    secret_name: str | None = Field(None, max_length=253, pattern=OBJECT_NAME_PATTERN,
                                    description="Secret holding the SQLAlchemy URL "
                                    "(default: the operator's database Secret).")
    key: str | None = Field(None, min_length=1, description="Key of the URL in the Secret "
                            "(default: the operator's, 'url').")


class NotificationsSpec(SpecModel):
    """The run report e-mail (the SMTP server is the operator's setting)."""

    recipients: list[Email] = Field(default_factory=list,
                                    description="Who gets the run report.")
    when: NotifyWhen = Field(NotifyWhen.FAILURE, description="failure: when a run had "
                             "errors, rejected or held files; always; never.")
    max_listed_errors: int = Field(100, ge=0, le=10000, description="Errors listed in the "
                                   "body; every error is in the attached errors.csv.")


class SafetySpec(SpecModel):
    """Guards against a broken export wiping a district."""

    max_deactivate_percent: float = Field(
        10, ge=0, le=100, description="A file deactivating more than this share of active "
        "records is held for approval instead of applied.")
    held_retention_days: int = Field(14, ge=1, le=365, description="Held files not approved "
                                     "within this many days expire.")
    quiet_period_seconds: int = Field(60, ge=0, le=86400, description="A file modified more "
                                      "recently than this waits for the next run (still "
                                      "uploading).")


class ImportSpec(SpecModel):
    """How the district's files are read where they leave something unsaid."""

    pickup_default: PickupDefault = Field(
        PickupDefault.ALLOW, description="Pickup permission of the visitor links a visitors "
        "file with no pickup column at all creates: allow or deny (stored links keep theirs). "
        "A present pickup column always decides (an empty cell means no pickup); Clever "
        "files are always deny.")


class RetentionSpec(SpecModel, Retention):
    """How long deactivated records, error texts, run history and drop-box leftovers are
    kept (held files: safety.heldRetentionDays); applied by the importer after each run."""


class PauseWindow(SpecModel):
    """Dates (inclusive, in spec.timeZone) when scheduled runs do not start; uploads wait."""

    start: date = Field(description="First paused day, e.g. 2026-06-15.")
    end: date = Field(description="Last paused day, e.g. 2026-08-10.")
    reason: str | None = Field(None, max_length=200, description="Shown in the status.")

    @model_validator(mode="after")
    def _ordered(self) -> PauseWindow:
        if self.end < self.start:
            raise ValueError(f"pause window ends ({self.end}) before it starts ({self.start})")
        return self


class Resources(SpecModel):
    """Kubernetes resource requests and limits of one container."""

    requests: dict[str, Quantity] = Field(default_factory=dict,
                                          description="e.g. {cpu: 100m, memory: 256Mi}")
    limits: dict[str, Quantity] = Field(default_factory=dict,
                                        description="e.g. {memory: 1Gi}")


def _importer_resources() -> Resources:
    return Resources(requests={"cpu": "100m", "memory": "256Mi"}, limits={"memory": "1Gi"})


def _sftp_resources() -> Resources:
    return Resources(requests={"cpu": "10m", "memory": "32Mi"}, limits={"memory": "256Mi"})


class ImporterSpec(SpecModel):
    """The importer Jobs."""

    resources: Resources = Field(default_factory=_importer_resources)
    active_deadline_seconds: int = Field(
        7200, ge=60, le=86400, description="A run still going after this is stopped (and "
        "reported failed); a stopped file is not half-applied.")
    scratch_size: Quantity = Field("4Gi", description="Scratch space for downloaded files "
                                   "(an emptyDir: the root filesystem is read-only).")


class SftpServerSpec(SpecModel):
    """The SFTP server pod."""

    resources: Resources = Field(default_factory=_sftp_resources)


class DistrictSyncSpec(SpecModel):
    """A school district: its SFTP drop box, import schedule and safety settings."""

    district_id: str = Field(
        min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN,
        description="Stable id the district's data is stored under. Immutable: changing it "
        "would orphan the district's records.")
    display_name: str = Field(min_length=1, max_length=200,
                              description="District name shown in reports.")
    schedule: CronExpression | None = Field(
        None, description="Cron expression of scheduled runs (default: hourly at a minute "
        "derived from the resource name, so districts do not all start at once).")
    time_zone: TimeZone = Field("UTC", description="IANA time zone of schedule and pause "
                                "windows, e.g. America/Chicago.")
    suspend: bool = Field(False, description="Stop scheduled runs (a requested run still "
                          "starts).")
    pause_windows: list[PauseWindow] = Field(
        default_factory=list, description="Date ranges without scheduled runs, e.g. the "
        "summer rollover; files uploaded meanwhile wait.")
    accepted_file_types: list[FileKind] | None = Field(
        None, description="File kinds the district may send (default: all): students, "
        "visitors, employees, users, volunteers, court_orders, bus_schedule, "
        "schools_clever, oneroster.")
    safety: SafetySpec = Field(default_factory=SafetySpec)
    import_: ImportSpec = Field(default_factory=ImportSpec, alias="import")
    retention: RetentionSpec = Field(default_factory=RetentionSpec)
    sftp: SftpSpec = Field(default_factory=SftpSpec)
    database: DatabaseSpec = Field(default_factory=DatabaseSpec)
    notifications: NotificationsSpec = Field(default_factory=NotificationsSpec)
    importer: ImporterSpec = Field(default_factory=ImporterSpec)
    sftp_server: SftpServerSpec = Field(default_factory=SftpServerSpec)

    def sftp_username(self) -> str:
        """The district's login: ``sftp.username``, or the district id made a valid name."""
        if self.sftp.username:
            return self.sftp.username
        name = re.sub(r"[^a-z0-9_-]", "-", self.district_id)[:31]
        return name if re.match(r"^[a-z_]", name) else f"d{name[:30]}"


def default_schedule(namespace: str, name: str) -> str:
    """Hourly at a minute that is stable for this resource and spread over the hour."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return f"{int.from_bytes(digest[:4], 'big') % 60} * * * *"


def parse_spec(spec: dict[str, Any]) -> DistrictSyncSpec:
    """The resource's spec, validated (raises pydantic's ``ValidationError``)."""
    return DistrictSyncSpec.model_validate(spec)
