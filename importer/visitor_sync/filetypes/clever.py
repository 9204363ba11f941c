"""Clever's SFTP upload format, for districts that already run a Clever export job.

Clever's files are ``schools.csv``, ``students.csv``, ``teachers.csv``,
``sections.csv`` and ``enrollments.csv`` (plus ``staff.csv`` and the deprecated
``admins.csv``), with Clever's exact headers (docs/formats.md cites the spec).

- ``students.csv`` has our own canonical file's name, so a Clever one is recognised
  by its header (:func:`is_clever_students_header`). It holds one row per student and
  contact: students (first row wins), and each contact with a ``Contact_sis_id`` as a
  visitor linked to the student, pickup off (Clever never states pickup).
- ``schools.csv`` creates and renames schools (never deactivates them);
  ``teachers.csv`` is the employees file, one row per teacher and school.
- ``sections.csv``, ``enrollments.csv``, ``staff.csv`` and ``admins.csv`` are not used:
  reported as ignored, never errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Self

from pydantic import model_validator
from pydantic_core import PydanticCustomError

from visitor_sync.db.schema import School, Student, Visitor, VisitorStudentLink
from visitor_sync.filetypes.base import FileType, RowModel, SyncMode, Target, vendor_layout
from visitor_sync.filetypes.employees import EMPLOYEES, EmployeeRow
from visitor_sync.filetypes.students import STUDENTS, StudentRow
from visitor_sync.validation import Record
from visitor_sync.values import Email, Phone

#: Clever files this product has no use for: reported as ignored, removed like processed.
UNUSED_FILES = ("sections.csv", "enrollments.csv", "staff.csv", "admins.csv")

#: Headers only Clever's students.csv has (spelled exactly so): one of them, with
#: ``School_id`` and ``Student_id``, makes a students.csv Clever's.
_CLEVER_ONLY = frozenset({"Student_number", "State_id", "Graduation_year", "Hispanic_Latino",
                          "Home_language", "Ell_status", "Frl_status", "IEP_status",
                          "Contact_type", "Contact_name", "Contact_sis_id"})


def is_clever_students_header(header: list[str]) -> bool:
    """Whether a students.csv header is Clever's (its required headers, spelled exactly,
    and a column only Clever's format has)."""
    names = {name.strip() for name in header}
    return {"School_id", "Student_id"} <= names and bool(names & _CLEVER_ONLY)


def _fold_repeats(key: str, merged: str | None = None,
                  ) -> Callable[[Iterable[Record], str], Iterator[Record]]:
    """A regroup step: rows repeating ``key`` are one record. With ``merged``, their
    values of that field are joined with ``;``; every other value must agree, else the
    repeat stays a row of its own, which the ``duplicate_key`` check reports."""

    def fold(records: Iterable[Record], _file_name: str) -> Iterator[Record]:
        first: dict[str, dict[str, str]] = {}
        out: list[Record] = []
        for line, raw, problem in records:
            value = raw.get(key)
            if problem is not None or value is None:
                out.append((line, raw, problem))
                continue
            if value not in first:
                first[value] = dict(raw)
                out.append((line, first[value], None))
                continue
            kept = first[value]
            others = {name: cell for name, cell in raw.items() if name != merged}
            if others == {name: cell for name, cell in kept.items() if name != merged}:
                if merged and raw.get(merged):
                    parts = kept.get(merged, "").split(";") if kept.get(merged) else []
                    kept[merged] = ";".join(dict.fromkeys([*parts, raw[merged]]))
                continue
            out.append((line, raw, None))  # staged as is: the duplicate_key check reports it
        return iter(out)

    return fold


#: Clever's ``Contact_type`` of an emergency contact (the others: Primary, Secondary,
#: Parent/Guardian, Family, Other).
EMERGENCY_TYPE = "emergency"


class CleverStudentRow(StudentRow):
    """A student and, when the row names one, one of their contacts."""

    contact_sis_id: str | None = None
    contact_name: str | None = None
    contact_type: str | None = None
    contact_relationship: str | None = None
    contact_phone: Phone | None = None
    contact_email: Email | None = None
    #: Clever has no pickup column: a contact from Clever never may pick up (fails closed)
    can_pickup: bool = False
    #: Clever gives a contact's whole name in one field; it is stored as the last name
    #: (as Clever's own API does), the first name left empty
    contact_first_name: str = ""
    #: from Contact_type (set by the validator below)
    emergency_contact: bool = False

    @model_validator(mode="after")
    def _contact_needs_an_id(self) -> Self:
        # Without its id a contact has no stable identity: its name alone is an error,
        # never a guessed visitor (described in formatdoc.VALIDATOR_NOTES).
        if self.contact_sis_id is None and self.contact_name is not None:
            raise PydanticCustomError(
                "missing_value", "Contact_sis_id is empty; a contact needs its id to be "
                "linked")
        if self.contact_sis_id is not None and self.contact_name is None:
            raise PydanticCustomError(
                "missing_value", "Contact_name is empty; every contact needs a name")
        object.__setattr__(self, "emergency_contact",
                           (self.contact_type or "").strip().lower() == EMERGENCY_TYPE)
        return self


CLEVER_STUDENTS = FileType(
    name="students_clever", kind="students", file_names=("students.csv",),
    description="Clever SFTP students.csv, recognised by its header: one row per student and "
                "contact. The student's details come from its first row; each contact "
                "with a Contact_sis_id becomes a visitor linked to the student, never "
                "allowed to pick up (Clever has no pickup column).",
    row_model=CleverStudentRow,
    headers={header: () for header in (
        "Student_id", "School_id", "Last_name", "Middle_name", "First_name", "Grade", "Gender",
        "DOB", "Student_email", "Contact_sis_id", "Contact_name", "Contact_type",
        "Contact_relationship", "Contact_phone", "Contact_email")},
    header_fields={"Student_id": "student_id", "School_id": "school_id",
                   "Last_name": "last_name", "Middle_name": "middle_name",
                   "First_name": "first_name", "Grade": "grade", "Gender": "gender",
                   "DOB": "date_of_birth", "Student_email": "email"},
    key=("student_id", "contact_sis_id"),
    targets=(
        Target(Student, key=("student_id",)),
        *STUDENTS.targets[1:],  # its schools
        Target(Visitor, key=("contact_sis_id",),
               renamed={"visitor_id": "contact_sis_id", "first_name": "contact_first_name",
                        "last_name": "contact_name", "email": "contact_email",
                        "phone": "contact_phone"},
               keep=frozenset({"middle_name", "date_of_birth", "sex", "address", "city",
                               "state", "zip", "sourced_id"})),
        Target(VisitorStudentLink, key=("contact_sis_id", "student_id"),
               renamed={"visitor_id": "contact_sis_id", "relationship": "contact_relationship"},
               keep=frozenset({"has_custody"})),
    ),
    ignored=("Student_number", "State_id", "Graduation_year", "Race", "Hispanic_Latino",
             "Home_language", "Ell_status", "Frl_status", "IEP_status", "Student_street",
             "Student_city", "Student_state", "Student_zip", "Contact_phone_type", "Username",
             "Password", "Unweighted_gpa", "Weighted_gpa"),
    follows_pickup_default=False,
    recognised_by=is_clever_students_header,
    # a contact's link always says "no pickup", even over a link stored from another file
    given_with={"emergency_contact": "contact_type", "contact_first_name": "contact_name",
                "can_pickup": "contact_sis_id"},
)


class CleverSchoolRow(RowModel):
    school_id: str
    school_name: str


CLEVER_SCHOOLS = FileType(
    name="schools_clever",
    file_names=("schools.csv",),
    description="Clever SFTP schools.csv: creates schools and keeps their names current; "
                "a school left out is not deactivated.",
    row_model=CleverSchoolRow,
    headers={"School_id": (), "School_name": ()},
    header_fields={"School_id": "school_id", "School_name": "school_name"},
    key=("school_id",),
    targets=(Target(School, renamed={"name": "school_name"}, mode=SyncMode.UPSERT),),
    # after a students file of the same run, whose schools come without names
    after=("students",),
    ignored=("School_number", "State_id", "Low_grade", "High_grade", "Principal",
             "Principal_email", "School_address", "School_city", "School_state", "School_zip",
             "School_phone"),
)

CLEVER_TEACHERS = vendor_layout(
    EMPLOYEES, "employees_clever", "teachers.csv", EmployeeRow,
    description="Clever SFTP teachers.csv: one row per teacher and school; a teacher's rows "
                "are one employee with all their schools.",
    columns={
        "Teacher_id": "employee_id",
        "School_id": "school_ids",
        "First_name": "first_name",
        "Middle_name": "middle_name",
        "Last_name": "last_name",
        "Teacher_email": "email",
        "Title": "title",
    },
    ignored=("Teacher_number", "State_teacher_id", "Username", "Password"),
    regroup=_fold_repeats("employee_id", merged="school_ids"),
)
