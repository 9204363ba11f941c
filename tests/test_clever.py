"""Clever's SFTP format end to end (issue 11), on SQLite and PostgreSQL.

Our own files in Clever's published structure (tests/fixtures/clever-structure): a
Clever students.csv is recognised by its header although our canonical file has the
same name; contacts become visitor links that never allow pickup; schools and
teachers are imported; sections and enrollments are reported as ignored, not errors.
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

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "clever-structure"
STUDENTS_HEADER = (FIXTURES / "students.csv").read_text().splitlines()[0].split(",")






def clever_students(*rows: dict[str, str]) -> list[list[str]]:
    return [[row.get(header, "") for header in STUDENTS_HEADER] for row in rows]


LUCIA = {"School_id": "1001", "Student_id": "S-5001", "Last_name": "Alvarez",
         "First_name": "Lucia", "Grade": "PreKindergarten", "DOB": "09/02/2021"}


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    return make_inbox(tmp_path)


@pytest.mark.parametrize("pickup_default", ["allow", "deny"])
def test_a_clever_upload_stores_students_contacts_schools_and_teachers(
        db_url: str, inbox: Path, pickup_default: str) -> None:
    for path in FIXTURES.glob("*.csv"):
        shutil.copyfile(path, inbox / path.name)
    with database(db_url) as engine:
        summary = run_import(engine, inbox, pickup_default=pickup_default)
        assert summary.result == "success"
        assert sorted((file.file, file.type, file.status) for file in summary.files) == [
            ("enrollments.csv", None, "ignored"), ("schools.csv", "schools_clever", "applied"),
            ("sections.csv", None, "ignored"), ("students.csv", "students_clever", "applied"),
            ("teachers.csv", "employees_clever", "applied")]
        assert located(engine, summary) == [("enrollments.csv", None, None, "unused_file"),
                                          ("sections.csv", None, None, "unused_file")]
        assert table_rows(engine, "students", "student_id", "first_name", "middle_name",
                          "grade", "school_id", "date_of_birth", "email", "active") == [
            ("S-5001", "Lucia", "Paz", "PK", "1001", date(2021, 9, 2), None, True),
            ("S-5002", "Diego", None, "KG", "1001", date(2020, 3, 14), None, True),
            ("S-5003", "Mia", None, "07", "1002", date(2013, 5, 14),
             "mia.chen@students.example.org", True)]
        assert table_rows(engine, "schools", "school_id", "name") == [
            ("1001", "Maple Grove Elementary"), ("1002", "Cedar Ridge Middle")]
        assert table_rows(engine, "employees", "employee_id", "email", "school_ids",
                          "title") == [
            ("T-301", "kfarouk@maple.example.org", "1001;1002", "Music Teacher"),
            ("T-302", "jpark@maple.example.org", "1002", "Science Teacher")]
        assert table_rows(engine, "visitors", "visitor_id", "first_name", "last_name", "email",
                          "phone") == [
            ("P-9001", "", "Rosa Alvarez", "rosa.alvarez@example.org", "2175550101"),
            ("P-9003", "", "Ines Ruiz", None, "2175550301")]
        # Clever never states pickup: off whatever the district's pickup_default
        assert table_rows(engine, "visitor_student_links", "record_key", "relationship",
                          "can_pickup", "emergency_contact", "active") == [
            (link_key("P-9001", "S-5001"), "Parent", False, False, True),
            (link_key("P-9001", "S-5002"), "Parent", False, False, True),
            (link_key("P-9003", "S-5001"), "Grandparent", False, True, True)]
    assert list(inbox.iterdir()) == []


def test_our_own_students_csv_is_not_taken_for_clevers(db_url: str, inbox: Path) -> None:
    """Snake-case headers alone do not make a file Clever's."""
    write(inbox, "students.csv", ("Student_id", "School_id", "First_name", "Last_name",
                                  "Grade", "DOB"),
          [("S1", "001", "Ana", "Lopez", "K", "2015-03-04")])
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert (outcome(summary, "students.csv").type, located(engine, summary)) == (
            "students", [])


def test_a_visitors_file_beside_a_clever_students_file_is_refused(db_url: str,
                                                                  inbox: Path) -> None:
    """Both would fully sync the visitors: the second is refused, the first kept."""
    write(inbox, "students.csv", STUDENTS_HEADER, clever_students(
        {**LUCIA, "Contact_sis_id": "P-9001", "Contact_name": "Rosa Alvarez"}))
    write(inbox, "visitors.csv", ("Visitor ID", "First Name", "Last Name", "Student ID",
                                  "Can Pickup"), [("V1", "Jon", "Alvarez", "S-5001", "1")])
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert outcome(summary, "visitors.csv").status == "rejected"
        assert located(engine, summary) == [("visitors.csv", None, None, "duplicate_source")]
        assert table_rows(engine, "visitor_student_links", "record_key", "can_pickup") == [
            (link_key("P-9001", "S-5001"), False)]


def test_contacts_without_an_id_and_disagreeing_rows_are_reported(db_url: str,
                                                                  inbox: Path) -> None:
    write(inbox, "students.csv", STUDENTS_HEADER, clever_students(
        {**LUCIA, "Contact_sis_id": "P-9001", "Contact_name": "Rosa Alvarez"},
        {**LUCIA, "Contact_name": "Tomas Alvarez"},
        {**LUCIA, "Grade": "Kindergarten", "Contact_sis_id": "P-9003",
         "Contact_name": "Ines Ruiz", "Contact_type": "Emergency"}))
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert located(engine, summary) == [("students.csv", 3, None, "missing_value"),
                                          ("students.csv", 4, "Grade", "conflicting_values")]
        assert table_rows(engine, "students", "student_id", "grade") == [("S-5001", "PK")]
        assert table_rows(engine, "visitor_student_links", "record_key",
                          "emergency_contact") == [(link_key("P-9001", "S-5001"), False),
                                                   (link_key("P-9003", "S-5001"), True)]


def test_a_changed_contact_type_and_a_stored_pickup_are_updated(db_url: str, inbox: Path,
                                                                tmp_path: Path) -> None:
    """Fields Clever's layout computes (emergency from Contact_type, pickup always off) are
    what the file says, also for links stored before: never kept from an earlier file."""
    write(inbox, "students.csv", ("Student ID", "First Name", "Last Name", "Date of Birth",
                                  "Grade", "School ID"),
          [("S-5001", "Lucia", "Alvarez", "2021-09-02", "PK", "1001")])
    write(inbox, "visitors.csv", ("Visitor ID", "First Name", "Last Name", "Student ID",
                                  "Can Pickup"), [("P-9001", "Rosa", "Alvarez", "S-5001", "1")])
    clever = make_inbox(tmp_path, "clever")
    write(clever, "students.csv", STUDENTS_HEADER, clever_students(
        {**LUCIA, "Contact_sis_id": "P-9001", "Contact_name": "Rosa Alvarez",
         "Contact_type": "Emergency"}))
    with database(db_url) as engine:
        run_import(engine, inbox)
        summary = run_import(engine, clever)
        assert located(engine, summary) == []
        assert table_rows(engine, "visitor_student_links", "record_key", "can_pickup",
                          "emergency_contact") == [(link_key("P-9001", "S-5001"), False, True)]
        assert table_rows(engine, "visitors", "visitor_id", "first_name", "last_name") == [
            ("P-9001", "", "Rosa Alvarez")]


def test_a_teacher_whose_rows_disagree_is_a_row_error(db_url: str, inbox: Path) -> None:
    header = (FIXTURES / "teachers.csv").read_text().splitlines()[0].split(",")
    write(inbox, "teachers.csv", header, [
        ("1001", "T-301", "", "", "kfarouk@maple.example.org", "Karim", "", "Farouk", "", "",
         ""),
        ("1002", "T-301", "", "", "karim@elsewhere.example.org", "Karim", "", "Farouk", "",
         "", "")])
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert located(engine, summary) == [("teachers.csv", 3, "Teacher_id", "duplicate_key")]
        assert table_rows(engine, "employees", "employee_id", "school_ids") == [
            ("T-301", "1001")]
