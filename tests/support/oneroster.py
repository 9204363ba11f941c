"""Hand-written OneRoster CSV zips: tables as lists of dicts, a manifest, a zip.

A :class:`Roster` holds the rows of ``orgs``, ``users``, ``roles`` (1.2) and
``demographics`` keyed by the spec's column names; every table is written
with the spec's full header for its version, in the spec's column order, so
a row names only the cells it fills. ``modes`` overrides the manifest's
``file.X`` values (a table present in the roster defaults to ``bulk``, any
other to ``absent``). :meth:`Roster.members` gives the zip's members as bytes
so a test can break one before :func:`write_zip` writes them.
"""

from __future__ import annotations

import functools
import struct
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.runs import csv_bytes

Row = Mapping[str, str]
#: A zip member: a name (or a ``ZipInfo`` saying more, e.g. a symlink) and its bytes.
Entry = tuple[str | zipfile.ZipInfo, bytes]

ORGS = ("sourcedId", "status", "dateLastModified", "name", "type", "identifier",
        "parentSourcedId")
USERS_1_1 = ("sourcedId", "status", "dateLastModified", "enabledUser", "orgSourcedIds", "role",
             "username", "userIds", "givenName", "familyName", "middleName", "identifier",
             "email", "sms", "phone", "agentSourcedIds", "grades", "password")
USERS_1_2 = ("sourcedId", "status", "dateLastModified", "enabledUser", "username", "userIds",
             "givenName", "familyName", "middleName", "identifier", "email", "sms", "phone",
             "agentSourcedIds", "grades", "password", "userMasterIdentifier",
             "resourceSourcedIds", "preferredGivenName", "preferredMiddleName",
             "preferredFamilyName", "primaryOrgSourcedId", "pronouns")
ROLES = ("sourcedId", "status", "dateLastModified", "userSourcedId", "roleType", "role",
         "beginDate", "endDate", "orgSourcedId", "userProfileSourcedId")
DEMOGRAPHICS = ("sourcedId", "status", "dateLastModified", "birthDate", "sex",
                "americanIndianOrAlaskaNative", "asian", "blackOrAfricanAmerican",
                "nativeHawaiianOrOtherPacificIslander", "white", "demographicRaceTwoOrMoreRaces",
                "hispanicOrLatinoEthnicity", "countryOfBirthCode", "stateOfBirthAbbreviation",
                "cityOfBirth", "publicSchoolResidenceStatus")

#: version -> table -> header
HEADERS: dict[str, dict[str, tuple[str, ...]]] = {
    "1.1": {"orgs": ORGS, "users": USERS_1_1, "demographics": DEMOGRAPHICS},
    "1.2": {"orgs": ORGS, "users": USERS_1_2, "roles": ROLES, "demographics": DEMOGRAPHICS},
}
#: the ``file.X`` lines a manifest of each version carries (a real export lists them all)
MANIFEST_FILES = {
    "1.1": ("academicSessions", "categories", "classes", "classResources", "courses",
            "courseResources", "demographics", "enrollments", "lineItems", "orgs", "resources",
            "results", "users"),
    "1.2": ("academicSessions", "categories", "classes", "classResources", "courses",
            "courseResources", "demographics", "enrollments", "lineItems", "orgs", "resources",
            "results", "roles", "userProfiles", "users"),
}


@dataclass
class Roster:
    """The tables of one OneRoster export (see the module docstring)."""

    version: str = "1.1"
    tables: dict[str, list[Row]] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)

    def header(self, table: str) -> tuple[str, ...]:
        return HEADERS[self.version][table]

    def mode(self, table: str) -> str:
        return self.modes.get(table, "bulk" if table in self.tables else "absent")

    def manifest(self) -> list[tuple[str, str]]:
        """``(propertyName, value)`` rows, in file order."""
        files = [*MANIFEST_FILES[self.version],
                 *(table for table in self.modes if table not in MANIFEST_FILES[self.version])]
        return [("manifest.version", "1.0"), ("oneroster.version", self.version),
                ("source.systemName", "Test SIS"),
                *((f"file.{table}", self.mode(table)) for table in files)]

    def manifest_line(self, property_name: str) -> int:
        """The physical line of a manifest property (the header is line 1)."""
        names = [name for name, _ in self.manifest()]
        return names.index(property_name) + 2

    def line_of(self, table: str, sourced_id: str) -> int:
        """The physical line of a table's row (the header is line 1, one line a row)."""
        ids = [row["sourcedId"] for row in self.tables[table]]
        return ids.index(sourced_id) + 2

    def table_bytes(self, table: str, header: Sequence[str] | None = None) -> bytes:
        """A table as CSV; ``header`` leaves columns out (their cells too)."""
        columns = tuple(header or self.header(table))
        for row in self.tables[table]:
            unknown = set(row) - set(self.header(table))
            if unknown:
                raise ValueError(f"{table}.csv {self.version} has no column {sorted(unknown)}")
        return csv_bytes(columns, [[row.get(column, "") for column in columns]
                                   for row in self.tables[table]])

    def members(self) -> dict[str, bytes]:
        """``manifest.csv`` and every table, as the zip's members."""
        return {"manifest.csv": csv_bytes(("propertyName", "value"), self.manifest()),
                **{f"{table}.csv": self.table_bytes(table) for table in self.tables}}

    def write(self, path: Path) -> Path:
        return write_zip(path, self.members().items())


def write_zip(path: Path, entries: Iterable[Entry]) -> Path:
    """A deflated zip of ``entries`` at ``path`` (its folder is created if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries:
            archive.writestr(name, content)
    return path


def symlink(name: str, target: str) -> Entry:
    """A member that unpacks as a symbolic link to ``target``."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix: the mode bits below are meaningful
    info.external_attr = 0o120777 << 16
    return info, target.encode()


def write_bomb(path: Path, members: Mapping[str, bytes], name: str, mib: int) -> Path:
    """A zip of ``members`` in which ``name`` is ``mib`` MiB of zeros deflated about
    1,000 to 1: gigabytes cost a megabyte and no time to make, so a reader that inflated
    it before refusing it would be slow enough to notice."""
    deflated = {member: _deflate(content) for member, content in members.items()}
    deflated[name] = _zeros(mib)
    local, central = bytearray(), bytearray()
    for member, (data, crc, size) in deflated.items():
        encoded = member.encode()
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc,
                               len(data), size, len(encoded), 0, 0, 0, 0, 0, len(local))
        central += encoded
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data),
                             size, len(encoded), 0)
        local += encoded + data
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(deflated), len(deflated),
                      len(central), len(local), 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(local + central) + end)
    return path


def _deflate(content: bytes) -> tuple[bytes, int, int]:
    """Raw deflate data, CRC-32 and size of a member."""
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    return packer.compress(content) + packer.flush(), zlib.crc32(content), len(content)


@functools.cache
def _zeros(mib: int) -> tuple[bytes, int, int]:
    """``_deflate`` of ``mib`` MiB of zeros, one compressed MiB repeated: a full flush
    resets the compressor, so every MiB compresses to the same bytes."""
    block = bytes(1 << 20)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(block, crc)
    return chunk * mib + packer.flush(), crc, mib << 20
