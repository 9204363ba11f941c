"""Connecting to the database and bringing its schema up to date."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from visitor_sync.locking import migrations_lock

# Staged rows reach SQLite through the DB-API directly: store dates as SQLAlchemy does.
sqlite3.register_adapter(date, date.isoformat)
sqlite3.register_adapter(datetime, lambda value: value.isoformat(sep=" "))

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
#: Seconds to wait for a PostgreSQL connection (libpq's default is to wait forever).
CONNECT_TIMEOUT = 10


class SchemaTooNew(Exception):
    """The database was migrated by a newer release than this importer."""

    def __init__(self, revision: str, head: str) -> None:
        super().__init__(
            f"the database schema is at revision {revision}, newer than this importer "
            f"knows (its newest is {head}); run the importer of the release that migrated it")


#: Execution option (``connection.execution_options(**{READ_ONLY: True})``) of a
#: connection that only reads: on SQLite its transactions wait for no writer.
READ_ONLY = "visitor_sync_read_only"


def connect(url: str) -> Engine:
    """An engine for ``url``; SQLite gets foreign keys, WAL and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own implicit BEGIN breaks savepoints: let SQLAlchemy emit BEGIN itself.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    connect_args = {} if "connect_timeout" in parsed.query else {
        "connect_timeout": CONNECT_TIMEOUT}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def _sqlite_begin(connection: Connection) -> None:
    """``BEGIN IMMEDIATE``: the write lock up front, waiting up to the busy timeout. A
    deferred transaction that reads and then writes after another process wrote fails
    at once with SQLITE_BUSY_SNAPSHOT (WAL), which two concurrent runs hit. A connection
    marked :data:`READ_ONLY` (a reader watching a run) begins deferred: WAL lets it read
    while a run writes."""
    read_only = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def migrate(engine: Engine) -> None:
    """Apply every pending migration (the schema is never created otherwise), one
    process at a time; refuse a schema newer than this code (a rolling upgrade)."""
    config = _alembic_config()
    scripts = ScriptDirectory.from_config(config)
    with migrations_lock(engine), engine.begin() as connection:
        revision = MigrationContext.configure(connection).get_current_revision()
        if revision is not None and revision not in {script.revision
                                                     for script in scripts.walk_revisions()}:
            raise SchemaTooNew(revision, str(scripts.get_current_head()))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def is_current(engine: Engine) -> bool:
    """Whether the database is at the newest migration."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head
