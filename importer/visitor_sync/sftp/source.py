"""The importer's SFTP source: a district's drop box read and emptied over SFTP (paramiko).

Same contract as the local folder (:class:`visitor_sync.sources.Source`), with what a
network adds:

- the server is who it claims to be: its host key is pinned in a known_hosts file
  (``RejectPolicy``; an unknown or changed key stops the run, never a retry);
- connecting is retried a few times with exponential backoff, then
  :class:`SftpUnavailable` (the CLI exits 69: infrastructure, a later run may work);
- a link that drops in the middle of a run raises :class:`SftpConnectionLost` out of
  the pipeline, so the file being read is neither recorded nor removed;
- "the same file" means the same size and mtime, checked on the open handle (so a
  file swapped in by rename is never mistaken for the one listed);
- removal first overwrites the file with zeros through the same handle (and asks the
  server to fsync), then deletes the name only if it still names the zeroed file.

The importer's account sees the district's drop box and the held area side by side
(see :mod:`visitor_sync.sftp.server`): ``/district/upload`` and ``/held``.
"""

from __future__ import annotations

import logging
import os
import posixpath
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AnyStr
from urllib.parse import unquote, urlsplit

import paramiko
from paramiko.sftp import (
    CMD_CLOSE,
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
    CMD_HANDLE,
    CMD_OPENDIR,
    CMD_READDIR,
)
from paramiko.sftp_attr import SFTPAttributes
from paramiko.sftp_file import SFTPFile

from visitor_sync.filenames import display_name
from visitor_sync.filetypes import is_temporary
from visitor_sync.sftp.server import HELD_DIRECTORY
from visitor_sync.sources import HELD_DIRECTORY as HELD_LOCATION_PREFIX
from visitor_sync.sources import (
    FileChanged,
    Leftover,
    SourceFile,
    SourceUnavailable,
    held_location,
)

log = logging.getLogger(__name__)

#: Flow control: large windows and packets let one connection move >100 MB/s
#: (paramiko's defaults of 2 MiB / 32 KiB cap it near 10-80 MB/s).
WINDOW_SIZE = 32 * 1024 * 1024
MAX_PACKET_SIZE = 256 * 1024
#: Read/write request size when the server does not state its limits (the SFTP baseline).
DEFAULT_REQUEST_SIZE = 32 * 1024
#: Largest request made, whatever the server allows (memory per request).
MAX_REQUEST_SIZE = 1024 * 1024
#: Read requests in flight during a download.
CONCURRENT_READS = 32
#: Bytes per local write and per zero-overwrite write.
CHUNK_SIZE = 1024 * 1024

#: Preference order offered to the server (which offers AEAD and EtM only): AES-GCM is
#: one OpenSSL call per packet in paramiko, chacha20 is not available there.
CIPHER_PREFERENCE = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr",
                     "aes256-ctr")


class SftpError(Exception):
    """The SFTP drop box could not be used (the run cannot go on)."""


class SftpUnavailable(SftpError, SourceUnavailable):
    """No usable connection: refused, timed out, dropped, or the server was not trusted."""


class SftpConnectionLost(SftpUnavailable):
    """The connection broke during the run; nothing of the file being handled was kept."""


class SftpHostKeyError(SftpUnavailable):
    """The server's host key is not the pinned one (or none is pinned): never retried."""


class SftpAuthenticationError(SftpUnavailable):
    """The server refused our credentials: never retried."""


@dataclass(frozen=True)
class SftpTarget:
    """Where a drop box is: ``sftp://user@host:port/path``."""

    user: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> SftpTarget:
        """Parse an ``sftp://`` URL; credentials in it are refused (they would be logged)."""
        parts = urlsplit(url)
        if parts.scheme != "sftp":
            raise ValueError(f"not an sftp:// URL: {url!r}")
        if parts.password is not None:
            raise ValueError("put no password in the URL: use --sftp-password-file or "
                             "$VISITOR_SYNC_SFTP_PASSWORD")
        if not parts.username or not parts.hostname:
            raise ValueError("an SFTP source is sftp://user@host[:port]/path")
        if parts.query or parts.fragment:
            raise ValueError("an SFTP source URL has no query or fragment")
        path = posixpath.normpath(unquote(parts.path) or "/")
        if not path.startswith("/"):
            path = f"/{path}"
        return cls(unquote(parts.username), parts.hostname, parts.port or 22, path)

    def __str__(self) -> str:
        return f"sftp://{self.user}@{self.host}:{self.port}{self.path}"


@dataclass(frozen=True)
class SftpCredentials:
    """How the importer logs in. Read from files or the environment, never from argv."""

    key_file: Path | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.key_file is None and self.password is None:
            raise ValueError("an SFTP source needs a key file or a password")


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait: TCP connect, banner and authentication; any single read."""

    connect: float = 15.0
    read: float = 60.0


@dataclass(frozen=True)
class Retry:
    """Connection attempts and the first backoff delay (doubled after each failure)."""

    attempts: int = 4
    delay: float = 1.0

    def delays(self) -> Iterator[float]:
        for attempt in range(self.attempts - 1):
            yield self.delay * 2**attempt


def _same(attributes: SFTPAttributes, file: SourceFile | SFTPAttributes) -> bool:
    """A regular file with the size and mtime of ``file`` (as listed, or as last seen)."""
    size, mtime = ((file.size, file.mtime) if isinstance(file, SourceFile)
                   else (file.st_size, file.st_mtime))
    return (attributes.st_mode is not None and stat.S_ISREG(attributes.st_mode)
            and attributes.st_size == size and attributes.st_mtime == mtime)


class SftpSource:
    """A district's drop box over SFTP; open it (``with``) before use, it closes the link."""

    def __init__(self, target: SftpTarget, credentials: SftpCredentials, known_hosts: Path, *,
                 held_path: str = f"/{HELD_DIRECTORY}", timeouts: Timeouts | None = None,
                 retry: Retry | None = None, sleep: Callable[[float], None] = time.sleep
                 ) -> None:
        self.target = target
        self.credentials = credentials
        self.known_hosts = known_hosts
        self.held_path = held_path.rstrip("/") or "/"
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or Retry()
        self._sleep = sleep
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._read_size = self._write_size = DEFAULT_REQUEST_SIZE

    # -- the connection -----------------------------------------------------------------

    def __enter__(self) -> SftpSource:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> None:
        """Connect, retrying connection failures; host key and login failures are final."""
        pkey = self._load_key()
        delays = self.retry.delays()
        while True:
            try:
                self._connect(pkey)
                return
            except (SftpHostKeyError, SftpAuthenticationError):
                raise
            except (OSError, EOFError, paramiko.SSHException) as error:
                self.close()
                delay = next(delays, None)
                if delay is None:
                    raise SftpUnavailable(
                        f"cannot connect to {self.target} after {self.retry.attempts} "
                        f"attempt(s): {_describe(error)}") from error
                log.warning("cannot connect to %s (%s); retrying in %.1f s", self.target,
                            _describe(error), delay)
                self._sleep(delay)

    def _load_key(self) -> paramiko.PKey | None:
        if self.credentials.key_file is None:
            return None
        try:
            return paramiko.PKey.from_path(self.credentials.key_file)
        except (OSError, paramiko.SSHException, ValueError) as error:
            raise SftpAuthenticationError(
                f"cannot read the SFTP key {self.credentials.key_file}: {error}") from error

    def _connect(self, pkey: paramiko.PKey | None) -> None:
        client = paramiko.SSHClient()
        self._client = client
        try:
            client.load_host_keys(str(self.known_hosts))
        except OSError as error:
            raise SftpHostKeyError(f"cannot read known_hosts {self.known_hosts}: "
                                   f"{error}") from error
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        name = (self.target.host if self.target.port == 22
                else f"[{self.target.host}]:{self.target.port}")
        if client.get_host_keys().lookup(name) is None:
            raise SftpHostKeyError(f"no host key for {name} in {self.known_hosts}: pin the "
                                   "server's key (its fingerprint is in the district's status)")
        timeout = self.timeouts.connect
        try:
            client.connect(self.target.host, self.target.port, username=self.target.user,
                           pkey=pkey, password=self.credentials.password, timeout=timeout,
                           banner_timeout=timeout, auth_timeout=timeout,
                           channel_timeout=timeout, look_for_keys=False, allow_agent=False,
                           transport_factory=_transport)
        except paramiko.BadHostKeyException as error:
            raise SftpHostKeyError(
                f"the host key of {name} is not the pinned one (expected "
                f"{error.expected_key.fingerprint}, got {error.key.fingerprint}): refusing "
                "to connect; if the server's key was really replaced, update known_hosts"
            ) from error
        except paramiko.AuthenticationException as error:
            raise SftpAuthenticationError(
                f"{self.target.user}@{name} refused our credentials: {error}") from error
        transport = client.get_transport()
        sftp = transport and paramiko.SFTPClient.from_transport(
            transport, window_size=WINDOW_SIZE, max_packet_size=MAX_PACKET_SIZE)
        channel = sftp and sftp.get_channel()
        if transport is None or sftp is None or channel is None:
            raise paramiko.SSHException("the server opened no SFTP channel")
        channel.settimeout(self.timeouts.read)
        self._sftp = sftp
        self._read_size, self._write_size = self._server_limits()
        log.info("connected to %s (%s, host key %s)", self.target, transport.remote_cipher,
                 transport.get_remote_server_key().fingerprint)

    def _server_limits(self) -> tuple[int, int]:
        """The largest read and write the server serves whole (``limits@openssh.com``):
        fewer, larger requests are what makes paramiko fast."""
        try:
            kind, message = self.sftp._request(CMD_EXTENDED, "limits@openssh.com")
        except OSError:
            kind = None
        if kind != CMD_EXTENDED_REPLY:
            return DEFAULT_REQUEST_SIZE, DEFAULT_REQUEST_SIZE
        message.get_int64()  # max packet length
        limits = message.get_int64(), message.get_int64()  # max read, max write
        read, write = (min(limit, MAX_REQUEST_SIZE) if limit else DEFAULT_REQUEST_SIZE
                       for limit in limits)
        return read, write

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None
        self._sftp = None

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            raise SftpConnectionLost(f"not connected to {self.target}")
        return self._sftp

    @contextmanager
    def _link(self) -> Iterator[paramiko.SFTPClient]:
        """Turn a broken connection into :class:`SftpConnectionLost` (and drop it).

        SFTP status errors (no such file, permission denied) are ``OSError`` too and
        pass through unchanged while the transport is still up.
        """
        sftp = self.sftp
        try:
            yield sftp
        except (OSError, EOFError, paramiko.SSHException) as error:
            transport = self._client.get_transport() if self._client else None
            if (isinstance(error, (socket.timeout, EOFError, paramiko.SSHException))
                    or transport is None or not transport.is_active()):
                self.close()
                raise SftpConnectionLost(
                    f"the connection to {self.target} was lost: {_describe(error)}") from error
            raise

    # -- the Source protocol ------------------------------------------------------------

    def list_files(self) -> list[SourceFile]:
        """Regular files of the drop box (no links, directories or temporary names); names
        are read as bytes, so no name an uploader chose can stop the listing."""
        with self._link():
            entries = self._entries(self.target.path)
        return sorted((SourceFile.listed(name, entry.st_size or 0, float(entry.st_mtime or 0))
                       for name, entry in entries
                       if entry.st_mode is not None and stat.S_ISREG(entry.st_mode)
                       and not is_temporary(display_name(name))), key=lambda file: file.raw)

    def _entries(self, path: str | bytes) -> list[tuple[bytes, SFTPAttributes]]:
        """A directory's entries by their exact name bytes (paramiko's listdir decodes
        every name as UTF-8 and fails the whole listing on the first that is not)."""
        kind, message = self.sftp._request(CMD_OPENDIR, path)
        if kind != CMD_HANDLE:
            raise paramiko.SFTPError("the server opened no directory handle")
        handle = message.get_binary()
        entries = []
        try:
            while True:
                try:
                    kind, message = self.sftp._request(CMD_READDIR, handle)
                except EOFError:  # SSH_FX_EOF: the listing is complete
                    return entries
                for _ in range(message.get_int()):
                    name = message.get_binary()
                    message.get_binary()  # the "ls -l" line
                    attributes = SFTPAttributes._from_msg(message)
                    if name not in (b".", b".."):
                        entries.append((name, attributes))
        finally:
            self.sftp._request(CMD_CLOSE, handle)

    @contextmanager
    def fetch(self, file: SourceFile) -> Iterator[Path]:
        with _scratch() as scratch:
            copy = scratch / _plain(file.name)
            with self._link():
                try:
                    handle = self._open(self._inbox_path(file), "rb")
                except FileNotFoundError as gone:
                    raise FileChanged(file.name) from gone
                with handle:
                    if not _same(handle.stat(), file):
                        raise FileChanged(file.name)
                    if not self._download(handle, file.size, copy):
                        raise FileChanged(file.name)
                    if not _same(handle.stat(), file):
                        raise FileChanged(file.name)
            yield copy

    def remove(self, file: SourceFile) -> bool:
        path = self._inbox_path(file)
        with self._link() as sftp:
            try:
                handle = self._open(path, "r+b")
            except FileNotFoundError:
                return False
            with handle:
                if not _same(handle.stat(), file):
                    return False
                zeroed = self._overwrite(handle, file.size)
            # The name must still be the zeroed file, not one uploaded meanwhile.
            current = self._lstat(path)
            if current is None or not _same(current, zeroed):
                log.warning("%s was replaced while being removed; the new file stays",
                            file.name)
                return False
            sftp.remove(path)
        log.info("removed %s (overwritten with zeros first)", file.name)
        return True

    def hold(self, file: SourceFile, run_id: str) -> bool:
        path = self._inbox_path(file)
        directory = posixpath.join(self.held_path, _plain(run_id))
        target = posixpath.join(directory, file.name)
        with self._link() as sftp:
            current = self._lstat(path)
            if current is None or not _same(current, file):
                return False
            if self._lstat(directory) is None:
                sftp.mkdir(directory, 0o700)
            sftp.rename(path, target)
            moved = self._lstat(target)
            if moved is None or not _same(moved, file):
                # Replaced between the check and the move: give the new file back.
                try:
                    sftp.rename(target, path)
                except OSError as error:
                    if not isinstance(error, FileNotFoundError) and self._lstat(path):
                        log.error("%s was replaced twice while being held; the newer "
                                  "upload stays in %s: %s", file.name, target, error)
                    else:
                        raise
                return False
        return True

    @contextmanager
    def fetch_held(self, location: str) -> Iterator[Path]:
        path = self._held_path(location)
        with _scratch() as scratch:
            copy = scratch / posixpath.basename(path)
            with self._link(), self._open(path, "rb") as handle:
                size = handle.stat().st_size or 0
                if not self._download(handle, size, copy):
                    raise SftpError(f"the held file {location} changed while it was read")
            yield copy

    def discard_held(self, location: str) -> None:
        path = self._held_path(location)
        with self._link() as sftp:
            try:
                with self._open(path, "r+b") as handle:
                    self._overwrite(handle, handle.stat().st_size or 0)
                sftp.remove(path)
            except FileNotFoundError:
                pass
            directory = posixpath.dirname(path)
            try:
                if not sftp.listdir(directory):
                    sftp.rmdir(directory)
            except FileNotFoundError:
                pass

    def held_locations(self) -> list[str]:
        with self._link():
            if self._lstat(self.held_path) is None:
                return []
            runs = [run for run, entry in self._entries(self.held_path)
                    if entry.st_mode is not None and stat.S_ISDIR(entry.st_mode)]
            return sorted(held_location(os.fsdecode(run), os.fsdecode(name))
                          for run in runs for name, entry in self._entries(
                              posixpath.join(os.fsencode(self.held_path), run))
                          if entry.st_mode is None or not stat.S_ISDIR(entry.st_mode))

    def leftovers(self, before: float) -> list[Leftover]:
        inbox = os.fsencode(self.target.path)
        found = []
        with self._link():
            for name, entry in self._entries(inbox):
                directory = entry.st_mode is not None and stat.S_ISDIR(entry.st_mode)
                if not (directory or is_temporary(display_name(name))):
                    continue
                path = posixpath.join(inbox, name)
                newest = self._newest_change(path) if directory else entry.st_mtime or 0
                if newest < before:
                    found.append(Leftover(display_name(name), name, directory))
        return found

    def remove_leftover(self, leftover: Leftover) -> None:
        with self._link():
            self._remove_tree(posixpath.join(os.fsencode(self.target.path), _plain(leftover.raw)))
        log.info("removed the drop box leftover %s", leftover.name)

    def _newest_change(self, folder: bytes) -> float:
        newest = float(self.sftp.lstat(folder).st_mtime or 0)
        for name, entry in self._entries(folder):
            if entry.st_mode is not None and stat.S_ISDIR(entry.st_mode):
                newest = max(newest, self._newest_change(posixpath.join(folder, name)))
            newest = max(newest, float(entry.st_mtime or 0))
        return newest

    def _remove_tree(self, path: bytes) -> None:
        """Remove a file (overwritten with zeros first) or a folder and all it holds."""
        attributes = self.sftp.lstat(path)
        if attributes.st_mode is not None and stat.S_ISDIR(attributes.st_mode):
            for name, _ in self._entries(path):
                self._remove_tree(posixpath.join(path, name))
            self.sftp.rmdir(path)
            return
        if attributes.st_mode is not None and stat.S_ISREG(attributes.st_mode):
            with self._open(path, "r+b") as handle:
                self._overwrite(handle, attributes.st_size or 0)
        self.sftp.remove(path)

    # -- helpers ------------------------------------------------------------------------

    def _inbox_path(self, file: SourceFile) -> bytes:
        """The file's path by its exact name bytes (paramiko sends bytes paths as they are)."""
        return posixpath.join(os.fsencode(self.target.path), _plain(file.raw))

    def _held_path(self, location: str) -> str:
        """``held/<run_id>/<name>`` (from :func:`visitor_sync.sources.held_location`)."""
        prefix, separator, rest = location.partition("/")
        run_id, _, name = rest.partition("/")
        if prefix != HELD_LOCATION_PREFIX or not separator:
            raise ValueError(f"not a held file: {location}")
        return posixpath.join(self.held_path, _plain(run_id), _plain(name))

    def _open(self, path: str | bytes, mode: str) -> SFTPFile:
        """Open ``path``; a file its uploader made unreadable is given back owner access
        (the importer's account is the same uid, so it may)."""
        try:
            return self.sftp.open(path, mode)
        except PermissionError:
            self.sftp.chmod(path, 0o600)
            return self.sftp.open(path, mode)

    def _lstat(self, path: str) -> SFTPAttributes | None:
        try:
            return self.sftp.lstat(path)
        except FileNotFoundError:
            return None

    def _download(self, handle: SFTPFile, size: int, target: Path) -> bool:
        """Copy ``size`` bytes into a new 0600 file; ``False`` if the file was shorter."""
        handle.MAX_REQUEST_SIZE = self._read_size
        handle.prefetch(size, CONCURRENT_READS)
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as local:
            remaining = size
            while remaining:
                data = handle.read(min(CHUNK_SIZE, remaining))
                if not data:
                    return False
                local.write(data)
                remaining -= len(data)
        return True

    def _overwrite(self, handle: SFTPFile, size: int) -> SFTPAttributes:
        """Zeros over the first ``size`` bytes, flushed to the server's disk."""
        handle.MAX_REQUEST_SIZE = self._write_size
        handle.set_pipelined(True)
        zeros = bytes(CHUNK_SIZE)
        written = 0
        while written < size:
            count = min(CHUNK_SIZE, size - written)
            handle.write(zeros[:count])
            written += count
        handle.flush()
        self.sftp._finish_responses(handle)  # every write acknowledged before the fsync
        handle._check_exception()
        try:
            self.sftp._request(CMD_EXTENDED, "fsync@openssh.com", handle.handle)
        except OSError as error:  # the zeros are written, maybe not yet on disk
            log.warning("the server could not fsync the overwritten file: %s", error)
        return handle.stat()


def _transport(sock: Any, **options: Any) -> paramiko.Transport:
    """A transport with large windows and our cipher preference (see the constants)."""
    transport = paramiko.Transport(sock, default_window_size=WINDOW_SIZE,
                                   default_max_packet_size=MAX_PACKET_SIZE, **options)
    security = transport.get_security_options()
    available = security.ciphers
    security.ciphers = (*[name for name in CIPHER_PREFERENCE if name in available],
                        *[name for name in available if name not in CIPHER_PREFERENCE])
    return transport


def _plain(name: AnyStr) -> AnyStr:
    """A single path component, so no name can reach outside its directory."""
    text = os.fsdecode(name)
    if not text or text in (".", "..") or "/" in text or "\x00" in text:
        raise ValueError(f"not a plain file name: {name!r}")
    return name


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}" if text != type(error).__name__ else text


@contextmanager
def _scratch() -> Iterator[Path]:
    """A private (0700) directory for one downloaded copy, deleted with its contents."""
    with tempfile.TemporaryDirectory(prefix="visitor-sync-sftp-") as scratch:
        yield Path(scratch)
