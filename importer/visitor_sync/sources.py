"""Where district files come from: one interface for a local folder and for SFTP.

The pipeline lists ready files, fetches each into a private local copy,
records its outcome, then either removes it (only if it is still the very
file that was read: same size and mtime) or moves it to the held area.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from visitor_sync.filenames import display_name
from visitor_sync.filetypes import is_temporary

HELD_DIRECTORY = "held"


@dataclass(frozen=True)
class SourceFile:
    """A listed file: ``name`` is printable (:func:`~visitor_sync.filenames.display_name`),
    ``raw`` the exact bytes the source knows it by (any bytes an uploader chose)."""

    name: str
    size: int
    mtime: float
    raw: bytes = b""

    def __post_init__(self) -> None:
        if not self.raw:
            object.__setattr__(self, "raw", os.fsencode(self.name))

    @classmethod
    def listed(cls, raw: bytes, size: int, mtime: float) -> SourceFile:
        return cls(display_name(raw), size, mtime, raw)


@dataclass(frozen=True)
class Leftover:
    """A temporary upload name or a sub-folder of the drop box, by its exact name bytes."""

    name: str
    raw: bytes
    directory: bool


class SourceUnavailable(Exception):
    """The drop box itself failed (connection lost, server gone): the run stops, non-zero."""


class FileChanged(Exception):
    """The file changed while it was being read; it waits for the next run."""


class Inbox(Protocol):
    """What validation needs: the files and their contents."""

    def list_files(self) -> list[SourceFile]:
        """Regular files in the inbox, temporary upload names excluded."""

    def fetch(self, file: SourceFile) -> AbstractContextManager[Path]:
        """A private local copy of the file, deleted when the context ends."""


class Source(Inbox, Protocol):
    """A district's drop box: an inbox whose processed files are removed or held."""

    def remove(self, file: SourceFile) -> bool:
        """Remove the file if it is unchanged since listed; ``False`` if it was replaced."""

    def hold(self, file: SourceFile, run_id: str) -> bool:
        """Move the file to ``held_location(run_id, name)`` if unchanged since listed;
        ``False`` if it was replaced meanwhile (it stays for the next run)."""

    def fetch_held(self, location: str) -> AbstractContextManager[Path]:
        """A private local copy of a held file."""

    def discard_held(self, location: str) -> None:
        """Remove a held file for good (applied, superseded or expired)."""

    def held_locations(self) -> list[str]:
        """Every file in the held area, as ``held_location`` strings (for the sweep)."""

    def leftovers(self, before: float) -> list[Leftover]:
        """Temporary names and sub-folders of the inbox whose newest change (anywhere in a
        folder) is older than ``before`` (a timestamp)."""

    def remove_leftover(self, leftover: Leftover) -> None:
        """Remove a leftover file, or a sub-folder with everything in it."""



@dataclass(frozen=True)
class Waiting:
    """A file left for a later run, and why (for the district and support)."""

    file: SourceFile
    reason: str


def ready(files: list[SourceFile], now: float, quiet_period: float) -> tuple[
        list[SourceFile], list[Waiting]]:
    """Split into files quiet for the whole period and files that may still be uploading.

    The server stamps a file it is writing with its own clock; only a client sets a
    time ahead of it (``put -p`` from a machine whose clock is fast), and clients do
    that after the last byte. So a file dated up to one quiet period ahead (clock skew
    between the server and us) waits out the period from its date, and one dated further
    ahead is settled: it never waits longer than twice the quiet period.
    """
    settled: list[SourceFile] = []
    waiting: list[Waiting] = []
    for file in files:
        age = now - file.mtime
        if age >= quiet_period or -age > quiet_period:
            settled.append(file)
            continue
        left = f"{quiet_period - age:.0f} s"
        if age >= 0:
            reason = (f"changed {age:.0f} s ago, within the quiet period of {quiet_period:g} s "
                      f"(it may still be uploading); the first run after {left} reads it")
        else:
            reason = (f"dated {-age:.0f} s in the future (the uploading machine's clock); it "
                      f"waits out the quiet period of {quiet_period:g} s from that date, "
                      f"so the first run after {left} reads it")
        waiting.append(Waiting(file, reason))
    return settled, waiting


def held_location(run_id: str, file_name: str) -> str:
    """Where a source keeps a file held by a run (relative to its inbox)."""
    return f"{HELD_DIRECTORY}/{run_id}/{file_name}"


class FileList:
    """Files named on a command line (``visitor-sync validate``): read, never changed."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = {os.fsencode(path.name): path for path in paths}

    def list_files(self) -> list[SourceFile]:
        return [SourceFile.listed(raw, path.stat().st_size, 0.0)
                for raw, path in self.paths.items()]

    @contextmanager
    def fetch(self, file: SourceFile) -> Iterator[Path]:
        yield self.paths[file.raw]


class LocalFolderSource:
    """A folder on this machine (the demo, tests, a mounted volume)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.held_root = root / HELD_DIRECTORY

    def list_files(self) -> list[SourceFile]:
        """Names are read as bytes: any name an uploader chose is listed, none is fatal."""
        files = []
        with os.scandir(os.fsencode(self.root)) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False) \
                        and not is_temporary(display_name(entry.name)):
                    stat = entry.stat(follow_symlinks=False)
                    files.append(SourceFile.listed(entry.name, stat.st_size, stat.st_mtime))
        return sorted(files, key=lambda file: file.raw)

    @contextmanager
    def fetch(self, file: SourceFile) -> Iterator[Path]:
        with _private_copy(self._path(file), file) as copy:
            yield copy

    def remove(self, file: SourceFile) -> bool:
        path = self._path(file)
        if not _unchanged(path, file):
            return False
        path.unlink()
        return True

    def hold(self, file: SourceFile, run_id: str) -> bool:
        path = self._path(file)
        if not _unchanged(path, file):
            return False
        target = self.root / held_location(run_id, file.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
        return True

    @contextmanager
    def fetch_held(self, location: str) -> Iterator[Path]:
        with _private_copy(self._held_path(location), None) as copy:
            yield copy

    def discard_held(self, location: str) -> None:
        path = self._held_path(location)
        path.unlink(missing_ok=True)
        if path.parent != self.held_root and path.parent.is_dir() \
                and not any(path.parent.iterdir()):
            path.parent.rmdir()

    def held_locations(self) -> list[str]:
        if not self.held_root.is_dir():
            return []
        return sorted(held_location(run.name, held.name) for run in self.held_root.iterdir()
                      if run.is_dir() and not run.is_symlink() for held in run.iterdir()
                      if not held.is_dir() or held.is_symlink())

    def leftovers(self, before: float) -> list[Leftover]:
        found = []
        with os.scandir(os.fsencode(self.root)) as entries:
            for entry in entries:
                directory = entry.is_dir(follow_symlinks=False)
                if entry.name == os.fsencode(HELD_DIRECTORY) or not (
                        directory or is_temporary(display_name(entry.name))):
                    continue
                if _newest_change(entry.path) < before:
                    found.append(Leftover(display_name(entry.name), entry.name, directory))
        return found

    def remove_leftover(self, leftover: Leftover) -> None:
        path = os.path.join(os.fsencode(self.root), leftover.raw)
        if leftover.directory:
            shutil.rmtree(path)
        else:
            os.unlink(path)

    def _path(self, file: SourceFile) -> Path:
        return self.root / os.fsdecode(file.raw)

    def _held_path(self, location: str) -> Path:
        path = (self.root / location).resolve()
        if not path.is_relative_to(self.held_root.resolve()):
            raise ValueError(f"not a held file: {location}")
        return path


def _newest_change(path: bytes) -> float:
    """The latest mtime of ``path`` and, for a folder, of everything in it."""
    newest = os.lstat(path).st_mtime
    for folder, directories, files in os.walk(path):
        for name in (*directories, *files):
            newest = max(newest, os.lstat(os.path.join(folder, name)).st_mtime)
    return newest


def _unchanged(path: Path, file: SourceFile) -> bool:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return False
    return stat.st_size == file.size and stat.st_mtime == file.mtime


@contextmanager
def _private_copy(path: Path, listed: SourceFile | None) -> Iterator[Path]:
    """Copy ``path`` aside; with ``listed``, it must still be the file that was listed."""
    with tempfile.TemporaryDirectory(prefix="visitor-sync-") as scratch:
        copy = Path(scratch) / path.name
        try:
            shutil.copyfile(path, copy)
        except FileNotFoundError as gone:
            if listed is None:
                raise
            raise FileChanged(path.name) from gone
        if listed is not None and not _unchanged(path, listed):
            raise FileChanged(path.name)
        yield copy
