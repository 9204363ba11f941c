"""Set-based row checks on a loaded stage: duplicate keys, references, conflicting rows.

Each check reports its issues and marks the offending rows ``skip`` so they
are not applied (their keys still protect their records from deactivation).
Grouping (hash aggregates) finds the few offending keys; no check sorts the
whole stage.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Subquery,
    case,
    exists,
    func,
    or_,
    select,
    update,
)

from visitor_sync.db.schema import KEY_SEPARATOR
from visitor_sync.filetypes import FILE_TYPES
from visitor_sync.filetypes.base import Reference
from visitor_sync.issues import Issue, quote_value
from visitor_sync.rejections import RejectedRecords
from visitor_sync.staging import Stage
from visitor_sync.validation import ColumnMap

_REPORT_BATCH = 10_000


def first_lines(stage: Stage, key: ColumnElement[str], *, valid_only: bool,
                repeated_only: bool = False) -> Subquery:
    """``(key, first_seq, first_line, any_active)``: the first record of every key
    (optionally only of repeated keys); records are in file order, so its line is the
    smallest too. ``any_active`` is 1 when any of the key's records is active."""
    table = stage.table
    query = select(key.label("key"), func.min(table.c.seq).label("first_seq"),
                   func.min(table.c.line).label("first_line"),
                   func.max(case((table.c.active, 1), else_=0)).label("any_active")).where(
        key.is_not(None)).group_by(key)
    if valid_only:
        query = query.where(~table.c.skip)
    if repeated_only:
        query = query.having(func.count() > 1)
    return query.subquery()


def duplicate_keys(connection: Connection, stage: Stage, columns: ColumnMap,
                   file_name: str) -> Iterator[Issue]:
    """Every row after the first with the same file key is an error."""
    table, file_type = stage.table, stage.file_type
    firsts = first_lines(stage, stage.file_key, valid_only=False, repeated_only=True)
    later = (select(table.c.seq, table.c.line, firsts.c.key, firsts.c.first_line)
             .join(firsts, stage.file_key == firsts.c.key)
             .where(table.c.seq != firsts.c.first_seq))
    headers = " + ".join(columns.header_of(name) for name in file_type.key)
    found = False
    for _, line, key, first in _stream(connection, later.order_by(table.c.seq)):
        found = True
        yield Issue(file=file_name, line=line, column=columns.header_of(file_type.key[0]),
                    code="duplicate_key",
                    reason=f"{headers} {_show_key(key)} is already on line {first}; "
                           "each key may appear only once per file")
    if found:
        _skip_lines(connection, stage, later)


def unknown_references(connection: Connection, stage: Stage, columns: ColumnMap,
                       reference: Reference, district_id: str, file_name: str,
                       rejected: RejectedRecords | None = None) -> Iterator[Issue]:
    """A row naming a student or school the district does not have (active) is an error;
    its reason says where that record's own row was rejected, if an earlier file of the
    run did, and otherwise how the district sends such a record."""
    table = stage.table
    referenced = reference.model.__table__  # type: ignore[attr-defined]
    value = table.c[reference.field]
    missing = select(table.c.seq, table.c.line, value).where(
        ~table.c.skip, value.is_not(None),
        ~exists().where(referenced.c.district_id == district_id,
                        referenced.c.record_key == value, referenced.c.active))
    header = columns.header_of(reference.field)
    advice = _advice(reference)
    found = False
    for _, line, key in _stream(connection, missing.order_by(table.c.seq)):
        found = True
        why = rejected.explain(connection, reference.model, reference.noun, key) \
            if rejected is not None else None
        yield Issue(file=file_name, line=line, column=header, code=reference.code,
                    reason=f"{header} {quote_value(key)} is not an active {reference.noun} of "
                           f"this district; {why or advice}")
    if found:
        _skip_lines(connection, stage, missing)


def _advice(reference: Reference) -> str:
    """How a district sends the record a reference names: its own file, and (schools) the
    files whose rows create it too."""
    own = list(dict.fromkeys(name for file_type in FILE_TYPES.values()
                             if file_type.primary.model is reference.model
                             for name in file_type.file_names))
    rows = list(dict.fromkeys(name for file_type in FILE_TYPES.values()
                              if file_type.primary.model is not reference.model
                              and any(target.model is reference.model
                                      for target in file_type.targets)
                              for name in file_type.file_names))
    if not rows:
        return f"send the {reference.noun} first or fix the ID"
    return (f"{reference.noun}s come from {' or '.join(own) + ' (Clever) or ' if own else ''}"
            f"the rows of {' or '.join(rows)}; fix the ID, or send a row there with this "
            f"{reference.noun}")


def conflicting_rows(connection: Connection, stage: Stage, columns: ColumnMap,
                     file_name: str) -> Iterator[Issue]:
    """Rows repeating a record (a visitor on several rows) must agree; the first wins."""
    table, file_type = stage.table, stage.file_type
    for target in file_type.targets:
        key_fields = file_type.target_key(target)
        if key_fields == file_type.key:
            continue
        key = stage.target_key(target)
        firsts = first_lines(stage, key, valid_only=True, repeated_only=True)
        first = table.alias("first_row")
        compared: Sequence[str] = [name for name in target.fields(file_type.row_fields).values()
                                   if name not in key_fields]
        differs = [table.c[name].is_distinct_from(first.c[name]) for name in compared]
        differing = (
            select(table.c.line, firsts.c.key, firsts.c.first_line,
                   *(case((column, 1), else_=0) for column in differs))
            .join(firsts, key == firsts.c.key)
            .join(first, first.c.seq == firsts.c.first_seq)
            .where(~table.c.skip, table.c.seq != firsts.c.first_seq, or_(*differs))
            .order_by(table.c.seq))
        headers = " + ".join(columns.header_of(name) for name in key_fields)
        for line, record, first_line, *flags in _stream(connection, differing):
            named = [columns.header_of(name) for name, flag in zip(compared, flags, strict=True)
                     if flag]
            yield Issue.warning(
                file_name, "conflicting_values",
                f"{headers} {_show_key(record)} differs from line {first_line} in "
                f"{', '.join(named)} (rows of one record in {target.name.replace('_', ' ')} "
                f"must agree); line {first_line} is used", line=line, column=named[0])


def _show_key(key: str) -> str:
    return " + ".join(quote_value(part) for part in key.split(KEY_SEPARATOR))


def _stream(connection: Connection, query: Select) -> Iterator[tuple]:
    for row in connection.execute(query.execution_options(yield_per=_REPORT_BATCH)):
        yield tuple(row)


def _skip_lines(connection: Connection, stage: Stage, offending: Select) -> None:
    table = stage.table
    records = select(offending.subquery().c.seq)
    connection.execute(update(table).where(table.c.seq.in_(records)).values(skip=True))
