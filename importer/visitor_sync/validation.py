"""From CSV cells to staged rows: header matching and per-row validation.

Header names are matched without case, spaces, ``_`` or ``-``, aliases
included. Each data row is validated by the type's pydantic row model; a
row in error becomes issues (file, line, column, code, reason) and a staged
``skip`` row carrying whatever key is readable.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core.core_schema import ErrorType

from visitor_sync.csvfile import CsvTable, normalise_header
from visitor_sync.filetypes.base import FileType
from visitor_sync.issuelog import IssueLog
from visitor_sync.issues import FileRejected, Issue, quote_value
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


def match_header(header: list[str], header_line: int, file_type: FileType, file_name: str,
                 log: IssueLog) -> ColumnMap:
    """Map the file's header onto the type's fields, or reject the file."""
    lookup = file_type.header_lookup()
    fields: list[str | None] = []
    written: dict[str, str] = {}
    problems: list[tuple[str, str, int | None, str | None]] = []
    for name in header:
        field = lookup.get(normalise_header(name))
        if field is None:
            fields.append(None)
            if name:
                log.add(Issue.warning(file_name, "unknown_column",
                                      f"column {quote_value(name)} is not part of the "
                                      f"{file_type.name} format and is ignored",
                                      line=header_line, column=name))
        elif field in written:
            problems.append(("duplicate_column",
                             f"columns {quote_value(written[field])} and {quote_value(name)} "
                             "both mean the same field; keep one", header_line, name))
            fields.append(None)
        else:
            fields.append(field)
            written[field] = name
    for header_name in file_type.required_headers():
        field = file_type.header_lookup()[normalise_header(header_name)]
        if field not in written:
            problems.append(("missing_column",
                             f"the required column {quote_value(header_name)} is missing; "
                             "add it to the header row", header_line, header_name))
    if problems:
        raise FileRejected.all_of(problems)
    return ColumnMap(file_type, fields, written)


class RowValidator:
    """Streams a CSV table's rows as staged tuples, logging every row error."""

    def __init__(self, file_type: FileType, stage: Stage, columns: ColumnMap, file_name: str,
                 log: IssueLog) -> None:
        self.file_type = file_type
        self.stage = stage
        self.columns = columns
        self.file_name = file_name
        self.log = log
        self.rows_read = 0

    def staged_rows(self, table: CsvTable, progress: Callable[[int], None] | None = None,
                    ) -> Iterator[tuple[Any, ...]]:
        validate = self.file_type.row_model.__pydantic_validator__.validate_python
        positions = self.columns.fields
        width = len(positions)
        for line, cells in table.rows():
            self.rows_read += 1
            if progress is not None and self.rows_read % PROGRESS_EVERY == 0:
                progress(table.bytes_read)
            raw = {field: value for field, cell in zip(positions, cells, strict=False)
                   if field is not None and (value := cell.strip())}
            if len(cells) > width and any(cell.strip() for cell in cells[width:]):
                self.log.add(Issue(
                    file=self.file_name, line=line, code="wrong_field_count",
                    reason=f"the row has {len(cells)} fields but the header has {width}; "
                           "quote values that contain the delimiter"))
                yield self.stage.error_row(line, raw)
                continue
            try:
                row = validate(raw)
            except ValidationError as error:
                self.log.extend(self._issues(error, line))
                yield self.stage.error_row(line, raw)
                continue
            yield self.stage.valid_row(line, row)

    def _issues(self, error: ValidationError, line: int) -> Iterator[Issue]:
        for detail in error.errors(include_url=False):
            field = str(detail["loc"][0]) if detail["loc"] else None
            header = self.columns.header_of(field) if field else None
            code = detail["type"]
            if code == "missing":
                code, message = "missing_value", "is empty; every row needs a value"
            elif code in _PYDANTIC_ERRORS:
                code = "invalid_value"
                message = f"{quote_value(str(detail['input']))} is not valid: {detail['msg']}"
            else:
                message = detail["msg"]
            yield Issue(file=self.file_name, line=line, column=header, code=code,
                        reason=f"{header} {message}" if header else message)
