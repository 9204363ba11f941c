"""Full sync of one target table from a loaded stage, in a few set-based statements.

:meth:`TargetSync.apply` inserts new records, updates changed ones and, for a
full sync, deactivates active records whose key is absent from the file; the
statements' row counts are the file's counts. A record is changed when a
column differs null-safely (``IS DISTINCT FROM``) or its active flag does: an
unchanged row costs no write. (Comparing columns in the join measured three
times cheaper than hashing every incoming row, with the same guarantee.) The caller runs it inside a
savepoint and rolls back when :meth:`TargetSync.hold_reason` says applying
was unsafe. Keys of rows in error are in the stage too, so an error never
causes a deactivation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    Subquery,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    update,
)

from visitor_sync.checks import first_lines
from visitor_sync.filetypes.base import SyncMode, Target
from visitor_sync.staging import Stage

_SYSTEM_COLUMNS = ("record_key", "active")


@dataclass(frozen=True)
class NewRecords:
    """What an ``on_create`` hook sees: the rows about to be inserted."""

    connection: Connection
    district_id: str
    run_id: str
    now: datetime
    rows: Subquery


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deactivated: int = 0
    #: active records of the type before the file (the safety hold's denominator)
    active_before: int = 0
    #: rows the file has for this target, valid ones only
    valid_rows: int = 0


class TargetSync:
    def __init__(self, stage: Stage, target: Target, district_id: str) -> None:
        self.stage = stage
        self.target = target
        self.table = target.table
        self.district_id = district_id
        self.columns = target.fields(stage.file_type.row_fields)
        self.source = self._source()

    def _source(self) -> Subquery:
        """One row per record key: the valid stage rows (the first, where several share it)."""
        stage, table = self.stage, self.stage.table
        key = stage.target_key(self.target)
        active = literal(True) if self.target.mode is SyncMode.UPSERT else table.c.active
        data = [table.c[source] for source in self.columns.values()]
        query = select(key.label("record_key"), active.label("active"),
                       *(column.label(name) for name, column in zip(self.columns, data,
                                                                    strict=True))
                       ).where(~table.c.skip, key.is_not(None))
        if self.stage.file_type.target_key(self.target) != self.stage.file_type.key:
            firsts = first_lines(stage, key, valid_only=True)
            query = query.where(table.c.line.in_(select(firsts.c.first_line)))
        return query.subquery("source")

    def _match(self) -> list[ColumnElement[bool]]:
        return [self.table.c.district_id == self.district_id,
                self.table.c.record_key == self.source.c.record_key]

    def apply(self, connection: Connection, run_id: str, now: datetime) -> Counts:
        table, source = self.table, self.source
        counts = Counts()
        counts.active_before = connection.scalar(select(func.count()).select_from(table).where(
            table.c.district_id == self.district_id, table.c.active)) or 0
        counts.valid_rows = connection.scalar(select(func.count()).select_from(source)) or 0
        stamp = bindparam("now", now, type_=DateTime(timezone=True))
        new = select(source).where(~exists().where(*self._match())).subquery("new_records")
        if self.target.on_create is not None:
            self.target.on_create(NewRecords(connection, self.district_id, run_id, now, new))
        data = list(self.columns)
        counts.created = connection.execute(insert(table).from_select(
            ["district_id", *_SYSTEM_COLUMNS, "deactivated_at", "created_at", "updated_at", *data],
            select(literal(self.district_id), *(new.c[name] for name in _SYSTEM_COLUMNS),
                   case((new.c.active, null()), else_=stamp), stamp, stamp,
                   *(new.c[name] for name in data)))
            .execution_options(preserve_rowcount=True)).rowcount

        def update_where(condition: ColumnElement[bool]) -> int:
            return connection.execute(
                update(table).where(*self._match(), condition)
                .values(active=source.c.active, updated_at=stamp,
                        deactivated_at=case((source.c.active, null()), (table.c.active, stamp),
                                            else_=table.c.deactivated_at),
                        **{name: source.c[name] for name in data})).rowcount

        counts.deactivated = update_where(and_(table.c.active, ~source.c.active))
        counts.updated = update_where(or_(
            table.c.active != source.c.active,
            *(table.c[name].is_distinct_from(source.c[name]) for name in data)))
        counts.unchanged = counts.valid_rows - counts.created - counts.updated - counts.deactivated
        if self.target.mode is SyncMode.FULL_SYNC:
            stage = self.stage
            counts.deactivated += connection.execute(update(table).where(
                table.c.district_id == self.district_id, table.c.active,
                ~exists().where(stage.target_key(self.target) == table.c.record_key))
                .values(active=False, deactivated_at=stamp, updated_at=stamp)).rowcount
        return counts

    def hold_reason(self, counts: Counts, max_deactivate_percent: float) -> str | None:
        """Why applying this file is unsafe (so it must be held), or ``None``."""
        if not counts.active_before:
            return None
        if counts.valid_rows == 0:
            return (f"the file has no valid rows but the district has {counts.active_before:,} "
                    f"active {self.target.name}")
        share = 100 * counts.deactivated / counts.active_before
        if share > max_deactivate_percent:
            return (f"applying it would deactivate {counts.deactivated:,} of "
                    f"{counts.active_before:,} active {self.target.name} ({share:.1f}%, "
                    f"more than the {max_deactivate_percent:g}% allowed)")
        return None
