"""visitors.csv: visitors (guardians) and their links to students, one row per pair."""

from __future__ import annotations

from visitor_sync.db.schema import Student, Visitor, VisitorStudentLink
from visitor_sync.filetypes.base import FileType, Reference, RowModel, Target
from visitor_sync.values import BirthDate, Bool, Email, Phone, Zip


class VisitorRow(RowModel):
    visitor_id: str
    first_name: str
    last_name: str
    middle_name: str | None = None
    date_of_birth: BirthDate | None = None
    sex: str | None = None
    email: Email | None = None
    phone: Phone | None = None
    address: str | None = None
    city: str | None = None
    state: str | None = None
    zip: Zip | None = None
    student_id: str | None = None
    relationship: str | None = None
    #: an empty cell means no pickup; with no column at all, the district's pickup_default
    can_pickup: Bool = False
    emergency_contact: Bool = False
    #: stored as stated; custody never grants pickup (Can Pickup alone decides)
    has_custody: Bool | None = None


VISITORS = FileType(
    name="visitors",
    file_names=("visitors.csv",),
    description="Visitors and visitor-student links; a visitor linked to three students "
                "appears on three rows.",
    row_model=VisitorRow,
    headers={
        "Visitor ID": ("Contact ID", "Guardian ID", "Parent ID", "Person ID"),
        "First Name": ("Given Name", "FirstName"),
        "Last Name": ("Family Name", "Surname"),
        "Middle Name": ("Middle",),
        "Date of Birth": ("DOB", "Birth Date", "Birthdate"),
        "Sex": ("Gender",),
        "Email": ("E-mail", "Email Address"),
        "Phone": ("Phone Number", "Cell Phone", "Mobile"),
        "Address": ("Street", "Street Address", "Address 1"),
        "City": (),
        "State": ("Province",),
        "Zip": ("Zip Code", "Postal Code", "ZIP"),
        "Student ID": ("Student Number", "Stu ID"),
        "Relationship": ("Relation", "Relationship Type"),
        "Can Pickup": ("Pickup", "Pickup Allowed", "Can Pick Up"),
        "Emergency Contact": ("Emergency",),
        "Has Custody": ("Custody",),
        "Active": ("Is Active", "Enabled"),
    },
    key=("visitor_id", "student_id"),
    targets=(
        Target(Visitor, key=("visitor_id",)),
        Target(VisitorStudentLink),
    ),
    references=(Reference("student_id", Student, "unknown_student", "student"),),
    after=("students",),
)
