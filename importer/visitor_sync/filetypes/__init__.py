"""Every file type a district may send, and how a file name finds its type."""

from __future__ import annotations

from graphlib import TopologicalSorter

from visitor_sync.filetypes.ascender import ASCENDER_STUDENTS, ASCENDER_VISITORS
from visitor_sync.filetypes.base import Container, FileType, SyncMode
from visitor_sync.filetypes.bus_schedule import BUS_SCHEDULE
from visitor_sync.filetypes.clever import (
    CLEVER_SCHOOLS,
    CLEVER_STUDENTS,
    CLEVER_TEACHERS,
    UNUSED_FILES,
)
from visitor_sync.filetypes.court_orders import COURT_ORDERS
from visitor_sync.filetypes.employees import EMPLOYEES
from visitor_sync.filetypes.powerschool import POWERSCHOOL_STUDENTS, POWERSCHOOL_VISITORS
from visitor_sync.filetypes.students import STUDENTS
from visitor_sync.filetypes.users import USERS
from visitor_sync.filetypes.visitors import VISITORS
from visitor_sync.filetypes.volunteers import VOLUNTEERS

FILE_TYPES: dict[str, FileType] = {file_type.name: file_type for file_type in (
    STUDENTS, VISITORS, EMPLOYEES, USERS, VOLUNTEERS, COURT_ORDERS, BUS_SCHEDULE,
    ASCENDER_STUDENTS, ASCENDER_VISITORS, POWERSCHOOL_STUDENTS, POWERSCHOOL_VISITORS,
    CLEVER_STUDENTS, CLEVER_SCHOOLS, CLEVER_TEACHERS)}

_BY_FILE_NAME = {name: file_type for file_type in FILE_TYPES.values()
                 if file_type.recognised_by is None for name in file_type.file_names}

#: Names of files of formats we know but do not use (Clever's sections.csv): reported as
#: ignored and removed like a processed file, never an error.
IGNORED_FILE_NAMES = frozenset(UNUSED_FILES)

#: Kinds of file in the order they are applied within a run (dependencies first).
APPLY_ORDER: tuple[str, ...] = tuple(TopologicalSorter(
    {file_type.kind: file_type.after for file_type in FILE_TYPES.values()}).static_order())

TEMPORARY_SUFFIXES = (".filepart", ".part", ".partial", ".tmp")


def is_temporary(file_name: str) -> bool:
    """Upload-in-progress names: never imported (removed only once abandoned, by
    :mod:`visitor_sync.retention`)."""
    lowered = file_name.lower()
    return lowered.startswith((".", "~")) or lowered.endswith(TEMPORARY_SUFFIXES)


#: Formats of files holding several tables, by name.
CONTAINERS: dict[str, Container] = {}


def _register_containers() -> None:
    # Imported late: the OneRoster member types are built from the canonical types above.
    from visitor_sync.oneroster.container import ONEROSTER

    CONTAINERS[ONEROSTER.name] = ONEROSTER


_register_containers()


def file_type_for(file_name: str) -> FileType | Container | None:
    """The format a file name announces (case-insensitive), or ``None`` if unrecognised."""
    return _BY_FILE_NAME.get(file_name.lower()) or next(
        (container for container in CONTAINERS.values() if container.matches(file_name)), None)


def by_header(file_type: FileType, header: list[str]) -> FileType:
    """The layout a CSV file is, once its header is read: a layout recognised by its
    header (Clever's students.csv) over the type its name announced."""
    return next((layout for layout in FILE_TYPES.values()
                 if layout.recognised_by is not None
                 and set(layout.file_names) & set(file_type.file_names)
                 and layout.recognised_by(header)), file_type)


def provided_kinds(file_type: FileType) -> set[str]:
    """Other kinds whose records a file of this type fully syncs too (Clever's students.csv
    also provides the visitors): a file of such a kind in the same run is refused."""
    return {other.kind for other in FILE_TYPES.values()
            if other.kind == other.name and other.kind != file_type.kind
            and any(target.model is other.primary.model and target.mode is SyncMode.FULL_SYNC
                    for target in file_type.targets)}


def format_named(name: str) -> FileType | Container:
    """A file type or container by its name (as held files store it)."""
    return FILE_TYPES.get(name) or CONTAINERS[name]
