"""Alembic environment: runs on the connection handed over by visitor_sync.db.database."""

from alembic import context

from visitor_sync.db.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
