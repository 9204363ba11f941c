"""OneRoster zips end to end (FORMATS.md "OneRoster.zip", issue 3).

A hand-written 1.1 bulk roster stores exactly the schools, students, visitors
with their links and user accounts it maps to, and the same roster written as
1.2 (``roles.csv``) stores the same records; a delta changes only what it
names; a later bulk deactivates what it drops, within the safety hold; every
file error (manifest, member, zip safety) rejects the whole zip and changes
nothing; row errors name the member, line and OneRoster column and skip only
their row; a zip makes the run's students/visitors/users CSVs conflict.
Imports run on SQLite and PostgreSQL, through the CLI and the Importer;
``visitor-sync validate`` gives the same report.
"""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from tests.support import runs
from tests.support.oneroster import Roster, Row, symlink, write_bomb, write_zip
from tests.support.runs import database, issues, make_inbox, run_import, table_rows, write
from visitor_sync.cli import main
from visitor_sync.db.schema import KEY_SEPARATOR, Base, HeldFile
from visitor_sync.summary import ImportSummary

ZIP = "OneRoster.zip"
USERS = f"{ZIP}:users.csv"
MANIFEST = f"{ZIP}:manifest.csv"
#: a delta row's dateLastModified
STAMP = "2025-01-15T08:00:00.000Z"


def org(sourced_id: str, name: str, kind: str, identifier: str = "") -> Row:
    return {"sourcedId": sourced_id, "name": name, "type": kind, "identifier": identifier,
            "parentSourcedId": "" if kind == "district" else "org-district"}


def user(sourced_id: str, role: str, orgs: str, given: str, family: str, **cells: str) -> Row:
    """A 1.1 users.csv row (``as_1_2`` moves role and orgs to roles.csv)."""
    return {"sourcedId": sourced_id, "enabledUser": "true", "orgSourcedIds": orgs, "role": role,
            "username": sourced_id, "givenName": given, "familyName": family, **cells}


ORG_ROWS = [
    org("org-district", "Springfield USD", "district", "D100"),
    org("org-lincoln", "Lincoln Elementary", "school", "101"),
    org("org-roosevelt", "Roosevelt Middle", "school", "102"),
    org("org-annex", "Annex Academy", "school"),  # no identifier: School ID = sourcedId
]
USER_ROWS = [
    # students: linked from their own side (stu-1), both sides (stu-2), the guardian's (stu-3)
    user("stu-1", "student", "org-lincoln", "Ana", "Lopez", identifier="000101", grades="KG",
         email="Ana.Lopez@Students.Example.org", agentSourcedIds="par-1", enabledUser="TRUE",
         userIds="{LDAP:12},{LTI:15}"),
    user("stu-2", "student", "org-district,org-lincoln", "Ben", "Okafor", identifier="000102",
         grades="05", middleName="Obi", agentSourcedIds="gua-2"),
    user("stu-3", "student", "org-annex", "Cy", "Nguyen", grades="06,07"),
    user("stu-4", "student", "org-roosevelt", "Dee", "Kim", identifier="000104", grades="08"),
    # guardians, a relative and a parent linked to no one
    user("par-1", "parent", "org-district", "Maria", "Lopez", identifier="V001",
         email="maria.lopez@family.example.org", phone="555-010-0001"),
    user("gua-2", "guardian", "org-district", "Tom", "Okafor", sms="555-010-0002",
         agentSourcedIds="stu-2"),
    user("gua-3", "guardian", "org-district", "Mai", "Nguyen", identifier="V005",
         agentSourcedIds="stu-3"),
    user("rel-1", "relative", "org-district", "Lee", "Nguyen", identifier="V003",
         phone="555-010-0003", agentSourcedIds="stu-4"),
    user("par-2", "parent", "org-district", "Jo", "Kim", identifier="V004"),
    # staff
    user("tch-1", "teacher", "org-lincoln", "Ari", "Cohen", identifier="T1",
         email="Ari.Cohen@District.Example.org", phone="555-123-4567"),
    user("tch-2", "teacher", "org-lincoln,org-roosevelt", "Bea", "Stone",
         email="bea.stone@district.example.org"),
    user("aid-1", "aide", "org-annex", "Cal", "Diaz", email="cal.diaz@district.example.org"),
    user("adm-1", "administrator", "org-roosevelt", "Dana", "Reyes",
         email="dana.reyes@district.example.org"),
    user("adm-2", "administrator", "org-district", "Eve", "Park",
         email="eve.park@district.example.org"),
]
BY_ID = {row["sourcedId"]: row for row in USER_ROWS}
DEMOGRAPHIC_ROWS = [
    {"sourcedId": "stu-1", "birthDate": "2019-03-04", "sex": "female"},
    {"sourcedId": "stu-2", "birthDate": "2014-06-15", "sex": "male"},
    {"sourcedId": "stu-3", "birthDate": "2011-09-01"},
    {"sourcedId": "par-1", "birthDate": "1985-02-03", "sex": "female"},
    {"sourcedId": "gua-2", "birthDate": "1979-11-30", "sex": "male"},
]
DEMOGRAPHICS = {row["sourcedId"]: row for row in DEMOGRAPHIC_ROWS}

#: 1.2 spells some roles its own way
ROLE_1_2 = {"adm-1": "siteAdministrator", "adm-2": "districtAdministrator"}
#: roles.csv rows listed before a user's primary role: (role, org)
EARLIER_ROLES = {"tch-2": ("aide", "org-lincoln")}


def roster(users: Sequence[Row] = USER_ROWS, version: str = "1.1",
           demographics: Sequence[Row] = DEMOGRAPHIC_ROWS, orgs: Sequence[Row] = ORG_ROWS,
           modes: dict[str, str] | None = None) -> Roster:
    tables = {name: list(rows) for name, rows in (
        ("orgs", orgs), ("users", users), ("demographics", demographics)) if rows}
    v1_1 = Roster("1.1", tables, modes or {})
    return v1_1 if version == "1.1" else as_1_2(v1_1)


def as_1_2(v1_1: Roster, earlier: dict[str, tuple[str, str]] = EARLIER_ROLES) -> Roster:
    """The same roster in 1.2: role and orgs move to roles.csv (first org primary)."""
    users, roles = [], []
    for row in v1_1.tables["users"]:
        sourced_id, orgs = row["sourcedId"], [o for o in row["orgSourcedIds"].split(",") if o]
        role = ROLE_1_2.get(sourced_id, row["role"])
        held = [(*earlier[sourced_id], "secondary")] if sourced_id in earlier else []
        held += [(role, org, "primary" if n == 0 else "secondary") for n, org in enumerate(orgs)]
        roles += [{"sourcedId": f"{sourced_id}-r{n}", "userSourcedId": sourced_id,
                   "roleType": kind, "role": name, "orgSourcedId": org,
                   "status": row.get("status", ""),
                   "dateLastModified": row.get("dateLastModified", "")}
                  for n, (name, org, kind) in enumerate(held, start=1)]
        users.append({**{k: v for k, v in row.items() if k not in ("role", "orgSourcedIds")},
                      "primaryOrgSourcedId": orgs[0] if orgs else ""})
    return Roster("1.2", {**v1_1.tables, "users": users, "roles": roles},
                  {**v1_1.modes, "roles": v1_1.mode("users")})


def ordered(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows in the order ``table_rows`` returns them."""
    return sorted(rows, key=lambda row: tuple((value is not None, value) for value in row))


#: table -> (columns, rows) the clean roster stores, in 1.1 and 1.2 alike
EXPECTED = {
    "schools": (("school_id", "name", "sourced_id", "active"), [
        ("101", "Lincoln Elementary", "org-lincoln", True),
        ("102", "Roosevelt Middle", "org-roosevelt", True),
        ("org-annex", "Annex Academy", "org-annex", True)]),
    "students": (("student_id", "first_name", "last_name", "middle_name", "date_of_birth",
                  "grade", "school_id", "gender", "email", "sourced_id", "active"), [
        ("000101", "Ana", "Lopez", None, date(2019, 3, 4), "KG", "101", "female",
         "ana.lopez@students.example.org", "stu-1", True),
        ("000102", "Ben", "Okafor", "Obi", date(2014, 6, 15), "05", "101", "male", None,
         "stu-2", True),
        ("000104", "Dee", "Kim", None, None, "08", "102", None, None, "stu-4", True),
        ("stu-3", "Cy", "Nguyen", None, date(2011, 9, 1), "06", "org-annex", None, None,
         "stu-3", True)]),
    "visitors": (("visitor_id", "first_name", "last_name", "date_of_birth", "sex", "email",
                  "phone", "sourced_id", "active"), [
        ("V001", "Maria", "Lopez", date(1985, 2, 3), "female", "maria.lopez@family.example.org",
         "555-010-0001", "par-1", True),
        ("V003", "Lee", "Nguyen", None, None, None, "555-010-0003", "rel-1", True),
        ("V004", "Jo", "Kim", None, None, None, None, "par-2", True),
        ("V005", "Mai", "Nguyen", None, None, None, None, "gua-3", True),
        ("gua-2", "Tom", "Okafor", date(1979, 11, 30), "male", None, "555-010-0002", "gua-2",
         True)]),
    "visitor_student_links": (("visitor_id", "student_id", "relationship", "can_pickup",
                               "emergency_contact", "active"), [
        ("V001", "000101", "parent", True, False, True),
        ("V003", "000104", "relative", True, False, True),
        ("V005", "stu-3", "guardian", True, False, True),
        ("gua-2", "000102", "guardian", True, False, True)]),
    "users": (("email", "name", "role", "phone", "school_ids", "status", "sourced_id",
               "active"), [
        ("ari.cohen@district.example.org", "Ari Cohen", "teacher", "555-123-4567", "101",
         "invited", "tch-1", True),
        ("bea.stone@district.example.org", "Bea Stone", "teacher", None, "101;102", "invited",
         "tch-2", True),
        ("cal.diaz@district.example.org", "Cal Diaz", "operator", None, "org-annex", "invited",
         "aid-1", True),
        ("dana.reyes@district.example.org", "Dana Reyes", "site_administrator", None, "102",
         "invited", "adm-1", True),
        ("eve.park@district.example.org", "Eve Park", "administrator", None, None, "invited",
         "adm-2", True)]),
    "invitations": (("email", "name", "sent_at"), [
        ("ari.cohen@district.example.org", "Ari Cohen", None),
        ("bea.stone@district.example.org", "Bea Stone", None),
        ("cal.diaz@district.example.org", "Cal Diaz", None),
        ("dana.reyes@district.example.org", "Dana Reyes", None),
        ("eve.park@district.example.org", "Eve Park", None)]),
}
#: (file, member type) of each outcome of a zip with orgs.csv and users.csv, in run order
MEMBERS = [(f"{ZIP}:orgs.csv", "oneroster_orgs"), (USERS, "oneroster_students"),
           (USERS, "oneroster_guardians"), (USERS, "oneroster_staff")]


# -- running ------------------------------------------------------------------------------

@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    return make_inbox(tmp_path)


def cli_import(db_url: str, inbox: Path, *options: str) -> ImportSummary:
    """``visitor-sync import --format json`` of the inbox: the run summary it prints."""
    result = CliRunner().invoke(main, [
        "import", "--district", runs.DISTRICT, "--source", str(inbox), "--db", db_url,
        "--quiet-period", "0", "--format", "json", *options])
    assert result.exit_code == 0, result.output
    return ImportSummary.model_validate_json(result.stdout)


def validate(paths: Sequence[Path]) -> tuple[int, list[tuple[Any, ...]]]:
    """``visitor-sync validate --format json``: exit status and the report's entries."""
    result = CliRunner().invoke(main, ["validate", "--format", "json", *map(str, paths)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, [
        (entry["file"], entry["line"], entry["column"], entry["code"], entry["severity"])
        for entry in json.loads(result.stdout)]


def brief(found: Sequence[Any]) -> list[tuple[Any, ...]]:
    """``(file, line, column, code, severity)`` of issues."""
    return [(issue.file, issue.line, issue.column, issue.code, issue.severity)
            for issue in found]


def statuses(summary: ImportSummary) -> list[tuple[str, str | None, str]]:
    return [(outcome.file, outcome.type, outcome.status) for outcome in summary.files]


def import_clean(engine: Engine, tmp_path: Path, version: str = "1.1") -> None:
    """The clean roster imported (the state later runs start from)."""
    first = make_inbox(tmp_path, f"first-{version}")
    roster(version=version).write(first / ZIP)
    summary = run_import(engine, first)
    assert brief(issues(engine, summary)) == []


def stored(engine: Engine, tables: Sequence[str] = tuple(EXPECTED)) -> dict[str, list[Any]]:
    return {table: table_rows(engine, table, *EXPECTED[table][0]) for table in tables}


# -- what changed -------------------------------------------------------------------------

SYNCED = ("schools", "students", "visitors", "visitor_student_links", "users")
BOOKKEEPING = frozenset({"id", "district_id", "record_key", "created_at", "updated_at",
                         "deactivated_at"})
State = dict[str, dict[str, dict[str, Any]]]


def state(engine: Engine) -> State:
    """Every record of the synced tables, by table and record key."""
    with engine.connect() as connection:
        return {table: {row.record_key: row._asdict() for row in connection.execute(
            select(Base.metadata.tables[table]))} for table in SYNCED}


def changes(before: State, after: State) -> dict[str, dict[str, Any]]:
    """Per table and record key, each data column that changed as ``(old, new)`` (a new
    record: ``(None, value)`` for each value it has). A record written again with the same
    data shows its ``updated_at``; one deactivated without ``deactivated_at`` shows that;
    a record gone shows ``"gone"``."""
    found: dict[str, dict[str, Any]] = {}
    for table in SYNCED:
        old, new = before[table], after[table]
        diff: dict[str, Any] = {key: "gone" for key in old.keys() - new.keys()}
        for key, row in new.items():
            was = old.get(key, {})
            cells = {column: (was.get(column), value) for column, value in row.items()
                     if column not in BOOKKEEPING and was.get(column) != value}
            if was and not cells and row["updated_at"] != was["updated_at"]:
                cells["updated_at"] = "written again"
            if not row["active"] and row["deactivated_at"] is None:
                cells["deactivated_at"] = "missing"
            if cells:
                diff[key] = cells
        if diff:
            found[table] = diff
    return found


def new(**values: Any) -> dict[str, tuple[None, Any]]:
    """How :func:`changes` shows a record created with ``values``."""
    return {column: (None, value) for column, value in values.items()}


DEACTIVATED = {"active": (True, False)}


def link(visitor_id: str, student_id: str) -> str:
    return f"{visitor_id}{KEY_SEPARATOR}{student_id}"


# -- clean bulk rosters ---------------------------------------------------------------------

@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_bulk_roster_stores_exactly_its_records(db_url: str, inbox: Path,
                                                version: str) -> None:
    """Schools (district org left out), students with grade, school and demographics,
    guardians linked from either side, staff as invited accounts; sent again, nothing
    changes and no second invitation is queued."""
    zip_path = roster(version=version).write(inbox / ZIP)
    content = zip_path.read_bytes()
    summary = cli_import(db_url, inbox)
    assert sorted(path.name for path in inbox.iterdir()) == []
    with database(db_url) as engine:
        assert brief(issues(engine, summary)) == []
        assert [(o.file, o.type, o.status, o.created) for o in summary.files] == [
            (*member, "applied", created) for member, created in zip(MEMBERS, (3, 4, 5, 5),
                                                                     strict=True)]
        assert stored(engine) == {table: ordered(rows) for table, (_, rows) in EXPECTED.items()}
        before = state(engine)
        (inbox / ZIP).write_bytes(content)
        again = run_import(engine, inbox)
        assert [(o.status, o.created, o.updated, o.unchanged, o.deactivated)
                for o in again.files] == [("applied", 0, 0, rows, 0) for rows in (3, 4, 5, 5)]
        assert changes(before, state(engine)) == {}
        assert len(table_rows(engine, "invitations", "email")) == 5


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_validate_accepts_a_clean_roster(tmp_path: Path, version: str) -> None:
    assert validate([roster(version=version).write(tmp_path / ZIP)]) == (0, [])


def test_1_2_student_school_is_the_primary_role_org(db_url: str, inbox: Path) -> None:
    """A student with a secondary role at another school, listed first in roles.csv,
    belongs to the school of the primary role."""
    as_1_2(roster(), {"stu-1": ("student", "org-annex")}).write(inbox / ZIP)
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert brief(issues(engine, summary)) == []
        assert ("000101", "101") in table_rows(engine, "students", "student_id", "school_id")


#: ways a roster names gua-2 as the guardian of stu-2 and stu-3: sourcedId -> agentSourcedIds
SECOND_CHILD = {
    "from-the-guardian": {"gua-2": "stu-2,stu-3"},
    "from-the-students": {"gua-2": "", "stu-3": "gua-2"},
}


@pytest.mark.parametrize("name", SECOND_CHILD)
def test_guardian_of_several_students_has_a_link_each(db_url: str, inbox: Path,
                                                      name: str) -> None:
    """One visitor, one link per student (the users.csv row is one, its records two)."""
    agents = SECOND_CHILD[name]
    roster([{**row, "agentSourcedIds": agents[row["sourcedId"]]}
            if row["sourcedId"] in agents else row for row in USER_ROWS]).write(inbox / ZIP)
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert (brief(issues(engine, summary)), statuses(summary)) == (
            [], [(*member, "applied") for member in MEMBERS])
        assert table_rows(engine, "visitors", "visitor_id") == [
            ("V001",), ("V003",), ("V004",), ("V005",), ("gua-2",)]
        assert table_rows(engine, "visitor_student_links", "visitor_id", "student_id") == [
            ("V001", "000101"), ("V003", "000104"), ("V005", "stu-3"), ("gua-2", "000102"),
            ("gua-2", "stu-3")]


# -- deltas ---------------------------------------------------------------------------------

def delta_row(sourced_id: str, status: str = "active", **cells: str) -> Row:
    """A user of the clean roster as a delta row, with ``cells`` changed."""
    return {**BY_ID[sourced_id], "status": status, "dateLastModified": STAMP, **cells}


def new_guardian(student: str) -> Row:
    return user("gua-9", "guardian", "org-district", "Sam", "Lopez", identifier="V009",
                agentSourcedIds=student, status="active", dateLastModified=STAMP)


NEW_GUARDIAN = new(visitor_id="V009", first_name="Sam", last_name="Lopez", sourced_id="gua-9",
                   active=True)


def new_link(student_id: str) -> dict[str, Any]:
    return new(visitor_id="V009", student_id=student_id, relationship="guardian",
               can_pickup=True, emergency_contact=False, active=True)


@dataclass(frozen=True)
class Delta:
    """A users.csv delta (orgs absent) and what it must change."""

    users: list[Row]
    expected: dict[str, dict[str, Any]]
    #: demographics.csv rows sent as a delta too (absent when empty)
    demographics: list[Row] = field(default_factory=list)


DELTAS = {
    # FORMATS.md: update, add and tobedeleted (enabledUser=false is "active, system access
    # curtailed": no change); orgs.csv and demographics.csv absent; every record the
    # delta does not name stays as it was
    "update-add-delete": Delta(
        [delta_row("stu-1", givenName="Anabel"), new_guardian("stu-1"),
         delta_row("stu-4", status="tobedeleted"), delta_row("tch-1", enabledUser="false")],
        {"students": {"000101": {"first_name": ("Ana", "Anabel")}, "000104": DEACTIVATED},
         "visitors": {"V009": NEW_GUARDIAN},
         "visitor_student_links": {link("V009", "000101"): new_link("000101")}}),
    # OneRoster 1.1: 1.0's status "inactive" is read as "tobedeleted"
    "inactive-is-tobedeleted": Delta(
        [delta_row("stu-4", status="inactive"), delta_row("aid-1", status="inactive")],
        {"students": {"000104": DEACTIVATED},
         "users": {"cal.diaz@district.example.org": DEACTIVATED}}),
    # the rest isolate one rule each, on records whose School ID is their org's sourcedId
    "link-to-a-student-of-an-earlier-file": Delta(
        [delta_row("stu-3"), new_guardian("stu-2"), delta_row("aid-1")],
        {"visitors": {"V009": NEW_GUARDIAN},
         "visitor_student_links": {link("V009", "000102"): new_link("000102")}},
        [DEMOGRAPHICS["stu-3"]]),
    "demographics-absent-keeps-birth-dates": Delta(
        [delta_row("stu-3", givenName="Cyrus"), delta_row("par-1"), delta_row("aid-1")],
        {"students": {"stu-3": {"first_name": ("Cy", "Cyrus")}}}),
    "students-only": Delta(
        [delta_row("stu-3", givenName="Cyrus")],
        {"students": {"stu-3": {"first_name": ("Cy", "Cyrus")}}},
        [DEMOGRAPHICS["stu-3"]]),
}


@pytest.mark.parametrize("version", ["1.1", "1.2"])
@pytest.mark.parametrize("name", DELTAS)
def test_delta_changes_only_what_it_names(db_url: str, tmp_path: Path, name: str,
                                          version: str) -> None:
    """In 1.2 the delta's roles.csv carries the changed users' roles with their status."""
    delta = DELTAS[name]
    modes = {"users": "delta", "demographics": "delta" if delta.demographics else "absent"}
    inbox = make_inbox(tmp_path, "delta")
    roster(delta.users, demographics=delta.demographics, orgs=[], modes=modes,
           version=version).write(inbox / ZIP)
    with database(db_url) as engine:
        import_clean(engine, tmp_path, version)
        before = state(engine)
        summary = run_import(engine, inbox, max_deactivate_percent=50)
        assert (brief(issues(engine, summary)), statuses(summary),
                changes(before, state(engine))) == (
            [], [(USERS, f"{kind}_delta", "applied") for _, kind in MEMBERS[1:]],
            delta.expected)


# -- later bulks: full sync and the safety hold --------------------------------------------

def test_bulk_deactivates_what_it_drops(db_url: str, tmp_path: Path) -> None:
    """A student absent from a later bulk is deactivated with its links; identical rows
    are left untouched."""
    users = [{**row, "agentSourcedIds": ""} if row["sourcedId"] == "rel-1" else row
             for row in USER_ROWS if row["sourcedId"] != "stu-4"]
    inbox = make_inbox(tmp_path, "second")
    roster(users).write(inbox / ZIP)
    with database(db_url) as engine:
        import_clean(engine, tmp_path)
        before = state(engine)
        summary = cli_import(db_url, inbox, "--max-deactivate-percent", "50")
        assert brief(issues(engine, summary)) == []
        assert changes(before, state(engine)) == {
            "students": {"000104": DEACTIVATED},
            "visitor_student_links": {link("V003", "000104"): DEACTIVATED}}


def test_bulk_dropping_most_students_is_held_whole(db_url: str, tmp_path: Path) -> None:
    """Nothing from the zip is applied (not even its schools or staff), the zip moves to
    the held area, and approving it applies it."""
    users = [row for row in USER_ROWS if row["sourcedId"] not in ("stu-2", "stu-3", "stu-4")]
    inbox = make_inbox(tmp_path, "second")
    roster(users, orgs=[*ORG_ROWS, org("org-new", "New School", "school", "103")]).write(
        inbox / ZIP)
    with database(db_url) as engine:
        import_clean(engine, tmp_path)
        before = state(engine)
        summary = cli_import(db_url, inbox)
        assert statuses(summary) == [(*member, "held") for member in MEMBERS]
        students = next(o for o in summary.files if o.type == "oneroster_students")
        assert "3 of 4" in (students.held_reason or "")
        assert changes(before, state(engine)) == {}
        assert [str(path.relative_to(inbox)) for path in inbox.rglob("*") if path.is_file()] \
            == [f"held/{summary.run_id}/{ZIP}"]
        with engine.connect() as connection:
            assert list(connection.execute(select(
                HeldFile.file_name, HeldFile.file_type, HeldFile.state))) == [
                (ZIP, "oneroster", "pending")]
        approved = cli_import(db_url, inbox, "--approve-held")
        assert statuses(approved) == [(*member, "applied") for member in MEMBERS]
        assert table_rows(engine, "students", "student_id", "active") == [
            ("000101", True), ("000102", False), ("000104", False), ("stu-3", False)]
        assert ("103", "New School") in table_rows(engine, "schools", "school_id", "name")


# -- file errors ------------------------------------------------------------------------------

CLEAN = roster()
CLEAN_1_2 = roster(version="1.2")


def entries(base: Roster = CLEAN, *, without: Sequence[str] = (),
            replace: dict[str, bytes] | None = None,
            add: Sequence[tuple[str | zipfile.ZipInfo, bytes]] = ()) -> Callable[[Path], Path]:
    """A zip of ``base``'s members, some left out, replaced or added."""
    def make(path: Path) -> Path:
        members = {**base.members(), **(replace or {})}
        return write_zip(path, [*((name, content) for name, content in members.items()
                                  if name not in without), *add])
    return make


def raw(content: bytes) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        path.write_bytes(content)
        return path
    return make


def bomb(path: Path) -> Path:
    """users.csv inflating to 1 GiB from 1 MiB: under the total-size limit (2 GiB), over
    the compression-ratio limit (200)."""
    return write_bomb(path, CLEAN.members(), "users.csv", 1024)


@dataclass(frozen=True)
class FileError:
    make: Callable[[Path], Path]
    #: (file, line, column, code) of the one error
    expected: tuple[Any, ...]
    limits: dict[str, int] = field(default_factory=dict)
    #: text the reason must contain (the member a zip check refuses)
    mentions: str = ""


MISSING_USERS = Roster("1.1", {"orgs": ORG_ROWS}, {"users": "bulk"})
BAD_MODE = Roster("1.1", CLEAN.tables, {"users": "full"})
WITHOUT_GIVEN_NAME = CLEAN.table_bytes(
    "users", [column for column in CLEAN.header("users") if column != "givenName"])
NO_ROLES = Roster("1.2", {k: v for k, v in CLEAN_1_2.tables.items() if k != "roles"})

FILE_ERRORS = {
    "missing_manifest": FileError(entries(without=["manifest.csv"]),
                                  (ZIP, None, None, "missing_manifest")),
    "missing_member": FileError(
        MISSING_USERS.write, (MANIFEST, MISSING_USERS.manifest_line("file.users"), "value",
                              "missing_member")),
    "invalid_manifest": FileError(
        BAD_MODE.write, (MANIFEST, BAD_MODE.manifest_line("file.users"), "value",
                         "invalid_manifest")),
    "unsupported_version": FileError(
        entries(replace={"manifest.csv": CLEAN.members()["manifest.csv"].replace(
            b"oneroster.version,1.1", b"oneroster.version,2.0")}),
        (MANIFEST, CLEAN.manifest_line("oneroster.version"), "value", "unsupported_version")),
    "1.2-roles-declared-but-missing": FileError(
        entries(CLEAN_1_2, without=["roles.csv"]),
        (MANIFEST, CLEAN_1_2.manifest_line("file.roles"), "value", "missing_member")),
    "1.2-without-roles": FileError(NO_ROLES.write, (MANIFEST, None, None, "missing_member"),
                                   mentions="roles.csv"),
    "missing_column": FileError(entries(replace={"users.csv": WITHOUT_GIVEN_NAME}),
                                (USERS, 1, "givenName", "missing_column")),
    "invalid_zip_file": FileError(raw(b"PK\x03\x04 this is not a zip at all"),
                                  (ZIP, None, None, "invalid_zip_file")),
    "zip_bomb": FileError(bomb, (ZIP, None, None, "zip_bomb"), mentions="users.csv"),
    **{f"zip_unsafe_path-{label}": FileError(entries(add=[member]),
                                             (ZIP, None, None, "zip_unsafe_path"),
                                             mentions="evil.csv")
       for label, member in (("parent", ("../evil.csv", b"x")),
                             ("absolute", ("/tmp/evil.csv", b"x")),
                             ("windows-parent", ("..\\evil.csv", b"x")),
                             ("symlink", symlink("evil.csv", "/etc/passwd")))},
    "zip_nested_archive": FileError(entries(add=[("inner.zip", b"PK\x05\x06" + bytes(18))]),
                                    (ZIP, None, None, "zip_nested_archive"),
                                    mentions="inner.zip"),
    "zip_too_many_members": FileError(entries(), (ZIP, None, None, "zip_too_many_members"),
                                      {"zip_max_members": 3}),
    "zip_too_large": FileError(entries(), (ZIP, None, None, "zip_too_large"),
                               {"zip_max_uncompressed_bytes": 500}),
}


@pytest.mark.parametrize("name", FILE_ERRORS)
def test_file_error_rejects_the_whole_zip(db_url: str, tmp_path: Path, name: str) -> None:
    """One error naming the member (or the zip); nothing applied; the zip is removed;
    ``validate`` reports the same (when the default limits apply)."""
    case = FILE_ERRORS[name]
    inbox = make_inbox(tmp_path, "second")
    path = case.make(inbox / ZIP)
    expected = [(*case.expected, "error")]
    if not case.limits:
        assert validate([path]) == (1, expected)
    with database(db_url) as engine:
        import_clean(engine, tmp_path)
        before = state(engine)
        summary = run_import(engine, inbox, limits=case.limits)
        found = issues(engine, summary)
        assert (brief(found), statuses(summary), changes(before, state(engine))) == (
            expected, [(ZIP, "oneroster", "rejected")], {})
        assert case.mentions in found[0].reason
    assert list(inbox.iterdir()) == []


def test_zip_bomb_is_refused_without_inflating(db_url: str, inbox: Path) -> None:
    """Refused from the zip's directory: inflating 1 GiB (let alone reading it) would
    take well over the 2 s allowed."""
    bomb(inbox / ZIP)
    with database(db_url) as engine:
        started = time.perf_counter()
        summary = run_import(engine, inbox)
        elapsed = time.perf_counter() - started
        assert [issue.code for issue in issues(engine, summary)] == ["zip_bomb"]
        assert table_rows(engine, "students", "student_id") == []
    assert elapsed < 2, f"took {elapsed:.2f} s"


# -- row errors and warnings ------------------------------------------------------------------

BAD_USERS = [
    user("stu-5", "student", "org-lincoln", "Eli", "Bad", grades="03"),
    user("stu-6", "student", "org-lincoln", "Fay", "Grade", grades="Z9"),
    user("stu-7", "student", "", "Gus", "Noorg", grades="04"),
    user("tch-3", "teacher", "org-lincoln", "Hal", "Nomail"),
]
ROW_ERRORS = roster([*USER_ROWS, *BAD_USERS], demographics=[
    *DEMOGRAPHIC_ROWS, {"sourcedId": "stu-5", "birthDate": "2010-02-30"}])


def test_row_errors_skip_only_their_row(db_url: str, inbox: Path) -> None:
    """Each bad row is reported on its line and OneRoster column (a birth date on its
    demographics.csv line); every other record of the roster is stored; validate reports
    the same errors."""
    path = ROW_ERRORS.write(inbox / ZIP)
    expected = [(f"{ZIP}:demographics.csv", ROW_ERRORS.line_of("demographics", "stu-5"),
                 "birthDate", "invalid_date", "error")]
    expected += [(USERS, ROW_ERRORS.line_of("users", sourced_id), column, code, "error")
                 for sourced_id, column, code in (
                     ("stu-6", "grades", "invalid_grade"),
                     ("stu-7", "orgSourcedIds", "missing_value"),
                     ("tch-3", "email", "missing_value"))]
    assert validate([path]) == (1, expected)
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        found = issues(engine, summary)
        assert brief(found) == expected
        for issue in found:
            assert issue.reason.startswith(issue.column), issue
        assert [(o.status, o.rejected_rows) for o in summary.files] == [
            ("applied", 0), ("applied", 3), ("applied", 0), ("applied", 1)]
        assert stored(engine) == {table: ordered(rows) for table, (_, rows) in EXPECTED.items()}


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_unmapped_role_and_unknown_agent_warn(db_url: str, inbox: Path, version: str) -> None:
    """A counselor is skipped with a warning on the row (and column) holding the role;
    an agentSourcedIds entry naming nobody is ignored with a warning; the rest applies."""
    counselor = user("cns-1", "counselor", "org-lincoln", "Ivy", "Hart",
                     email="ivy.hart@district.example.org")
    users = [{**BY_ID["stu-1"], "agentSourcedIds": "par-1,ghost-9"}, *USER_ROWS[1:], counselor]
    zipped = roster(users, version=version)
    zipped.write(inbox / ZIP)
    role_at = ((USERS, zipped.line_of("users", "cns-1")) if version == "1.1"
               else (f"{ZIP}:roles.csv", zipped.line_of("roles", "cns-1-r1")))
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert sorted(brief(issues(engine, summary)), key=str) == sorted([
            (USERS, 2, "agentSourcedIds", "unknown_agent", "warning"),
            (*role_at, "role", "unmapped_role", "warning")], key=str)
        assert statuses(summary) == [(*member, "applied") for member in MEMBERS]
        assert stored(engine) == {table: ordered(rows) for table, (_, rows) in EXPECTED.items()}


# -- the conflict rule ------------------------------------------------------------------------

def test_zip_conflicts_with_students_visitors_and_users_csv(db_url: str, inbox: Path) -> None:
    """Any *.zip is a roster; the CSVs it replaces are rejected, employees.csv imports."""
    name = "sis-export.zip"
    roster().write(inbox / name)
    write(inbox, "students.csv", ("Student ID", "First Name", "Last Name", "Date of Birth",
                                  "Grade", "School ID"),
          [("999", "Zed", "Csv", "2015-01-01", "3", "101")])
    write(inbox, "visitors_powerschool.csv", ("Student_Number", "ContactID", "First_Name",
                                              "Last_Name"), [("000101", "C1", "Pat", "Doe")])
    write(inbox, "users.csv", ("Email", "Name", "Role"),
          [("csv.admin@district.example.org", "Csv Admin", "administrator")])
    write(inbox, "employees.csv", ("Employee ID", "First Name", "Last Name"),
          [("E1", "Dana", "Reyes")])
    replaced = ("students.csv", "users.csv", "visitors_powerschool.csv")
    conflicts = [(file, None, None, "conflicts_with_oneroster", "error") for file in replaced]
    assert validate(sorted(inbox.iterdir())) == (1, conflicts)
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        assert sorted(brief(issues(engine, summary))) == conflicts
        assert sorted(statuses(summary), key=str) == sorted([
            *((member.replace(ZIP, name), kind, "applied") for member, kind in MEMBERS),
            ("employees.csv", "employees", "applied"),
            *((file, file.removesuffix(".csv"), "rejected") for file in replaced)], key=str)
        assert stored(engine) == {table: ordered(rows) for table, (_, rows) in EXPECTED.items()}
        assert table_rows(engine, "employees", "employee_id", "active") == [("E1", True)]
    assert list(inbox.iterdir()) == []
