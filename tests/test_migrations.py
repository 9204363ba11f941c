"""The schema is made only by the Alembic migrations: they must build exactly the models."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tests.support.processes import Launcher
from tests.support.runs import DISTRICT, make_inbox
from visitor_sync.db.database import connect, is_current, migrate
from visitor_sync.db.schema import Base


@pytest.fixture(scope="module")
def launcher():
    return Launcher()


def test_migrations_build_exactly_the_models(db_url):
    engine = connect(db_url)
    assert not is_current(engine)
    migrate(engine)
    assert is_current(engine)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    migrate(engine)  # a second run is a no-op
    assert is_current(engine)
    engine.dispose()


@pytest.mark.parametrize("attempt", range(3))
def test_two_first_runs_on_an_empty_database_both_succeed(db_url, tmp_path, launcher, attempt):
    """Two first runs once raced to create the schema and one failed, 2 times in 4."""
    inbox = make_inbox(tmp_path)
    runs = [launcher.start(["import", "--district", f"{DISTRICT}-{n}", "--source", str(inbox),
                            "--db", db_url], tmp_path / f"run-{n}") for n in range(2)]
    statuses = [run.finish() for run in runs]
    assert statuses == [0, 0], [run.err for run in runs]
    engine = connect(db_url)
    assert is_current(engine)
    engine.dispose()
