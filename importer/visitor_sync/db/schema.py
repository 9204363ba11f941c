"""The visitor-management data model (DESIGN.md "Data model").

Every synced record table shares :class:`SyncedRecord`: it is keyed by
``district_id`` + ``record_key`` (the file's key, parts joined by U+001F) and
carries ``active``/``deactivated_at``/``created_at``/``updated_at``. An
unchanged row costs no write: the import compares content in SQL (see
``visitor_sync.reconcile``). The schema is created only by the Alembic
migrations in ``visitor_sync/migrations``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

KEY_SEPARATOR = "\x1f"

# Integer ids that are BIGINT on PostgreSQL and rowid aliases on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })
    type_annotation_map: ClassVar = {datetime: DateTime(timezone=True), str: Text}


class District(Base):
    __tablename__ = "districts"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str | None]
    created_at: Mapped[datetime]


class SyncedRecord:
    """Columns and keys every table filled by a full sync has."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: No foreign key on purpose: a per-row FK trigger tripled the cost of bulk inserts;
    #: only the importer writes these tables and it creates the district first.
    district_id: Mapped[str] = mapped_column(String(63))
    record_key: Mapped[str]
    active: Mapped[bool] = mapped_column(server_default=true())
    deactivated_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    @declared_attr.directive
    def __table_args__(cls) -> tuple[UniqueConstraint]:
        return (UniqueConstraint("district_id", "record_key",
                                 name=f"uq_{cls.__tablename__}_district_key"),)  # type: ignore[attr-defined]


class School(SyncedRecord, Base):
    __tablename__ = "schools"

    school_id: Mapped[str]
    name: Mapped[str | None]
    #: OneRoster's id of the record, kept so a later delta finds it
    sourced_id: Mapped[str | None]


class Student(SyncedRecord, Base):
    __tablename__ = "students"

    student_id: Mapped[str]
    first_name: Mapped[str]
    last_name: Mapped[str]
    middle_name: Mapped[str | None]
    preferred_name: Mapped[str | None]
    #: required in students.csv; OneRoster rosters without demographics have none
    date_of_birth: Mapped[date | None]
    #: required in students.csv; OneRoster's ``grades`` is optional (unknown: none)
    grade: Mapped[str | None] = mapped_column(String(5))
    school_id: Mapped[str]
    gender: Mapped[str | None]
    homeroom: Mapped[str | None]
    email: Mapped[str | None]
    sourced_id: Mapped[str | None]


class Visitor(SyncedRecord, Base):
    __tablename__ = "visitors"

    visitor_id: Mapped[str]
    first_name: Mapped[str]
    last_name: Mapped[str]
    middle_name: Mapped[str | None]
    date_of_birth: Mapped[date | None]
    sex: Mapped[str | None]
    email: Mapped[str | None]
    phone: Mapped[str | None]
    address: Mapped[str | None]
    city: Mapped[str | None]
    state: Mapped[str | None]
    zip: Mapped[str | None]
    sourced_id: Mapped[str | None]


class VisitorStudentLink(SyncedRecord, Base):
    __tablename__ = "visitor_student_links"

    visitor_id: Mapped[str]
    student_id: Mapped[str]
    relationship: Mapped[str | None]
    can_pickup: Mapped[bool]
    emergency_contact: Mapped[bool]
    #: custody as the file states it (``None``: the file did not say); never grants pickup
    has_custody: Mapped[bool | None]


class Employee(SyncedRecord, Base):
    __tablename__ = "employees"

    employee_id: Mapped[str]
    first_name: Mapped[str]
    last_name: Mapped[str]
    middle_name: Mapped[str | None]
    date_of_birth: Mapped[date | None]
    email: Mapped[str | None]
    phone: Mapped[str | None]
    school_ids: Mapped[str | None]
    title: Mapped[str | None]


class User(SyncedRecord, Base):
    """An account that logs in; created ``invited`` with an invitation queued."""

    __tablename__ = "users"

    email: Mapped[str]
    name: Mapped[str]
    role: Mapped[str] = mapped_column(String(32))
    phone: Mapped[str | None]
    school_ids: Mapped[str | None]
    status: Mapped[str] = mapped_column(String(16), server_default="invited")
    sourced_id: Mapped[str | None]


class Volunteer(SyncedRecord, Base):
    __tablename__ = "volunteers"

    email: Mapped[str]
    first_name: Mapped[str]
    last_name: Mapped[str]
    middle_name: Mapped[str | None]
    date_of_birth: Mapped[date | None]
    phone: Mapped[str | None]
    address: Mapped[str | None]
    city: Mapped[str | None]
    state: Mapped[str | None]
    zip: Mapped[str | None]
    school_ids: Mapped[str | None]
    approved_until: Mapped[date | None]


class CourtOrder(SyncedRecord, Base):
    __tablename__ = "court_orders"

    case_id: Mapped[str]
    student_id: Mapped[str]
    restricted_first_name: Mapped[str]
    restricted_last_name: Mapped[str]
    restricted_date_of_birth: Mapped[date | None]
    order_type: Mapped[str] = mapped_column(String(16))
    allow_entry: Mapped[bool]
    notify: Mapped[bool]
    issued_date: Mapped[date]
    expiry_date: Mapped[date | None]
    notes: Mapped[str | None]


class BusAssignment(SyncedRecord, Base):
    __tablename__ = "bus_assignments"

    student_id: Mapped[str]
    school_id: Mapped[str]
    route: Mapped[str]
    direction: Mapped[str] = mapped_column(String(16))
    bus_number: Mapped[str | None]
    stop_name: Mapped[str | None]
    stop_time: Mapped[str | None] = mapped_column(String(5))


class Invitation(Base):
    """An invitation e-mail owed to a newly created user account (an outbox)."""

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    district_id: Mapped[str] = mapped_column(String(63), ForeignKey("districts.id"))
    email: Mapped[str]
    name: Mapped[str]
    run_id: Mapped[str] = mapped_column(String(36))
    queued_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(server_default="0")
    last_error: Mapped[str | None]

    __table_args__ = (Index("ix_invitations_unsent", "district_id", "sent_at"),)


class ImportRun(Base):
    __tablename__ = "import_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    district_id: Mapped[str] = mapped_column(String(63), ForeignKey("districts.id"), index=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    result: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str | None] = mapped_column(String(32))
    summary: Mapped[dict | None] = mapped_column(JSON)
    #: whether the report e-mail went out; a failed one is not resent (it stays here)
    report_sent: Mapped[bool] = mapped_column(server_default=false())


class ImportFileResult(Base):
    __tablename__ = "import_file_results"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(36), ForeignKey("import_runs.id"), index=True)
    file_name: Mapped[str]
    file_type: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    rows_read: Mapped[int] = mapped_column(server_default="0")
    created: Mapped[int] = mapped_column(server_default="0")
    updated: Mapped[int] = mapped_column(server_default="0")
    unchanged: Mapped[int] = mapped_column(server_default="0")
    deactivated: Mapped[int] = mapped_column(server_default="0")
    rejected_rows: Mapped[int] = mapped_column(server_default="0")
    errors: Mapped[int] = mapped_column(server_default="0")
    warnings: Mapped[int] = mapped_column(server_default="0")
    duration_ms: Mapped[int] = mapped_column(server_default="0")
    detail: Mapped[str | None]


class ImportIssue(Base):
    """One :class:`visitor_sync.issues.Issue` of a file result."""

    __tablename__ = "import_errors"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    file_result_id: Mapped[int] = mapped_column(BigId, ForeignKey("import_file_results.id"),
                                                index=True)
    file: Mapped[str]
    line: Mapped[int | None]
    column: Mapped[str | None]
    code: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str]
    severity: Mapped[str] = mapped_column(String(8))


class HeldFile(Base):
    """A file the safety hold kept aside, waiting for approval or expiry."""

    __tablename__ = "held_files"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    district_id: Mapped[str] = mapped_column(String(63), ForeignKey("districts.id"))
    run_id: Mapped[str] = mapped_column(String(36), ForeignKey("import_runs.id"))
    file_name: Mapped[str]
    file_type: Mapped[str] = mapped_column(String(32))
    location: Mapped[str]
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    held_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), server_default="pending")
    resolved_at: Mapped[datetime | None]
    reason: Mapped[str]

    __table_args__ = (Index("ix_held_files_pending", "district_id", "state"),)


RECORD_TABLES = {model.__tablename__: model.__table__ for model in (
    School, Student, Visitor, VisitorStudentLink, Employee, User, Volunteer, CourtOrder,
    BusAssignment)}
