"""The schema is made only by the Alembic migrations: they must build exactly the models."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from visitor_sync.db.database import connect, is_current, migrate
from visitor_sync.db.schema import Base


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
