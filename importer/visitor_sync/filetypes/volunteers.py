"""volunteers.csv: approved volunteers, keyed by e-mail."""

from __future__ import annotations

from visitor_sync.db.schema import Volunteer
from visitor_sync.filetypes.base import FileType, RowModel, Target
from visitor_sync.values import BirthDate, Date, Email, IdList, Phone, Zip


class VolunteerRow(RowModel):
    email: Email
    first_name: str
    last_name: str
    middle_name: str | None = None
    date_of_birth: BirthDate | None = None
    phone: Phone | None = None
    address: str | None = None
    city: str | None = None
    state: str | None = None
    zip: Zip | None = None
    school_ids: IdList | None = None
    approved_until: Date | None = None


VOLUNTEERS = FileType(
    name="volunteers",
    file_names=("volunteers.csv",),
    description="Approved volunteers; keyed by Email (compared without case).",
    row_model=VolunteerRow,
    headers={
        "Email": ("E-mail", "Email Address"),
        "First Name": ("Given Name", "FirstName"),
        "Last Name": ("Family Name", "Surname"),
        "Middle Name": ("Middle",),
        "Date of Birth": ("DOB", "Birth Date", "Birthdate"),
        "Phone": ("Phone Number",),
        "Address": ("Street", "Street Address"),
        "City": (),
        "State": (),
        "Zip": ("Zip Code", "Postal Code"),
        "School IDs": ("School ID", "Schools"),
        "Approved Until": ("Expiration Date", "Approval Expires", "Expires"),
        "Active": ("Is Active", "Enabled"),
    },
    key=("email",),
    targets=(Target(Volunteer),),
)
