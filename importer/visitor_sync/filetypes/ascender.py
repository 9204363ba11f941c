"""Ascender (Texas SIS) exports: students and visitors, mapped onto the canonical types.

Each layout is a column table (Ascender header -> canonical field) plus the
value conversions Ascender needs; validation and reconcile are the canonical
ones. Ascender writes birth dates as ``MMDDYYYY`` and flags as ``Y``/``N``.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import BeforeValidator

from visitor_sync.filetypes.base import vendor_layout
from visitor_sync.filetypes.students import STUDENTS, StudentRow
from visitor_sync.filetypes.visitors import VISITORS, VisitorRow
from visitor_sync.values import parse_birth_date


def parse_ascender_birth_date(value: str) -> date:
    """``MMDDYYYY`` (Ascender's own form) or the canonical date forms but ``YYYYMMDD``."""
    if len(value) == 8 and value.isdigit():
        value = f"{value[:2]}/{value[2:4]}/{value[4:]}"
    return parse_birth_date(value)


AscenderBirthDate = Annotated[date, BeforeValidator(parse_ascender_birth_date)]


class AscenderStudentRow(StudentRow):
    date_of_birth: AscenderBirthDate


ASCENDER_STUDENTS = vendor_layout(
    STUDENTS, "students_ascender", "students_ascender.csv", AscenderStudentRow,
    description="Ascender student export; DOB as MMDDYYYY.",
    columns={
        "Stu ID": "student_id",
        "Last Name": "last_name",
        "First Name": "first_name",
        "Middle Name": "middle_name",
        "DOB": "date_of_birth",
        "Grd Lvl": "grade",
        "Campus ID": "school_id",
        "Campus Name": "school_name",
        "Sex": "gender",
    },
)

ASCENDER_VISITORS = vendor_layout(
    VISITORS, "visitors_ascender", "visitors_ascender.csv", VisitorRow,
    description="Ascender contact export; one row per contact-student pair, "
                "Pickup Auth as Y/N.",
    columns={
        "Stu ID": "student_id",
        "Contact ID": "visitor_id",
        "Contact Last Name": "last_name",
        "Contact First Name": "first_name",
        "Relationship": "relationship",
        "Contact Phone": "phone",
        "Contact Email": "email",
        "Pickup Auth": "can_pickup",
    },
)
