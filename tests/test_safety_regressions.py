"""Regressions from the data-safety audit: each once lost, blocked or half-applied data."""

import zipfile

from tests.support.runs import database, issues, make_inbox, outcome, run_import, table_rows, write
from visitor_sync.summary import FileStatus

STUDENTS = ("Student ID", "First Name", "Last Name", "Date of Birth", "Grade", "School ID")
BUS = ("Student ID", "School ID", "Route", "Direction", "Stop Time")
VISITORS = ("Visitor ID", "First Name", "Last Name", "Student ID")


def students(count: int, bad_grades: int = 0) -> list[list[str]]:
    return [[f"S{n:05d}", "Ann", "Lee", "2015-01-02", "Z" if n < bad_grades else "3", "001"]
            for n in range(count)]


def test_a_file_with_thousands_of_row_errors_is_applied_and_reports_them_all(db_url, tmp_path):
    """PostgreSQL once hung: issues were written on the connection still loading the stage."""
    inbox = make_inbox(tmp_path)
    write(inbox, "students.csv", STUDENTS, students(3000, bad_grades=2500))
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        result = outcome(summary, "students.csv")
        assert (result.status, result.created, result.errors) == (FileStatus.APPLIED, 500, 2500)
        assert len(issues(engine, summary, "students.csv")) == 2500


def test_a_held_file_keeps_every_issue(db_url, tmp_path):
    """The safety hold's rollback once took the issues written before it with it."""
    inbox = make_inbox(tmp_path)
    write(inbox, "students.csv", STUDENTS, students(100))
    with database(db_url) as engine:
        run_import(engine, inbox)
        write(inbox, "students.csv", STUDENTS, students(40, bad_grades=1500)[:40])
        summary = run_import(engine, inbox)
        result = outcome(summary, "students.csv")
        assert (result.status, result.errors) == (FileStatus.HELD, 40)
        assert len(issues(engine, summary, "students.csv")) == 40


def test_an_error_row_protects_a_record_whose_key_the_validators_normalise(db_url, tmp_path):
    """Direction ``AM`` is stored ``to_school``: a row in error must still find its record."""
    inbox = make_inbox(tmp_path)
    write(inbox, "students.csv", STUDENTS, students(3))
    bus = [[f"S{n:05d}", "001", "R1", "AM", "7:05 AM"] for n in range(3)]
    write(inbox, "bus_schedule.csv", BUS, bus)
    with database(db_url) as engine:
        run_import(engine, inbox)
        write(inbox, "students.csv", STUDENTS, students(3))
        write(inbox, "bus_schedule.csv", BUS, [[*bus[0][:4], "25:99"], *bus[1:]])
        result = outcome(run_import(engine, inbox, max_deactivate_percent=100),
                         "bus_schedule.csv")
        assert (result.rejected_rows, result.deactivated) == (1, 0)
        assert table_rows(engine, "bus_assignments", "active") == [(True,)] * 3


def test_losing_most_links_holds_the_visitors_file(db_url, tmp_path):
    """A visitors.csv without its Student ID column would drop every pickup permission."""
    inbox = make_inbox(tmp_path)
    write(inbox, "students.csv", STUDENTS, students(20))
    write(inbox, "visitors.csv", VISITORS, [[f"V{n}", "Pat", "Lee", f"S{n:05d}"]
                                            for n in range(20)])
    with database(db_url) as engine:
        run_import(engine, inbox)
        write(inbox, "visitors.csv", VISITORS[:3], [[f"V{n}", "Pat", "Lee"] for n in range(20)])
        result = outcome(run_import(engine, inbox), "visitors.csv")
        assert result.status is FileStatus.HELD
        assert "visitor_student_links" in (result.held_reason or "")
        assert table_rows(engine, "visitor_student_links", "active") == [(True,)] * 20


def test_a_zip_with_nothing_to_apply_does_not_block_the_district(db_url, tmp_path):
    """A manifest marking every table absent once crashed every run of the district."""
    inbox = make_inbox(tmp_path)
    with zipfile.ZipFile(inbox / "OneRoster.zip", "w") as archive:
        archive.writestr("manifest.csv", "propertyName,value\noneroster.version,1.1\n"
                                         "file.users,absent\nfile.orgs,absent\n")
    write(inbox, "employees.csv", ("Employee ID", "First Name", "Last Name"), [["E1", "Al", "Bo"]])
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert outcome(summary, "OneRoster.zip").status is FileStatus.APPLIED
        assert outcome(summary, "employees.csv").created == 1
        assert sorted(path.name for path in inbox.iterdir()) == []
