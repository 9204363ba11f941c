"""Set-based row checks on a loaded stage: duplicate keys, references, conflicting rows.

Each check reports its issues and marks the offending rows ``skip`` so they
are not applied (their keys still protect their records from deactivation).
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Connection, Select, exists, func, select, update

from visitor_sync.db.schema import KEY_SEPARATOR
from visitor_sync.filetypes.base import Reference
from visitor_sync.issues import Issue, quote_value
from visitor_sync.staging import Stage, hash_column, key_column

_REPORT_BATCH = 10_000


def duplicate_keys(connection: Connection, stage: Stage, file_name: str) -> Iterator[Issue]:
    """Every row after the first with the same file key is an error."""
    table = stage.table
    first_line = func.min(table.c.line).over(partition_by=table.c.file_key).label("first_line")
    ranked = select(table.c.line, table.c.file_key, first_line).where(
        table.c.file_key.is_not(None)).subquery()
    later = select(ranked.c.line, ranked.c.file_key, ranked.c.first_line).where(
        ranked.c.line != ranked.c.first_line)
    key_headers = " + ".join(stage.file_type.header_of(name) for name in stage.file_type.key)
    for line, key, first in _stream(connection, later.order_by(ranked.c.line)):
        yield Issue(file=file_name, line=line, column=stage.file_type.header_of(
            stage.file_type.key[0]), code="duplicate_key",
            reason=f"{key_headers} {_show_key(key)} is already on line {first}; "
                   "each key may appear only once per file")
    _skip_lines(connection, stage, select(later.subquery().c.line))


def unknown_references(connection: Connection, stage: Stage, reference: Reference,
                       district_id: str, file_name: str) -> Iterator[Issue]:
    """A row naming a student or school the district does not have (active) is an error."""
    table = stage.table
    referenced = reference.model.__table__  # type: ignore[attr-defined]
    value = table.c[reference.field]
    missing = select(table.c.line, value).where(
        ~table.c.skip, value.is_not(None),
        ~exists().where(referenced.c.district_id == district_id,
                        referenced.c.record_key == value, referenced.c.active))
    header = stage.file_type.header_of(reference.field)
    for line, key in _stream(connection, missing.order_by(table.c.line)):
        yield Issue(file=file_name, line=line, column=header, code=reference.code,
                    reason=f"{header} {quote_value(key)} is not an active {reference.noun} of "
                           f"this district; send the {reference.noun} first or fix the ID")
    _skip_lines(connection, stage, select(missing.subquery().c.line))


def conflicting_rows(connection: Connection, stage: Stage, file_name: str) -> Iterator[Issue]:
    """Rows repeating a record (a visitor on several rows) must agree; the first wins."""
    table = stage.table
    file_type = stage.file_type
    for target in file_type.targets:
        if file_type.target_key(target) == file_type.key:
            continue
        key, digest = table.c[key_column(target)], table.c[hash_column(target)]
        window = {"partition_by": key, "order_by": table.c.line}
        ranked = select(table.c.line, key.label("key"), digest.label("digest"),
                        func.first_value(digest).over(**window).label("first_digest"),
                        func.first_value(table.c.line).over(**window).label("first_line"),
                        ).where(~table.c.skip, key.is_not(None)).subquery()
        differing = select(ranked.c.line, ranked.c.key, ranked.c.first_line).where(
            ranked.c.digest != ranked.c.first_digest).order_by(ranked.c.line)
        headers = " + ".join(file_type.header_of(name) for name in file_type.target_key(target))
        for line, record, first in _stream(connection, differing):
            yield Issue.warning(
                file_name, "conflicting_values",
                f"{headers} {_show_key(record)} has other {target.name.replace('_', ' ')} "
                f"details than on line {first}; line {first} is used", line=line)


def _show_key(key: str) -> str:
    return " + ".join(quote_value(part) for part in key.split(KEY_SEPARATOR))


def _stream(connection: Connection, query: Select) -> Iterator[tuple]:
    result = connection.execution_options(yield_per=_REPORT_BATCH).execute(query)
    for row in result:
        yield tuple(row)


def _skip_lines(connection: Connection, stage: Stage, lines: Select) -> None:
    table = stage.table
    connection.execute(update(table).where(table.c.line.in_(lines)).values(skip=True))
