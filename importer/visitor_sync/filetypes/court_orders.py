"""court_orders.csv: restraining and custody orders; an expired order is stored inactive."""

from __future__ import annotations

from datetime import date
from typing import Self

from pydantic import model_validator

from visitor_sync.db.schema import CourtOrder, Student
from visitor_sync.filetypes.base import FileType, Reference, RowModel, Target
from visitor_sync.values import BirthDate, Bool, Date, one_of

ORDER_TYPES = {
    "nocontact": "no_contact", "custody": "custody", "restraining": "restraining",
    "restrainingorder": "restraining", "protective": "restraining", "other": "other",
}
OrderType = one_of("invalid_order_type", ORDER_TYPES)


class CourtOrderRow(RowModel):
    case_id: str
    student_id: str
    restricted_first_name: str
    restricted_last_name: str
    restricted_date_of_birth: BirthDate | None = None
    order_type: OrderType = "other"
    allow_entry: Bool = False
    notify: Bool = True
    issued_date: Date
    expiry_date: Date | None = None
    notes: str | None = None

    @model_validator(mode="after")
    def _expired_orders_are_inactive(self) -> Self:
        if self.expiry_date is not None and self.expiry_date < date.today() and self.active:
            object.__setattr__(self, "active", False)
        return self


COURT_ORDERS = FileType(
    name="court_orders",
    file_names=("court_orders.csv",),
    description="Court orders restricting who may contact a student; keyed by "
                "Case ID + Student ID.",
    row_model=CourtOrderRow,
    headers={
        "Case ID": ("Case Number", "Order ID", "Docket Number"),
        "Student ID": ("Student Number", "Stu ID"),
        "Restricted First Name": ("Restricted Person First Name",),
        "Restricted Last Name": ("Restricted Person Last Name",),
        "Restricted Date of Birth": ("Restricted DOB", "Restricted Person DOB"),
        "Order Type": ("Type",),
        "Allow Entry": ("Entry Allowed",),
        "Notify": ("Notify Staff", "Alert"),
        "Issued Date": ("Issue Date", "Date Issued", "Effective Date"),
        "Expiry Date": ("Expiration Date", "Expires", "End Date"),
        "Notes": ("Comments", "Note"),
        "Active": ("Is Active",),
    },
    key=("case_id", "student_id"),
    targets=(Target(CourtOrder),),
    references=(Reference("student_id", Student, "unknown_student", "student"),),
    after=("students",),
)
