"""The OneRoster container: a zip's manifest and tables turned into member rows.

Two passes over ``users.csv`` (and one over ``orgs.csv``, ``roles.csv`` and
``demographics.csv``): the first learns who is who (a sourcedId's role and
key, its orgs, its birth date) so the second can emit each member's rows as
canonical records: students, guardians once per linked student (a link named
by either side counts), staff as accounts. Only those lookup maps are held in
memory; rows stream.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from visitor_sync.config import Limits
from visitor_sync.csvfile import CsvTable, inspect_file, normalise_header
from visitor_sync.db.schema import School, Student, Visitor
from visitor_sync.filetypes.base import FileType, KnownRecords
from visitor_sync.issues import FileRejected, Issue
from visitor_sync.oneroster import types
from visitor_sync.oneroster.zipsafe import extracted
from visitor_sync.validation import ColumnMap, Member, Record

VERSIONS = ("1.0", "1.1", "1.2")
MODES = ("bulk", "delta", "absent")
STUDENT_ROLES = frozenset({"student"})
GUARDIAN_ROLES = frozenset({"parent", "guardian", "relative"})
#: OneRoster role -> account role (FORMATS.md); other roles are skipped with a warning.
STAFF_ROLES = {
    "teacher": "teacher", "aide": "operator", "proctor": "operator",
    "administrator": "site_administrator", "siteadministrator": "site_administrator",
    "principal": "site_administrator", "districtadministrator": "administrator",
    "systemadministrator": "administrator",
}
#: columns each table must have, as the OneRoster specification spells them
REQUIRED = {
    "manifest.csv": ("propertyName", "value"),
    "orgs.csv": ("sourcedId", "name", "type"),
    "users.csv": ("sourcedId", "givenName", "familyName"),
    "roles.csv": ("userSourcedId", "role", "orgSourcedId"),
    "demographics.csv": ("sourcedId", "birthDate"),
}
#: what a zip without demographics leaves as it is
DEMOGRAPHIC_COLUMNS = frozenset({"date_of_birth", "gender", "sex"})


def split_list(value: str) -> list[str]:
    """OneRoster multi-valued fields: ``a,b`` (also ``{LDAP:12},{LTI:15}`` keeps its items)."""
    return [item.strip() for item in value.split(",") if item.strip()]


@dataclass
class Person:
    role: str
    key: str
    orgs: list[str] = field(default_factory=list)
    #: where the role is written: (table, line)
    role_at: tuple[str, int] = ("users.csv", 0)


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
        self.version, self.modes = self._manifest()
        self.orgs: dict[str, tuple[str, str]] = {}  # sourcedId -> (type, school key)
        self.people: dict[str, Person] = {}
        self.links: dict[str, dict[str, None]] = {}  # guardian sourcedId -> student sourcedIds
        self.births: dict[str, tuple[str, str]] = {}  # sourcedId -> (birthDate, sex)
        self.warnings: list[Issue] = []
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

    def _manifest(self) -> tuple[str, dict[str, str]]:
        if "manifest.csv" not in self.files:
            raise FileRejected("missing_manifest", "the zip has no manifest.csv at its root; "
                               "export a OneRoster CSV zip (manifest.csv, orgs.csv, users.csv)")
        version, version_line, modes = "", None, {}
        with self._table("manifest.csv") as rows:
            for line, row in rows:
                prop, value = row.get("propertyname", ""), row.get("value", "").lower()
                if prop == "oneroster.version":
                    version, version_line = value, line
                elif prop.startswith("file."):
                    table = prop.removeprefix("file.").lower() + ".csv"
                    if value not in MODES:
                        raise FileRejected(
                            "invalid_manifest", f"{prop} is {value!r}; use bulk, delta or "
                            "absent", line, "value", file=self.label("manifest.csv"))
                    if value != "absent" and table not in self.files:
                        raise FileRejected(
                            "missing_member", f"the manifest declares {table} as {value} but "
                            "the zip has no such file", line, "value",
                            file=self.label("manifest.csv"))
                    modes[table] = value
        if version not in VERSIONS:
            raise FileRejected("unsupported_version",
                               f"oneroster.version is {version or 'missing'}; 1.1 and 1.2 "
                               "are supported", version_line, "value" if version_line else None,
                               file=self.label("manifest.csv"))
        if version == "1.2" and modes.get("users.csv", "absent") != "absent" \
                and "roles.csv" not in self.files:
            raise FileRejected("missing_member", "a OneRoster 1.2 users.csv needs roles.csv",
                               file=self.label("manifest.csv"))
        return version, modes

    def _mode(self, table: str) -> str:
        return self.modes.get(table, "absent")

    # -- the first pass: who is who ------------------------------------------------------

    def _learn(self) -> None:
        if "orgs.csv" in self.files:
            with self._table("orgs.csv") as rows:
                for _, row in rows:
                    key = row.get("identifier") or row["sourcedid"]
                    self.orgs[row["sourcedid"]] = (row.get("type", "").lower(), key)
        roles: dict[str, Person] = {}  # 1.2: by userSourcedId, the key filled in below
        if self.version == "1.2":
            with self._table("roles.csv") as rows:
                for line, row in rows:
                    seen = roles.setdefault(row["usersourcedid"], Person("", ""))
                    if not seen.role or row.get("roletype", "").lower() == "primary":
                        # the primary role names the user's role and, first, its school
                        seen.role, seen.role_at = normalise_header(row["role"]), ("roles.csv",
                                                                                   line)
                        seen.orgs.insert(0, row["orgsourcedid"])
                    else:
                        seen.orgs.append(row["orgsourcedid"])
        if "demographics.csv" in self.files:
            with self._table("demographics.csv") as rows:
                for _, row in rows:
                    self.births[row["sourcedid"]] = (row["birthdate"], row.get("sex", ""))
        with self._table("users.csv") as rows:
            for line, row in rows:
                person = roles.get(row["sourcedid"]) or Person(
                    normalise_header(row.get("role", "")), "",
                    split_list(row.get("orgsourcedids", "")), ("users.csv", line))
                person.key = row.get("identifier") or row["sourcedid"]
                self.people[row["sourcedid"]] = person
        self._learn_from_database()
        mapped = STUDENT_ROLES | GUARDIAN_ROLES | STAFF_ROLES.keys()
        for person in self.people.values():
            if person.role not in mapped and person.role_at[1]:
                table, line = person.role_at
                self.warnings.append(Issue.warning(
                    self.label(table), "unmapped_role",
                    f"role {person.role!r} has no counterpart in visitor-sync; the user is "
                    "skipped", line=line, column="role"))
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
                    if me.role in GUARDIAN_ROLES and other.role in STUDENT_ROLES:
                        self.links.setdefault(row["sourcedid"], {})[agent] = None
                    elif me.role in STUDENT_ROLES and other.role in GUARDIAN_ROLES:
                        self.links.setdefault(agent, {})[row["sourcedid"]] = None

    def _learn_from_database(self) -> None:
        """Orgs and people the zip names but does not hold (a delta): earlier files'."""
        named_orgs = {org for person in self.people.values() for org in person.orgs}
        for sourced_id, key in self.known.keys_by_sourced_id(
                School, named_orgs - self.orgs.keys()).items():
            self.orgs[sourced_id] = ("school", key)
        with self._table("users.csv") as rows:
            agents = {agent for _, row in rows
                      for agent in split_list(row.get("agentsourcedids", ""))}
        unknown = agents - self.people.keys()
        for sourced_id, key in self.known.keys_by_sourced_id(Student, unknown).items():
            self.people[sourced_id] = Person("student", key)
        self.known_guardians = set(self.known.keys_by_sourced_id(Visitor, unknown))

    # -- the second pass: members ---------------------------------------------------------

    def members(self) -> list[Member]:
        if "users.csv" not in self.files and "orgs.csv" not in self.files:
            return []
        self._learn()
        delta = {table: self._mode(table) == "delta" for table in ("orgs.csv", "users.csv")}
        pick = dict(zip(types.BULK_TYPES, types.DELTA_TYPES, strict=True))
        members = []
        if self._mode("orgs.csv") != "absent":
            file_type = pick[types.SCHOOLS] if delta["orgs.csv"] else types.SCHOOLS
            members.append(self._member(file_type, "orgs.csv", self._schools()))
        if self._mode("users.csv") != "absent":
            for bulk, records in ((types.STUDENTS, self._students()),
                                  (types.VISITORS_, self._guardians()),
                                  (types.USERS, self._staff())):
                file_type = pick[bulk] if delta["users.csv"] else bulk
                members.append(self._member(file_type, "users.csv", records))
        users = [member for member in members if member.label == self.label("users.csv")]
        if users:  # the warnings are about users.csv rows
            users[0].warnings += self.warnings
        return members

    def _member(self, file_type: FileType, table: str, records: Iterator[Record]) -> Member:
        if self._mode("demographics.csv") == "absent":
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
                    "active": self._active(row)}), None

    def _users(self, roles: frozenset[str] | dict[str, str]) -> Iterator[
            tuple[int, dict[str, str], Person]]:
        with self._table("users.csv") as rows:
            for line, row in rows:
                person = self.people[row["sourcedid"]]
                if person.role in roles:
                    yield line, row, person

    def _students(self) -> Iterator[Record]:
        for line, row, person in self._users(STUDENT_ROLES):
            birth, sex = self.births.get(row["sourcedid"], ("", ""))
            schools = [self.orgs.get(org, ("school", org)) for org in person.orgs]
            school = next((key for kind, key in schools if kind == "school"),
                          schools[0][1] if schools else "")
            grades = split_list(row.get("grades", ""))
            yield line, _present({
                "student_id": person.key, "first_name": row.get("givenname", ""),
                "last_name": row.get("familyname", ""), "middle_name": row.get("middlename", ""),
                "preferred_name": row.get("preferredgivenname", ""), "date_of_birth": birth,
                "grade": grades[0] if grades else "", "school_id": school, "gender": sex,
                "email": row.get("email", ""), "sourced_id": row["sourcedid"],
                "active": self._active(row)}), None

    def _guardians(self) -> Iterator[Record]:
        for line, row, person in self._users(GUARDIAN_ROLES):
            birth, sex = self.births.get(row["sourcedid"], ("", ""))
            values = _present({
                "visitor_id": person.key, "first_name": row.get("givenname", ""),
                "last_name": row.get("familyname", ""), "middle_name": row.get("middlename", ""),
                "date_of_birth": birth, "sex": sex, "email": row.get("email", ""),
                "phone": row.get("phone", "") or row.get("sms", ""),
                "relationship": person.role, "sourced_id": row["sourcedid"],
                "active": self._active(row)})
            students = [self.people[student].key for student in self.links.get(
                row["sourcedid"], {})]
            for student in students or [""]:
                yield line, _present({**values, "student_id": student}), None

    def _staff(self) -> Iterator[Record]:
        for line, row, person in self._users(STAFF_ROLES):
            schools = [self.orgs.get(org, ("", org))[1] for org in person.orgs
                       if self.orgs.get(org, ("school", org))[0] == "school"]
            name = " ".join(part for part in (row.get("givenname"), row.get("familyname"))
                            if part)
            role = STAFF_ROLES[person.role]
            if person.role == "administrator" and not schools:
                role = "administrator"  # OneRoster 1.1's administrator of the district itself
            yield line, _present({
                "email": row.get("email", ""), "name": name, "role": role,
                "phone": row.get("phone", ""), "school_ids": ";".join(schools),
                "sourced_id": row["sourcedid"], "active": self._active(row)}), None

    def _active(self, row: dict[str, str]) -> str:
        """``tobedeleted`` (delta) and ``enabledUser=false`` deactivate."""
        if row.get("status", "").lower() == "tobedeleted":
            return "0"
        return row.get("enableduser", "") or "1"


def _row(headers: list[str], cells: list[str]) -> dict[str, str]:
    """A row by header; a short row's missing cells are empty (they fail validation as
    missing values instead of failing the whole zip)."""
    row = dict.fromkeys(headers, "")
    row.update((header, cell.strip()) for header, cell in zip(headers, cells, strict=False))
    return row


def _present(values: dict[str, str]) -> dict[str, str]:
    """Empty values left out, as for CSV rows (so defaults and ``missing_value`` apply)."""
    return {name: value for name, value in values.items() if value}


ONEROSTER = OneRoster()
