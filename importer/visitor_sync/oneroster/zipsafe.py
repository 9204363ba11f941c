"""Opening an untrusted zip: every check is made on the central directory first,
so a zip bomb or a path trick is refused before anything is inflated, and
inflating never writes more than a member declared."""

from __future__ import annotations

import stat
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from visitor_sync.config import Limits
from visitor_sync.issues import FileRejected

_ARCHIVE_SUFFIXES = (".zip", ".gz", ".tgz", ".tar", ".7z", ".rar", ".jar", ".bz2", ".xz")
_CHUNK = 1 << 20


def check_members(archive: zipfile.ZipFile, limits: Limits) -> list[zipfile.ZipInfo]:
    """The archive's regular files, or :class:`FileRejected` for the first unsafe entry."""
    infos = archive.infolist()
    if len(infos) > limits.zip_max_members:
        raise FileRejected("zip_too_many_members",
                                f"the zip has {len(infos)} entries; at most "
                           f"{limits.zip_max_members} are accepted")
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
