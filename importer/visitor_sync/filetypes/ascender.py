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
from visitor_sync.values import born_on, invalid, parse_birth_date


def parse_ascender_birth_date(value: str) -> date:
    """``MMDDYYYY`` (Ascender's own form); the canonical forms but ``YYYYMMDD`` also pass.
    Errors quote the value as the file has it."""
    if not (len(value) == 8 and value.isdigit()):
        return parse_birth_date(value)
    try:
        born = date(int(value[4:]), int(value[:2]), int(value[2:4]))
    except ValueError:
        raise invalid("invalid_date", value, "is not a date; use MMDDYYYY") from None
    return born_on(born, value)


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
