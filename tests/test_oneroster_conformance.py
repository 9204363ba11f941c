"""OneRoster 1.1 / 1.2 conformance (issue 11, part C), each rule as the 1EdTech spec has it.

Real public data first: the Ed-Fi LMS Toolkit's OneRoster samples, zipped as
published, store exactly their school, students and teachers (1.1) or are
refused with a message that says OneRoster 1.0 is not supported (1.0). Then
one regression test per rule on the hand-written roster of test_oneroster.py:
optional ``grades``, ``enabledUser=false``, 1.2 roles (secondary roles,
dates, administrator rights), orgs that are not schools, the manifest of
tables we never read, and errors that point at roles.csv / demographics.csv.
Every import runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.oneroster import Roster, Row, write_zip
from tests.support.runs import database, issues, make_inbox, run_import, table_rows
from tests.test_oneroster import (
    DEACTIVATED,
    EXPECTED,
    MANIFEST,
    MEMBERS,
    ORG_ROWS,
    USER_ROWS,
    USERS,
    ZIP,
    brief,
    changes,
    cli_import,
    import_clean,
    link,
    ordered,
    org,
    roster,
    state,
    statuses,
    stored,
    user,
    validate,
)

SAMPLES = Path(__file__).parent / "fixtures" / "edfi-lms-toolkit"
ROLES = f"{ZIP}:roles.csv"
YESTERDAY = (date.today() - timedelta(days=1)).isoformat()
TOMORROW = (date.today() + timedelta(days=1)).isoformat()


def zipped_sample(folder: Path, into: Path) -> Path:
    """A published sample folder as a OneRoster zip: every file at the root, unchanged."""
    return write_zip(into / ZIP, [(path.name, path.read_bytes())
                                  for path in sorted(folder.iterdir())])


def expected(table: str, changed: dict[str, dict[str, Any]] | None = None,
             added: list[tuple[Any, ...]] | None = None) -> list[tuple[Any, ...]]:
    """The clean roster's stored rows of ``table``, some changed (by their first column's
    value: column -> new value) and some added."""
    columns, rows = EXPECTED[table]
    changed = changed or {}
    return ordered([tuple(changed.get(row[0], {}).get(column, value)
                          for column, value in zip(columns, row, strict=True))
                    for row in rows] + (added or []))


def with_users(changed: dict[str, dict[str, str]], *added: Row) -> list[Row]:
    """The clean roster's users.csv rows with some cells changed, and more users."""
    return [{**row, **changed.get(row["sourcedId"], {})} for row in USER_ROWS] + list(added)


def with_roles(base: Roster, changed: dict[str, dict[str, str]] | None = None,
               added: tuple[Row, ...] = ()) -> Roster:
    """A 1.2 roster with roles.csv rows changed (by sourcedId) and added."""
    changed = changed or {}
    roles = [{**row, **changed.get(row["sourcedId"], {})} for row in base.tables["roles"]]
    return Roster("1.2", {**base.tables, "roles": [*roles, *added]}, base.modes)


def role(sourced_id: str, user_id: str, name: str, org_id: str, kind: str = "secondary",
         **cells: str) -> Row:
    return {"sourcedId": sourced_id, "userSourcedId": user_id, "roleType": kind, "role": name,
            "orgSourcedId": org_id, **cells}


# -- real public data ---------------------------------------------------------------------

EDFI_STUDENTS = [  # student_id, first, last, middle, birth date, sex, email (all grade 09)
    ("604863", "Mary", "Archer", None, date(1997, 5, 30), "female"),
    ("604874", "Kyle", "Hughes", None, date(1997, 7, 31), "male"),
    ("604918", "Peter", "Nash", "Ivan", date(1997, 1, 18), "male"),
    ("604927", "Larry", "Mahoney", None, date(1997, 3, 30), "male"),
    ("604938", "Roland", "Phillips", None, date(1997, 10, 30), "male"),
    ("604969", "Stephen", "Caldwell", None, date(1997, 12, 22), "male"),
    ("604974", "Olivia", "Hardy", "Doris", date(1997, 8, 28), "female"),
    ("605015", "Micheal", "Turner", None, date(1997, 4, 6), "male"),
]


def test_edfi_oneroster_1_1_sample_stores_its_roster(db_url: str, tmp_path: Path) -> None:
    """ClassLink's 1.1 bulk export as published by Ed-Fi: the district org is not a
    school; School and Student IDs are sourcedIds (no identifier); birth dates and sex
    come from demographics.csv; the two teachers become invited accounts; the tables we
    do not read (classes, enrollments...) change nothing; a second import writes nothing."""
    inbox = make_inbox(tmp_path)
    path = zipped_sample(SAMPLES / "oneroster-1.1", inbox)
    content = path.read_bytes()
    assert validate([path]) == (0, [])
    summary = cli_import(db_url, inbox)
    with database(db_url) as engine:
        assert brief(issues(engine, summary)) == []
        assert [(o.file, o.type, o.status, o.created) for o in summary.files] == [
            (*member, "applied", created) for member, created in zip(MEMBERS, (1, 8, 0, 2),
                                                                     strict=True)]
        assert table_rows(engine, "schools", "school_id", "name", "sourced_id", "active") == [
            ("255901001", "Grand Bend High School", "255901001", True)]
        assert table_rows(engine, "students", "student_id", "first_name", "last_name",
                          "middle_name", "date_of_birth", "gender", "grade", "school_id",
                          "email", "sourced_id", "active") == [
            (*student, "09", "255901001", f"{student[1]}.{student[2]}@studentgps.org".lower(),
             student[0], True) for student in EDFI_STUDENTS]
        assert table_rows(engine, "visitors", "visitor_id") == []
        assert table_rows(engine, "visitor_student_links", "visitor_id", "student_id") == []
        assert table_rows(engine, "users", "email", "name", "role", "school_ids", "status",
                          "sourced_id", "active") == [
            ("kelley.christian@studentgps.org", "Kelley Christian", "teacher", "255901001",
             "invited", "207270", True),
            ("sara.preston@studentgps.org", "Sara Preston", "teacher", "255901001", "invited",
             "207268", True)]
        before = state(engine)
        (inbox / ZIP).write_bytes(content)
        again = run_import(engine, inbox)
        assert [(o.status, o.created, o.updated, o.unchanged) for o in again.files] == [
            ("applied", 0, 0, rows) for rows in (1, 8, 0, 2)]
        assert changes(before, state(engine)) == {}


def test_edfi_oneroster_1_0_sample_is_refused_as_1_0(db_url: str, tmp_path: Path) -> None:
    """OneRoster 1.0 has no manifest and other column names (``agents``, demographics'
    ``userSourcedId``): it cannot be read exactly, so it is refused, saying why."""
    inbox = make_inbox(tmp_path)
    path = zipped_sample(SAMPLES / "oneroster-1.0", inbox)
    assert validate([path]) == (1, [(ZIP, None, None, "missing_manifest", "error")])
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        found = issues(engine, summary)
        assert brief(found) == [(ZIP, None, None, "missing_manifest", "error")]
        assert "OneRoster 1.0 is not supported" in found[0].reason
        assert "export the roster as OneRoster 1.1 or 1.2" in found[0].reason
        assert table_rows(engine, "students", "student_id") == []


def test_manifest_declaring_1_0_is_refused(db_url: str, tmp_path: Path) -> None:
    inbox = make_inbox(tmp_path)
    clean = roster()
    members = clean.members()
    members["manifest.csv"] = members["manifest.csv"].replace(b"oneroster.version,1.1",
                                                              b"oneroster.version,1.0")
    write_zip(inbox / ZIP, members.items())
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        found = issues(engine, summary)
        assert brief(found) == [(MANIFEST, clean.manifest_line("oneroster.version"), "value",
                                 "unsupported_version", "error")]
        assert "1.0 is not" in found[0].reason


# -- users.csv ----------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_student_without_grades_is_stored_with_grade_unknown(db_url: str, tmp_path: Path,
                                                             version: str) -> None:
    """``grades`` is optional in OneRoster: the student is imported, with no grade."""
    inbox = make_inbox(tmp_path)
    roster(with_users({"stu-4": {"grades": ""}}), version=version).write(inbox / ZIP)
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert brief(issues(engine, summary)) == []
        assert stored(engine, ["students"]) == {
            "students": expected("students", {"000104": {"grade": None}})}


def test_ceds_grade_codes_are_stored_as_sent(db_url: str, tmp_path: Path) -> None:
    """OneRoster's grades are CEDS codes (IT PR PK TK KG 01..13 PS UG Other), mapped
    through the canonical grade vocabulary; each is stored as the code itself."""
    codes = ["IT", "PR", "PK", "TK", "KG", "01", "13", "PS", "UG", "Other"]
    students = [user(f"stu-c{n}", "student", "org-lincoln", "Kid", code, grades=code)
                for n, code in enumerate(codes)]
    inbox = make_inbox(tmp_path)
    roster(with_users({}, *students)).write(inbox / ZIP)
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert brief(issues(engine, summary)) == []
        assert [row for row in table_rows(engine, "students", "last_name", "grade")
                if row[0] in codes] == sorted((code, code) for code in codes)


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_enabled_user_false_is_active_with_access_curtailed(db_url: str, tmp_path: Path,
                                                            version: str) -> None:
    """``enabledUser=false`` means "active, but system access curtailed": students,
    guardians and staff are stored active, exactly as with ``true`` (a delta turning it
    off is in test_oneroster's DELTAS)."""
    inbox = make_inbox(tmp_path)
    roster(with_users({row["sourcedId"]: {"enabledUser": "false"} for row in USER_ROWS}),
           version=version).write(inbox / ZIP)
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert brief(issues(engine, summary)) == []
        assert stored(engine) == {table: expected(table) for table in EXPECTED}


# -- 1.2 roles.csv ------------------------------------------------------------------------

CLEAN_1_2 = roster(version="1.2")


def test_secondary_guardian_role_links_a_teacher(db_url: str, tmp_path: Path) -> None:
    """A teacher (primary) who is also a parent (secondary) keeps the account and gets
    the visitor record and the link to the child named in agentSourcedIds."""
    base = roster(with_users({"tch-1": {"agentSourcedIds": "stu-4"}}), version="1.2")
    inbox = make_inbox(tmp_path)
    with_roles(base, added=(role("tch-1-r9", "tch-1", "parent", "org-district"),)).write(
        inbox / ZIP)
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert brief(issues(engine, summary)) == []
        assert stored(engine) == {
            **{table: expected(table) for table in EXPECTED},
            "visitors": expected("visitors", added=[(
                "T1", "Ari", "Cohen", None, None, "ari.cohen@district.example.org",
                "555-123-4567", "tch-1", True)]),
            "visitor_student_links": expected("visitor_student_links", added=[
                ("T1", "000104", "parent", True, False, True)])}


def test_role_dates_are_honoured(db_url: str, tmp_path: Path) -> None:
    """A role counts from its beginDate (inclusive) to its endDate (exclusive), as the 1.2
    Rostering information model's Role says: a student role ending today deactivates the
    student (and the link lapses), a secondary teacher role that ended takes its school
    off the account, a parent role beginning tomorrow makes an inactive visitor; a role
    that began today and ends tomorrow counts."""
    today = date.today().isoformat()
    inbox = make_inbox(tmp_path, "second")
    with_roles(CLEAN_1_2, {"stu-4-r1": {"endDate": today},
                           "tch-2-r3": {"endDate": YESTERDAY},
                           "par-2-r1": {"beginDate": TOMORROW},
                           "tch-1-r1": {"beginDate": today, "endDate": TOMORROW}}).write(
        inbox / ZIP)
    with database(db_url) as engine:
        import_clean(engine, tmp_path, "1.2")
        before = state(engine)
        summary = run_import(engine, inbox, max_deactivate_percent=50)
        assert brief(issues(engine, summary)) == []
        assert changes(before, state(engine)) == {
            "students": {"000104": DEACTIVATED},
            "visitors": {"V004": DEACTIVATED},
            "visitor_student_links": {link("V003", "000104"): DEACTIVATED},
            "users": {"bea.stone@district.example.org": {"school_ids": ("101;102", "101")}}}


def test_secondary_administrator_role_grants_nothing(db_url: str, tmp_path: Path) -> None:
    """Administrator rights come only from a primary role: a teacher with a secondary
    districtAdministrator role stays a teacher, a parent with a secondary
    siteAdministrator role gets no account, and a user whose only role is a secondary
    administrator one gets none either. Each ignored role is reported on its line."""
    extra = user("adm-9", "administrator", "", "Gil", "Moss",
                 email="gil.moss@district.example.org")
    base = roster(with_users({}, extra), version="1.2")
    added = (role("tch-1-r9", "tch-1", "districtAdministrator", "org-district"),
             role("par-2-r9", "par-2", "siteAdministrator", "org-lincoln"),
             role("adm-9-r9", "adm-9", "districtAdministrator", "org-district"))
    zipped = with_roles(Roster("1.2", {**base.tables, "roles": [
        row for row in base.tables["roles"] if row["userSourcedId"] != "adm-9"]}, base.modes),
        added=added)
    inbox = make_inbox(tmp_path)
    zipped.write(inbox / ZIP)
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        found = issues(engine, summary)
        assert sorted(brief(found)) == sorted(
            (ROLES, zipped.line_of("roles", row["sourcedId"]), "roleType",
             "secondary_admin_role", "warning") for row in added)
        assert "role 'districtAdministrator' is a secondary role" in found[0].reason
        assert stored(engine) == {table: expected(table) for table in EXPECTED}


def test_user_without_a_role_is_skipped_with_a_warning(db_url: str, tmp_path: Path) -> None:
    """A 1.2 user with no roles.csv row is nothing visitor-sync knows: skipped, said so on
    its users.csv line; in a bulk, the visitor it was before is deactivated."""
    zipped = Roster("1.2", {**CLEAN_1_2.tables, "roles": [
        row for row in CLEAN_1_2.tables["roles"] if row["userSourcedId"] != "par-2"]})
    inbox = make_inbox(tmp_path, "second")
    zipped.write(inbox / ZIP)
    with database(db_url) as engine:
        import_clean(engine, tmp_path, "1.2")
        before = state(engine)
        summary = run_import(engine, inbox, max_deactivate_percent=50)
        found = issues(engine, summary)
        assert brief(found) == [(USERS, zipped.line_of("users", "par-2"), None,
                                 "unmapped_role", "warning")]
        assert "no role in roles.csv" in found[0].reason
        assert changes(before, state(engine)) == {"visitors": {"V004": DEACTIVATED}}


def test_unreadable_role_rejects_the_user_on_its_roles_csv_line(db_url: str,
                                                                tmp_path: Path) -> None:
    """A role type or date that cannot be read is an error on that roles.csv line and
    column; the user's records are rejected, so they keep their stored values and are
    not deactivated by the bulk; everything else applies."""
    inbox = make_inbox(tmp_path, "second")
    broken = with_roles(CLEAN_1_2, {"stu-1-r1": {"beginDate": "2024-13-01"},
                                    "tch-1-r1": {"roleType": "main"}})
    broken = Roster("1.2", {**broken.tables, "users": [
        {**row, "givenName": "Changed"} for row in broken.tables["users"]]}, broken.modes)
    broken.write(inbox / ZIP)
    errors = [(ROLES, broken.line_of("roles", "stu-1-r1"), "beginDate", "invalid_date", "error"),
              (ROLES, broken.line_of("roles", "tch-1-r1"), "roleType", "invalid_value",
               "error")]
    with database(db_url) as engine:
        import_clean(engine, tmp_path, "1.2")
        summary = run_import(engine, inbox)
        found = issues(engine, summary)
        assert brief(found) == errors
        assert "'2024-13-01'" in found[0].reason and "'main'" in found[1].reason
        students = table_rows(engine, "students", "student_id", "first_name", "active")
        assert ("000101", "Ana", True) in students and ("000102", "Changed", True) in students
        assert ("ari.cohen@district.example.org", "Ari Cohen", True) in table_rows(
            engine, "users", "email", "name", "active")


# -- orgs ---------------------------------------------------------------------------------

STATE_ORGS = [{**org("org-state", "State of Example", "state"), "parentSourcedId": ""},
              {**ORG_ROWS[0], "parentSourcedId": "org-state"}, *ORG_ROWS[1:],
              {**org("org-lincoln-sped", "Lincoln Special Education", "department"),
               "parentSourcedId": "org-lincoln"}]


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_department_is_walked_up_to_its_school(db_url: str, tmp_path: Path,
                                               version: str) -> None:
    """A student or teacher placed at a department of Lincoln belongs to Lincoln; the
    state and district orgs above are not schools (and make none)."""
    users = with_users({"stu-1": {"orgSourcedIds": "org-lincoln-sped"},
                        "tch-1": {"orgSourcedIds": "org-lincoln-sped"}})
    inbox = make_inbox(tmp_path)
    roster(users, version=version, orgs=STATE_ORGS).write(inbox / ZIP)
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert brief(issues(engine, summary)) == []
        assert stored(engine) == {table: expected(table) for table in EXPECTED}


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_org_without_a_school_is_an_error_quoting_the_file(db_url: str, tmp_path: Path,
                                                           version: str) -> None:
    """A student (or a teacher) at the district (no school above it) or at an org nobody
    sent is an ``unknown_school`` error on the line and column that name the org,
    quoting the file's own sourcedId (not the district's identifier D100)."""
    strays = [user("stu-8", "student", "org-district", "Hal", "District", grades="03"),
              user("stu-9", "student", "org-sch-222-456", "Ida", "Nowhere", grades="03"),
              user("tch-8", "teacher", "org-district", "Ray", "District",
                   email="ray.district@district.example.org")]
    zipped = roster(with_users({}, *strays), version=version, orgs=STATE_ORGS)
    inbox = make_inbox(tmp_path)
    zipped.write(inbox / ZIP)
    stray_ids = [row["sourcedId"] for row in strays]
    where = ([(USERS, zipped.line_of("users", sid), "orgSourcedIds") for sid in stray_ids]
             if version == "1.1" else
             [(ROLES, zipped.line_of("roles", f"{sid}-r1"), "orgSourcedId")
              for sid in stray_ids])
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        found = issues(engine, summary)
        assert brief(found) == [(*at, "unknown_school", "error") for at in where]
        for district in (found[0], found[2]):
            assert "'org-district' is a district org" in district.reason
            assert "D100" not in district.reason
        assert "'org-sch-222-456' is not an org of orgs.csv" in found[1].reason
        assert stored(engine) == {table: expected(table) for table in EXPECTED}


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_school_deleted_in_the_same_zip_is_named_as_written(db_url: str, tmp_path: Path,
                                                            version: str) -> None:
    """orgs.csv deletes Annex Academy while a student and an aide are still placed there:
    each is an ``unknown_school`` error that quotes ``org-annex`` as written and says the
    school is being deleted (not "School ID is not an active school"); their records
    are kept as they were, the school is deactivated."""
    orgs = [{**row, "status": "tobedeleted"} if row["sourcedId"] == "org-annex" else row
            for row in ORG_ROWS]
    zipped = roster(version=version, orgs=orgs)
    inbox = make_inbox(tmp_path, "second")
    zipped.write(inbox / ZIP)
    where = ([(USERS, zipped.line_of("users", sid), "orgSourcedIds") for sid in
              ("stu-3", "aid-1")] if version == "1.1" else
             [(ROLES, zipped.line_of("roles", f"{sid}-r1"), "orgSourcedId") for sid in
              ("stu-3", "aid-1")])
    with database(db_url) as engine:
        import_clean(engine, tmp_path, version)
        before = state(engine)
        summary = run_import(engine, inbox, max_deactivate_percent=50)
        found = issues(engine, summary)
        assert brief(found) == [(*at, "unknown_school", "error") for at in where]
        for issue in found:
            assert "'org-annex' is a school that orgs.csv marks tobedeleted" in issue.reason
        assert changes(before, state(engine)) == {"schools": {"org-annex": DEACTIVATED}}


# -- the manifest -------------------------------------------------------------------------

def test_manifest_oddities_for_unread_tables_warn(db_url: str, tmp_path: Path) -> None:
    """A blank or unexpected value, or a declared file the zip lacks, for a table we never
    read is a warning; demographics.csv declared absent but present is not read (birth
    dates stay as stored) and that is reported. The rest of the zip applies."""
    clean = roster()
    changed_births = [{**row, "birthDate": "2001-01-01"} for row in clean.tables["demographics"]]
    zipped = Roster("1.1", {**clean.tables, "demographics": changed_births},
                    {"classes": "", "courses": "bulk", "enrollments": "full",
                     "demographics": "absent"})
    inbox = make_inbox(tmp_path, "second")
    zipped.write(inbox / ZIP)
    expected_issues = [(MANIFEST, zipped.manifest_line(f"file.{table}"), "value", code,
                        "warning") for table, code in (
                            ("classes", "manifest_value_ignored"),
                            ("courses", "manifest_value_ignored"),
                            ("demographics", "absent_member_ignored"),
                            ("enrollments", "manifest_value_ignored"))]
    assert validate([inbox / ZIP]) == (0, expected_issues)
    with database(db_url) as engine:
        import_clean(engine, tmp_path)
        before = state(engine)
        summary = run_import(engine, inbox)
        assert brief(issues(engine, summary)) == expected_issues
        assert statuses(summary) == [(*member, "applied") for member in MEMBERS]
        assert changes(before, state(engine)) == {}
