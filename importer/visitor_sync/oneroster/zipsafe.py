"""Opening an untrusted zip: every check is made on the central directory first,
so a zip bomb or a path trick is refused before anything is inflated, and
inflating never writes more than a member declared.

Even the central directory is untrusted: the stdlib reads every entry of it into
memory when the zip is opened (about 400 bytes each; a million entries cost
hundreds of megabytes). So the end record's entry count and directory size are
read first, and a zip that declares, or whose directory could hold, more entries
than ``limits.zip_max_members`` is refused before the stdlib sees it.
"""

from __future__ import annotations

import stat
import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from visitor_sync.config import Limits
from visitor_sync.issues import FileRejected

_ARCHIVE_SUFFIXES = (".zip", ".gz", ".tgz", ".tar", ".7z", ".rar", ".jar", ".bz2", ".xz")
_CHUNK = 1 << 20
#: Bytes one central-directory entry may take: 46 fixed, then its name, extra field
#: and comment. Generous for any real export; it bounds what opening the zip reads.
MAX_DIRECTORY_ENTRY_BYTES = 4096
_END_RECORD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_END_RECORD = struct.Struct("<4sQ2H2L4Q")
#: The end record sits in the last 22 bytes plus a comment of up to 65,535.
_END_SEARCH = _END_RECORD.size + 0xFFFF


def declared_directory(path: Path) -> tuple[int, int] | None:
    """(entries, central directory bytes) from the zip's end record (ZIP64 when the plain
    record overflows), read without the directory itself; ``None`` if there is no end
    record (not a zip: :mod:`zipfile` says so)."""
    with path.open("rb") as stream:
        size = stream.seek(0, 2)
        stream.seek(max(0, size - _END_SEARCH))
        tail = stream.read()
        at = len(tail)
        while True:  # the last signature whose comment length reaches the end exactly
            at = tail.rfind(b"PK\x05\x06", 0, at)
            if at < 0:
                return None
            if len(tail) - at < _END_RECORD.size:
                continue
            *_, entries, directory_size, _, comment = _END_RECORD.unpack_from(tail, at)
            if at + _END_RECORD.size + comment == len(tail):
                break
        if entries != 0xFFFF and directory_size != 0xFFFFFFFF:
            return entries, directory_size
        locator_at = at - _ZIP64_LOCATOR.size
        if locator_at < 0 or tail[locator_at:locator_at + 4] != b"PK\x06\x07":
            return entries, directory_size
        _, _, record_offset, _ = _ZIP64_LOCATOR.unpack_from(tail, locator_at)
        stream.seek(record_offset)
        record = stream.read(_ZIP64_END_RECORD.size)
        if len(record) < _ZIP64_END_RECORD.size or record[:4] != b"PK\x06\x06":
            return None
        *_, entries, directory_size, _ = _ZIP64_END_RECORD.unpack(record)
        return entries, directory_size


def check_directory(path: Path, limits: Limits) -> None:
    """Refuse a zip declaring more entries than allowed, or whose central directory is
    larger than that many entries can need (an end record that understates its count)."""
    declared = declared_directory(path)
    if declared is None:
        return
    entries, directory_size = declared
    if entries > limits.zip_max_members:
        raise FileRejected("zip_too_many_members", f"the zip has {entries:,} entries; at most "
                           f"{limits.zip_max_members} are accepted")
    if directory_size > limits.zip_max_members * MAX_DIRECTORY_ENTRY_BYTES:
        raise FileRejected("zip_too_many_members", f"the zip's directory takes "
                           f"{directory_size:,} bytes, more than {limits.zip_max_members} "
                           "entries can need; at most that many entries are accepted")


def check_members(archive: zipfile.ZipFile, limits: Limits) -> list[zipfile.ZipInfo]:
    """The archive's regular files, or :class:`FileRejected` for the first unsafe entry."""
    infos = archive.infolist()
    if len(infos) > limits.zip_max_members:
        raise FileRejected("zip_too_many_members", f"the zip has {len(infos):,} entries; at "
                           f"most {limits.zip_max_members} are accepted")
    total = 0
    files = []
    for info in infos:
        name = info.filename
        path = PurePosixPath(name.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or ":" in name:
            raise FileRejected("zip_unsafe_path", f"{name!r}: absolute or parent-directory "
                               "paths are not allowed in the zip")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise FileRejected("zip_unsafe_path",
                               f"{name!r}: symbolic links are not allowed in the zip")
        if info.is_dir():
            continue
        if name.lower().endswith(_ARCHIVE_SUFFIXES):
            raise FileRejected("zip_nested_archive", f"{name!r}: archives inside the zip are "
                               "not accepted; put the CSV files at the root of one zip")
        if info.flag_bits & 0x1:
            raise FileRejected("zip_encrypted", f"{name!r}: encrypted members cannot be "
                               "read; upload the zip without a password")
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > limits.zip_max_ratio:
            raise FileRejected("zip_bomb", f"{name!r}: compresses {ratio:,.0f} to 1 (limit "
                               f"{limits.zip_max_ratio}); this looks like a zip bomb")
        total += info.file_size
        files.append(info)
    if total > limits.zip_max_uncompressed_bytes:
        raise FileRejected("zip_too_large",
                           f"the members add up to {total:,} bytes uncompressed; the limit is "
                           f"{limits.zip_max_uncompressed_bytes:,}")
    return files


@contextmanager
def extracted(path: Path, into: Path, limits: Limits) -> Iterator[dict[str, Path]]:
    """Root-level members extracted into ``into``, by lower-case name."""
    check_directory(path, limits)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise FileRejected("invalid_zip_file", f"the file is not a readable zip ({error}); "
                           "upload a standard .zip file") from error
    with archive:
        members: dict[str, Path] = {}
        for info in check_members(archive, limits):
            if "/" in info.filename.strip("/"):
                continue  # only the root counts in OneRoster; folders are ignored
            target = into / f"{len(members):03d}.csv"
            _inflate(archive, info, target)
            members[info.filename.lower()] = target
        yield members


def _inflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    """Inflate one member, never past its declared size (a lying header is refused)."""
    written = 0
    try:
        with archive.open(info) as source, target.open("wb") as sink:
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                if written > info.file_size:
                    raise FileRejected("zip_bomb",
                                       f"{info.filename!r}: inflates past its declared size")
                sink.write(chunk)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise FileRejected("invalid_zip_file",
                           f"{info.filename!r}: cannot be read ({error})") from error
