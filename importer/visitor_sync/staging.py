"""The per-file staging table: every row of a file, validated, before it is applied.

Rows stream in (COPY on PostgreSQL, batched ``executemany`` on SQLite) so
memory does not grow with the file; everything after that (duplicate and
reference checks, planning, applying) is set-based SQL against this table.
It is a temporary table living inside the file's transaction.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    select,
)

from visitor_sync.db.schema import KEY_SEPARATOR
from visitor_sync.filetypes.base import FileType, RowModel, Target

_SQLITE_BATCH = 5000


class Stage:
    """Staging table of one file type.

    Columns: ``line``, ``skip`` (the row is in error: its key only protects
    the record from deactivation), ``active``, ``file_key``, a ``<table>__key``
    and ``<table>__hash`` pair per target, then the row model's fields.
    """

    def __init__(self, file_type: FileType) -> None:
        self.file_type = file_type
        self.fields = file_type.row_fields
        field_types: dict[str, Any] = {}
        for target in file_type.targets:
            for column, source in target.fields(self.fields).items():
                field_types.setdefault(source, target.table.c[column].type)
        self.table = Table(
            f"stage_{file_type.name}", MetaData(),
            Column("line", Integer, nullable=False),
            Column("skip", Boolean, nullable=False),
            Column("active", Boolean, nullable=False),
            Column("file_key", Text),
            *itertools.chain.from_iterable(
                (Column(key_column(target), Text), Column(hash_column(target), Text))
                for target in file_type.targets),
            *(Column(name, field_types.get(name, Text())) for name in self.fields
              if name != "active"),
            prefixes=["TEMPORARY"],
        )
        self._data_fields = [name for name in self.fields if name != "active"]
        self._target_shapes = [
            (file_type.target_key(target), tuple(target.fields(self.fields).values()))
            for target in file_type.targets]

    # -- turning rows into staged tuples ------------------------------------------------

    def valid_row(self, line: int, row: RowModel) -> tuple[Any, ...]:
        values = row.__dict__
        keyed: list[Any] = []
        for key_fields, hashed_fields in self._target_shapes:
            key = join_key(values, key_fields)
            keyed += (key, row_hash(values, hashed_fields) if key is not None else None)
        return (line, False, values["active"], join_key(values, self.file_type.key), *keyed,
                *(values[name] for name in self._data_fields))

    def error_row(self, line: int, raw: dict[str, str]) -> tuple[Any, ...]:
        """A row in error keeps whatever keys are readable, so it blocks deactivation."""
        keyed: list[Any] = []
        for key_fields, _ in self._target_shapes:
            keyed += (join_key(raw, key_fields, readable=True), None)
        return (line, True, True, join_key(raw, self.file_type.key, readable=True), *keyed,
                *(None for _ in self._data_fields))

    # -- lifecycle ----------------------------------------------------------------------

    def create(self, connection: Connection) -> None:
        self.table.drop(connection, checkfirst=True)
        self.table.create(connection)

    def load(self, connection: Connection, rows: Iterable[Sequence[Any]]) -> None:
        """Stream rows into the table, then index and analyse it for the set-based steps."""
        if connection.dialect.name == "postgresql":
            _copy(connection, self.table, rows)
        else:
            _insert_batches(connection, self.table, rows)
        for column in ("file_key", *(key_column(target) for target in self.file_type.targets)):
            Index(f"ix_{self.table.name}_{column}", self.table.c[column]).create(connection)
        connection.exec_driver_sql(f"ANALYZE {self.table.name}")

    def skipped_rows(self, connection: Connection) -> int:
        """Rows not applied because they are in error."""
        return connection.scalar(select(func.count()).select_from(self.table).where(
            self.table.c.skip)) or 0

    def drop(self, connection: Connection) -> None:
        self.table.drop(connection, checkfirst=True)


def key_column(target: Target) -> str:
    return f"{target.name}__key"


def hash_column(target: Target) -> str:
    return f"{target.name}__hash"


def join_key(values: dict[str, Any], fields: Sequence[str], readable: bool = False) -> str | None:
    """The record key: the key fields joined by U+001F, or ``None`` if any is empty."""
    parts = [values.get(name) for name in fields]
    if any(part is None or part == "" for part in parts):
        return None
    if readable:  # raw text of a row in error: normalise as the validators would
        parts = [part.strip().lower() if name == "email" else part.strip()
                 for name, part in zip(fields, parts, strict=True)]
    return KEY_SEPARATOR.join(parts) if len(parts) > 1 else parts[0]


def row_hash(values: dict[str, Any], fields: Sequence[str]) -> str:
    """Content hash of a record, so an unchanged row is recognised without comparing columns."""
    text = KEY_SEPARATOR.join("" if values[name] is None else str(values[name]) for name in fields)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _copy(connection: Connection, table: Table, rows: Iterable[Sequence[Any]]) -> None:
    names = ", ".join(f'"{column.name}"' for column in table.columns)
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _insert_batches(connection: Connection, table: Table, rows: Iterable[Sequence[Any]]) -> None:
    placeholders = ", ".join("?" for _ in table.columns)
    statement = f"INSERT INTO {table.name} VALUES ({placeholders})"
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    for batch in _batches(rows, _SQLITE_BATCH):
        cursor.executemany(statement, batch)


def _batches(rows: Iterable[Sequence[Any]], size: int) -> Iterator[list[Sequence[Any]]]:
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, size)):
        yield batch
