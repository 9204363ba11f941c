"""students.csv: the district's students; schools are created on first sight."""

from __future__ import annotations

from visitor_sync.db.schema import School, Student
from visitor_sync.filetypes.base import FileType, RowModel, SyncMode, Target
from visitor_sync.grades import Grade
from visitor_sync.values import BirthDate, Email


class StudentRow(RowModel):
    student_id: str
    first_name: str
    last_name: str
    middle_name: str | None = None
    preferred_name: str | None = None
    date_of_birth: BirthDate
    grade: Grade
    school_id: str
    school_name: str | None = None
    gender: str | None = None
    homeroom: str | None = None
    email: Email | None = None


STUDENTS = FileType(
    name="students",
    file_names=("students.csv",),
    description="The district's students; full sync keyed by Student ID.",
    row_model=StudentRow,
    headers={
        "Student ID": ("Student Number", "Student No", "Stu ID", "Local ID", "StudentLocalID"),
        "First Name": ("Given Name", "FirstName", "First"),
        "Last Name": ("Family Name", "Surname", "Last"),
        "Middle Name": ("Middle", "Middle Initial"),
        "Preferred Name": ("Nickname", "Nick Name"),
        "Date of Birth": ("DOB", "Birth Date", "Birthdate"),
        "Grade": ("Grade Level", "Grd Lvl"),
        "School ID": ("School Number", "School Code", "Campus ID", "Building ID"),
        "School Name": ("Campus Name", "Building Name", "School"),
        "Gender": ("Sex",),
        "Homeroom": ("Home Room", "Homeroom Teacher"),
        "Email": ("Student Email", "E-mail", "Email Address"),
        "Active": ("Is Active", "Enabled", "Status Active"),
    },
    key=("student_id",),
    targets=(
        Target(Student),
        Target(School, key=("school_id",), renamed={"name": "school_name"},
               mode=SyncMode.UPSERT),
    ),
)
