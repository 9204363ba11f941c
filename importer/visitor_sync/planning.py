"""What a run will do with each file in the inbox, before any file is read.

Each settled file is classified by its name and listed size: a known type, a
container (OneRoster), or a rejection decided up front, before the file is
downloaded (an unreadable or unrecognised name, a file over the size limit, a
type the district does not accept, a second file of the same kind, a CSV a
container in the same run replaces). Files then run in dependency order.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Row

from visitor_sync.config import Limits
from visitor_sync.csvfile import check_size
from visitor_sync.filenames import unreadable_reason
from visitor_sync.filetypes import APPLY_ORDER, IGNORED_FILE_NAMES, file_type_for
from visitor_sync.filetypes.base import Container, FileType
from visitor_sync.issues import FileRejected
from visitor_sync.sources import Inbox, SourceFile


@dataclass
class Work:
    """A file to process and what to do with it once its outcome is recorded."""

    name: str
    file_type: FileType | Container | None
    fetch: Callable[[], AbstractContextManager[Path]]
    source_file: SourceFile | None = None
    held: Row[Any] | None = None
    rejection: FileRejected | None = None
    superseded: list[int] = field(default_factory=list)
    #: a file of a known format we do not use: reported as ignored, then removed
    ignored: bool = False


def classify(files: list[SourceFile], inbox: Inbox, accepted: list[str] | None,
             limits: Limits) -> tuple[list[Work], dict[str, Work]]:
    """Work items for the settled files, and the accepted item of each kind."""
    by_kind: dict[str, Work] = {}
    work: list[Work] = []
    for file in files:
        unreadable = unreadable_reason(file.raw)
        item = Work(file.name, None if unreadable else file_type_for(file.name),
                    lambda file=file: inbox.fetch(file), source_file=file)
        work.append(item)
        if not unreadable and item.file_type is None and file.name.lower() in IGNORED_FILE_NAMES:
            item.ignored = True
            continue
        try:
            if unreadable:
                raise FileRejected("unreadable_file_name", f"{unreadable}; rename the file "
                                   "to one of the accepted names and upload it again")
            check_size(file.size, limits)
            item.rejection = _rejection(item, accepted, by_kind)
        except FileRejected as rejected:
            item.rejection = rejected
        if item.rejection is None and item.file_type is not None:
            by_kind[kind_of(item.file_type)] = item
    _reject_replaced(by_kind)
    return work, by_kind


def _rejection(item: Work, accepted: list[str] | None,
               by_kind: dict[str, Work]) -> FileRejected | None:
    """Why a readable file of an acceptable size is rejected by its name alone, if it is."""
    if item.file_type is None:
        return FileRejected(
            "unrecognised_file",
            f"{item.name!r} is not a known import file name; see the list of "
            "accepted file names (e.g. students.csv)")
    if not accepts(item.file_type, accepted):
        return FileRejected(
            "type_not_accepted", f"{item.file_type.name} files are not enabled for this district")
    kind = kind_of(item.file_type)
    if kind in by_kind:
        return FileRejected(
            "duplicate_source",
            f"{by_kind[kind].name!r} in the same run is also a {kind} file; send one file "
            "per type")
    return None


def accepts(file_format: FileType | Container, accepted: list[str] | None) -> bool:
    """A kind (``students``) accepts all its layouts; a layout name only itself."""
    return accepted is None or file_format.name in accepted or kind_of(file_format) in accepted


def in_run_order(work: list[Work]) -> list[Work]:
    """Files to apply first, dependencies first; rejections last."""
    return sorted(work, key=lambda item: (item.rejection is not None, _rank(item.file_type),
                                          item.name))


def kind_of(file_format: FileType | Container) -> str:
    """What "one file per type per run" counts: a type's kind, or the container's name."""
    return file_format.kind if isinstance(file_format, FileType) else file_format.name


def member_types(file_format: FileType | Container | None) -> tuple[FileType, ...]:
    if file_format is None:
        return ()
    return (file_format,) if isinstance(file_format, FileType) else file_format.member_types


def _rank(file_format: FileType | Container | None) -> int:
    """Place in the run: dependencies first; a container where its first member type goes."""
    order = {kind: index for index, kind in enumerate(APPLY_ORDER)}
    return min((order.get(member.kind, len(order)) for member in member_types(file_format)),
               default=len(order))


def _reject_replaced(by_kind: dict[str, Work]) -> None:
    """A container (OneRoster) replaces the CSV files of the kinds it holds, in its run."""
    for container in [item.file_type for item in by_kind.values()
                      if item.file_type is not None and not isinstance(item.file_type, FileType)]:
        for kind in container.replaces:
            if kind in by_kind:
                by_kind[kind].rejection = FileRejected(
                    container.conflict_code,
                    f"a {container.name} file in the same run already provides {kind}; "
                    f"send either the {container.name} file or the {kind} file")
