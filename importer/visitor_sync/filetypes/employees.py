"""employees.csv: district staff (not necessarily accounts that log in)."""

from __future__ import annotations

from visitor_sync.db.schema import Employee
from visitor_sync.filetypes.base import FileType, RowModel, Target
from visitor_sync.values import BirthDate, Email, IdList, Phone


class EmployeeRow(RowModel):
    employee_id: str
    first_name: str
    last_name: str
    middle_name: str | None = None
    date_of_birth: BirthDate | None = None
    email: Email | None = None
    phone: Phone | None = None
    school_ids: IdList | None = None
    title: str | None = None


EMPLOYEES = FileType(
    name="employees",
    file_names=("employees.csv",),
    description="District staff; School IDs is a list separated by ';' or '|'.",
    row_model=EmployeeRow,
    headers={
        "Employee ID": ("Staff ID", "Employee Number", "Teacher ID"),
        "First Name": ("Given Name", "FirstName"),
        "Last Name": ("Family Name", "Surname"),
        "Middle Name": ("Middle",),
        "Date of Birth": ("DOB", "Birth Date", "Birthdate"),
        "Email": ("E-mail", "Email Address"),
        "Phone": ("Phone Number",),
        "School IDs": ("School ID", "Schools", "Campus IDs"),
        "Title": ("Job Title", "Position"),
        "Active": ("Is Active", "Enabled"),
    },
    key=("employee_id",),
    targets=(Target(Employee),),
)
