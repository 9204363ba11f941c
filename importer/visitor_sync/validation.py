"""From CSV cells to staged rows: header matching and per-row validation.

Header names are matched without case, spaces, ``_`` or ``-``, aliases
included. Each data row is validated by the type's pydantic row model; a
row in error becomes issues (file, line, column, code, reason) and a staged
``skip`` row carrying whatever key is readable.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pydantic_core.core_schema import ErrorType

from visitor_sync.csvfile import CsvTable, normalise_header
from visitor_sync.filetypes.base import FileType
from visitor_sync.issuelog import IssueLog
from visitor_sync.issues import FileRejected, Issue, quote_value
from visitor_sync.safety import looks_like_safety_flag, unmapped_safety_reason
from visitor_sync.staging import Stage

_PYDANTIC_ERRORS = frozenset(typing.get_args(ErrorType)) - {"missing"}
#: How often (in rows) progress is reported.
PROGRESS_EVERY = 5000


@dataclass(frozen=True)
class ColumnMap:
    """Row field of each column position (``None``: ignored) and the headers as written."""

    file_type: FileType
    fields: list[str | None]
    written: dict[str, str]

    def header_of(self, field: str) -> str:
        """The header the district used for a field (the canonical one if absent)."""
        return self.written.get(field) or self.file_type.header_of(field)

    @property
    def given(self) -> frozenset[str]:
        """The row fields the file says something about: those of its columns. A column
        left out of the header, or one its layout does not have (an Ascender export has
        no Email), means "no information", so stored values of its field are kept. A field
        the layout computes from a column (``FileType.given_with``) is given with it."""
        written = frozenset(self.written)
        return written | {field for field, source in self.file_type.given_with.items()
                          if source in written}


#: A row to validate: its first physical line, its values by row field (empty cells
#: left out), and a problem already found with the row as a whole.
Record = tuple[int, dict[str, str], Issue | None]


@dataclass
class Member:
    """One table of rows validated and applied as ``file_type``: a CSV file, or a table
    read out of a container file (a OneRoster zip)."""

    file_type: FileType
    #: the file as issues name it (``students.csv``, ``OneRoster.zip:users.csv``)
    label: str
    columns: ColumnMap
    records: Iterable[Record]
    #: issues about the table as a whole, found while opening it (unknown columns...)
    warnings: list[Issue] = field(default_factory=list)
    #: how far through its bytes reading is, of how many, for progress bars
    bytes_read: Callable[[], int] | None = None
    total_bytes: int = 0
    #: the row fields whose stored values the table may change (``None``: every field);
    #: new records get every field, the row model's defaults included
    given: frozenset[str] | None = None


def match_header(header: list[str], header_line: int, file_type: FileType,
                 file_name: str) -> tuple[ColumnMap, list[Issue]]:
    """Map the file's header onto the type's fields (with warnings), or reject the file."""
    lookup = file_type.header_lookup()
    ignored = file_type.ignored_headers()
    fields: list[str | None] = []
    written: dict[str, str] = {}
    warnings: list[Issue] = []
    problems: list[tuple[str, str, int | None, str | None]] = []
    for name in header:
        field_name = lookup.get(normalise_header(name))
        if field_name is None:
            fields.append(None)
            if looks_like_safety_flag(name):
                problems.append(("unmapped_safety_column",
                                 unmapped_safety_reason(name, file_type), header_line, name))
            elif name and normalise_header(name) not in ignored:
                warnings.append(Issue.warning(
                    file_name, "unknown_column", f"column {quote_value(name)} is not part of "
                    f"the {file_type.name} format and is ignored", line=header_line,
                    column=name))
        elif field_name in written:
            problems.append(("duplicate_column",
                             f"columns {quote_value(written[field_name])} and "
                             f"{quote_value(name)} both mean the same field; keep one",
                             header_line, name))
            fields.append(None)
        else:
            fields.append(field_name)
            written[field_name] = name
    for header_name in file_type.required_headers():
        if file_type.field_of(header_name) not in written:
            problems.append(("missing_column",
                             f"the required column {quote_value(header_name)} is missing; "
                             "add it to the header row", header_line, header_name))
    if problems:
        raise FileRejected.all_of(problems)
    return ColumnMap(file_type, fields, written), warnings


def csv_member(table: CsvTable, file_type: FileType, file_name: str, size: int) -> Member:
    """A CSV file as one member: header matched, rows as records."""
    columns, warnings = match_header(table.header, table.header_line, file_type, file_name)
    records: Iterable[Record] = _csv_records(table, columns, file_name)
    if file_type.regroup is not None:
        records = file_type.regroup(records, file_name)
    return Member(file_type, file_name, columns, records, warnings, lambda: table.bytes_read,
                  size, columns.given)


def _csv_records(table: CsvTable, columns: ColumnMap, file_name: str) -> Iterator[Record]:
    positions = columns.fields
    width = len(positions)
    for line, cells in table.rows():
        raw = {name: value for name, cell in zip(positions, cells, strict=False)
               if name is not None and (value := cell.strip())}
        problem = None
        if len(cells) > width and any(cell.strip() for cell in cells[width:]):
            problem = Issue(file=file_name, line=line, code="wrong_field_count",
                            reason=f"the row has {len(cells)} fields but the header has "
                                   f"{width}; quote values that contain the delimiter")
        yield line, raw, problem


class RowValidator:
    """Streams a member's records as staged tuples, logging every row error."""

    def __init__(self, member: Member, stage: Stage, log: IssueLog,
                 absent: dict[str, str] | None = None) -> None:
        self.member = member
        self.stage = stage
        self.log = log
        #: cells assumed for fields the header leaves out (``safety.absent_field_defaults``)
        self.absent = absent or {}
        self.rows_read = 0

    def staged_rows(self, progress: Callable[[int], None] | None = None,
                    ) -> Iterator[tuple[Any, ...]]:
        validate = self.member.file_type.row_model.__pydantic_validator__.validate_python
        bytes_read = self.member.bytes_read
        for line, raw, problem in self.member.records:
            self.rows_read += 1
            if progress is not None and bytes_read and self.rows_read % PROGRESS_EVERY == 0:
                progress(bytes_read())
            seq = self.rows_read
            if problem is not None:
                self.log.add(problem)
                yield self.stage.error_row(seq, line, raw)
                continue
            try:
                row = validate({**self.absent, **raw} if self.absent else raw)
            except ValidationError as error:
                self.log.extend(self._issues(error, line))
                yield self.stage.error_row(seq, line, raw)
                continue
            yield self.stage.valid_row(seq, line, row)

    def _issues(self, error: ValidationError, line: int) -> Iterator[Issue]:
        for detail in error.errors(include_url=False):
            field = str(detail["loc"][0]) if detail["loc"] else None
            header = self.member.columns.header_of(field) if field else None
            code = detail["type"]
            if code == "missing":
                code, message = "missing_value", "is empty; every row needs a value"
            elif code in _PYDANTIC_ERRORS:
                code = "invalid_value"
                message = f"{quote_value(str(detail['input']))} is not valid: {detail['msg']}"
            else:
                message = detail["msg"]
            yield Issue(file=self.member.label, line=line, column=header, code=code,
                        reason=f"{header} {message}" if header else message)
