"""``ImportConfig``: everything one import run needs, as one document.

The operator renders it into the importer Job (mounted as a file); the CLI
builds it from flags. Secrets (database URL, SFTP and SMTP credentials) are
never part of it: they come from files or the environment.
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field

from visitor_sync.values import Email

#: ``approve_held_run`` (and ``--approve-held``) value approving every pending held file
#: of the district.
ALL_HELD = "all"


class Limits(BaseModel):
    """Per-file limits of FORMATS.md; over a limit the file is rejected."""

    model_config = ConfigDict(extra="forbid")

    max_file_bytes: int = Field(2 * 1024**3, gt=0, description="Largest accepted file.")
    max_field_chars: int = Field(1000, gt=0, description="Longest accepted field.")
    max_rows: int = Field(2_000_000, gt=0, description="Most data rows in one file.")
    zip_max_members: int = Field(100, gt=0, description="Most members in one zip.")
    zip_max_uncompressed_bytes: int = Field(
        2 * 1024**3, gt=0, description="Largest total size of a zip's members, uncompressed.")
    zip_max_ratio: int = Field(
        200, gt=0, description="Largest uncompressed/compressed size ratio of a zip member "
                               "(zip bombs are refused before anything is inflated).")


class PickupDefault(enum.StrEnum):
    """Pickup permission of visitor links from a file that has no pickup column."""

    ALLOW = "allow"
    DENY = "deny"


class Retention(BaseModel):
    """How long what the importer no longer needs is kept; applied at the end of every run
    (in its own transaction, after the run is recorded). Nothing is kept forever."""

    model_config = ConfigDict(extra="forbid")

    deactivated_record_days: int = Field(
        365, ge=1, le=3650,
        description="Records absent from the district's exports (deactivated) for longer "
                    "than this are deleted; one that comes back later is created anew.")
    error_text_days: int = Field(
        90, ge=1, le=3650,
        description="Stored error reasons quote the district's values: after this many days "
                    "they are erased (file, line, column and code stay), and so are the "
                    "SMTP errors of invitations.")
    run_history_days: int = Field(
        400, ge=1, le=3650,
        description="Runs older than this are deleted with their file results, issues and "
                    "resolved held-file records, and so are invitations sent before it "
                    "(a run with a pending held file is kept).")
    drop_box_leftover_days: int = Field(
        7, ge=1, le=365,
        description="Temporary upload names and sub-folders in the drop box untouched for "
                    "longer than this are removed (an upload that never finished).")


class NotifyWhen(enum.StrEnum):
    """When the district's recipients get the run report."""

    #: the run had errors, rejected files or held files
    FAILURE = "failure"
    ALWAYS = "always"
    NEVER = "never"


class Notifications(BaseModel):
    """Who gets the run report and when (the SMTP server itself is deployment settings)."""

    model_config = ConfigDict(extra="forbid")

    recipients: list[Email] = Field(
        default_factory=list,
        description="Addresses that receive the run report (the district's SIS "
                    "administrators); with none, no report is e-mailed.")
    when: NotifyWhen = Field(
        NotifyWhen.FAILURE,
        description="`failure`: only when the run had errors, rejected or held files; "
                    "`always`: after every run; `never`.")
    max_listed_errors: int = Field(
        100, ge=0, description="Errors listed in the report's body; every error is in the "
                               "attached errors.csv.")


class ImportConfig(BaseModel):
    """The importer's input contract (owned here, imported by the operator)."""

    model_config = ConfigDict(extra="forbid")

    district_id: str = Field(min_length=1, max_length=63,
                             pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
                             description="Stable district identifier (DNS label).")
    district_name: str | None = Field(None, description="Display name used in reports.")
    max_deactivate_percent: float = Field(
        10, ge=0, le=100,
        description="A file deactivating more than this share of its type's active records "
                    "is held instead of applied.")
    quiet_period_seconds: int = Field(
        60, ge=0, description="A file modified more recently than this waits for the next run.")
    held_retention_days: int = Field(
        14, ge=1, description="Held files not approved within this many days expire.")
    accepted_types: list[str] | None = Field(
        None, description="File types this district may send (default: all); a kind "
                          "such as 'students' accepts its vendor layouts too.")
    pickup_default: PickupDefault = Field(
        PickupDefault.ALLOW,
        description="Pickup permission of the visitor links a visitors file with no pickup "
                    "column at all creates (`allow` or `deny`; stored links keep theirs); a "
                    "present column always decides, an empty cell in it means no pickup, and "
                    "layouts whose system never states pickup (Clever) are always `deny`.")
    approve_held_run: str | None = Field(
        None, max_length=36, pattern=r"^[A-Za-z0-9-]+$",
        description="Run id whose held files the run applies (the operator sets it from the "
                    "approve-held annotation; approving a run twice is harmless).")
    limits: Limits = Field(default_factory=Limits)
    retention: Retention = Field(
        default_factory=Retention,
        description="How long deactivated records, error texts, run history and drop-box "
                    "leftovers are kept (held files: `held_retention_days`).")
    notifications: Notifications = Field(
        default_factory=Notifications,
        description="The run report e-mail: recipients and when it is sent.")
