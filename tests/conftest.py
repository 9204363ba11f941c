"""Shared pytest fixtures.

Database code is tested against both engines the project supports: SQLite (the embedded
default) and a real PostgreSQL 15 server (production). The server itself is managed by
``tests.support.postgres`` so that the benchmarks can reuse it; this file only wires it
into pytest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url

from tests.support.postgres import PostgresServer, PostgresUnavailableError
from tests.support.sshd import (
    Accounts,
    SftpServer,
    SshdUnavailableError,
    check_available,
    server_base,
    sweep_stale,
)

if TYPE_CHECKING:  # kopf and kubernetes take ~0.6 s to import: only for the tests that use them
    from tests.support.kube import Cluster


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL server for this test process.

    Session scope because starting a cluster takes about a second; tests isolate
    themselves with ``create_database()`` instead. Under pytest-xdist every worker is
    its own process and therefore gets its own server, port and directory.

    A missing PostgreSQL installation fails the tests instead of skipping them: a
    skipped database suite would look green while testing nothing.
    """
    server = PostgresServer()
    try:
        server.start()
    except PostgresUnavailableError as error:
        pytest.fail(f"cannot run PostgreSQL tests: {error}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty database; each test runs once per engine.

    The PostgreSQL server is requested lazily, so ``-m "not postgres"`` or ``-k sqlite``
    runs never start it. The PostgreSQL database is dropped afterwards to keep disk use
    flat over long runs; the SQLite file goes away with ``tmp_path``.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/visitor-sync.db"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield url
    database = make_url(url).database
    assert database is not None
    server.drop_database(database)


# -- SFTP: the real OpenSSH sshd (tests.support.sshd) ----------------------------------


@pytest.fixture(scope="session")
def sftp_accounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Accounts]:
    """A district/importer account pair unique to this worker, removed at the end.

    Like PostgreSQL, a missing sshd fails the tests rather than skipping them.
    """
    try:
        check_available()
    except SshdUnavailableError as error:
        pytest.fail(f"cannot run the SFTP tests: {error}", pytrace=False)
    sweep_stale()
    accounts = Accounts.create(tmp_path_factory.mktemp("sftp-clients"))
    try:
        yield accounts
    finally:
        accounts.remove()


@pytest.fixture(scope="session")
def shared_sftp_server(sftp_accounts: Accounts) -> Iterator[SftpServer]:
    with SftpServer(sftp_accounts, server_base("shared")) as server:
        yield server


@pytest.fixture
def sftp_server(shared_sftp_server: SftpServer) -> SftpServer:
    """A district's sshd on 127.0.0.1 (started by the image's entrypoint with the rendered
    config) with an empty drop box and held area; one per worker, reset for each test."""
    return shared_sftp_server.reset()


# -- Kubernetes API: kmock's emulator with the realism layer (tests.support.kube) --------


@pytest.fixture
def kmock_options(kmock_options: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, Any]:
    """Make kmock's ``kmock`` fixture serve :class:`KubeEmulator` unless a test's
    ``@pytest.mark.kmock(cls=...)`` asks for another class (stock kmock breaks kopf)."""
    from tests.support.kube import KubeEmulator

    if not any("cls" in marker.kwargs for marker in request.node.iter_markers("kmock")):
        kmock_options["cls"] = KubeEmulator
    return kmock_options


@pytest_asyncio.fixture
async def cluster(
    kmock: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Cluster]:
    """An emulated Kubernetes API with our CRD, the namespaces of a fresh cluster, and kopf
    and the ``kubernetes`` client pointed at it; see ``tests.support.kube``."""
    from tests.support.kube import Cluster

    async with Cluster.open(kmock, tmp_path, monkeypatch) as cluster:
        yield cluster
