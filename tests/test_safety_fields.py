"""Safety fields fail closed (issue 11, item 5), on SQLite and PostgreSQL.

Who may pick a child up is never defaulted to "allowed" because a column was not
recognised: a header carrying an unmapped pickup/custody/emergency/court-order flag
refuses the file (``unmapped_safety_column``) and changes nothing; a file with no
pickup column takes the district's ``pickup_default``; an empty pickup cell is "no".
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.runs import (
    DISTRICT,
    database,
    issues,
    link_key,
    located,
    make_inbox,
    outcome,
    run_import,
    table_rows,
    write,
)
from visitor_sync.cli import main
from visitor_sync.safety import looks_like_safety_flag

ROSTER_HEADER = ("Student ID", "First Name", "Last Name", "Date of Birth", "Grade", "School ID")
ROSTER = [("S1", "Ana", "Lopez", "2015-03-04", "K", "001"),
          ("S2", "Ben", "Lopez", "2013-06-15", "2", "001")]
VISITOR_HEADER = ("Visitor ID", "First Name", "Last Name", "Student ID", "Relationship")




@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    return make_inbox(tmp_path)




def test_unmapped_pickup_and_custody_flags_refuse_the_file(db_url: str, inbox: Path,
                                                          tmp_path: Path) -> None:
    """The issue's case: PowerSchool's labels in a visitors file. Before, the flags were
    ignored as unknown columns and every link stored can_pickup = 1, including the
    contact marked pickup 0 and custody 0. Now the file is refused, every flag column is
    named, and the links stored by an earlier run keep their values."""
    write(inbox, "students.csv", ROSTER_HEADER, ROSTER)
    write(inbox, "visitors.csv", (*VISITOR_HEADER, "Can Pickup"),
          [("V1", "Maria", "Lopez", "S1", "Mother", "1"), ("V2", "Jon", "Lopez", "S1", "Father",
                                                           "0")])
    second = make_inbox(tmp_path, "second")
    write(second, "visitors.csv",
          (*VISITOR_HEADER[:4], "Relationship Type", "Contact Allow School Pickup",
           "Contact Has Custody", "Is Emergency Contact"),
          [("V1", "Maria", "Lopez", "S1", "Mother", "1", "1", "1"),
           ("V2", "Jon", "Lopez", "S1", "Father", "0", "0", "0")])
    with database(db_url) as engine:
        run_import(engine, inbox)
        summary = run_import(engine, second)
        assert outcome(summary, "visitors.csv").status == "rejected"
        assert located(engine, summary) == [
            ("visitors.csv", 1, "Contact Allow School Pickup", "unmapped_safety_column"),
            ("visitors.csv", 1, "Contact Has Custody", "unmapped_safety_column"),
            ("visitors.csv", 1, "Is Emergency Contact", "unmapped_safety_column")]
        reason = issues(engine, summary)[0].reason
        assert "'Contact Allow School Pickup'" in reason and "no permission is guessed" in reason
        assert table_rows(engine, "visitor_student_links", "record_key", "can_pickup",
                          "active") == [(link_key("V1", "S1"), True, True),
                                        (link_key("V2", "S1"), False, True)]


@pytest.mark.parametrize("column", ["Custody Flag", "Court Order", "Pickup Restricted",
                                    "No Contact Order", "Do Not Release"])
def test_a_students_file_with_an_unmapped_safety_flag_is_refused(db_url: str, inbox: Path,
                                                                 column: str) -> None:
    write(inbox, "students.csv", (*ROSTER_HEADER, column),
          [(*row, "Y") for row in ROSTER])
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert located(engine, summary) == [("students.csv", 1, column, "unmapped_safety_column")]
        assert table_rows(engine, "students", "record_key") == []


def test_contact_details_of_safety_people_are_only_unknown_columns(db_url: str,
                                                                   inbox: Path) -> None:
    """``Emergency Phone`` is a detail, not a flag: a warning, and the file applies."""
    write(inbox, "students.csv", (*ROSTER_HEADER, "Emergency Phone", "Custodial Parent Name"),
          [(*row, "555-201-3344", "Maria Lopez") for row in ROSTER])
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert located(engine, summary) == [
            ("students.csv", 1, "Emergency Phone", "unknown_column"),
            ("students.csv", 1, "Custodial Parent Name", "unknown_column")]
        assert table_rows(engine, "students", "record_key") == [("S1",), ("S2",)]


@pytest.mark.parametrize(("pickup_default", "stored"), [("allow", True), ("deny", False)])
def test_a_file_without_pickup_column_takes_the_district_default(
        db_url: str, inbox: Path, pickup_default: str, stored: bool) -> None:
    write(inbox, "students.csv", ROSTER_HEADER, ROSTER)
    write(inbox, "visitors.csv", VISITOR_HEADER,
          [("V1", "Maria", "Lopez", "S1", "Mother"), ("V1", "Maria", "Lopez", "S2", "Mother")])
    with database(db_url) as engine:
        summary = run_import(engine, inbox, pickup_default=pickup_default)
        assert located(engine, summary) == []
        assert table_rows(engine, "visitor_student_links", "record_key", "can_pickup") == [
            (link_key("V1", "S1"), stored), (link_key("V1", "S2"), stored)]


def test_a_file_without_pickup_column_never_lifts_a_stored_refusal(
        db_url: str, inbox: Path, tmp_path: Path) -> None:
    """The default is for new links only: a link an earlier file refused stays refused
    when a later file has no pickup column, even with pickup_default allow (a column left
    out means "no information"); a new link of that file gets the default."""
    write(inbox, "students.csv", ROSTER_HEADER, ROSTER)
    write(inbox, "visitors.csv", (*VISITOR_HEADER, "Can Pickup"),
          [("V1", "Maria", "Lopez", "S1", "Mother", "0")])
    later = make_inbox(tmp_path, "later")
    write(later, "visitors.csv", VISITOR_HEADER, [("V1", "Maria", "Lopez", "S1", "Mother"),
                                                  ("V1", "Maria", "Lopez", "S2", "Mother")])
    with database(db_url) as engine:
        run_import(engine, inbox)
        summary = run_import(engine, later, pickup_default="allow")
        assert located(engine, summary) == []
        assert table_rows(engine, "visitor_student_links", "record_key", "can_pickup") == [
            (link_key("V1", "S1"), False), (link_key("V1", "S2"), True)]


def test_the_cli_takes_the_pickup_default(db_url: str, inbox: Path) -> None:
    """``visitor-sync import --pickup-default deny`` (the operator sets it in the config)."""
    write(inbox, "students.csv", ROSTER_HEADER, ROSTER)
    write(inbox, "visitors.csv", VISITOR_HEADER, [("V1", "Maria", "Lopez", "S1", "Mother")])
    result = CliRunner().invoke(main, [
        "import", "--district", DISTRICT, "--source", str(inbox), "--db", db_url,
        "--quiet-period", "0", "--pickup-default", "deny"])
    assert result.exit_code == 0, result.output
    with database(db_url) as engine:
        assert table_rows(engine, "visitor_student_links", "record_key", "can_pickup") == [
            (link_key("V1", "S1"), False)]


@pytest.mark.parametrize("pickup_default", ["allow", "deny"])
def test_a_present_pickup_column_decides_and_an_empty_cell_means_no(
        db_url: str, inbox: Path, pickup_default: str) -> None:
    write(inbox, "students.csv", ROSTER_HEADER, ROSTER)
    write(inbox, "visitors.csv", (*VISITOR_HEADER, "Can Pickup"),
          [("V1", "Maria", "Lopez", "S1", "Mother", "1"),
           ("V1", "Maria", "Lopez", "S2", "Mother", ""),
           ("V2", "Jon", "Lopez", "S1", "Father", "0")])
    with database(db_url) as engine:
        summary = run_import(engine, inbox, pickup_default=pickup_default)
        assert located(engine, summary) == []
        assert table_rows(engine, "visitor_student_links", "record_key", "can_pickup") == [
            (link_key("V1", "S1"), True), (link_key("V1", "S2"), False),
            (link_key("V2", "S1"), False)]


FLAGS = ["Contact Allow School Pickup", "Contact Has Custody", "Is Emergency Contact",
         "Pickup Authorized", "Custodial", "CourtOrder", "restraining_order", "No-Contact",
         "Emergency", "Can Pick Up", "STUDENTCONTACTDETAILCOREFIELDS.custody", "Custody Valid",
         "Pickup Authorized Yes/No"]
NOT_FLAGS = ["Emergency Phone", "Emergency Contact Name", "Custodial Parent Email",
             "Emergency Contact Priority Order", "Emergency Contact ID", "EmergencyContactNumber",
             "Emergency_Contact_Num", "Relationship Type",
             "Contact Lives With", "Contact Receives Mailings", "Photo Release", "Guardian Name",
             "Home_Phone", "Enroll_Status", "Pickup Stop", "PM Pickup Time", "Bus Pickup Location"]


@pytest.mark.parametrize("header", FLAGS)
def test_safety_flags_are_recognised(header: str) -> None:
    assert looks_like_safety_flag(header)


@pytest.mark.parametrize("header", NOT_FLAGS)
def test_contact_details_are_not_safety_flags(header: str) -> None:
    assert not looks_like_safety_flag(header)
