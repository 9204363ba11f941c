"""Small helpers for tests that run imports: write inbox files, run the importer.

Everything here drives the real importer against a real database and a real
folder; nothing is mocked.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from visitor_sync.config import ImportConfig
from visitor_sync.db.database import connect, migrate
from visitor_sync.db.schema import KEY_SEPARATOR, Base
from visitor_sync.issues import Issue
from visitor_sync.pipeline import Importer, stored_issues
from visitor_sync.sources import LocalFolderSource, Source
from visitor_sync.summary import FileOutcome, ImportSummary

DISTRICT = "testdistrict"
"""District id every helper run uses unless ``district_id=`` says otherwise."""


def write(inbox: Path, name: str, header: Sequence[str],
          rows: Iterable[Sequence[object]]) -> Path:
    """Write ``inbox/name`` as a UTF-8 CSV file (the folder is created if needed)."""
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def open_database(db_url: str) -> Engine:
    """An engine on ``db_url`` with the schema migrated to head; dispose it when done."""
    engine = connect(db_url)
    migrate(engine)
    return engine


def make_config(**config: Any) -> ImportConfig:
    """``ImportConfig`` for :data:`DISTRICT` with no quiet period, overridden by ``config``."""
    return ImportConfig.model_validate(
        {"district_id": DISTRICT, "quiet_period_seconds": 0, **config})


def make_importer(engine: Engine, inbox: Path, *, approve_held: str | None = None,
                  source: Source | None = None, **config: Any) -> Importer:
    """A real :class:`Importer` of ``inbox`` (its ``run_id`` is known before it runs).

    ``config`` overrides :func:`make_config`'s defaults; ``source`` replaces the
    plain :class:`LocalFolderSource` on ``inbox`` (e.g. a test double of the folder).
    """
    return Importer(engine, source or LocalFolderSource(inbox), make_config(**config),
                    approve_held=approve_held)


def run_import(database: str | Engine, inbox: Path, **options: Any) -> ImportSummary:
    """One real import run of ``inbox`` into ``database`` (a URL or an open engine).

    ``options`` are those of :func:`make_importer`.
    """
    engine = open_database(database) if isinstance(database, str) else database
    try:
        return make_importer(engine, inbox, **options).run()
    finally:
        if isinstance(database, str):
            engine.dispose()


@contextmanager
def database(db_url: str) -> Iterator[Engine]:
    """:func:`open_database` for a ``with`` block: the engine is disposed afterwards."""
    engine = open_database(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


def issues(engine: Engine, summary: ImportSummary, file: str | None = None) -> list[Issue]:
    """Every issue the run stored (the summary keeps only the first few), of ``file`` if given."""
    return [issue for issue in stored_issues(engine, summary.run_id)
            if file is None or issue.file == file]


def located(engine: Engine, summary: ImportSummary) -> list[tuple[str, int | None, str | None,
                                                                 str]]:
    """``(file, line, column, code)`` of every issue the run stored, in report order."""
    return [(issue.file, issue.line, issue.column, issue.code)
            for issue in issues(engine, summary)]


def link_key(visitor: str, student: str) -> str:
    """The record key of a visitor-student link."""
    return f"{visitor}{KEY_SEPARATOR}{student}"


def outcome(summary: ImportSummary, file: str) -> FileOutcome:
    """The outcome of the file named ``file`` in the run (exactly one must exist)."""
    (found,) = [outcome for outcome in summary.files if outcome.file == file]
    return found


def table_rows(engine: Engine, table: str, *columns: str) -> list[tuple[Any, ...]]:
    """``columns`` of every row of a ``visitor_sync.db.schema`` table, sorted (``None`` first)."""
    schema_table = Base.metadata.tables[table]
    with engine.connect() as connection:
        rows = connection.execute(select(*(schema_table.c[name] for name in columns)))
        return sorted((tuple(row) for row in rows),
                      key=lambda row: tuple((value is not None, value) for value in row))


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]], *, delimiter: str = ",",
              newline: str = "\n", encoding: str = "utf-8") -> bytes:
    """A CSV file's bytes in any dialect and encoding (``utf-8-sig`` writes a BOM)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode(encoding)


def make_inbox(parent: Path, name: str = "inbox") -> Path:
    """A new, empty inbox folder under ``parent``: never ``tmp_path`` itself, where the
    SQLite database of the ``db_url`` fixture lives (the importer would reject it)."""
    path = parent / name
    path.mkdir()
    return path
