"""The declarative shape of a district file type.

A :class:`FileType` says which file names it answers to, its columns and
aliases (headers map onto the fields of a pydantic row model), its key, the
tables it fills (:class:`Target`) and the references it checks. One generic
pipeline (``visitor_sync.pipeline``) runs every type; vendor layouts and
OneRoster members are more declarations, not more pipelines.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict

from visitor_sync.csvfile import normalise_header
from visitor_sync.db.schema import SyncedRecord
from visitor_sync.values import Bool

if TYPE_CHECKING:
    from sqlalchemy import Table

    from visitor_sync.config import Limits
    from visitor_sync.reconcile import NewRecords
    from visitor_sync.validation import Member, Record


class RowModel(BaseModel):
    """Base of every row model: ``Active = 0`` deactivates like absence does."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    active: Bool = True


class SyncMode(enum.Enum):
    #: The file is the complete set: absent records are deactivated.
    FULL_SYNC = "full_sync"
    #: Records are created and updated, never deactivated (e.g. schools seen in students.csv).
    UPSERT = "upsert"
    #: A change set (OneRoster delta): rows are applied with their own active flag
    #: (``tobedeleted`` rows deactivate); absent records are left alone.
    DELTA = "delta"


_SYNCED_COLUMNS = frozenset(SyncedRecord.__annotations__)


@dataclass(frozen=True)
class Target:
    """A table a file type fills.

    ``key`` names the row fields forming the table's record key (default: the
    file key). A row belongs to the target only when every key field has a
    value. When the target key is coarser than the file key (a visitor on
    several rows, a school named by many students) the first row gives the details
    and the differing later rows get a ``conflicting_values`` warning; the record is
    active while any of its rows is.
    """

    model: type[SyncedRecord]
    key: tuple[str, ...] = ()
    #: table column -> row field, for columns whose names differ from the row's.
    renamed: Mapping[str, str] = field(default_factory=dict)
    mode: SyncMode = SyncMode.FULL_SYNC
    #: Set-based hook run before new records are inserted (e.g. queue invitations).
    on_create: Callable[[NewRecords], None] | None = None
    #: columns this file leaves as they are (a OneRoster zip without demographics
    #: says nothing about birth dates)
    keep: frozenset[str] = frozenset()

    @property
    def table(self) -> Table:
        return self.model.__table__  # type: ignore[attr-defined,no-any-return]

    @property
    def name(self) -> str:
        return self.table.name

    def fields(self, row_fields: tuple[str, ...]) -> dict[str, str]:
        """table column -> row field for every data column this target fills."""
        mapping = {column.name: self.renamed.get(column.name, column.name)
                   for column in self.table.columns
                   if column.name not in _SYNCED_COLUMNS and column.name not in self.keep}
        return {column: source for column, source in mapping.items() if source in row_fields}


@dataclass(frozen=True)
class Reference:
    """A row field that must name an active record (``unknown_student``)."""

    field: str
    model: type[SyncedRecord]
    code: str
    noun: str


@dataclass(frozen=True, eq=False)  # types are singletons: compared and hashed by identity
class FileType:
    name: str
    file_names: tuple[str, ...]
    row_model: type[RowModel]
    #: canonical header -> accepted aliases; every row-model field has one header.
    headers: Mapping[str, tuple[str, ...]]
    key: tuple[str, ...]
    targets: tuple[Target, ...]
    references: tuple[Reference, ...] = ()
    #: types whose files of the same run are applied first.
    after: tuple[str, ...] = ()
    description: str = ""
    #: the canonical type a vendor layout feeds (one file per kind per run); default: itself
    kind: str = ""
    #: header -> row field where the field is not simply the header in snake_case
    #: (vendor layouts: ``Stu ID`` -> ``student_id``)
    header_fields: Mapping[str, str] = field(default_factory=dict)
    #: whether a file of this type without a pickup column takes the district's
    #: ``pickup_default`` (else its row model's default, "no pickup", always applies)
    follows_pickup_default: bool = True
    #: vendor columns read and deliberately not imported: no ``unknown_column`` warning
    ignored: tuple[str, ...] = ()
    #: turns the file's rows into one row per record (a vendor spreading a contact over
    #: several rows); ``None``: each row is one record
    regroup: Callable[[Iterable[Record], str], Iterable[Record]] | None = None
    #: for a layout sharing another type's file name (Clever's students.csv): whether a
    #: header is this layout's; such a layout is chosen by header, never by name alone
    recognised_by: Callable[[list[str]], bool] | None = None
    #: row fields the row model computes rather than reads -> the field whose column
    #: makes them given (updated on existing records, not kept): Clever's emergency flag
    #: comes from Contact_type
    given_with: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", self.name)
        # A canonical type documents every field; a vendor's headers (a layout, or a
        # vendor's own file such as Clever's schools.csv) at least the required ones.
        fields = {name for name, info in self.row_model.model_fields.items()
                  if (self.kind == self.name and not self.header_fields)
                  or info.is_required()}
        missing = fields - {self.field_of(header) for header in self.headers}
        if missing:
            raise TypeError(f"{self.name}: fields without a header: {sorted(missing)}")

    def field_of(self, header: str) -> str:
        """The row field a documented header fills."""
        return self.header_fields.get(header) or field_name(header)

    @property
    def primary(self) -> Target:
        """The target whose counts the report shows and the safety hold guards."""
        return self.targets[0]

    @property
    def row_fields(self) -> tuple[str, ...]:
        return tuple(self.row_model.model_fields)

    def ignored_headers(self) -> frozenset[str]:
        """Normalised headers of :attr:`ignored`."""
        return frozenset(normalise_header(header) for header in self.ignored)

    def header_lookup(self) -> dict[str, str]:
        """Normalised header or alias -> row field."""
        lookup: dict[str, str] = {}
        for header, aliases in self.headers.items():
            for name in (header, *aliases):
                lookup[normalise_header(name)] = self.field_of(header)
        return lookup

    def required_headers(self) -> list[str]:
        return [header for header in self.headers
                if self.row_model.model_fields[self.field_of(header)].is_required()]

    def header_of(self, row_field: str) -> str:
        """The documented header of a field (a vendor layout may not export every field:
        then the field's own name, which only documentation ever shows)."""
        return next((header for header in self.headers if self.field_of(header) == row_field),
                    row_field.replace("_", " "))

    def target_key(self, target: Target) -> tuple[str, ...]:
        return target.key or self.key


class Container(Protocol):
    """A file holding several tables (a OneRoster zip), each applied as a member type,
    all of them in one transaction."""

    #: the format's name (``oneroster``), stored with held files
    name: str
    #: the types its tables are validated and applied as
    member_types: tuple[FileType, ...]
    #: kinds of CSV file the container replaces: such files in the same run are rejected,
    #: with this error code
    replaces: tuple[str, ...]
    conflict_code: str

    def matches(self, file_name: str) -> bool:
        """Whether an uploaded file name announces this format."""

    def members(self, path: Path, file_name: str, limits: Limits,
                known: KnownRecords) -> AbstractContextManager[list[Member]]:
        """The tables of the file as members (or :class:`FileRejected`); ``known`` finds
        records earlier files created, for references the file itself cannot resolve."""


class KnownRecords(Protocol):
    """Looks up records of the district already in the database."""

    def keys_by_sourced_id(self, model: type[SyncedRecord],
                           sourced_ids: Iterable[str]) -> dict[str, str]:
        """``sourced_id -> record_key`` of the records (active or not) that have one."""


def field_name(header: str) -> str:
    """``Date of Birth`` -> ``date_of_birth``."""
    return re.sub(r"\W+", "_", header.strip().lower()).strip("_")


def vendor_layout(canonical: FileType, name: str, file_name: str, row_model: type[RowModel],
                  columns: Mapping[str, str], description: str, *,
                  aliases: Mapping[str, tuple[str, ...]] | None = None,
                  ignored: tuple[str, ...] = (),
                  regroup: Callable[[Iterable[Record], str], Iterable[Record]] | None = None,
                  follows_pickup_default: bool = True,
                  recognised_by: Callable[[list[str]], bool] | None = None) -> FileType:
    """A vendor's export of a canonical type: its headers (vendor header -> row field) with
    older spellings as ``aliases``, its own row model for value conversions, the vendor
    columns it reads and does not import, and everything else canonical."""
    return FileType(
        name=name, kind=canonical.kind, file_names=(file_name,), row_model=row_model,
        headers={vendor: (aliases or {}).get(vendor, ()) for vendor in columns},
        header_fields=dict(columns), key=canonical.key, targets=canonical.targets,
        references=canonical.references, after=canonical.after, description=description,
        ignored=ignored, regroup=regroup, follows_pickup_default=follows_pickup_default,
        recognised_by=recognised_by)
