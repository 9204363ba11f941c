"""Streaming reader for district CSV files (FORMATS.md "Rules for every CSV").

Two passes over a local file, neither holding more than one chunk or one row:
:func:`inspect_file` checks size, binary content and encoding (UTF-8, with
Windows-1252 as the fallback) and hashes the bytes; :class:`CsvTable` then
yields ``(physical line, fields)`` for each non-blank data row.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from visitor_sync.config import Limits
from visitor_sync.issues import FileRejected

_CHUNK = 1 << 20
_DELIMITERS = (",", ";", "\t")
_HEADER_NOISE = re.compile(r"[\s_\-]+")


def normalise_header(name: str) -> str:
    """``Student ID`` = ``student_id`` = ``StudentID`` = ``student-id``."""
    return _HEADER_NOISE.sub("", name.strip().lower())


@dataclass(frozen=True)
class FileFacts:
    size: int
    sha256: str
    encoding: str  # "utf-8-sig" or "cp1252"

    @property
    def fell_back_to_cp1252(self) -> bool:
        return self.encoding == "cp1252"


def check_size(size: int, limits: Limits) -> None:
    """Refuse a file over ``limits.max_file_bytes`` (from its listing, before it is read)."""
    if size > limits.max_file_bytes:
        raise FileRejected("file_too_large",
                           f"the file is {size:,} bytes; the limit is {limits.max_file_bytes:,}")


def inspect_file(path: Path, limits: Limits, text: bool = True) -> FileFacts:
    """Size, SHA-256 and (for text) encoding of a file, or :class:`FileRejected`."""
    size = path.stat().st_size
    check_size(size, limits)
    digest = hashlib.sha256()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    is_utf8 = True
    cp1252_ok = True
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
            if not text:
                continue
            if b"\x00" in chunk:
                raise FileRejected("binary_file",
                                   "the file holds NUL bytes; upload a plain-text CSV export")
            if is_utf8:
                try:
                    utf8.decode(chunk)
                except UnicodeDecodeError:
                    is_utf8 = False
            if cp1252_ok:
                try:
                    chunk.decode("cp1252")
                except UnicodeDecodeError:
                    cp1252_ok = False
            if not is_utf8 and not cp1252_ok:
                break
        if is_utf8:
            try:
                utf8.decode(b"", final=True)
            except UnicodeDecodeError:
                is_utf8 = False
    if not is_utf8 and not cp1252_ok:
        raise FileRejected("invalid_encoding",
                           "the file is neither UTF-8 nor Windows-1252 text; export it as UTF-8")
    return FileFacts(size, digest.hexdigest(), "utf-8-sig" if is_utf8 else "cp1252")


def sniff_delimiter(header_line: str) -> str:
    """The delimiter the header row clearly uses; a comma unless ``;`` or TAB dominate."""
    unquoted = re.sub(r'"[^"]*"', "", header_line)
    counts = {delimiter: unquoted.count(delimiter) for delimiter in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda delimiter: counts[delimiter])
    return best if counts[best] > counts[","] else ","


class CsvTable:
    """The header and the data rows of one CSV file, streamed.

    Line numbers are physical: the header is line 1 (or the first non-blank
    line), blank lines count, and a quoted field spanning lines counts all of
    them (``csv.reader.line_num``). ``bytes_read`` follows the underlying file
    for progress bars.
    """

    def __init__(self, path: Path, encoding: str, limits: Limits) -> None:
        self._limits = limits
        self._raw = path.open("rb")
        self._text = io.TextIOWrapper(self._raw, encoding=encoding, newline="")
        csv.field_size_limit(limits.max_field_chars)
        delimiter = _first_line_delimiter(self._text)
        self._reader = csv.reader(self._text, delimiter=delimiter)
        self._previous_end = 0
        self.header: list[str] = []
        self.header_line = 0
        for line, fields in self._physical_rows():
            self.header, self.header_line = [name.strip() for name in fields], line
            break
        if not self.header:
            raise FileRejected("empty_file", "the file is empty; it needs a header row")

    @property
    def bytes_read(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        self._text.close()

    def __enter__(self) -> CsvTable:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """``(first physical line, fields)`` of each non-blank data row."""
        for count, (line, fields) in enumerate(self._physical_rows(), start=1):
            if count > self._limits.max_rows:
                raise FileRejected(
                    "too_many_rows",
                    f"the file has more than {self._limits.max_rows:,} data rows; "
                    "split it or ask support to raise the limit", line)
            yield line, fields

    def _physical_rows(self) -> Iterator[tuple[int, list[str]]]:
        reader = self._reader
        try:
            for fields in reader:
                line = self._previous_end + 1
                self._previous_end = reader.line_num
                # a line of spaces is blank too (first field checked first: it is cheap)
                if fields and (fields[0].strip() or any(field.strip() for field in fields)):
                    yield line, fields
        except csv.Error as error:
            raise _csv_problem(error, self._previous_end + 1, self._limits) from error


def _first_line_delimiter(text: TextIO) -> str:
    """Sniff from the first non-blank physical line, then rewind."""
    delimiter = ","
    while line := text.readline():
        if line.strip():
            delimiter = sniff_delimiter(line)
            break
    text.seek(0)
    return delimiter


def _csv_problem(error: csv.Error, line: int, limits: Limits) -> FileRejected:
    if "field larger than field limit" in str(error):
        return FileRejected(
            "field_too_long",
            f"a field is longer than {limits.max_field_chars:,} characters "
            "(often a quote that is never closed)", line)
    return FileRejected("malformed_csv", f"the CSV cannot be read: {error}", line)
