"""Who a OneRoster user is: their roles, which of them count today, what each becomes.

OneRoster 1.1 gives each user one role (users.csv ``role``, at every org of
``orgSourcedIds``). 1.2 moves roles to roles.csv: one ``primary`` role and any
number of ``secondary`` ones, each at one org, each with an optional
``beginDate``/``endDate``. A role counts while it is in effect: from its
``beginDate`` (inclusive) until its ``endDate`` (exclusive: the Rostering
information model's Role says the role "becomes inactive" on it), and while
it is not ``tobedeleted`` (nor 1.0's ``inactive``). Every role that counts
makes the user what it says: a teacher who is also a guardian gets an account
and their links. The one exception is administrator rights, which only a
primary role grants: a secondary administrator role never creates, nor
raises, an account. A record whose roles have all lapsed is sent inactive.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import date

from visitor_sync.csvfile import normalise_header
from visitor_sync.issues import Issue

STUDENT_ROLES = frozenset({"student"})
GUARDIAN_ROLES = frozenset({"parent", "guardian", "relative"})
#: OneRoster role -> account role (FORMATS.md); other roles are skipped with a warning.
STAFF_ROLES = {
    "teacher": "teacher", "aide": "operator", "proctor": "operator",
    "administrator": "site_administrator", "siteadministrator": "site_administrator",
    "principal": "site_administrator", "districtadministrator": "administrator",
    "systemadministrator": "administrator",
}
#: roles that grant administrator rights: they count only as a user's primary role
ADMIN_ROLES = frozenset(role for role, account in STAFF_ROLES.items()
                        if account in ("site_administrator", "administrator"))
MAPPED_ROLES = STUDENT_ROLES | GUARDIAN_ROLES | STAFF_ROLES.keys()
#: record statuses meaning "delete": 1.1 dropped 1.0's ``inactive`` and asks that it be
#: read as ``tobedeleted``
DELETED_STATUSES = frozenset({"tobedeleted", "inactive"})


@dataclass(frozen=True, slots=True)  # one or more per user of the zip: kept small
class Role:
    """One role of a user at one org, as the file writes it."""

    name: str
    #: the org's sourcedId as written (empty when the file names none)
    org: str
    primary: bool
    #: where it is written: (table, line), and the column naming the org
    table: str
    line: int
    org_column: str
    begins: date | None = None
    ends: date | None = None
    deleted: bool = False
    #: the role as the file spells it (``districtAdministrator``), for messages
    written: str = ""

    def in_effect(self, today: date) -> bool:
        return (not self.deleted and (self.begins is None or self.begins <= today)
                and (self.ends is None or today < self.ends))


@dataclass(slots=True)
class Person:
    """A user of users.csv (or, for a delta, a student an earlier file stored)."""

    key: str
    roles: list[Role] = field(default_factory=list)
    #: a problem with the user's data found outside users.csv (roles.csv, demographics.csv):
    #: every record of the user is rejected with it
    problem: Issue | None = None

    def has(self, names: Collection[str]) -> bool:
        """Whether any role, in effect or not, is one of ``names`` (who may be linked)."""
        return any(role.name in names for role in self.roles)

    def current(self, today: date) -> list[Role]:
        """The roles in effect, primary ones first."""
        return [role for role in _ordered(self.roles, today) if role.in_effect(today)]

    def roles_in(self, names: Collection[str], today: date) -> list[Role]:
        """Every role among ``names``, those in effect first, primary first: the first one
        names the record's school and kind; if none is in effect the record is inactive."""
        return _ordered((role for role in self.roles if role.name in names), today)

    def staff_roles(self, today: date) -> list[Role]:
        """Staff roles that count: administrator ones only when primary."""
        return [role for role in self.roles_in(STAFF_ROLES, today)
                if role.primary or role.name not in ADMIN_ROLES]

    @staticmethod
    def ignored_admin_roles(current: Iterable[Role]) -> list[Role]:
        """Of the roles in effect, the administrator ones that grant nothing."""
        return [role for role in current if not role.primary and role.name in ADMIN_ROLES]


def _ordered(roles: Iterable[Role], today: date) -> list[Role]:
    return sorted(roles, key=lambda role: (not role.in_effect(today), not role.primary))


def any_in_effect(roles: Iterable[Role], today: date) -> bool:
    return any(role.in_effect(today) for role in roles)


def role_name(value: str) -> str:
    """``siteAdministrator`` -> ``siteadministrator`` (compared without case)."""
    return normalise_header(value)
