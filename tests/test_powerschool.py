"""PowerSchool's real exports end to end (issue 11), on SQLite and PostgreSQL.

The MIT-licensed examples of mennotech/fsenrollment-pssync are imported exactly as
published, and our own files of the same structure cover the flags and codes those
examples do not hold. Every test asserts what is stored, not only "no error".
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from tests.support.runs import (
    database,
    link_key,
    located,
    make_inbox,
    outcome,
    run_import,
    table_rows,
    write,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PUBLISHED = FIXTURES / "fsenrollment-pssync"
OURS = FIXTURES / "powerschool-structure"
CONTACTS_HEADER = (PUBLISHED / "parents_example.csv").read_text().splitlines()[0].split(",")






@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    return make_inbox(tmp_path)


def test_published_examples_import_exactly(db_url: str, inbox: Path) -> None:
    """The files as published: 19 students, 22 contacts over 71 rows, 32 relationships;
    no issue at all (their extra columns are PowerSchool's, read and not imported)."""
    shutil.copyfile(PUBLISHED / "students_example.csv", inbox / "students_powerschool.csv")
    shutil.copyfile(PUBLISHED / "parents_example.csv", inbox / "visitors_powerschool.csv")
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert located(engine, summary) == []
        students = outcome(summary, "students_powerschool.csv")
        contacts = outcome(summary, "visitors_powerschool.csv")
        assert (students.status, students.created) == ("applied", 19)
        # 22 contact rows + 32 relationship rows become records; 17 phone-only rows fold in
        assert (contacts.status, contacts.rows_read, contacts.created) == ("applied", 54, 22)
        stored = {row[0]: row[1:] for row in table_rows(
            engine, "students", "student_id", "first_name", "middle_name", "last_name",
            "grade", "gender", "date_of_birth", "school_id", "active")}
        assert len(stored) == 19 and all(row[-1] for row in stored.values())
        assert stored["313202"][:6] == ("Arden", "Skye", "Griffin", "12", "F",
                                        date(2007, 6, 19))
        assert stored["416001"][3] == "KG"  # Grade_Level 0
        assert stored["355102"][3:] == ("03", "F", date(2017, 4, 5),
                                        "100", True)
        assert table_rows(engine, "schools", "school_id") == [("100",), ("200",), ("300",)]
        # Elliot Vaughn: his row, two more phone rows, one relationship row
        vaughn = "87c3fcca-99aa-11ec-b1e3-025d0f476dca"
        assert [row[1:] for row in table_rows(
            engine, "visitors", "visitor_id", "first_name", "last_name", "sex", "email",
            "phone", "active") if row[0] == vaughn] == [
            ("Elliot", "Vaughn", "M", "elliot.vaughn39@yahoo.com", "754-295-7089", True)]
        links = {row[0]: row[1:] for row in table_rows(
            engine, "visitor_student_links", "record_key", "relationship", "can_pickup",
            "has_custody", "emergency_contact", "active")}
        assert len(links) == 32
        assert links[link_key(vaughn, "324403")] == ("Father", True, True, True, True)
        # Quinn Ramsey's relationships: line 18 after her own row, lines 20 and 22 after
        # other contacts' rows
        ramsey = "d39a819e-e5a3-11ec-b1e3-025d0f476dca"
        assert {key for key in links if key.startswith(ramsey)} == {
            link_key(ramsey, "396301"), link_key(ramsey, "396302"), link_key(ramsey, "396303")}


def test_our_exports_store_every_flag_as_stated(db_url: str, inbox: Path) -> None:
    """Pickup is Contact Allow School Pickup alone (custody stored, never granting it);
    the phone of priority 1 wins wherever it is; Enroll_Status other than 0 is inactive;
    -2/-1/0 are pre-K and kindergarten."""
    for name in ("students_powerschool.csv", "visitors_powerschool.csv"):
        shutil.copyfile(OURS / name, inbox / name)
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert located(engine, summary) == []
        assert table_rows(engine, "students", "student_id", "grade", "school_id", "active") == [
            ("700101", "KG", "100", True), ("700102", "PK", "100", True),
            ("700103", "PK", "100", False), ("700104", "12", "300", False),
            ("700105", "07", "200", False)]
        rosa, tomas, ines, paz = (f"0c1d2e3f-000{n}-4a00-8000-00000000000{n}" for n in "1234")
        assert table_rows(engine, "visitors", "visitor_id", "first_name", "phone", "email",
                          "active") == [
            (rosa, "Rosa", "217-555-0101", "rosa.alvarez@example.org", True),
            (tomas, "Tomas", "217-555-0201", None, True),
            (ines, "Ines", "217-555-0301", "ines.ruiz@example.org", False),
            (paz, "Paz", "217-555-0401", "paz.moreno@example.org", True)]
        assert table_rows(engine, "visitor_student_links", "record_key", "relationship",
                          "can_pickup", "has_custody", "emergency_contact", "active") == [
            (link_key(rosa, "700101"), "Mother", True, True, True, True),
            (link_key(rosa, "700102"), "Mother", False, True, False, True),
            (link_key(tomas, "700101"), "Father", False, False, True, True),
            (link_key(ines, "700102"), "Grandmother", True, False, True, False)]


def contacts_rows(*rows: dict[str, str]) -> list[list[str]]:
    return [[row.get(header, "") for header in CONTACTS_HEADER] for row in rows]


def test_a_relationship_without_its_contact_and_a_repeated_contact_are_row_errors(
        db_url: str, inbox: Path) -> None:
    """Nothing is guessed: a relationship row whose contact has no row of its own misses
    the names; a contact's second own row is a duplicate. Other contacts apply."""
    shutil.copyfile(OURS / "students_powerschool.csv", inbox / "students_powerschool.csv")
    write(inbox, "visitors_powerschool.csv", CONTACTS_HEADER, contacts_rows(
        {"New Contact Identifier": "C1", "First Name": "Rosa", "Last Name": "Alvarez",
         "Is Active": "1"},
        {"New Contact Identifier": "C2", "studentNumber": "700101",
         "Relationship Type": "Aunt", "Contact Allow School Pickup": "1"},
        {"New Contact Identifier": "C1", "First Name": "Rosa", "Last Name": "Alvares"},
        {"New Contact Identifier": "C1", "studentNumber": "700101",
         "Relationship Type": "Mother", "Contact Allow School Pickup": "1"}))
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert located(engine, summary) == [
            ("visitors_powerschool.csv", 3, "First Name", "missing_value"),
            ("visitors_powerschool.csv", 3, "Last Name", "missing_value"),
            ("visitors_powerschool.csv", 4, None, "duplicate_key")]
        assert table_rows(engine, "visitors", "visitor_id", "last_name") == [("C1", "Alvarez")]
        assert table_rows(engine, "visitor_student_links", "record_key", "can_pickup") == [
            (link_key("C1", "700101"), True)]
