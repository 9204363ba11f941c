"""The OneRoster container: a zip's manifest and tables turned into member rows.

Two passes over ``users.csv`` (and one over ``orgs.csv``, ``roles.csv`` and
``demographics.csv``): the first learns who is who (a sourcedId's roles and
key, the orgs, a birth date) so the second can emit each member's rows as
canonical records: students, guardians once per linked student (a link named
by either side counts), staff as accounts. Only those lookup maps are held in
memory; rows stream. Problems found in roles.csv or demographics.csv are
reported on their own file and line, and reject every record of that user.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from pydantic_core import PydanticCustomError

from visitor_sync.config import Limits
from visitor_sync.csvfile import CsvTable, inspect_file, normalise_header
from visitor_sync.db.schema import School, Student, Visitor
from visitor_sync.filetypes.base import FileType, KnownRecords
from visitor_sync.issues import FileRejected, Issue, quote_value
from visitor_sync.oneroster import types
from visitor_sync.oneroster.manifest import NO_MANIFEST, Manifest, read_manifest
from visitor_sync.oneroster.orgs import Org, Orgs
from visitor_sync.oneroster.roles import (
    DELETED_STATUSES,
    GUARDIAN_ROLES,
    MAPPED_ROLES,
    STAFF_ROLES,
    STUDENT_ROLES,
    Person,
    Role,
    any_in_effect,
    role_name,
)
from visitor_sync.oneroster.zipsafe import extracted
from visitor_sync.validation import ColumnMap, Member, Record
from visitor_sync.values import parse_birth_date, parse_date

#: columns each table must have, as the OneRoster specification spells them
REQUIRED = {
    "manifest.csv": ("propertyName", "value"),
    "orgs.csv": ("sourcedId", "name", "type"),
    "users.csv": ("sourcedId", "givenName", "familyName"),
    "roles.csv": ("userSourcedId", "roleType", "role", "orgSourcedId"),
    "demographics.csv": ("sourcedId", "birthDate"),
}
#: what a zip without demographics leaves as it is
DEMOGRAPHIC_COLUMNS = frozenset({"date_of_birth", "gender", "sex"})
ROLE_TYPES = ("primary", "secondary")


def split_list(value: str) -> list[str]:
    """OneRoster multi-valued fields: ``a,b`` (also ``{LDAP:12},{LTI:15}`` keeps its items)."""
    return [item.strip() for item in value.split(",") if item.strip()]


class OneRoster:
    """``OneRoster.zip`` (any ``*.zip``): OneRoster 1.1 or 1.2 CSV bindings."""

    name = "oneroster"
    member_types = types.BULK_TYPES + types.DELTA_TYPES
    replaces = ("students", "visitors", "users")
    conflict_code = "conflicts_with_oneroster"

    def matches(self, file_name: str) -> bool:
        return file_name.lower().endswith(".zip")

    @contextmanager
    def members(self, path: Path, file_name: str, limits: Limits,
                known: KnownRecords) -> Iterator[list[Member]]:
        with tempfile.TemporaryDirectory(prefix="visitor-sync-zip-") as scratch, \
                extracted(path, Path(scratch), limits) as files:
            yield _Roster(files, file_name, limits, known).members()


class _Roster:
    def __init__(self, files: dict[str, Path], zip_name: str, limits: Limits,
                 known: KnownRecords) -> None:
        self.files = files
        self.zip_name = zip_name
        self.limits = limits
        self.known = known
        self.today = date.today()
        self.manifest = self._manifest()
        self.orgs = Orgs()
        self.people: dict[str, Person] = {}
        self.links: dict[str, dict[str, None]] = {}  # guardian sourcedId -> student sourcedIds
        self.births: dict[str, tuple[str, str]] = {}  # sourcedId -> (birthDate, sex)
        #: sourcedId -> the first problem roles.csv or demographics.csv has with the user
        self.problems: dict[str, Issue] = {}
        self.warnings: list[Issue] = []  # about users.csv and roles.csv rows
        self.known_guardians: set[str] = set()

    def label(self, table: str) -> str:
        return f"{self.zip_name}:{table}"

    # -- reading tables -----------------------------------------------------------------

    @contextmanager
    def _table(self, name: str) -> Iterator[Iterator[tuple[int, dict[str, str]]]]:
        """Rows of a member as ``(line, {normalised header: value})``."""
        path = self.files[name]
        label = self.label(name)
        try:
            facts = inspect_file(path, self.limits)
            with CsvTable(path, facts.encoding, self.limits) as table:
                headers = [normalise_header(header) for header in table.header]
                missing = [column for column in REQUIRED.get(name, ())
                           if normalise_header(column) not in headers]
                if missing:
                    raise FileRejected.all_of([
                        ("missing_column", f"the required column {column!r} is missing from "
                         f"{name}", table.header_line, column) for column in missing])
                yield ((line, _row(headers, cells)) for line, cells in table.rows())
        except FileRejected as rejected:
            rejected.file = label
            raise

    def _manifest(self) -> Manifest:
        if "manifest.csv" not in self.files:
            raise FileRejected("missing_manifest", NO_MANIFEST)
        with self._table("manifest.csv") as rows:
            return read_manifest(rows, self.files.keys(), self.label("manifest.csv"))

    def _mode(self, table: str) -> str:
        return self.manifest.mode(table)

    def _reads(self, table: str) -> bool:
        return self._mode(table) != "absent"

    def _problem(self, table: str, line: int, column: str, code: str, reason: str) -> Issue:
        return Issue(file=self.label(table), line=line, column=column, code=code,
                     reason=f"{column} {reason}")

    # -- the first pass: who is who ------------------------------------------------------

    def _learn(self) -> None:
        if self._reads("orgs.csv"):
            with self._table("orgs.csv") as rows:
                for _, row in rows:
                    self.orgs.add(row["sourcedid"], Org(
                        row.get("type", "").lower(), row.get("identifier") or row["sourcedid"],
                        row.get("parentsourcedid", ""), _active(row) == "0"))
        roles = self._roles_1_2() if self.manifest.version == "1.2" else {}
        if self._reads("demographics.csv"):
            self._demographics()
        with self._table("users.csv") as rows:
            for line, row in rows:
                sourced_id = row["sourcedid"]
                person = Person(row.get("identifier") or sourced_id,
                                problem=self.problems.get(sourced_id))
                if self.manifest.version == "1.2":
                    person.roles = roles.get(sourced_id, [])
                    if not person.roles:
                        self.warnings.append(Issue.warning(
                            self.label("users.csv"), "unmapped_role", "the user has no role in "
                            "roles.csv; the user is skipped", line=line))
                else:
                    person.roles = _roles_1_1(row, line)
                self.people[sourced_id] = person
                self._warn_about_roles(person)
        self._learn_from_database()
        self._learn_links()

    def _learn_links(self) -> None:
        """Guardian -> students, from either side's agentSourcedIds."""
        with self._table("users.csv") as rows:
            for line, row in rows:
                me = self.people[row["sourcedid"]]
                for agent in split_list(row.get("agentsourcedids", "")):
                    other = self.people.get(agent)
                    if other is None and agent in self.known_guardians:
                        continue  # a guardian of an earlier file: only its own rows link it
                    if other is None:
                        self.warnings.append(Issue.warning(
                            self.label("users.csv"), "unknown_agent",
                            f"agentSourcedIds names {agent!r}, who is not in users.csv; "
                            "that link is ignored", line=line, column="agentSourcedIds"))
                        continue
                    if me.has(GUARDIAN_ROLES) and other.has(STUDENT_ROLES):
                        self.links.setdefault(row["sourcedid"], {})[agent] = None
                    elif me.has(STUDENT_ROLES) and other.has(GUARDIAN_ROLES):
                        self.links.setdefault(agent, {})[row["sourcedid"]] = None

    def _roles_1_2(self) -> dict[str, list[Role]]:
        """roles.csv by userSourcedId. A row that cannot be read exactly (its role type or
        dates) still says what the user is, so the user's records are rejected with that
        problem (and kept from deactivation) instead of vanishing."""
        found: dict[str, list[Role]] = {}
        with self._table("roles.csv") as rows:
            for line, row in rows:
                role, problem = self._role(line, row)
                found.setdefault(row["usersourcedid"], []).append(role)
                if problem is not None:
                    self.problems.setdefault(row["usersourcedid"], problem)
        return found

    def _role(self, line: int, row: dict[str, str]) -> tuple[Role, Issue | None]:
        role_type, problem = row.get("roletype", "").lower(), None
        if role_type not in ROLE_TYPES:
            problem = self._problem("roles.csv", line, "roleType", "invalid_value",
                                    f"{quote_value(row.get('roletype', ''))} is not a role "
                                    "type; use primary or secondary")
        dates: list[date | None] = []
        for column in ("beginDate", "endDate"):
            value = row.get(normalise_header(column), "")
            try:
                dates.append(parse_date(value) if value else None)
            except PydanticCustomError as error:
                dates.append(None)
                problem = problem or self._problem("roles.csv", line, column, error.type,
                                                   error.message())
        return Role(role_name(row["role"]), row["orgsourcedid"], role_type != "secondary",
                    "roles.csv", line, "orgSourcedId", *dates,
                    deleted=row.get("status", "").lower() in DELETED_STATUSES,
                    written=row["role"]), problem

    def _demographics(self) -> None:
        """Birth dates and sex by sourcedId; a birth date that is not one is the user's
        problem, reported on its demographics.csv line."""
        with self._table("demographics.csv") as rows:
            for line, row in rows:
                birth = row["birthdate"]
                try:
                    if birth:
                        parse_birth_date(birth)
                except PydanticCustomError as error:
                    self.problems.setdefault(row["sourcedid"], self._problem(
                        "demographics.csv", line, "birthDate", error.type, error.message()))
                    continue
                self.births[row["sourcedid"]] = (birth, row.get("sex", ""))

    def _warn_about_roles(self, person: Person) -> None:
        current = person.current(self.today)
        mapped = [role for role in current if role.name in MAPPED_ROLES]
        written = {}  # one warning per line naming a role
        for role in current:
            if role.name not in MAPPED_ROLES:
                written[(role.table, role.line)] = Issue.warning(
                    self.label(role.table), "unmapped_role",
                    f"role {quote_value(role.written)} has no counterpart in visitor-sync; "
                    + ("that role is ignored" if mapped else "the user is skipped"),
                    line=role.line, column="role")
        for role in person.ignored_admin_roles(current):
            written[(role.table, role.line)] = Issue.warning(
                self.label(role.table), "secondary_admin_role",
                f"role {quote_value(role.written)} is a secondary role; administrator rights "
                "come only from a user's primary role, so it is ignored", line=role.line,
                column="roleType")
        self.warnings += written.values()

    def _learn_from_database(self) -> None:
        """Orgs and people the zip names but does not hold (a delta): earlier files'."""
        named_orgs = {role.org for person in self.people.values() for role in person.roles
                      if role.org} | self.orgs.missing_parents()
        for sourced_id, key in self.known.keys_by_sourced_id(
                School, {org for org in named_orgs if org not in self.orgs}).items():
            self.orgs.add(sourced_id, Org("school", key))
        with self._table("users.csv") as rows:
            agents = {agent for _, row in rows
                      for agent in split_list(row.get("agentsourcedids", ""))}
        unknown = agents - self.people.keys()
        for sourced_id, key in self.known.keys_by_sourced_id(Student, unknown).items():
            # a stored student, only ever linked to (never emitted, so never reported on)
            self.people[sourced_id] = Person(key, [Role("student", "", True, "", 0, "")])
        self.known_guardians = set(self.known.keys_by_sourced_id(Visitor, unknown))

    # -- the second pass: members ---------------------------------------------------------

    def members(self) -> list[Member]:
        if not self._reads("users.csv") and not self._reads("orgs.csv"):
            return []
        if self._reads("users.csv"):
            self._learn()
        delta = {table: self._mode(table) == "delta" for table in ("orgs.csv", "users.csv")}
        pick = dict(zip(types.BULK_TYPES, types.DELTA_TYPES, strict=True))
        members = []
        if self._reads("orgs.csv"):
            file_type = pick[types.SCHOOLS] if delta["orgs.csv"] else types.SCHOOLS
            members.append(self._member(file_type, "orgs.csv", self._schools()))
        if self._reads("users.csv"):
            users_at = len(members)
            for bulk, records in ((types.STUDENTS, self._students()),
                                  (types.VISITORS_, self._guardians()),
                                  (types.USERS, self._staff())):
                file_type = pick[bulk] if delta["users.csv"] else bulk
                members.append(self._member(file_type, "users.csv", records))
            members[users_at].warnings += self.warnings  # about users.csv and roles.csv rows
        members[0].warnings[:0] = self.manifest.warnings
        return members

    def _member(self, file_type: FileType, table: str, records: Iterator[Record]) -> Member:
        if not self._reads("demographics.csv"):
            file_type = dataclasses.replace(file_type, targets=tuple(
                dataclasses.replace(target, keep=DEMOGRAPHIC_COLUMNS)
                for target in file_type.targets))
        return Member(file_type, self.label(table), ColumnMap(file_type, [], {}), records)

    def _schools(self) -> Iterator[Record]:
        with self._table("orgs.csv") as rows:
            for line, row in rows:
                if row.get("type", "").lower() != "school":
                    continue
                yield line, _present({
                    "school_id": row.get("identifier") or row["sourcedid"],
                    "name": row.get("name", ""), "sourced_id": row["sourcedid"],
                    "active": _active(row)}), None

    def _users(self) -> Iterator[tuple[int, dict[str, str], Person]]:
        with self._table("users.csv") as rows:
            for line, row in rows:
                yield line, row, self.people[row["sourcedid"]]

    def _school(self, roles: list[Role]) -> tuple[str, Issue | None]:
        """The school of the first role whose org is (or is in) one, or the problem with
        the first role's org, quoting the file's own value where it is written."""
        if not roles:
            return "", None
        for role in roles:
            school = self.orgs.school_of(role.org) if role.org else None
            if school is not None:
                return school, None
        first = roles[0]
        if not first.org:
            return "", self._problem(first.table, first.line, first.org_column,
                                     "missing_value", "is empty; every row needs a value")
        return "", self._problem(first.table, first.line, first.org_column, "unknown_school",
                                 self.orgs.why_no_school(first.org))

    def _students(self) -> Iterator[Record]:
        for line, row, person in self._users():
            roles = person.roles_in(STUDENT_ROLES, self.today)
            if not roles:
                continue
            birth, sex = self.births.get(row["sourcedid"], ("", ""))
            school, problem = self._school(roles)
            grades = split_list(row.get("grades", ""))
            yield line, _present({
                "student_id": person.key, "first_name": row.get("givenname", ""),
                "last_name": row.get("familyname", ""), "middle_name": row.get("middlename", ""),
                "preferred_name": row.get("preferredgivenname", ""), "date_of_birth": birth,
                "grade": grades[0] if grades else "", "school_id": school, "gender": sex,
                "email": row.get("email", ""), "sourced_id": row["sourcedid"],
                "active": _active(row, any_in_effect(roles, self.today))}), \
                person.problem or problem

    def _guardians(self) -> Iterator[Record]:
        for line, row, person in self._users():
            roles = person.roles_in(GUARDIAN_ROLES, self.today)
            if not roles:
                continue
            birth, sex = self.births.get(row["sourcedid"], ("", ""))
            values = _present({
                "visitor_id": person.key, "first_name": row.get("givenname", ""),
                "last_name": row.get("familyname", ""), "middle_name": row.get("middlename", ""),
                "date_of_birth": birth, "sex": sex, "email": row.get("email", ""),
                "phone": row.get("phone", "") or row.get("sms", ""),
                "relationship": roles[0].name, "sourced_id": row["sourcedid"],
                "active": _active(row, any_in_effect(roles, self.today))})
            # a student whose student role ended is no one's to link (the link lapses)
            students = [self.people[student].key for student in self.links.get(
                row["sourcedid"], {}) if any_in_effect(
                    self.people[student].roles_in(STUDENT_ROLES, self.today), self.today)]
            for student in students or [""]:
                yield line, _present({**values, "student_id": student}), person.problem

    def _staff(self) -> Iterator[Record]:
        for line, row, person in self._users():
            roles = person.staff_roles(self.today)
            if not roles:
                continue
            # the schools of the roles in effect; an account whose roles all lapsed is
            # sent inactive with the schools it had
            placed = [role for role in roles if role.in_effect(self.today)] or roles
            schools, problem = [], None
            for role in placed:
                school = self.orgs.school_of(role.org) if role.org else None
                if school is not None:
                    schools.append(school)
                elif role.org and role.org not in self.orgs:
                    problem = problem or self._problem(
                        role.table, role.line, role.org_column, "unknown_school",
                        self.orgs.why_no_school(role.org))
            name = " ".join(part for part in (row.get("givenname"), row.get("familyname"))
                            if part)
            account = STAFF_ROLES[roles[0].name]
            if roles[0].name == "administrator" and not schools:
                account = "administrator"  # OneRoster 1.1's administrator of the district itself
            if not schools and account != "administrator":
                problem = problem or self._school(placed)[1]  # every other role needs a school
            yield line, _present({
                "email": row.get("email", ""), "name": name, "role": account,
                "phone": row.get("phone", ""), "school_ids": ";".join(dict.fromkeys(schools)),
                "sourced_id": row["sourcedid"],
                "active": _active(row, any_in_effect(roles, self.today))}), \
                person.problem or problem


def _roles_1_1(row: dict[str, str], line: int) -> list[Role]:
    """OneRoster 1.1: the row's one role, at each of its orgs (all of it primary)."""
    written = row.get("role", "")
    return [Role(role_name(written), org, True, "users.csv", line, "orgSourcedIds",
                 written=written)
            for org in split_list(row.get("orgsourcedids", "")) or [""]]


def _active(row: dict[str, str], counts: bool = True) -> str:
    """A record is active unless its row is ``tobedeleted`` (or 1.0's ``inactive``, which
    1.1 reads as ``tobedeleted``) or no role making it is in effect. ``enabledUser=false``
    only curtails the user's system access: the person is still active."""
    return "1" if counts and row.get("status", "").lower() not in DELETED_STATUSES else "0"


def _row(headers: list[str], cells: list[str]) -> dict[str, str]:
    """A row by header; a short row's missing cells are empty (they fail validation as
    missing values instead of failing the whole zip)."""
    row = dict(zip(headers, map(str.strip, cells), strict=False))
    if len(row) < len(headers):
        row.update((header, "") for header in headers if header not in row)
    return row


def _present(values: dict[str, str]) -> dict[str, str]:
    """Empty values left out, as for CSV rows (so defaults and ``missing_value`` apply)."""
    return {name: value for name, value in values.items() if value}


ONEROSTER = OneRoster()
