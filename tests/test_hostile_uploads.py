"""No upload can stop a district: any file name, a zip of millions of entries, a file
over the size limit. Each is reported and refused (and removed like any rejected
file); the run goes on with the district's other files, and so does the next one.

Drop boxes are the real folder source and the real SFTP source against the real sshd.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.runs import csv_bytes, database, make_inbox, outcome, run_import, table_rows
from tests.support.sshd import SftpServer
from visitor_sync.config import Limits
from visitor_sync.filenames import display_name
from visitor_sync.issues import FileRejected
from visitor_sync.oneroster.zipsafe import declared_directory, extracted
from visitor_sync.samples import STUDENT_HEADER, student_rows
from visitor_sync.sftp.source import SftpCredentials, SftpSource, SftpTarget, Timeouts
from visitor_sync.summary import FileOutcome, FileStatus, RunResult

#: Names an uploader may choose (only ``/`` and NUL are impossible), with the code each gets.
HOSTILE_NAMES = {
    b"stu\xffdents.csv": "unreadable_file_name",         # not UTF-8
    b"\xc3(.csv": "unreadable_file_name",                # a broken UTF-8 sequence
    b"students.csv\nERROR forged log line": "unreadable_file_name",
    b"visitors\r.csv": "unreadable_file_name",
    b"\x1b[31mred.csv": "unreadable_file_name",          # a terminal escape
    b"\xe2\x80\xaevsc.stnedutS": "unreadable_file_name",  # right-to-left override
    b"-rf.csv": "unrecognised_file",                      # a leading dash is just a name
    b"--help": "unrecognised_file",
    b" students.csv": "unrecognised_file",
}


def roster(count: int) -> bytes:
    return csv_bytes(STUDENT_HEADER, student_rows(count))


def test_display_names_are_printable_single_lines() -> None:
    for raw in HOSTILE_NAMES:
        shown = display_name(raw)
        assert shown.isprintable(), shown
        shown.encode("utf-8")  # a database driver can store it
    assert display_name(b"stu\xffdents.csv") == "stu\\xffdents.csv"
    assert display_name(b"a\nb.csv") == "a\\x0ab.csv"
    assert display_name("Ünterricht.csv".encode()) == "Ünterricht.csv"


def _write(folder: Path, raw: bytes, content: bytes) -> None:
    with open(os.path.join(os.fsencode(folder), raw), "wb") as stream:
        stream.write(content)


def _assert_refused_and_the_rest_applied(summary_files: list[FileOutcome],
                                         expected_students: int) -> None:
    """Every hostile name is rejected with its code, shown printable; students.csv applied."""
    by_name = {file.file: file for file in summary_files}
    for raw, code in HOSTILE_NAMES.items():
        refused = by_name[display_name(raw)]
        assert refused.status is FileStatus.REJECTED
        assert [issue.code for issue in refused.issues] == [code]
    assert by_name["students.csv"].status is FileStatus.APPLIED
    assert by_name["students.csv"].created == expected_students


def test_any_file_name_in_a_folder_is_reported_and_removed(db_url: str, tmp_path: Path) -> None:
    inbox = make_inbox(tmp_path)
    for raw in HOSTILE_NAMES:
        _write(inbox, raw, b"Student ID\n1\n")
    (inbox / "students.csv").write_bytes(roster(3))

    with database(db_url) as engine:
        summary = run_import(engine, inbox)
        _assert_refused_and_the_rest_applied(summary.files, 3)
        assert summary.result is RunResult.PARTIAL
        assert os.listdir(os.fsencode(inbox)) == []  # rejected files go, like any other
        names = {row[0] for row in table_rows(engine, "import_file_results", "file_name")}
        assert {display_name(raw) for raw in HOSTILE_NAMES} <= names

        _write(inbox, b"stu\xffdents.csv", b"again")
        again = run_import(engine, inbox)  # the next run is not wedged either
        assert [(file.file, file.status) for file in again.files] == [
            ("stu\\xffdents.csv", FileStatus.REJECTED)]


def test_any_file_name_over_sftp_is_reported_and_removed(db_url: str, tmp_path: Path,
                                                         sftp_server: SftpServer) -> None:
    with sftp_server.sftp() as sftp:  # the district uploads with its own account
        for raw in HOSTILE_NAMES:
            with sftp.open(b"/upload/" + raw, "wb") as stream:
                stream.write(b"Student ID\n1\n")
        with sftp.open("/upload/students.csv", "wb") as stream:
            stream.write(roster(4))
    assert len(os.listdir(os.fsencode(sftp_server.upload))) == len(HOSTILE_NAMES) + 1

    with database(db_url) as engine, _importer_source(sftp_server) as source:
        summary = run_import(engine, make_inbox(tmp_path), source=source)
        _assert_refused_and_the_rest_applied(summary.files, 4)
    assert os.listdir(os.fsencode(sftp_server.upload)) == []


def test_a_file_over_the_size_limit_is_refused_before_it_is_downloaded(
        db_url: str, tmp_path: Path, sftp_server: SftpServer) -> None:
    content = roster(50)
    with sftp_server.sftp() as sftp, sftp.open("/upload/students.csv", "wb") as stream:
        stream.write(content)

    with database(db_url) as engine, _importer_source(sftp_server) as source:
        summary = run_import(engine, make_inbox(tmp_path), source=source,
                             limits={"max_file_bytes": len(content) - 1})
    refused = outcome(summary, "students.csv")
    assert refused.status is FileStatus.REJECTED
    assert [issue.code for issue in refused.issues] == ["file_too_large"]
    log = sftp_server.log_after('remove name "/district/upload/students.csv"')
    opened = [line for line in log.splitlines() if 'open "/district/upload/students.csv"' in line]
    # the only open is removal's zero-overwrite (read-write); no read-only download
    assert opened and all("flags READ,WRITE" in line for line in opened), opened


def _importer_source(server: SftpServer) -> SftpSource:
    return SftpSource(SftpTarget.parse(server.url()),
                      SftpCredentials(key_file=server.accounts.importer_key.path),
                      server.known_hosts, timeouts=Timeouts(connect=5, read=30))


# -- a zip of 1.5 million entries ------------------------------------------------------

ENTRIES = 1_500_000


def write_zip_of_empty_entries(path: Path, count: int) -> None:
    """A well-formed ZIP64 archive of ``count`` empty stored members ``NNNNNNN.csv``,
    streamed to disk (the stdlib writer keeps every entry in memory)."""
    crc = zlib.crc32(b"")
    with path.open("wb") as stream:
        offsets = []
        batch = bytearray()
        for index in range(count):
            name = b"%07d.csv" % index
            offsets.append(stream.tell() + len(batch))
            batch += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, 0, 0,
                                 len(name), 0) + name
            if len(batch) > 1 << 20:
                stream.write(batch)
                batch.clear()
        stream.write(batch)
        directory_start = stream.tell()
        batch.clear()
        for index, offset in enumerate(offsets):
            name = b"%07d.csv" % index
            batch += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, 0, 0,
                                 len(name), 0, 0, 0, 0, 0, offset) + name
            if len(batch) > 1 << 20:
                stream.write(batch)
                batch.clear()
        stream.write(batch)
        directory_end = stream.tell()
        size = directory_end - directory_start
        stream.write(struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count,
                                 size, directory_start))
        stream.write(struct.pack("<4sLQL", b"PK\x06\x07", 0, directory_end, 1))
        stream.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF,
                                 0xFFFFFFFF, 0xFFFFFFFF, 0))


@pytest.fixture(scope="module")
def huge_zip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("huge-zip") / "oneroster.zip"
    write_zip_of_empty_entries(path, ENTRIES)
    yield path
    path.unlink()


def test_the_generated_zip_is_a_real_zip_of_that_many_entries(tmp_path: Path) -> None:
    path = tmp_path / "small.zip"
    write_zip_of_empty_entries(path, 70_000)  # past the 65,535 of a plain end record
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert len(archive.infolist()) == 70_000


PEAK_RSS = """
import resource, sys
from pathlib import Path
from visitor_sync.config import Limits
from visitor_sync.issues import FileRejected
from visitor_sync.oneroster.zipsafe import declared_directory, extracted
try:
    with extracted(Path(sys.argv[1]), Path(sys.argv[2]), Limits()):
        print("accepted")
except FileRejected as rejected:
    print(rejected.problems[0][0])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _refusal_and_peak_kib(path: Path, scratch: Path) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, str(path), str(scratch)],
                          capture_output=True, text=True, check=True)
    code, peak = done.stdout.split()
    return code, int(peak)


def test_a_zip_of_millions_of_entries_is_refused_before_it_costs_memory(
        huge_zip: Path, tmp_path: Path) -> None:
    small = tmp_path / "small.zip"
    write_zip_of_empty_entries(small, 3)
    baseline_code, baseline = _refusal_and_peak_kib(small, tmp_path)
    code, peak = _refusal_and_peak_kib(huge_zip, tmp_path)
    print(f"peak RSS: {peak} KiB refusing {ENTRIES:,} entries, {baseline} KiB for 3 entries "
          f"({huge_zip.stat().st_size:,} bytes)")
    assert baseline_code != "zip_too_many_members"
    assert code == "zip_too_many_members"
    assert peak - baseline < 16 * 1024  # reading every entry would cost about a gigabyte


def test_a_zip_whose_end_record_understates_its_entries_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lying.zip"
    write_zip_of_empty_entries(path, 20_000)
    data = bytearray(path.read_bytes())
    zip64_record = data.rindex(b"PK\x06\x06")
    struct.pack_into("<2Q", data, zip64_record + 24, 3, 3)  # claims 3 entries
    path.write_bytes(bytes(data))
    with pytest.raises(FileRejected) as refused, extracted(path, tmp_path, Limits()):
        pass
    code, reason, _, _ = refused.value.problems[0]
    assert code == "zip_too_many_members"
    assert "directory takes" in reason  # refused from its size, before zipfile read it


def test_a_huge_zip_in_the_drop_box_is_rejected_and_removed(
        db_url: str, tmp_path: Path, huge_zip: Path) -> None:
    inbox = make_inbox(tmp_path)
    os.link(huge_zip, inbox / "oneroster.zip")
    with database(db_url) as engine:
        summary = run_import(engine, inbox)
    refused = outcome(summary, "oneroster.zip")
    assert [issue.code for issue in refused.issues] == ["zip_too_many_members"]
    assert f"{ENTRIES:,}" in refused.issues[0].reason
    assert not (inbox / "oneroster.zip").exists()


def test_an_end_record_signature_inside_the_zip_comment_is_not_taken_for_the_record(
        tmp_path: Path) -> None:
    path = tmp_path / "commented.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("a.csv", "b.csv", "c.csv"):
            archive.writestr(name, b"x\n")
        archive.comment = b"PK\x05\x06" + b"\xff" * 30  # a forged record claiming 65,535
    declared = declared_directory(path)
    assert declared is not None and declared[0] == 3  # not refused as 65,535 entries
