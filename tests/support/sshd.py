"""A real OpenSSH sshd serving a district's drop box, started the way the image starts it.

The server is configured by the project's own renderer (``render_sshd_config``) and
started by the project's own ``images/sftp/entrypoint.sh`` (which creates the system
accounts, directories and keys from "mounted Secret" files, checks the config with
``sshd -t`` and execs ``sshd -D -e``), so every test that uses it also exercises the
entrypoint. It listens on 127.0.0.1 on a free port under ``/srv/visitor-sync-test/``
(chroots must be root-owned all the way up: not /tmp).

System accounts are named ``vst-<pid>-<n>-d`` / ``-i``: unique per process, so
pytest-xdist workers never clash, and removed at teardown; accounts and directories
left by a process that died are swept when the next one starts.

Like ``tests.support.postgres`` this imports no pytest, so ``benchmarks/`` reuse it.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import itertools
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any

import paramiko

from visitor_sync.sftp.credentials import generate_password
from visitor_sync.sftp.keys import KeyPair, generate_key, known_hosts_line
from visitor_sync.sftp.server import (
    Layout,
    SshdSettings,
    entrypoint_environment,
    layout,
    render_sshd_config,
)

REPOSITORY = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPOSITORY / "images" / "sftp" / "entrypoint.sh"
TEST_ROOT = Path("/srv/visitor-sync-test")
HOST = "127.0.0.1"
START_TIMEOUT = 15.0
_ACCOUNT_NAME = re.compile(r"^vst-(\d+)-\d+-[di]$")
_DIRECTORY_NAME = re.compile(r"^(\d+)-")
_counter = itertools.count(1)


class SshdUnavailableError(RuntimeError):
    """sshd cannot run here (not installed, or not root). Fail, do not skip."""


def check_available() -> None:
    if os.geteuid() != 0:
        raise SshdUnavailableError("the sshd tests need root (chroot, system accounts)")
    if shutil.which("sshd") is None and not Path("/usr/sbin/sshd").exists():
        raise SshdUnavailableError("openssh-server is not installed (scripts/test installs it)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _accounts_lock() -> Iterator[None]:
    """Serialise account changes between workers (shadow's own lock fails fast)."""
    TEST_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(TEST_ROOT / ".accounts.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _delete_account(name: str) -> None:
    subprocess.run(["userdel", name], capture_output=True, check=False)


def _delete_group(name: str) -> None:
    subprocess.run(["groupdel", name], capture_output=True, check=False)


def sweep_stale() -> None:
    """Remove accounts and directories left by test processes that no longer run."""
    with _accounts_lock():
        stale = [entry.pw_name for entry in pwd.getpwall()
                 if (match := _ACCOUNT_NAME.match(entry.pw_name)) and not _alive(
                     int(match.group(1)))]
        for name in sorted(stale, key=lambda name: not name.endswith("-i")):  # importers first
            _delete_account(name)
        for name in stale:
            _delete_group(name)
    if TEST_ROOT.exists():
        for path in TEST_ROOT.iterdir():
            match = _DIRECTORY_NAME.match(path.name)
            if path.is_dir() and match and not _alive(int(match.group(1))):
                shutil.rmtree(path, ignore_errors=True)


@dataclass
class ClientKey:
    """A login key: its private key file (0600) and its public line for authorized_keys."""

    pair: KeyPair
    path: Path

    @classmethod
    def create(cls, directory: Path, name: str) -> ClientKey:
        pair = generate_key("ed25519")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / name
        path.write_bytes(pair.private_openssh)
        path.chmod(0o600)
        return cls(pair, path)


@dataclass
class Accounts:
    """A district's two login names (district, importer) and their credentials.

    The system accounts themselves are created by the entrypoint when a server
    starts; :meth:`remove` deletes them.
    """

    district: str
    importer: str
    uid: int
    password: str
    district_key: ClientKey
    importer_key: ClientKey

    @classmethod
    def create(cls, directory: Path) -> Accounts:
        number = next(_counter)
        prefix = f"vst-{os.getpid()}-{number}"
        return cls(district=f"{prefix}-d", importer=f"{prefix}-i", uid=_free_uid(),
                   password=generate_password(),
                   district_key=ClientKey.create(directory / prefix, "district_ed25519"),
                   importer_key=ClientKey.create(directory / prefix, "importer_ed25519"))

    def remove(self) -> None:
        with _accounts_lock():
            _delete_account(self.importer)
            _delete_account(self.district)
            _delete_group(self.district)


def _free_uid() -> int:
    """A uid (and gid) no account or group has: the entrypoint makes both."""
    used = {entry.pw_uid for entry in pwd.getpwall()} | {entry.gr_gid for entry in grp.getgrall()}
    while True:
        uid = random.randrange(20000, 60000)
        if uid not in used:
            return uid


@cache
def host_keys() -> tuple[KeyPair, KeyPair]:
    """The ed25519 and RSA host keys of every test server (RSA generation is slow)."""
    return generate_key("ed25519"), generate_key("rsa", 3072)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class SftpServer:
    """One district's sshd, started through the image's entrypoint with rendered settings.

    ``settings_overrides`` overrides :class:`SshdSettings` fields (e.g. ``password_login=False``,
    ``allowed_networks=[...]``); paths, users and the port are filled in here.
    """

    accounts: Accounts
    base: Path
    settings_overrides: dict[str, Any] = field(default_factory=dict)
    #: run the entrypoint through this, e.g. setpriv to drop capabilities
    command_prefix: list[str] = field(default_factory=list)
    host: str = HOST
    port: int = 0
    settings: SshdSettings | None = None
    process: subprocess.Popen[bytes] | None = None
    #: :meth:`log` shows what was logged after this offset (see :meth:`reset`)
    log_offset: int = 0

    @property
    def config(self) -> SshdSettings:
        assert self.settings is not None, "start() the server first"
        return self.settings

    @property
    def paths(self) -> Layout:
        return layout(self.config)

    @property
    def upload(self) -> Path:
        """The drop box on disk (what the district sees as /upload)."""
        return Path(self.paths.upload)

    @property
    def held(self) -> Path:
        return Path(self.paths.held)

    @property
    def log_file(self) -> Path:
        return self.base / "sshd.log"

    @property
    def known_hosts(self) -> Path:
        return self.base / "known_hosts"

    @property
    def secrets(self) -> Path:
        return self.base / "secrets"

    def log(self) -> str:
        """sshd's log (and the SFTP transaction log) since the last :meth:`reset`."""
        if not self.log_file.exists():
            return ""
        with self.log_file.open("rb") as log:
            log.seek(self.log_offset)
            return log.read().decode(errors="replace")

    def log_after(self, text: str, timeout: float = 10.0) -> str:
        """The log once it holds ``text``: the SFTP audit lines pass through a relay, so
        they land a moment after the client's request returns."""
        deadline = time.monotonic() + timeout
        while text not in (log := self.log()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return log

    def reset(self) -> SftpServer:
        """Back to an empty drop box and held area for the next test, the server kept
        running (restarted if a test stopped it); the log starts afresh."""
        if self.process is None or self.process.poll() is not None:
            self.stop()
            self.start()
        self.drop_connections()
        for area in (self.upload, self.held):
            for path in area.iterdir():
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        self.log_offset = self.log_file.stat().st_size
        return self

    def url(self, user: str | None = None, path: str | None = None) -> str:
        """``sftp://importer@127.0.0.1:port/district/upload`` (the importer's view)."""
        return (f"sftp://{user or self.accounts.importer}@{self.host}:{self.port}"
                f"{path or self.paths.importer_upload_path}")

    def _settings(self) -> SshdSettings:
        keys = self.base / "keys"
        values: dict[str, Any] = {
            "listen_address": self.host, "port": self.port, "root": str(self.base / "root"),
            "district_user": self.accounts.district, "importer_user": self.accounts.importer,
            "district_authorized_keys": str(keys / "district_authorized_keys"),
            "importer_authorized_keys": str(keys / "importer_authorized_keys"),
            "host_keys": [str(keys / "ssh_host_ed25519_key"), str(keys / "ssh_host_rsa_key")],
            "pid_file": str(self.base / "sshd.pid"),
            **self.settings_overrides,
        }
        return SshdSettings.model_validate(values)

    def _write_inputs(self, settings: SshdSettings) -> None:
        """What the operator would provide: the ConfigMap file and the Secret's files."""
        self.secrets.mkdir(mode=0o700, parents=True, exist_ok=True)
        ed25519, rsa = host_keys()
        files = {
            "ssh_host_ed25519_key": ed25519.private_openssh,
            "ssh_host_rsa_key": rsa.private_openssh,
            "district-password": f"{self.accounts.password}\n".encode(),
            "district-authorized-keys": f"{self.accounts.district_key.pair.public_line}\n"
                                        .encode(),
            "importer-authorized-keys": f"{self.accounts.importer_key.pair.public_line}\n"
                                        .encode(),
        }
        for name, content in files.items():
            path = self.secrets / name
            path.write_bytes(content)
            path.chmod(0o400)
        (self.base / "sshd_config").write_text(render_sshd_config(settings))
        self.known_hosts.write_text("".join(
            f"{known_hosts_line(self.host, self.port, key.public_line)}\n"
            for key in (ed25519, rsa)))

    def start(self) -> SftpServer:
        check_available()
        self.base.mkdir(mode=0o755, parents=True, exist_ok=True)
        for _attempt in range(3):  # a free port can be taken by another worker meanwhile
            self.port = free_port()
            self.settings = self._settings()
            self._write_inputs(self.settings)
            environment = {**os.environ, **entrypoint_environment(
                self.settings, uid=self.accounts.uid,
                config_path=str(self.base / "sshd_config"),
                secrets_directory=str(self.secrets))}
            with _accounts_lock(), self.log_file.open("ab") as log:
                self.process = subprocess.Popen(
                    [*self.command_prefix, str(ENTRYPOINT)], env=environment,
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
                if self._wait_until_listening():
                    return self
            if "Address already in use" not in self.log():
                break
        raise RuntimeError(f"sshd did not start; its log:\n{self.log()}")

    def _wait_until_listening(self) -> bool:
        """Whether sshd answers with its banner (False if it exited)."""
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if "starting sshd" in self.log():
                try:
                    with socket.create_connection((self.host, self.port), timeout=1) as sock:
                        if sock.recv(64).startswith(b"SSH-2.0-"):
                            return True
                except OSError:
                    pass
            time.sleep(0.02)
        self.stop()
        return False

    def stop(self) -> None:
        """Stop sshd, its connections (each in its own session: sshd calls setsid) and the
        log relay (all sshd's children; the group, started here, is killed last)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            # Children first, while sshd is there to reap them (this machine's init may not).
            for pid in _children(self.process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 2
            while _children(self.process.pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # the relay outlives the listener
        self.process = None

    def connection_pids(self) -> list[int]:
        """Per-connection sshd processes (the listener's children, not the log relay)."""
        assert self.process is not None
        return [pid for pid in _children(self.process.pid)
                if "syslog-relay" not in _command(pid)]

    def connection_processes(self) -> list[int]:
        """Every process serving a connection: the privileged monitor and its children
        (the user's SFTP session)."""
        return [pid for connection in self.connection_pids()
                for pid in (connection, *_children(connection))]

    def drop_connections(self) -> None:
        """Kill every connection's sshd processes: clients see the link drop mid-stream."""
        for pid in self.connection_pids():
            for child in _children(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> SftpServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.remove()

    # -- clients -----------------------------------------------------------------------

    def client(self, user: str, *, password: str | None = None, key: ClientKey | None = None,
               known_hosts: Path | None = None) -> paramiko.SSHClient:
        """A connected paramiko client verifying the pinned host key (RejectPolicy)."""
        client = paramiko.SSHClient()
        client.load_host_keys(str(known_hosts or self.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(self.host, self.port, username=user, password=password,
                           key_filename=str(key.path) if key else None, look_for_keys=False,
                           allow_agent=False, timeout=10, banner_timeout=10, auth_timeout=10)
        except BaseException:
            client.close()
            raise
        return client

    @contextmanager
    def sftp(self, user: str | None = None, **credentials: Any) -> Iterator[paramiko.SFTPClient]:
        """An SFTP session as ``user`` (default: the district, with its password)."""
        if user is None:
            user = self.accounts.district
            credentials.setdefault("password", self.accounts.password)
        client = self.client(user, **credentials)
        try:
            yield client.open_sftp()
        finally:
            client.close()


def _children(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == parent:
            children.append(int(entry.name))
    return children


def _command(pid: int) -> str:
    """A process's command line; "" once it has exited (a child listed a moment ago may be
    gone: reading its cmdline then fails with ESRCH, not ENOENT)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def server_base(tag: str) -> Path:
    """A fresh directory for one server, named so stale ones can be swept."""
    return TEST_ROOT / f"{os.getpid()}-{next(_counter)}-{tag}"
