"""The PostgreSQL test fixture itself works: every database test depends on it."""

from __future__ import annotations

import sqlalchemy
from sqlalchemy.engine import make_url

from tests.support.postgres import PostgresServer


def _user_tables(url: str) -> list[str]:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(
                conn.scalars(
                    sqlalchemy.text(
                        "select table_name from information_schema.tables"
                        " where table_schema not in ('pg_catalog', 'information_schema')"
                    )
                )
            )
    finally:
        engine.dispose()


def test_server_accepts_sqlalchemy_connection(postgres_server: PostgresServer) -> None:
    """A plain SQLAlchemy engine reaches the server over TCP with the password."""
    url = postgres_server.url("postgres")
    assert url.startswith(f"postgresql+psycopg://{postgres_server.user}:")
    assert f"@127.0.0.1:{postgres_server.port}/postgres" in url
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("select 1")).scalar_one() == 1
            version = conn.execute(sqlalchemy.text("show server_version_num")).scalar_one()
    finally:
        engine.dispose()
    assert int(version) // 10000 == 15


def test_create_database_gives_distinct_empty_databases(
    postgres_server: PostgresServer,
) -> None:
    """Two calls give two different databases, both empty, and writes do not leak across."""
    first = postgres_server.create_database()
    second = postgres_server.create_database()
    assert make_url(first).database != make_url(second).database
    assert _user_tables(first) == []
    assert _user_tables(second) == []

    engine = sqlalchemy.create_engine(first)
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("create table marker (id integer primary key)"))
    finally:
        engine.dispose()
    assert _user_tables(first) == ["marker"]
    assert _user_tables(second) == []


def test_db_url_is_empty_and_usable(db_url: str) -> None:
    """``db_url`` yields a working, empty database on both engines."""
    engine = sqlalchemy.create_engine(db_url)
    try:
        with engine.begin() as conn:
            assert sqlalchemy.inspect(conn).get_table_names() == []
            conn.execute(sqlalchemy.text("create table t (id integer primary key)"))
            conn.execute(sqlalchemy.text("insert into t (id) values (1)"))
            assert conn.execute(sqlalchemy.text("select count(*) from t")).scalar_one() == 1
    finally:
        engine.dispose()
