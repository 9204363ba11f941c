"""PowerSchool exports, mapped onto the canonical students and visitors types.

Layouts as PowerSchool writes them (docs/formats.md cites the sources):

- the student export (``Student_Number, SchoolID, First_Name, ..., Enroll_Status``):
  ``Enroll_Status`` 0 is an active student, every other code (pre-registered,
  inactive, transferred out, graduated...) is not; grades ``-2``/``-1``/``0`` are the
  vocabulary's pre-K and kindergarten;
- the contacts export with the contacts module's labels, which spreads one contact
  over several rows: the contact's own row (names, e-mail, first phone), more rows
  for further phones, and one row per student relationship (``studentNumber``,
  ``Relationship Type`` and the flags). :func:`fold_contact_rows` turns them into
  one row per contact and student, as ``visitors.csv`` has them.

Pickup permission is ``Contact Allow School Pickup`` alone: custody is stored as
stated and never grants pickup.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Annotated

from pydantic import BeforeValidator

from visitor_sync.filetypes.base import vendor_layout
from visitor_sync.filetypes.students import STUDENTS, StudentRow
from visitor_sync.filetypes.visitors import VISITORS, VisitorRow
from visitor_sync.issues import Issue, quote_value
from visitor_sync.validation import Record
from visitor_sync.values import invalid

#: ``Enroll_Status`` of an enrolled student; PowerSchool's other codes (-1 pre-registered,
#: 1 inactive, 2 transferred out, 3 graduated, 4 imported as historical) are not active.
ENROLLED = 0


def parse_enroll_status(value: str) -> bool:
    """``0`` is active; any other whole number is not; anything else is an error."""
    try:
        return int(value) == ENROLLED
    except ValueError:
        raise invalid("invalid_enroll_status", value,
                      "is not a PowerSchool enrollment status; use 0 for enrolled students "
                      "(other codes: not active)") from None


EnrollStatus = Annotated[bool, BeforeValidator(parse_enroll_status)]


class PowerSchoolStudentRow(StudentRow):
    active: EnrollStatus = True


POWERSCHOOL_STUDENTS = vendor_layout(
    STUDENTS, "students_powerschool", "students_powerschool.csv", PowerSchoolStudentRow,
    description="PowerSchool student export (Students table fields); Enroll_Status other "
                "than 0 is not an active student.",
    columns={
        "Student_Number": "student_id",
        "SchoolID": "school_id",
        "First_Name": "first_name",
        "Middle_Name": "middle_name",
        "Last_Name": "last_name",
        "Grade_Level": "grade",
        "Gender": "gender",
        "DOB": "date_of_birth",
        "Enroll_Status": "active",
    },
    ignored=("Home_Phone", "FTEID", "EntryDate", "ExitDate", "Street", "City", "State", "Zip",
             "Mailing_Street", "Mailing_City", "Mailing_State", "Mailing_Zip",
             "Sched_NextYearGrade", "Next_School", "Sched_Scheduled", "Sched_YearOfGraduation",
             "TransferComment", "Family_Ident"),
)


class PowerSchoolContactRow(VisitorRow):
    #: the contacts export's key for contacts PowerSchool has not numbered yet
    new_contact_identifier: str | None = None
    #: ``Phone Number Priority Order``: which of a contact's phones is stored
    phone_priority: str | None = None


#: Fields of the contact itself (on its own row); the rest belong to a relationship row.
PERSON_FIELDS = ("first_name", "middle_name", "last_name", "sex", "email", "active")
_LINK_FIELDS = ("student_id", "relationship", "can_pickup", "has_custody",
                "emergency_contact")


def _priority(raw: dict[str, str], line: int) -> tuple[int, int]:
    order = raw.get("phone_priority", "")
    return (int(order) if order.isdigit() else 1_000_000, line)


def fold_contact_rows(records: Iterable[Record], file_name: str) -> Iterator[Record]:
    """One record per contact and student, from PowerSchool's rows per contact.

    The contact's own row (it has a name) becomes a record of its own, so problems in
    its details are reported on its line; each relationship row (it has a student)
    becomes a record carrying the contact's details too. Phone rows only give the
    phone of lowest priority order. A second row naming the same contact is a
    ``duplicate_key`` error. Records come out in line order.
    """
    rows = list(records)
    people: dict[str, tuple[int, dict[str, str]]] = {}
    phones: dict[str, list[tuple[tuple[int, int], str]]] = {}
    out: list[Record] = []
    for line, raw, problem in rows:
        contact = raw.get("visitor_id") or raw.get("new_contact_identifier")
        if problem is not None or contact is None:
            out.append((line, raw, problem))
            continue
        if "phone" in raw:
            phones.setdefault(contact, []).append((_priority(raw, line), raw["phone"]))
        if ("first_name" in raw or "last_name" in raw) and "student_id" not in raw:
            if contact in people:
                out.append((line, raw, Issue(
                    file=file_name, line=line, code="duplicate_key",
                    reason=f"contact {quote_value(contact)} already has its details on line "
                           f"{people[contact][0]}; send them once per contact")))
            else:
                people[contact] = (line, raw)
    for line, raw, problem in rows:
        contact = raw.get("visitor_id") or raw.get("new_contact_identifier")
        if problem is not None or contact is None:
            continue
        person = people.get(contact)
        details = {name: value for name, value in (person[1] if person else {}).items()
                   if name in PERSON_FIELDS}
        details["visitor_id"] = contact
        if contact in phones:
            details["phone"] = min(phones[contact])[1]
        if "student_id" in raw:  # a relationship row (it may also carry the details)
            link = {name: value for name, value in raw.items() if name in _LINK_FIELDS}
            own = {name: value for name, value in raw.items() if name in PERSON_FIELDS}
            out.append((line, {**details, **own, **link}, None))
        elif person is not None and person[0] == line:
            out.append((line, details, None))
    return iter(sorted(out, key=lambda record: record[0]))


POWERSCHOOL_VISITORS = vendor_layout(
    VISITORS, "visitors_powerschool", "visitors_powerschool.csv", PowerSchoolContactRow,
    description="PowerSchool contacts export (contacts module labels), several rows per "
                "contact: its own row, one per further phone, one per student relationship. "
                "Contact Allow School Pickup alone decides pickup; custody is stored as "
                "stated and never grants it.",
    columns={
        "New Contact Identifier": "new_contact_identifier",
        "Contact ID": "visitor_id",
        "First Name": "first_name",
        "Middle Name": "middle_name",
        "Last Name": "last_name",
        "Gender": "sex",
        "Is Active": "active",
        "Email Address": "email",
        "Phone Number Priority Order": "phone_priority",
        "phoneNumberAsEntered": "phone",
        "studentNumber": "student_id",
        "Relationship Type": "relationship",
        "Contact Has Custody": "has_custody",
        "Contact Allow School Pickup": "can_pickup",
        "Is Emergency Contact": "emergency_contact",
    },
    # the layout this file had before (one row per contact and student)
    aliases={"Contact ID": ("ContactID",), "First Name": ("First_Name",),
             "Last Name": ("Last_Name",), "Email Address": ("Email_Address",),
             "phoneNumberAsEntered": ("Phone",), "studentNumber": ("Student_Number",),
             "Relationship Type": ("Relationship",), "Contact Has Custody": ("Has_Custody",),
             "Contact Allow School Pickup": ("School_Pickup",),
             "Is Emergency Contact": ("Emergency_Contact",)},
    ignored=("Prefix", "Suffix", "Employer", "Contact Email Address ID",
             "Is Primary Email Address", "Phone Type", "Is Preferred", "Is SMS",
             "Contact Phone Number ID", "Address Type", "Street", "Line Two", "Unit", "City",
             "State", "Postal Code", "Contact Address ID", "Address Priority Order",
             "* NOT MAPPED *", "Contact Priority Order", "Student Contact ID",
             "Student Contact Detail ID", "Relationship Note",
             "STUDENTCONTACTDETAILCOREFIELDS.legalGuardian", "Contact Lives With",
             "Contact Receives Mailings"),
    regroup=fold_contact_rows,
)
