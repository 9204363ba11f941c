"""A OneRoster zip's ``manifest.csv``: the version and what each table holds.

Only the tables visitor-sync reads must be declared exactly: a blank or
unknown ``file.X`` value, or a declared file the zip lacks, for any other
table (classes, enrollments...) cannot change what is imported, so it is a
warning instead of a rejection of the whole zip. A table we read that the
manifest declares ``absent`` is ignored even if the zip holds it (the
manifest is what the sender meant), and that is reported too.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from visitor_sync.issues import FileRejected, Issue, quote_value

#: OneRoster 1.0 has no manifest (nor the 1.1 column names), so it cannot be read exactly
VERSIONS = ("1.1", "1.2")
MODES = ("bulk", "delta", "absent")
#: the tables whose rows visitor-sync imports
READ_TABLES = ("orgs.csv", "users.csv", "roles.csv", "demographics.csv")
NO_MANIFEST = (
    "the zip has no manifest.csv at its root. OneRoster 1.1 and 1.2 zips always carry one; "
    "a zip without it is OneRoster 1.0 (which has no manifest) or not OneRoster at all, and "
    "OneRoster 1.0 is not supported: export the roster as OneRoster 1.1 or 1.2")


@dataclass
class Manifest:
    version: str
    #: ``orgs.csv`` -> bulk | delta (tables read and present only; anything else is absent)
    modes: dict[str, str]
    warnings: list[Issue] = field(default_factory=list)

    def mode(self, table: str) -> str:
        return self.modes.get(table, "absent")


def read_manifest(rows: Iterable[tuple[int, dict[str, str]]], present: Collection[str],
                  label: str) -> Manifest:
    """The manifest from its rows (``propertyname``/``value``), given the zip's members;
    ``label`` names the manifest in issues."""
    version, version_line = "", None
    modes: dict[str, str] = {}
    warnings: list[Issue] = []
    for line, row in rows:
        prop, value = row.get("propertyname", ""), row.get("value", "").lower()
        if prop == "oneroster.version":
            version, version_line = value, line
        if not prop.startswith("file."):
            continue
        table = prop.removeprefix("file.").lower() + ".csv"
        if table not in READ_TABLES:
            problem = _unread_table_problem(prop, value, table, present)
            if problem:
                warnings.append(Issue.warning(label, "manifest_value_ignored", problem,
                                              line=line, column="value"))
            continue
        if value not in MODES:
            raise FileRejected("invalid_manifest", f"{prop} is {quote_value(value)}; use bulk, "
                               "delta or absent", line, "value", file=label)
        if value == "absent":
            if table in present:
                warnings.append(Issue.warning(
                    label, "absent_member_ignored", f"{prop} is absent but the zip holds "
                    f"{table}; as the manifest says, {table} is not read", line=line,
                    column="value"))
            continue
        if table not in present:
            raise FileRejected("missing_member", f"the manifest declares {table} as {value} "
                               "but the zip has no such file", line, "value", file=label)
        modes[table] = value
    if version not in VERSIONS:
        raise FileRejected("unsupported_version",
                           f"oneroster.version is {quote_value(version) if version else 'missing'}"
                           "; OneRoster 1.1 and 1.2 are supported (1.0 is not: its zips have "
                           "no manifest and other column names)", version_line,
                           "value" if version_line else None, file=label)
    if version == "1.2" and "users.csv" in modes and "roles.csv" not in modes:
        raise FileRejected("missing_member", "a OneRoster 1.2 users.csv needs roles.csv (1.2 "
                           "keeps each user's roles and orgs there)", file=label)
    return Manifest(version, modes, warnings)


def _unread_table_problem(prop: str, value: str, table: str,
                          present: Collection[str]) -> str | None:
    """Why a ``file.X`` line of a table we never read is odd, if it is."""
    if value not in MODES:
        return (f"{prop} is {quote_value(value) if value else 'blank'} (expected bulk, delta "
                f"or absent); visitor-sync does not read {table}, so this changes nothing")
    if value != "absent" and table not in present:
        return (f"the manifest declares {table} as {value} but the zip has no such file; "
                "visitor-sync does not read it, so this changes nothing")
    return None
