"""Operator settings, from ``VISITOR_SYNC_*`` environment variables.

Deployment-wide choices (images, where the database and SMTP credentials are,
the metrics port) live here; per-district choices live in the DistrictSync
spec. Secrets are referenced by name, never held: the importer Jobs read them
in the district's namespace.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from visitor_sync.notify import SmtpSecurity

DEFAULT_IMAGE = "ghcr.io/visitoraware/visitor-sync:0.1.0"
DEFAULT_SFTP_IMAGE = "ghcr.io/visitoraware/visitor-sync-sftp:0.1.0"


class SmtpServer(BaseModel):
    """The SMTP server importer Jobs send reports through (no password here)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, description="SMTP server; setting it turns e-mail on "
                      "(sender is then required).")
    port: int | None = Field(None, gt=0, lt=65536, description="Port (default: 587 for "
                             "starttls, 465 for tls, 25 for none).")
    security: SmtpSecurity = Field(SmtpSecurity.STARTTLS,
                                   description="starttls, tls (implicit TLS) or none.")
    sender: str = Field(min_length=3, description="From address of reports and invitations.")
    username: str | None = Field(None, description="Login for SMTP AUTH (none: no AUTH).")
    password_secret: str | None = Field(
        None, description="Secret, in each district's namespace, whose key `password` is the "
        "SMTP password (mounted into the importer Jobs as a file).")
    ca_config_map: str | None = Field(
        None, description="ConfigMap, in each district's namespace, whose key `ca.crt` is the "
        "PEM bundle to trust instead of the system CAs (a relay with a private CA).")


class OperatorSettings(BaseSettings):
    """Everything the operator needs to know about its deployment."""

    model_config = SettingsConfigDict(env_prefix="VISITOR_SYNC_", env_nested_delimiter="__",
                                      extra="ignore", frozen=True)

    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces (or glob patterns) to watch; empty "
        "watches the whole cluster.")
    image: str = Field(DEFAULT_IMAGE, description="Image of the importer Jobs (this project's).")
    sftp_image: str = Field(DEFAULT_SFTP_IMAGE, description="Image of the SFTP servers.")
    image_pull_policy: str = Field("IfNotPresent", pattern="^(Always|IfNotPresent|Never)$",
                                   description="Pull policy of both images.")
    image_pull_secrets: list[str] = Field(
        default_factory=list, description="docker-registry Secrets, in each district's "
        "namespace, the SFTP servers and importer Jobs pull their images with.")
    database_secret: str = Field(
        "visitor-sync-database", description="Default Secret, in each district's namespace, "
        "with the SQLAlchemy database URL (overridable per district).")
    database_secret_key: str = Field("url", description="Key of the URL in that Secret.")
    smtp: SmtpServer | None = Field(None, description="SMTP server for reports and "
                                    "invitations; none: e-mails are not sent.")
    metrics_port: int = Field(8080, gt=0, lt=65536, description="Port of /metrics.")
    health_port: int = Field(8081, gt=0, lt=65536,
                             description="Port of kopf's liveness endpoint /healthz.")
    resync_seconds: float = Field(
        300, gt=0, description="How often every district is checked for drift (deleted or "
        "hand-edited children, pause windows starting or ending).")

    def pull_secrets(self) -> dict[str, Any]:
        """The ``imagePullSecrets`` of a district's pod spec (nothing when none are set)."""
        if not self.image_pull_secrets:
            return {}
        return {"imagePullSecrets": [{"name": name} for name in self.image_pull_secrets]}
