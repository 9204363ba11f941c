"""Names in a drop box are chosen by whoever uploads: any bytes but ``/`` and NUL.

The importer works with every one of them by its exact bytes, and shows each in
reports, logs and the database in a printable form that is valid UTF-8 on one
line (so a name can neither crash a database driver nor forge a log line). A name
that is not valid UTF-8 or holds control characters is *unreadable*: it can be
no accepted file name, so the file is rejected and removed like any other
unrecognised file, never fatal to the run.
"""

from __future__ import annotations

import unicodedata

#: Unicode categories shown escaped: controls (newline, escape), format characters
#: (right-to-left override, zero-width space), line and paragraph separators.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def _escaped(character: str) -> str:
    code = ord(character)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def display_name(raw: bytes) -> str:
    r"""``raw`` as printable one-line text: undecodable bytes and hidden characters
    escaped (``stu\xffdents.csv``, ``a\x0ab.csv``); a readable name is shown as it is."""
    text = raw.decode("utf-8", errors="backslashreplace")
    return "".join(_escaped(character) if unicodedata.category(character)
                   in _HIDDEN_CATEGORIES else character for character in text)


def unreadable_reason(raw: bytes) -> str | None:
    """Why no file of this name can be read as an import file, or ``None`` if it can."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "the file name is not valid UTF-8"
    if any(unicodedata.category(character) in _HIDDEN_CATEGORIES for character in text):
        return "the file name holds control or invisible characters"
    return None
