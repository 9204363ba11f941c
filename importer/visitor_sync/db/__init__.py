"""Database: schema (SQLAlchemy 2.0 models), migrations and connections."""
