"""The orgs a OneRoster zip names, and the school each belongs to.

OneRoster orgs are a tree (``parentSourcedId``) of types ``national``,
``state``, ``local``, ``district``, ``school`` and ``department``. A user may
be placed at any of them; visitor-sync places people in schools, so an org
that is not a school is walked up to the school above it (a department to
its school). Orgs above schools (a district, a state) have no school above
them. Orgs a delta names without carrying them come from earlier imports,
which stored schools only.
"""

from __future__ import annotations

from dataclasses import dataclass

from visitor_sync.issues import quote_value


@dataclass(frozen=True, slots=True)
class Org:
    kind: str
    #: the School ID a school is stored under (identifier, else sourcedId)
    key: str
    parent: str = ""
    #: ``tobedeleted`` (or ``inactive``) in this zip's orgs.csv: no one's school any more
    deleted: bool = False


class Orgs:
    def __init__(self) -> None:
        self.by_id: dict[str, Org] = {}

    def add(self, sourced_id: str, org: Org) -> None:
        self.by_id[sourced_id] = org

    def __contains__(self, sourced_id: object) -> bool:
        return sourced_id in self.by_id

    def missing_parents(self) -> set[str]:
        """Parents named by orgs of the zip that the zip does not hold."""
        return {org.parent for org in self.by_id.values()
                if org.parent and org.parent not in self.by_id}

    def school_of(self, sourced_id: str) -> str | None:
        """The School ID of the org or of the first school above it, if there is one that
        is not being deleted."""
        school = self._school_org(sourced_id)
        return school.key if school is not None and not school.deleted else None

    def _school_org(self, sourced_id: str) -> Org | None:
        seen: set[str] = set()
        while sourced_id in self.by_id and sourced_id not in seen:
            org = self.by_id[sourced_id]
            if org.kind == "school":
                return org
            seen.add(sourced_id)
            sourced_id = org.parent
        return None

    def why_no_school(self, sourced_id: str) -> str:
        """Why :meth:`school_of` found nothing, quoting the file's own value."""
        quoted = quote_value(sourced_id)
        org = self.by_id.get(sourced_id)
        if org is None:
            return (f"{quoted} is not an org of orgs.csv nor a school of an earlier import; "
                    "send the org first or fix the sourcedId")
        if self._school_org(sourced_id) is not None:
            return (f"{quoted} is {'a school' if org.kind == 'school' else 'in a school'} "
                    "that orgs.csv marks tobedeleted; place the user at another school or "
                    "keep the school")
        return (f"{quoted} is a {org.kind or 'typeless'} org, not a school nor part of one "
                "in orgs.csv; place the user at a school (or at a department of one)")
