"""What a OneRoster zip's tables are applied as: four member types, in bulk and delta forms.

Rows are the canonical ones (a guardian linked to three students is three
visitor rows, as in visitors.csv) with the record's OneRoster ``sourcedId``
kept beside it. Students' birth dates come from ``demographics.csv`` when
the zip has one, and ``grades`` is optional in OneRoster, so here both are.
"""

from __future__ import annotations

import dataclasses

from visitor_sync.db.schema import School, Student, User
from visitor_sync.filetypes.base import FileType, Reference, RowModel, SyncMode, Target
from visitor_sync.filetypes.students import StudentRow
from visitor_sync.filetypes.users import UserRow, queue_invitations
from visitor_sync.filetypes.visitors import VISITORS, VisitorRow
from visitor_sync.values import BirthDate, Grade


class OrgRow(RowModel):
    school_id: str
    name: str | None = None
    sourced_id: str


class OneRosterStudentRow(StudentRow):
    date_of_birth: BirthDate | None = None
    #: optional in OneRoster (users.csv ``grades``): without it the grade is unknown
    grade: Grade | None = None
    sourced_id: str


class OneRosterVisitorRow(VisitorRow):
    sourced_id: str


class OneRosterUserRow(UserRow):
    sourced_id: str


def _member(name: str, kind: str, row_model: type[RowModel], headers: dict[str, str],
            key: tuple[str, ...], targets: tuple[Target, ...], description: str,
            references: tuple[Reference, ...] = (), after: tuple[str, ...] = ()) -> FileType:
    return FileType(name=name, kind=kind, file_names=(), row_model=row_model,
                    headers={header: () for header in headers}, header_fields=headers,
                    key=key, targets=targets, references=references, after=after,
                    description=description)


SCHOOLS = _member(
    "oneroster_orgs", "schools", OrgRow,
    {"identifier": "school_id", "name": "name", "sourcedId": "sourced_id"},
    ("school_id",), (Target(School),),
    "orgs.csv rows of type school; School ID = identifier, else sourcedId.")

STUDENTS = _member(
    "oneroster_students", "students", OneRosterStudentRow,
    {"identifier": "student_id", "givenName": "first_name", "familyName": "last_name",
     "middleName": "middle_name", "preferredGivenName": "preferred_name",
     "birthDate": "date_of_birth", "grades": "grade", "orgSourcedIds": "school_id",
     "sex": "gender", "email": "email", "status": "active", "sourcedId": "sourced_id"},
    ("student_id",), (Target(Student),),
    "users.csv rows with role student; Student ID = identifier, else sourcedId.",
    references=(Reference("school_id", School, "unknown_school", "school"),),
    after=("schools",))

VISITORS_ = _member(
    "oneroster_guardians", "visitors", OneRosterVisitorRow,
    {"identifier": "visitor_id", "givenName": "first_name", "familyName": "last_name",
     "middleName": "middle_name", "birthDate": "date_of_birth", "sex": "sex",
     "email": "email", "phone": "phone", "agentSourcedIds": "student_id", "role": "relationship",
     "status": "active", "sourcedId": "sourced_id"},
    VISITORS.key, VISITORS.targets,
    "users.csv rows with role parent, guardian or relative, one row per student they are "
    "linked to through agentSourcedIds (either side naming the other is enough).",
    references=VISITORS.references, after=("students",))

USERS = _member(
    "oneroster_staff", "users", OneRosterUserRow,
    {"email": "email", "givenName": "name", "role": "role", "phone": "phone",
     "orgSourcedIds": "school_ids", "status": "active", "sourcedId": "sourced_id"},
    ("email",), (Target(User, on_create=queue_invitations),),
    "users.csv staff rows (teacher, aide, proctor, administrators) as accounts.",
    after=("schools",))

BULK_TYPES = (SCHOOLS, STUDENTS, VISITORS_, USERS)


def delta_form(file_type: FileType) -> FileType:
    """The same member type applying a delta: no deactivation of absent records."""
    return dataclasses.replace(
        file_type, name=f"{file_type.name}_delta",
        targets=tuple(dataclasses.replace(target, mode=SyncMode.DELTA)
                      for target in file_type.targets))


DELTA_TYPES = tuple(delta_form(file_type) for file_type in BULK_TYPES)
