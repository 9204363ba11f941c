"""PowerSchool contacts export, mapped onto the canonical visitors type.

A contact may pick a student up when PowerSchool says ``School_Pickup`` or
``Has_Custody`` (a custodial parent always may); flags are ``1``/``0``.
"""

from __future__ import annotations

from typing import Self

from pydantic import model_validator

from visitor_sync.filetypes.base import vendor_layout
from visitor_sync.filetypes.visitors import VISITORS, VisitorRow
from visitor_sync.values import Bool


class PowerSchoolContactRow(VisitorRow):
    has_custody: Bool = False

    @model_validator(mode="after")
    def _custody_allows_pickup(self) -> Self:
        """Has_Custody = 1 allows pickup even when School_Pickup = 0."""
        if self.has_custody and not self.can_pickup:
            object.__setattr__(self, "can_pickup", True)
        return self


POWERSCHOOL_VISITORS = vendor_layout(
    VISITORS, "visitors_powerschool", "visitors_powerschool.csv", PowerSchoolContactRow,
    description="PowerSchool contacts export; School_Pickup or Has_Custody allows pickup.",
    columns={
        "Student_Number": "student_id",
        "ContactID": "visitor_id",
        "First_Name": "first_name",
        "Last_Name": "last_name",
        "Relationship": "relationship",
        "Email_Address": "email",
        "Phone": "phone",
        "School_Pickup": "can_pickup",
        "Has_Custody": "has_custody",
        "Emergency_Contact": "emergency_contact",
    },
)
