"""Where district files come from: one interface for a local folder and for SFTP.

The pipeline lists ready files, fetches each into a private local copy,
records its outcome, then either removes it (only if it is still the very
file that was read: same size and mtime) or moves it to the held area.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from visitor_sync.filetypes import is_temporary

HELD_DIRECTORY = "held"


@dataclass(frozen=True)
class SourceFile:
    name: str
    size: int
    mtime: float


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
        self.paths = {path.name: path for path in paths}

    def list_files(self) -> list[SourceFile]:
        return [SourceFile(name, path.stat().st_size, 0.0) for name, path in self.paths.items()]

    @contextmanager
    def fetch(self, file: SourceFile) -> Iterator[Path]:
        yield self.paths[file.name]


class LocalFolderSource:
    """A folder on this machine (the demo, tests, a mounted volume)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.held_root = root / HELD_DIRECTORY

    def list_files(self) -> list[SourceFile]:
        files = []
        for path in sorted(self.root.iterdir()):
            if path.is_file() and not path.is_symlink() and not is_temporary(path.name):
                stat = path.stat()
                files.append(SourceFile(path.name, stat.st_size, stat.st_mtime))
        return files

    @contextmanager
    def fetch(self, file: SourceFile) -> Iterator[Path]:
        with _private_copy(self.root / file.name, file) as copy:
            yield copy

    def remove(self, file: SourceFile) -> bool:
        path = self.root / file.name
        if not _unchanged(path, file):
            return False
        path.unlink()
        return True

    def hold(self, file: SourceFile, run_id: str) -> bool:
        path = self.root / file.name
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

    def _held_path(self, location: str) -> Path:
        path = (self.root / location).resolve()
        if not path.is_relative_to(self.held_root.resolve()):
            raise ValueError(f"not a held file: {location}")
        return path


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
