"""Full sync of one target table from a loaded stage, in a few set-based statements.

:meth:`TargetSync.plan` counts what applying would do (the safety hold needs
the deactivation count before anything is written); :meth:`TargetSync.apply`
then inserts new records, updates changed ones (content hash or active flag
differs: an unchanged row costs no write) and, for a full sync, deactivates
active records whose key is absent from the file. Keys of rows in error are
in the stage too, so an error never causes a deactivation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
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

from visitor_sync.filetypes.base import SyncMode, Target
from visitor_sync.staging import Stage, hash_column, key_column

_SYSTEM_COLUMNS = ("record_key", "row_hash", "active")


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

    @property
    def valid_rows(self) -> int:
        return self.created + self.updated + self.unchanged + self.deactivated


class TargetSync:
    def __init__(self, stage: Stage, target: Target, district_id: str) -> None:
        self.stage = stage
        self.target = target
        self.table = target.table
        self.district_id = district_id
        self.columns = target.fields(stage.fields)
        self.source = self._source()

    def _source(self) -> Subquery:
        """One row per record key: the valid stage rows, first row winning."""
        stage = self.stage.table
        key = stage.c[key_column(self.target)]
        active = (literal(True) if self.target.mode is SyncMode.UPSERT else stage.c.active)
        columns = [key.label("record_key"), stage.c[hash_column(self.target)].label("row_hash"),
                   active.label("active"),
                   *(stage.c[source].label(column) for column, source in self.columns.items())]
        rank = func.row_number().over(partition_by=key, order_by=stage.c.line).label("rank")
        ranked = select(*columns, rank).where(~stage.c.skip, key.is_not(None)).subquery()
        return (select(*(ranked.c[column.name] for column in columns))
                .where(ranked.c.rank == 1).subquery("source"))

    def _match(self) -> list:
        return [self.table.c.district_id == self.district_id,
                self.table.c.record_key == self.source.c.record_key]

    def _absent(self) -> list:
        """Active records of the district whose key the file does not have at all."""
        stage = self.stage.table
        return [self.table.c.district_id == self.district_id, self.table.c.active,
                ~exists().where(stage.c[key_column(self.target)] == self.table.c.record_key)]

    def plan(self, connection: Connection) -> Counts:
        table, source = self.table, self.source
        found = table.c.id.is_not(None)
        changed = or_(table.c.row_hash != source.c.row_hash, table.c.active != source.c.active)
        switched_off = and_(table.c.active, ~source.c.active)
        created, updated, unchanged, switched = connection.execute(
            select(func.count().filter(~found),
                   func.count().filter(found, changed, ~switched_off),
                   func.count().filter(found, ~changed),
                   func.count().filter(found, switched_off))
            .select_from(source.outerjoin(table, and_(*self._match())))).one()
        counts = Counts(created=created, updated=updated, unchanged=unchanged,
                        deactivated=switched)
        counts.active_before = connection.scalar(select(func.count()).select_from(table).where(
            table.c.district_id == self.district_id, table.c.active)) or 0
        if self.target.mode is SyncMode.FULL_SYNC:
            counts.deactivated += connection.scalar(
                select(func.count()).select_from(table).where(*self._absent())) or 0
        return counts

    def apply(self, connection: Connection, run_id: str, now: datetime) -> None:
        table, source = self.table, self.source
        stamp = bindparam("now", now, type_=DateTime(timezone=True))
        new = select(source).where(~exists().where(*self._match()))
        if self.target.on_create is not None:
            self.target.on_create(NewRecords(connection, self.district_id, run_id, now,
                                             new.subquery("new_records")))
        data = list(self.columns)
        new_records = new.subquery("new_records")
        connection.execute(insert(table).from_select(
            ["district_id", *_SYSTEM_COLUMNS, "deactivated_at", "created_at", "updated_at", *data],
            select(literal(self.district_id), *(new_records.c[name] for name in _SYSTEM_COLUMNS),
                   case((new_records.c.active, null()), else_=stamp), stamp, stamp,
                   *(new_records.c[name] for name in data))))
        connection.execute(
            update(table)
            .where(*self._match(), or_(table.c.row_hash != source.c.row_hash,
                                       table.c.active != source.c.active))
            .values(row_hash=source.c.row_hash, active=source.c.active, updated_at=stamp,
                    deactivated_at=case((source.c.active, null()), (table.c.active, stamp),
                                        else_=table.c.deactivated_at),
                    **{name: source.c[name] for name in data}))
        if self.target.mode is SyncMode.FULL_SYNC:
            connection.execute(update(table).where(*self._absent()).values(
                active=False, deactivated_at=stamp, updated_at=stamp))

    def hold_reason(self, counts: Counts, max_deactivate_percent: float) -> str | None:
        """Why applying this file would be unsafe, or ``None``."""
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

