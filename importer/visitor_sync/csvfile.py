"""Streaming reader for district CSV files (FORMATS.md "Rules for every CSV").

Two passes over a local file, neither holding more than one chunk or one row:
:func:`inspect_file` checks size, binary content and encoding and hashes the
bytes; :class:`CsvTable` then yields ``(physical line, fields)`` for each
non-blank data row. Both refuse what they cannot read exactly, naming the line,
rather than guess: one encoding per file (UTF-8, UTF-16 with a BOM, or
Windows-1252 when nothing in the file is UTF-8), and no quoted value that runs
over lines holding the delimiter (an unclosed quote swallowing rows).
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
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "TAB"}
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
#: A well-formed multi-byte UTF-8 sequence (what a Windows-1252 file practically never holds).
_UTF8_SEQUENCE = re.compile(
    rb"[\xC2-\xDF][\x80-\xBF]|\xE0[\xA0-\xBF][\x80-\xBF]|[\xE1-\xEC\xEE\xEF][\x80-\xBF]{2}"
    rb"|\xED[\x80-\x9F][\x80-\xBF]|\xF0[\x90-\xBF][\x80-\xBF]{2}"
    rb"|[\xF1-\xF3][\x80-\xBF]{3}|\xF4[\x80-\x8F][\x80-\xBF]{2}")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_HEADER_NOISE = re.compile(r"[\s_\-]+")


def normalise_header(name: str) -> str:
    """``Student ID`` = ``student_id`` = ``StudentID`` = ``student-id``."""
    return _HEADER_NOISE.sub("", name.strip().lower())


@dataclass(frozen=True)
class FileFacts:
    size: int
    sha256: str
    encoding: str  # "utf-8-sig", "utf-16" (with its BOM) or "cp1252"

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
    with path.open("rb") as stream:
        utf16 = text and stream.read(2) in _UTF16_BOMS
        stream.seek(0)
        # UTF-16 replaces what it cannot decode, so the line of the first U+FFFD is exact
        decoder = (codecs.getincrementaldecoder("utf-16")("replace") if utf16
                   else codecs.getincrementaldecoder("utf-8")())
        decodes, lines = text, 1
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
            if text and not utf16 and b"\x00" in chunk:
                raise _binary()
            if not decodes:
                continue
            try:
                decoded = decoder.decode(chunk)
            except UnicodeDecodeError:
                decodes = False  # not UTF-8: which single-byte reading, if any, is decided below
                continue
            if utf16:
                lines = _check_utf16(decoded, lines)
        if decodes:
            try:
                final = decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                decodes = False
            else:
                if utf16:
                    _check_utf16(final, lines)
    if not text:
        encoding = ""
    elif utf16:
        encoding = "utf-16"
    elif decodes:
        encoding = "utf-8-sig"
    else:
        encoding = _single_byte_encoding(path)
    return FileFacts(size, digest.hexdigest(), encoding)


def _check_utf16(decoded: str, lines: int) -> int:
    """The line count after ``decoded``, or :class:`FileRejected` naming the line it fails on."""
    if (position := decoded.find("\x00")) >= 0:
        raise _binary(lines + decoded.count("\n", 0, position))
    if (position := decoded.find("\ufffd")) >= 0:
        raise FileRejected(
            "invalid_encoding", "the file starts with a UTF-16 byte order mark but this line "
            "is not UTF-16 text; export the file again (UTF-8 or UTF-16)",
            lines + decoded.count("\n", 0, position))
    return lines + decoded.count("\n")


def _binary(line: int | None = None) -> FileRejected:
    return FileRejected("binary_file", "the file holds NUL bytes; upload a plain-text CSV export",
                        line)


def _single_byte_encoding(path: Path) -> str:
    """Windows-1252 for a file that is not UTF-8, unless some of it is UTF-8 after all.

    Read line by line (only files that are not UTF-8 get here) so that the refusal
    names the first line that cannot be read one way: a file that mixes UTF-8 and
    Windows-1252, or carries a UTF-8 BOM, has no reading that keeps every letter.
    """
    with path.open("rb") as stream:
        utf8_bom = stream.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8
        stream.seek(0)
        first_utf8: int | None = None
        first_other: tuple[int, int] | None = None  # line, offending byte
        for number, line in enumerate(stream, start=1):
            if line.isascii():
                continue
            try:
                line.decode("utf-8")
                first_utf8 = first_utf8 or number
                continue
            except UnicodeDecodeError as error:
                first_other = first_other or (number, line[error.start])
            if first_utf8 is None and _UTF8_SEQUENCE.search(line):
                first_utf8 = number
            try:
                line.decode("cp1252")
            except UnicodeDecodeError as error:
                raise FileRejected(
                    "invalid_encoding", f"byte 0x{line[error.start]:02X} on this line is "
                    "neither UTF-8 nor Windows-1252 text; export the file as UTF-8",
                    number) from error
    assert first_other is not None, "only a file that is not UTF-8 gets here"
    line_number, byte = first_other
    if utf8_bom:
        raise FileRejected(
            "mixed_encoding", f"the file starts with a UTF-8 byte order mark but byte "
            f"0x{byte:02X} on this line is not UTF-8; export the whole file as UTF-8",
            line_number)
    if first_utf8 is not None:
        raise FileRejected(
            "mixed_encoding", f"byte 0x{byte:02X} on this line is not UTF-8, yet line "
            f"{first_utf8} is UTF-8 text: the file mixes two encodings and no single reading "
            "keeps every letter; export the whole file as UTF-8", line_number)
    return "cp1252"


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

    The parser is strict: text after a closing quote, a quote still open at the
    end of the file, and a quoted value whose later lines hold the delimiter
    reject the file on the line the row starts. Each is what an unclosed quote
    looks like when it swallows the rows after it, and a row the file holds but
    we cannot see would count as absent and be deactivated.
    """

    def __init__(self, path: Path, encoding: str, limits: Limits) -> None:
        self._limits = limits
        self._raw = path.open("rb")
        self._text = io.TextIOWrapper(self._raw, encoding=encoding, newline="")
        csv.field_size_limit(limits.max_field_chars)
        self._delimiter = _first_line_delimiter(self._text)
        self._reader = csv.reader(self._text, delimiter=self._delimiter, strict=True)
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
                if reader.line_num > line:
                    _check_spanning_values(fields, line, reader.line_num, self._delimiter)
                # a line of spaces is blank too (first field checked first: it is cheap)
                if fields and (fields[0].strip() or any(field.strip() for field in fields)):
                    yield line, fields
        except csv.Error as error:
            raise _csv_problem(error, self._previous_end + 1, reader.line_num,
                               self._limits) from error


def _first_line_delimiter(text: TextIO) -> str:
    """Sniff from the first non-blank physical line, then rewind."""
    delimiter = ","
    while line := text.readline():
        if line.strip():
            delimiter = sniff_delimiter(line)
            break
    text.seek(0)
    return delimiter


def _check_spanning_values(fields: list[str], first: int, last: int, delimiter: str) -> None:
    """A value may span lines (an address on two lines), but not take in what reads
    like more rows: the delimiter on a line after its first."""
    line = first
    for value in fields:
        parts = _LINE_BREAK.split(value)
        if len(parts) == 1:
            continue
        if any(delimiter in part for part in parts[1:]):
            raise FileRejected(
                "unclosed_quote",
                f"a quoted value starts on this line and runs to line {last}, taking in "
                f"lines that hold the {_DELIMITER_NAMES[delimiter]} delimiter like rows do; "
                "its quote is probably never closed. Close the quote, or keep a value that "
                f"spans lines free of the {_DELIMITER_NAMES[delimiter]}", line)
        line += len(parts) - 1


def _csv_problem(error: csv.Error, line: int, last: int, limits: Limits) -> FileRejected:
    """The parser's complaint as a reason, on the line where the row starts."""
    if "unexpected end of data" in str(error) or (
            "field larger than field limit" in str(error) and last > line):
        return FileRejected(
            "unclosed_quote", f"a quote opened in the row starting on this line is never "
            f"closed, so lines {line}-{last} (and on) would all be one value; close the quote",
            line)
    if "field larger than field limit" in str(error):
        return FileRejected(
            "field_too_long",
            f"a field is longer than {limits.max_field_chars:,} characters "
            "(often a quote that is never closed)", line)
    if "expected after" in str(error) and last > line:
        return FileRejected(
            "unclosed_quote", f"a quoted value starts in the row on this line and its quote "
            f"only closes on line {last}, in the middle of a value: the quote is probably "
            "never closed and the lines between would be swallowed; close the quote (a "
            'quote inside a value is written twice: "")', line)
    if "expected after" in str(error):
        return FileRejected(
            "malformed_csv", "text follows the closing quote of a value on this line; quote "
            'the whole value and write a quote inside it twice ("")', line)
    return FileRejected("malformed_csv", f"the CSV cannot be read: {error}", line)
