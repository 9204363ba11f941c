"""Sync of one target table from a loaded stage, in a few set-based statements.

:meth:`TargetSync.apply` classifies the stage's rows against the table in one
aggregate join (new, changed, switched off, unchanged), writes only the new
and changed ones to a small delta table, inserts and updates from it and, for
a full sync, deactivates active records whose key is absent from the file.
A record is changed when a column differs null-safely (``IS DISTINCT FROM``)
or its active flag does: an unchanged row costs no write. (Comparing columns
in the join measured three times cheaper than hashing every incoming row, with
the same guarantee.) The caller runs it inside a savepoint and rolls back when
:meth:`TargetSync.hold_reason` says applying was unsafe. Keys of rows in error
are in the stage too, so an error never causes a deactivation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Connection,
    DateTime,
    MetaData,
    Subquery,
    Table,
    Text,
    and_,
    bindparam,
    case,
    exists,
    false,
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
    def __init__(self, stage: Stage, target: Target, district_id: str,
                 given: frozenset[str] | None = None) -> None:
        self.stage = stage
        self.target = target
        self.table = target.table
        self.district_id = district_id
        #: table column -> row field of every column a new record gets
        self.columns = target.fields(stage.file_type.row_fields)
        #: the columns compared and updated on existing records: those the file gives
        #: (a column absent from the header keeps what is stored; an empty cell clears)
        self.updated = [name for name, source in self.columns.items()
                        if given is None or source in given]
        self.source = self._source()

    def _source(self) -> Subquery:
        """One row per record key: the valid stage rows. Where several rows share a key (a
        visitor linked to three students) the first row gives the details, and the record
        is active while any of its rows is (a visitor with one active link is active)."""
        stage, table = self.stage, self.stage.table
        key = stage.target_key(self.target)
        active: ColumnElement[bool] = table.c.active
        data = [table.c[source] for source in self.columns.values()]
        firsts = None
        if self.stage.file_type.target_key(self.target) != self.stage.file_type.key:
            firsts = first_lines(stage, key, valid_only=True)
            active = firsts.c.any_active == 1
        if self.target.mode is SyncMode.UPSERT:
            active = literal(True)
        query = select(key.label("record_key"), active.label("active"),
                       *(column.label(name) for name, column in zip(self.columns, data,
                                                                    strict=True))
                       ).where(~table.c.skip, key.is_not(None))
        if firsts is not None:
            query = query.join(firsts, table.c.seq == firsts.c.first_seq)
        return query.subquery("source")

    def _delta(self) -> Table:
        """Temporary table: each source row beside the record it matches (one join in all)."""
        data = [column for column in self.table.columns if column.name in self.columns]
        return Table(
            f"delta_{self.table.name}", MetaData(),
            Column("record_key", Text), Column("active", Boolean),
            *(Column(column.name, column.type) for column in data),
            Column("target_id", self.table.c.id.type), Column("was_active", Boolean),
            Column("differs", Boolean),
            prefixes=["TEMPORARY"])

    def apply(self, connection: Connection, run_id: str, now: datetime) -> Counts:
        """Apply the stage to the table; the returned counts come from the statements."""
        table, source = self.table, self.source
        joined = source.outerjoin(table, and_(table.c.district_id == self.district_id,
                                              table.c.record_key == source.c.record_key))
        found = table.c.id.is_not(None)
        differs = or_(false(), *(table.c[name].is_distinct_from(source.c[name])
                                 for name in self.updated))
        changing = and_(found, or_(differs, table.c.active != source.c.active))
        counts = Counts()
        (counts.valid_rows, counts.created, counts.deactivated, changes,
         matched_active) = connection.execute(select(
            func.count(), func.count().filter(~found),
            func.count().filter(found, table.c.active, ~source.c.active),
            func.count().filter(changing), func.count().filter(table.c.active))
            .select_from(joined)).one()
        counts.updated = changes - counts.deactivated
        counts.unchanged = counts.valid_rows - counts.created - changes
        counts.active_before = connection.scalar(select(func.count()).select_from(table).where(
            table.c.district_id == self.district_id, table.c.active)) or 0
        if counts.created or changes:  # only those rows are written down for the statements
            delta = self._delta()
            delta.drop(connection, checkfirst=True)
            delta.create(connection)
            connection.execute(insert(delta).from_select(
                [column.name for column in delta.columns],
                select(source, table.c.id, table.c.active, differs)
                .select_from(joined).where(or_(~found, changing))))
            connection.exec_driver_sql(f"ANALYZE {delta.name}")
            self._write(connection, delta, counts.created, changes, run_id, now)
            delta.drop(connection)
        stamp = bindparam("now", now, type_=DateTime(timezone=True))
        # Active records no valid row matched: absent from the file, or protected by an error.
        if self.target.mode is SyncMode.FULL_SYNC and counts.active_before > matched_active:
            counts.deactivated += connection.execute(update(table).where(
                table.c.district_id == self.district_id, table.c.active,
                ~exists().where(self.stage.target_key(self.target) == table.c.record_key))
                .values(active=False, deactivated_at=stamp, updated_at=stamp)).rowcount
        if connection.dialect.name == "postgresql" and counts.created > 10_000:
            # Statistics of a table that just grew a lot, so the next files get good plans.
            connection.exec_driver_sql(f"ANALYZE {table.name}")
        return counts

    def _write(self, connection: Connection, delta: Table, created: int, changes: int,
               run_id: str, now: datetime) -> None:
        """Insert the new records and update the changed ones listed in ``delta``."""
        table, data = self.table, list(self.columns)
        stamp = bindparam("now", now, type_=DateTime(timezone=True))
        found = delta.c.target_id.is_not(None)
        if created:
            new = select(delta).where(~found).subquery("new_records")
            if self.target.on_create is not None:
                self.target.on_create(NewRecords(connection, self.district_id, run_id, now, new))
            connection.execute(insert(table).from_select(
                ["district_id", *_SYSTEM_COLUMNS, "deactivated_at", "created_at", "updated_at",
                 *data],
                select(literal(self.district_id), *(new.c[name] for name in _SYSTEM_COLUMNS),
                       case((new.c.active, null()), else_=stamp), stamp, stamp,
                       *(new.c[name] for name in data))))
        if changes:
            connection.execute(
                update(table).where(table.c.id == delta.c.target_id)
                .values(active=delta.c.active, updated_at=stamp,
                        deactivated_at=case((delta.c.active, null()), (table.c.active, stamp),
                                            else_=table.c.deactivated_at),
                        **{name: delta.c[name] for name in self.updated}))

    def hold_reason(self, counts: Counts, max_deactivate_percent: float) -> str | None:
        """Why applying this file is unsafe (so it must be held), or ``None``."""
        if not counts.active_before:
            return None
        if counts.valid_rows == 0 and self.target.mode is SyncMode.FULL_SYNC:
            return (f"the file has no valid rows but the district has {counts.active_before:,} "
                    f"active {self.target.name}")
        share = 100 * counts.deactivated / counts.active_before
        if share > max_deactivate_percent:
            return (f"applying it would deactivate {counts.deactivated:,} of "
                    f"{counts.active_before:,} active {self.target.name} ({share:.1f}%, "
                    f"more than the {max_deactivate_percent:g}% allowed)")
        return None
