"""``row_hash(*columns)``: a content hash computed by the database itself.

Hashing in SQL keeps the per-row Python work of an import down to parsing
and validating. PostgreSQL hashes the row constructor's text (``md5(ROW(...)
::text)``: NULL and empty stay distinct); SQLite calls a deterministic
function registered on each connection. Hashes are only ever compared with
hashes made by the same database.
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any

from sqlalchemy import String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import GenericFunction

SQLITE_FUNCTION = "visitor_sync_row_hash"


class row_hash(GenericFunction[str]):
    type = String(32)
    inherit_cache = True


@compiles(row_hash, "postgresql")
def _postgresql(element: row_hash, compiler: SQLCompiler, **kw: Any) -> str:
    return f"md5(CAST(ROW({compiler.process(element.clauses, **kw)}) AS TEXT))"


@compiles(row_hash, "sqlite")
def _sqlite(element: row_hash, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{SQLITE_FUNCTION}({compiler.process(element.clauses, **kw)})"


def _sqlite_row_hash(*values: Any) -> str:
    return hashlib.md5(repr(values).encode(), usedforsecurity=False).hexdigest()


def register_sqlite(connection: sqlite3.Connection) -> None:
    connection.create_function(SQLITE_FUNCTION, -1, _sqlite_row_hash, deterministic=True)
