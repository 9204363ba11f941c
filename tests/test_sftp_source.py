"""The importer's SFTP source against the real sshd (tests.support.sshd).

The district uploads over SFTP with its own account; the importer reads, removes
and holds with its own, exactly as in production. What the server did is checked
on its disk (the test runs as root beside it), never through the code under test.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import stat
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from tests.support.runs import csv_bytes, database, make_config, table_rows
from tests.support.sshd import SftpServer, free_port
from visitor_sync.cli import main
from visitor_sync.db.schema import HeldFile, ImportFileResult, ImportRun
from visitor_sync.exits import EXIT_UNAVAILABLE
from visitor_sync.pipeline import Importer
from visitor_sync.samples import STUDENT_HEADER, student_rows
from visitor_sync.sftp import source as source_module
from visitor_sync.sftp.factory import PASSWORD_ENVIRONMENT, SourceConfigError, open_source
from visitor_sync.sftp.keys import generate_key, known_hosts_line
from visitor_sync.sftp.source import (
    Retry,
    SftpAuthenticationError,
    SftpConnectionLost,
    SftpCredentials,
    SftpHostKeyError,
    SftpSource,
    SftpTarget,
    SftpUnavailable,
    Timeouts,
)
from visitor_sync.sources import FileChanged, SourceFile, held_location
from visitor_sync.summary import FileStatus


def roster(count: int, start: int = 1) -> bytes:
    return csv_bytes(STUDENT_HEADER, student_rows(count, start=start))


def upload(server: SftpServer, name: str, content: bytes, *, age: float | None = None) -> Path:
    """The district puts a file in its drop box (over SFTP, with its password)."""
    with server.sftp() as sftp, sftp.open(f"/upload/{name}", "wb") as stream:
        stream.write(content)
    path = server.upload / name
    if age is not None:
        stamp = time.time() - age
        os.utime(path, (stamp, stamp))
    return path


def importer_source(server: SftpServer, **options: object) -> SftpSource:
    return SftpSource(SftpTarget.parse(server.url()),
                      SftpCredentials(key_file=server.accounts.importer_key.path),
                      server.known_hosts, **options)


@pytest.fixture
def source(sftp_server: SftpServer) -> Iterator[SftpSource]:
    with importer_source(sftp_server, timeouts=Timeouts(connect=5, read=10)) as opened:
        yield opened


def witness(server: SftpServer, path: Path) -> Path:
    """A hard link to ``path`` outside the drop box: it shows what happens to the
    file's blocks (its inode) after the name is removed."""
    link = server.base / f"witness-{uuid.uuid4().hex}"
    os.link(path, link)
    return link


# -- listing and reading ---------------------------------------------------------------


def test_lists_regular_files_with_their_size_and_mtime(sftp_server: SftpServer,
                                                       source: SftpSource) -> None:
    students = upload(sftp_server, "students.csv", roster(3), age=120)
    upload(sftp_server, "visitors.csv.part", b"partial")
    upload(sftp_server, ".students.csv", b"hidden")
    upload(sftp_server, "users.csv.filepart", b"partial")
    with sftp_server.sftp() as sftp:
        sftp.mkdir("/upload/archive")
    os.symlink(students, sftp_server.upload / "link.csv")  # (districts cannot make links)

    listed = source.list_files()

    info = students.stat()
    assert listed == [SourceFile("students.csv", info.st_size, float(int(info.st_mtime)))]
    assert time.time() - listed[0].mtime >= 119  # the pipeline's quiet period uses this


def test_fetch_gives_a_private_copy_that_does_not_outlive_the_context(
        sftp_server: SftpServer, source: SftpSource) -> None:
    content = roster(50)
    upload(sftp_server, "students.csv", content)
    (listed,) = source.list_files()
    with source.fetch(listed) as copy:
        assert copy.read_bytes() == content
        assert copy.name == "students.csv"
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
        assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
    assert not copy.exists() and not copy.parent.exists()
    assert (sftp_server.upload / "students.csv").read_bytes() == content  # only read


def test_fetch_of_a_changed_or_vanished_file_raises_file_changed(
        sftp_server: SftpServer, source: SftpSource) -> None:
    upload(sftp_server, "students.csv", roster(5), age=300)
    upload(sftp_server, "visitors.csv", b"Visitor ID\n", age=300)
    students, visitors = sorted(source.list_files(), key=lambda file: file.name)
    upload(sftp_server, "students.csv", roster(6))   # replaced after listing
    (sftp_server.upload / "visitors.csv").unlink()   # gone after listing
    for file in (students, visitors):
        with pytest.raises(FileChanged), source.fetch(file):
            pass


def test_a_file_its_uploader_made_unreadable_is_still_imported(
        sftp_server: SftpServer, source: SftpSource) -> None:
    content = roster(2)
    path = upload(sftp_server, "students.csv", content)
    # A client can create a file with mode 0000 (the mode of its open request, which the
    # server's umask only narrows); it can no longer chmod it later (SETSTAT is refused).
    path.chmod(0)
    (listed,) = source.list_files()
    with source.fetch(listed) as copy:
        assert copy.read_bytes() == content
    assert source.remove(listed)


# -- removing and holding --------------------------------------------------------------


def test_remove_overwrites_with_zeros_then_deletes(sftp_server: SftpServer,
                                                   source: SftpSource) -> None:
    content = roster(2000)  # several write chunks
    path = upload(sftp_server, "students.csv", content)
    link = witness(sftp_server, path)
    (listed,) = source.list_files()

    assert source.remove(listed) is True

    assert not path.exists()
    assert link.stat().st_size == len(content)
    assert link.read_bytes() == bytes(len(content))  # the blocks hold zeros, not the roster
    log = sftp_server.log_after('remove name "/district/upload/students.csv"')
    assert 'fsync "/district/upload/students.csv"' in log
    assert log.index('fsync "/district/upload/students.csv"') < log.index(
        'remove name "/district/upload/students.csv"')


@pytest.mark.parametrize("change", ["bigger", "same-size-newer", "gone"])
def test_a_replaced_file_is_neither_overwritten_nor_removed(
        sftp_server: SftpServer, source: SftpSource, change: str) -> None:
    path = upload(sftp_server, "students.csv", roster(10), age=600)
    (listed,) = source.list_files()
    if change == "bigger":
        new = upload(sftp_server, "students.csv", roster(11))
    elif change == "same-size-newer":
        new = upload(sftp_server, "students.csv", roster(10).upper())
        assert new.stat().st_size == listed.size
    else:
        path.unlink()

    assert source.remove(listed) is False
    assert source.hold(listed, "run-1") is False

    if change == "gone":
        assert not path.exists()
    else:
        assert path.read_bytes() == new.read_bytes() != bytes(new.stat().st_size)
    assert list(sftp_server.held.iterdir()) == []


def test_hold_moves_the_file_out_of_the_districts_reach(sftp_server: SftpServer,
                                                        source: SftpSource) -> None:
    content = roster(20)
    path = upload(sftp_server, "students.csv", content)
    (listed,) = source.list_files()

    assert source.hold(listed, "run-7") is True

    held = sftp_server.held / "run-7" / "students.csv"
    assert not path.exists() and held.read_bytes() == content
    assert source.list_files() == []
    with sftp_server.sftp() as sftp:  # the district sees nothing of it
        assert sftp.listdir("/upload") == []
    location = held_location("run-7", "students.csv")
    with source.fetch_held(location) as copy:
        assert copy.read_bytes() == content
    link = witness(sftp_server, held)
    source.discard_held(location)
    assert not held.exists() and not held.parent.exists()
    assert link.read_bytes() == bytes(len(content))
    source.discard_held(location)  # already gone: nothing to do
    with pytest.raises(FileNotFoundError), source.fetch_held(location):
        pass
    with pytest.raises(ValueError):
        source.discard_held("held/../district/upload/students.csv")


# -- connecting ------------------------------------------------------------------------


class Sleeps(list[float]):
    """Records the backoff delays instead of waiting them out."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def pinned_for(port: int, directory: Path) -> Path:
    """A known_hosts pinning a key for 127.0.0.1:``port`` (where nothing listens)."""
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(known_hosts_line("127.0.0.1", port, generate_key().public_line))
    return known_hosts


def test_connection_failures_are_retried_with_backoff_then_reported(
        sftp_server: SftpServer, tmp_path: Path) -> None:
    sleeps = Sleeps()
    port = free_port()
    target = SftpTarget("importer", "127.0.0.1", port, "/district/upload")
    unreachable = SftpSource(target, SftpCredentials(
        key_file=sftp_server.accounts.importer_key.path), pinned_for(port, tmp_path),
        retry=Retry(attempts=4, delay=0.5), sleep=sleeps)
    with pytest.raises(SftpUnavailable, match="after 4 attempt") as raised:
        unreachable.open()
    assert sleeps == [0.5, 1.0, 2.0]
    assert not isinstance(raised.value, SftpHostKeyError | SftpAuthenticationError)


def test_an_unpinned_or_wrong_host_key_is_never_retried(sftp_server: SftpServer,
                                                        tmp_path: Path) -> None:
    sleeps = Sleeps()
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(known_hosts_line(sftp_server.host, sftp_server.port,
                                      generate_key().public_line) + "\n")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    for known_hosts, message in ((wrong, "not the pinned one"), (empty, "no host key for")):
        opened = SftpSource(SftpTarget.parse(sftp_server.url()), SftpCredentials(
            key_file=sftp_server.accounts.importer_key.path), known_hosts, sleep=sleeps)
        with pytest.raises(SftpHostKeyError, match=message):
            opened.open()
    assert sleeps == []


def test_refused_credentials_are_never_retried(sftp_server: SftpServer, tmp_path: Path) -> None:
    sleeps = Sleeps()
    stranger = tmp_path / "stranger"
    stranger.write_bytes(generate_key().private_openssh)
    for credentials in (SftpCredentials(key_file=stranger),
                        SftpCredentials(password="not-the-password")):
        opened = SftpSource(SftpTarget.parse(sftp_server.url()), credentials,
                            sftp_server.known_hosts, sleep=sleeps)
        with pytest.raises(SftpAuthenticationError):
            opened.open()
    assert sleeps == []


def test_password_login_and_url_parsing(sftp_server: SftpServer) -> None:
    upload(sftp_server, "students.csv", b"x")
    url = sftp_server.url(sftp_server.accounts.district, "/upload")
    district = SftpSource(SftpTarget.parse(url), SftpCredentials(
        password=sftp_server.accounts.password), sftp_server.known_hosts)
    with district:
        assert [file.name for file in district.list_files()] == ["students.csv"]
    target = SftpTarget.parse("sftp://sis%40district@sftp.example.org/upload/")
    assert target == SftpTarget("sis@district", "sftp.example.org", 22, "/upload")
    for bad in ("sftp://user:secret@host/upload", "sftp://host/upload", "ftp://u@host/",
                "sftp://u@host/upload?x=1"):
        with pytest.raises(ValueError):
            SftpTarget.parse(bad)


def test_a_server_that_stops_answering_hits_the_read_timeout(sftp_server: SftpServer) -> None:
    upload(sftp_server, "students.csv", roster(5))
    with importer_source(sftp_server, timeouts=Timeouts(connect=5, read=1)) as opened:
        (listed,) = opened.list_files()
        frozen = sftp_server.connection_processes()
        assert frozen
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(SftpConnectionLost), opened.fetch(listed):
                pass
            assert time.monotonic() - started < 5
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
    assert (sftp_server.upload / "students.csv").read_bytes() == roster(5)


# -- the importer over SFTP ------------------------------------------------------------


def test_importer_takes_only_settled_files_and_removes_what_it_recorded(
        sftp_server: SftpServer, db_url: str) -> None:
    upload(sftp_server, "students.csv", roster(30), age=120)
    upload(sftp_server, "visitors.csv", b"Visitor ID,First Name\n", age=5)  # still arriving
    upload(sftp_server, "students.csv.part", b"partial")
    with database(db_url) as engine, importer_source(sftp_server) as opened:
        summary = Importer(engine, opened, make_config(quiet_period_seconds=60)).run()
        assert {outcome.file: outcome.status for outcome in summary.files} == {
            "students.csv": FileStatus.APPLIED, "visitors.csv": FileStatus.WAITING}
        assert len(table_rows(engine, "students", "student_id")) == 30
    assert sorted(path.name for path in sftp_server.upload.iterdir()) == [
        "students.csv.part", "visitors.csv"]


# paramiko's prefetch thread, still sending read requests, dies of the dropped link too
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_connection_dropped_mid_download_changes_nothing(
        sftp_server: SftpServer, db_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """sshd's processes for the importer's connection are killed while students.csv
    (64 MiB) is downloading: the run raises, nothing is recorded or applied, the file
    stays untouched on the server and no partial copy stays on the importer's disk."""
    path = sftp_server.upload / "students.csv"
    with path.open("wb") as stream:
        stream.write(roster(5000))
        stream.write(os.urandom(1 << 20))
        stream.truncate(64 << 20)
    os.chown(path, sftp_server.accounts.uid, sftp_server.accounts.uid)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    # The link drops from inside the download, once 1 MiB has arrived: a thread that
    # watched the copy grow lost the race on a busy machine (the whole 64 MiB arrived
    # before it ran). What is still in flight cannot hold the 62 MiB left.
    received = 0
    real_read = paramiko.SFTPFile.read

    def read_then_drop(handle: paramiko.SFTPFile, size: int | None = None) -> bytes:
        nonlocal received
        data = real_read(handle, size)
        received += len(data)
        if received > 1 << 20 and sftp_server.connection_pids():
            sftp_server.drop_connections()
        return data

    monkeypatch.setattr(paramiko.SFTPFile, "read", read_then_drop)
    with database(db_url) as engine, importer_source(sftp_server) as opened:
        with pytest.raises(SftpConnectionLost):
            Importer(engine, opened, make_config()).run()
        assert table_rows(engine, "students", "student_id") == []
        with engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(ImportFileResult)) == 0
            assert connection.scalar(select(func.count()).select_from(HeldFile)) == 0
            assert connection.scalar(select(ImportRun.result)) == "running"  # aborted
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert list(scratch.iterdir()) == []


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def sftp_import(server: SftpServer, db_url: str, *extra: str) -> tuple[int, str, str]:
    return cli("import", "--district", "springfield", "--db", db_url,
               "--source", server.url(), "--sftp-key", str(server.accounts.importer_key.path),
               "--known-hosts", str(server.known_hosts), "--quiet-period", "0",
               "--format", "json", *extra)


def test_cli_imports_from_the_drop_box_end_to_end(sftp_server: SftpServer,
                                                  db_url: str) -> None:
    """visitor-sync import --source sftp://...: apply, hold a mass deactivation, approve."""
    upload(sftp_server, "students.csv", roster(40))
    status, out, err = sftp_import(sftp_server, db_url)
    assert status == 0, err
    first = json.loads(out)
    assert [(f["file"], f["status"], f["created"]) for f in first["files"]] == [
        ("students.csv", "applied", 40)]
    assert list(sftp_server.upload.iterdir()) == []

    upload(sftp_server, "students.csv", roster(20))  # would deactivate half: held
    status, out, err = sftp_import(sftp_server, db_url)
    assert status == 0, err
    second = json.loads(out)
    assert second["files"][0]["status"] == "held"
    held = sftp_server.held / second["run_id"] / "students.csv"
    assert held.read_bytes() == roster(20)
    assert list(sftp_server.upload.iterdir()) == []

    status, out, err = sftp_import(sftp_server, db_url, "--approve-held")
    assert status == 0, err
    assert json.loads(out)["files"][0]["status"] == "applied"
    assert list(sftp_server.held.iterdir()) == []
    with database(db_url) as engine:
        rows = table_rows(engine, "students", "student_id", "active")
    assert sum(active for _, active in rows) == 20 and len(rows) == 40


def test_cli_password_from_a_file_or_the_environment(sftp_server: SftpServer, db_url: str,
                                                     tmp_path: Path) -> None:
    accounts = sftp_server.accounts
    password_file = tmp_path / "password"
    password_file.write_text(f"{accounts.password}\n")
    common = ("import", "--district", "springfield", "--db", db_url, "--quiet-period", "0",
              "--source", sftp_server.url(accounts.district, "/upload"),
              "--known-hosts", str(sftp_server.known_hosts))
    upload(sftp_server, "students.csv", roster(3))
    status, _, err = cli(*common, "--sftp-password-file", str(password_file))
    assert status == 0, err
    upload(sftp_server, "students.csv", roster(4))
    status, _, err = cli(*common, env={PASSWORD_ENVIRONMENT: accounts.password})
    assert status == 0, err
    assert list(sftp_server.upload.iterdir()) == []
    assert accounts.password not in err


def test_cli_exits_69_when_the_server_cannot_be_used(
        sftp_server: SftpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    database_url = f"sqlite:///{tmp_path}/unavailable.db"
    monkeypatch.setattr(source_module, "Retry", lambda: Retry(attempts=3, delay=0.01))
    port = free_port()
    nothing_there = f"sftp://{sftp_server.accounts.importer}@127.0.0.1:{port}/upload"
    with caplog.at_level(logging.WARNING, logger="visitor_sync.sftp.source"):
        status, _, err = cli("import", "--district", "d", "--db", database_url, "--source",
                             nothing_there,
                             "--sftp-key", str(sftp_server.accounts.importer_key.path),
                             "--known-hosts", str(pinned_for(port, tmp_path)))
    assert status == EXIT_UNAVAILABLE
    assert "SFTP unavailable" in err and "after 3 attempt(s)" in err
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 2

    wrong = tmp_path / "known_hosts"
    wrong.write_text(known_hosts_line(sftp_server.host, sftp_server.port,
                                      generate_key().public_line) + "\n")
    status, _, err = cli("import", "--district", "d", "--db", database_url, "--source",
                         sftp_server.url(), "--known-hosts", str(wrong),
                         "--sftp-key", str(sftp_server.accounts.importer_key.path))
    assert status == EXIT_UNAVAILABLE and "not the pinned one" in err


def test_cli_refuses_sftp_without_a_pinned_host_key_or_credentials(
        sftp_server: SftpServer, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path}/refused.db"
    base = ("import", "--district", "d", "--db", database_url)
    key = ("--sftp-key", str(sftp_server.accounts.importer_key.path))
    status, _, err = cli(*base, "--source", sftp_server.url(), *key)
    assert status == 2 and "--known-hosts" in err
    status, _, err = cli(*base, "--source", sftp_server.url(),
                         "--known-hosts", str(sftp_server.known_hosts),
                         env={PASSWORD_ENVIRONMENT: ""})
    assert status == 2 and "--sftp-key" in err
    status, _, err = cli(*base, "--source", "sftp://u:pw@host/upload",
                         "--known-hosts", str(sftp_server.known_hosts), *key)
    assert status == 2 and "no password in the URL" in err
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    status, _, err = cli(*base, "--source", str(inbox), *key)
    assert status == 2 and "only apply to sftp://" in err
    status, out, err = cli(*base, "--source", str(inbox), "--format", "json")
    assert status == 0 and json.loads(out)["files"] == []  # the local folder still works


def test_open_source_closes_the_connection(sftp_server: SftpServer) -> None:
    with open_source(sftp_server.url(), key_file=sftp_server.accounts.importer_key.path,
                     known_hosts=sftp_server.known_hosts) as opened:
        assert isinstance(opened, SftpSource)
        client = opened._client
        assert client is not None
        transport = client.get_transport()
        assert transport is not None and transport.is_active()
    assert not transport.is_active()
    with pytest.raises(SourceConfigError), open_source("sftp://u@h/p"):
        pass
