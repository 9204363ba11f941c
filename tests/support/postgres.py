"""A throwaway PostgreSQL 15 server for tests and benchmarks.

The project's production database is PostgreSQL, so the database tests run against
a real server rather than a mock: every test that takes the ``db_url`` fixture runs on
SQLite and on this server. The server lives in a private temporary directory, listens
only on 127.0.0.1 (or the one address given) on a free port and has durability
switched off (``fsync=off`` and friends) because nothing it stores needs to survive
the test run.

This module deliberately imports neither pytest nor ``visitor_sync``: the benchmark
scripts in ``benchmarks/`` reuse it (``from tests.support.postgres import
PostgresServer``) and it must work before the package under test is importable.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import psycopg
from psycopg import sql

DEFAULT_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
"""Where Debian's ``postgresql-15`` package puts the server binaries."""

OS_USER = "postgres"
"""``initdb`` and ``postgres`` refuse to run as root, so as root we run them as this user."""

START_ATTEMPTS = 3
"""Free-port picking can race with other processes (e.g. other xdist workers); retry."""

COMMAND_TIMEOUT = 120.0
"""Seconds any single initdb/pg_ctl call may take before we give up."""


class PostgresUnavailableError(RuntimeError):
    """PostgreSQL cannot be run here (binaries or the ``postgres`` OS user missing).

    Callers should turn this into a hard failure, not a skip: a skipped database
    suite looks green while testing nothing. ``scripts/test`` installs the packages.
    """


def _free_port() -> int:
    """Ask the kernel for a currently unused TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One private PostgreSQL cluster: ``initdb`` + ``pg_ctl start`` on start, stop + rm on stop.

    Attributes ``host``, ``port``, ``user`` and ``password`` describe how to reach it
    over TCP with password (SCRAM) authentication, exactly like the deployed service.
    Usable as a context manager.
    """

    user = "postgres"

    def __init__(self, bin_dir: Path | str = DEFAULT_BIN_DIR, *, host: str = "127.0.0.1",
                 client_networks: tuple[str, ...] = ()) -> None:
        """``host`` is the one address it listens on; ``client_networks`` (CIDRs) may log
        in besides loopback, e.g. a test cluster's pods reaching it on the node."""
        self.bin_dir = Path(bin_dir)
        self.host = host
        self.client_networks = client_networks
        # URL-safe, so it needs no quoting in most places; we still quote it in url().
        self.password = secrets.token_urlsafe(24)
        self.port = 0
        self.base_dir: Path | None = None
        self._running = False

    # -- paths ---------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory (created by initdb inside ``base_dir``)."""
        return self._base() / "data"

    @property
    def socket_dir(self) -> Path:
        """Unix socket directory: private, so parallel servers never share ``/run/postgresql``."""
        return self._base() / "socket"

    @property
    def log_file(self) -> Path:
        """Server log; pg_ctl needs one, or the server keeps our output pipes open forever."""
        return self._base() / "server.log"

    def _base(self) -> Path:
        if self.base_dir is None:
            raise RuntimeError("PostgresServer has not been started")
        return self.base_dir

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> PostgresServer:
        """Create a fresh cluster in a new temp dir and start it on a free port.

        Raises ``PostgresUnavailableError`` if the binaries or the OS user are missing,
        and ``RuntimeError`` (with the server log) if the server does not come up.
        """
        if self._running:
            return self
        self._check_prerequisites()
        # Short prefix: the Unix socket path must stay under ~107 bytes.
        self.base_dir = Path(tempfile.mkdtemp(prefix="vs-pg-"))
        try:
            self.socket_dir.mkdir()
            pwfile = self._base() / "pwfile"
            pwfile.write_text(self.password + "\n", encoding="utf-8")
            pwfile.chmod(0o600)
            if self._as_root():
                shutil.chown(self._base(), OS_USER, OS_USER)
                shutil.chown(self.socket_dir, OS_USER, OS_USER)
                shutil.chown(pwfile, OS_USER, OS_USER)
            self._run(
                "initdb",
                "-D", str(self.data_dir),
                "-U", self.user,
                "-A", "scram-sha-256",
                "--pwfile", str(pwfile),
                "-E", "UTF8",
                # The C locale always exists; the host's $LANG may name one that does not.
                "--no-locale",
                "--no-sync",
            )  # fmt: skip
            pwfile.unlink()
            with (self.data_dir / "pg_hba.conf").open("a", encoding="utf-8") as hba:
                hba.writelines(f"host all all {network} scram-sha-256\n"
                               for network in self.client_networks)
            self._start_on_free_port()
        except BaseException:
            self._remove_dir()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory. Safe to call twice."""
        try:
            if self._running:
                self._running = False
                try:
                    self._run("pg_ctl", "-D", str(self.data_dir), "-w", "-m", "fast", "stop")
                except RuntimeError:
                    # Never leave an orphaned server behind once its directory is gone.
                    self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "stop")
                    raise
        finally:
            self._remove_dir()

    def halt(self) -> None:
        """Stop the server but keep its data, like an outage (fast shutdown: open
        sessions are ended and their transactions rolled back); :meth:`resume` ends it."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-w", "-m", "fast", "stop")
        self._running = False

    def resume(self) -> None:
        """Start a halted server again, on the same port."""
        self._pg_ctl_start()
        self._running = True

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- databases -----------------------------------------------------------------------

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL (psycopg 3 driver) for database ``dbname`` on this server."""
        return (
            f"postgresql+psycopg://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{quote(dbname, safe='')}"
        )

    def conninfo(self, dbname: str = "postgres") -> str:
        """libpq connection string for plain psycopg (no SQLAlchemy)."""
        return psycopg.conninfo.make_conninfo(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=dbname,
        )

    def create_database(self) -> str:
        """Create a new, empty, uniquely named database and return its SQLAlchemy URL.

        Each test gets its own database so tests never see each other's rows or schema,
        while sharing the (comparatively slow to start) server.
        """
        name = f"vs_test_{uuid.uuid4().hex}"
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, dbname: str) -> None:
        """Drop ``dbname``, disconnecting any leftover sessions (leaked engines, pools).

        Keeps disk use flat over a long test run; each empty database costs ~7 MB.
        """
        self._admin(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )

    def _admin(self, statement: sql.Composed) -> None:
        # CREATE/DROP DATABASE cannot run inside a transaction block: autocommit.
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(statement)

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _as_root() -> bool:
        return os.geteuid() == 0

    def _check_prerequisites(self) -> None:
        missing = [
            name
            for name in ("initdb", "pg_ctl", "postgres")
            if not os.access(self.bin_dir / name, os.X_OK)
        ]
        if missing:
            raise PostgresUnavailableError(
                f"PostgreSQL 15 server binaries not found in {self.bin_dir} "
                f"(missing: {', '.join(missing)}). Install the Debian package "
                "'postgresql' (apt-get install -y postgresql), or run scripts/test, "
                "which installs it."
            )
        if self._as_root():
            if shutil.which("runuser") is None:
                raise PostgresUnavailableError(
                    "running as root but 'runuser' is missing; it is needed to run "
                    "initdb/pg_ctl as the 'postgres' user"
                )
            try:
                pwd.getpwnam(OS_USER)
            except KeyError:
                raise PostgresUnavailableError(
                    f"running as root but OS user {OS_USER!r} does not exist; "
                    "installing the 'postgresql' package creates it"
                ) from None

    def _start_on_free_port(self) -> None:
        last_error: RuntimeError | None = None
        for _ in range(START_ATTEMPTS):
            self.port = _free_port()
            try:
                self._pg_ctl_start()
            except RuntimeError as error:
                # Most likely another process grabbed the port between probe and bind.
                last_error = error
                continue
            self._running = True
            return
        raise RuntimeError(
            f"PostgreSQL did not start after {START_ATTEMPTS} attempts\n"
            f"--- server log ({self.log_file}) ---\n{self._read_log()}"
        ) from last_error

    def _pg_ctl_start(self) -> None:
        """``pg_ctl start`` on ``self.port``, waiting until the server accepts connections."""
        options = " ".join(
            [
                f"-c listen_addresses={self.host}",
                f"-c port={self.port}",
                f"-c unix_socket_directories={self.socket_dir}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
            ]
        )
        self._run(
            "pg_ctl",
            "-D", str(self.data_dir),
            "-l", str(self.log_file),
            "-w",
            "-t", str(int(COMMAND_TIMEOUT)),
            "-o", options,
            "start",
        )  # fmt: skip

    def _run(self, program: str, *args: str) -> None:
        """Run a server binary, as ``postgres`` when we are root; raise with its output."""
        command = [str(self.bin_dir / program), *args]
        if self._as_root():
            command = ["runuser", "-u", OS_USER, "--", *command]
        # Run from our own dir: the caller's cwd may be unreadable for 'postgres'.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        result = subprocess.run(
            command,
            cwd=self._base(),
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{program} failed with exit code {result.returncode}: {' '.join(command)}\n"
                f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
            )

    def _read_log(self) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            return f"(no log: {error})"

    def _remove_dir(self) -> None:
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None
