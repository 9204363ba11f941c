"""Ascender (Texas SIS) exports, mapped onto the canonical students and visitors types.

The students layout is Ascender's published Cafeteria Export record layout (field
names, ``YYYYMMDD`` dates, grades ``EE, PK, KG, 01-12``: docs/formats.md cites it).
Ascender writes that export without a header row: the district adds one with these
field names. The earlier, invented headers stay accepted as aliases; the earlier
``MMDDYYYY`` birth dates do not (eight digits are read as ``YYYYMMDD``, as Ascender's
layouts write them, and ``01052015`` is an error, never a guess).

No public Ascender contacts layout was found: ``visitors_ascender.csv`` keeps its
earlier headers and the docs say they are not Ascender's.
"""

from __future__ import annotations

from visitor_sync.filetypes.base import vendor_layout
from visitor_sync.filetypes.students import STUDENTS, StudentRow
from visitor_sync.filetypes.visitors import VISITORS, VisitorRow

ASCENDER_STUDENTS = vendor_layout(
    STUDENTS, "students_ascender", "students_ascender.csv", StudentRow,
    description="Ascender Cafeteria Export record layout (its field names as the header "
                "row); Date of Birth as YYYYMMDD, Grade as EE, PK, KG or 01-12.",
    columns={
        "Student ID": "student_id",
        "Student Last Name": "last_name",
        "Student First Name": "first_name",
        "Student Middle Name": "middle_name",
        "Campus ID": "school_id",
        "Grade": "grade",
        "Home Room": "homeroom",
        "Date of Birth": "date_of_birth",
        "Email Address": "email",
        # not in the Cafeteria Export: kept from the earlier layout
        "Campus Name": "school_name",
        # Ascender's name for it in its Charter School Waitlist Import layout
        "Sex": "gender",
    },
    aliases={"Student ID": ("Stu ID",), "Student Last Name": ("Last Name",),
             "Student First Name": ("First Name",), "Student Middle Name": ("Middle Name",),
             "Grade": ("Grd Lvl",), "Date of Birth": ("DOB",)},
    ignored=("Family Code", "Economic Disadvantage Code", "Economic Disadvantage Date",
             "SSN or State Student ID", "Student Status", "Enrollment Date", "Guardian Name",
             "Guardian Address", "Guardian Address 2", "Guardian City", "Guardian State",
             "Guardian Zip", "Guardian Telephone Number", "Ethnic Code",
             "Record Activity Code", "Home Room Code 2", "Texas Unique Student ID"),
)

ASCENDER_VISITORS = vendor_layout(
    VISITORS, "visitors_ascender", "visitors_ascender.csv", VisitorRow,
    description="Contacts in the earlier Ascender layout of this project (not from Ascender "
                "documentation: no public Ascender contacts layout was found); one row per "
                "contact-student pair, Pickup Auth as Y/N.",
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
