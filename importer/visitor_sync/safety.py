"""Safety fields fail closed: who may pick a child up is never guessed.

Two rules (docs/formats.md, "Safety fields"):

- A header cell we do not map that looks like a pickup, custody, emergency or
  court-order flag refuses the whole file (``unmapped_safety_column``). Ignoring it
  as an unknown column would store every link with the default pickup permission,
  whatever the district's system said.
- A file that carries no pickup information at all (no pickup column) gets the
  district's ``pickup_default``, for the layouts that follow it; a layout whose
  vendor never states pickup (Clever) is always "no pickup". An empty cell in a
  present pickup column is "no pickup" too (the row models default to it).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from visitor_sync.config import ImportConfig, PickupDefault
from visitor_sync.csvfile import normalise_header
from visitor_sync.issues import quote_value

if TYPE_CHECKING:  # the file types import the row validation, which imports this module
    from visitor_sync.filetypes.base import FileType

#: What a safety flag's header contains (compared like headers: no case, spaces, ``_``, ``-``).
SAFETY_WORDS = ("pickup", "custody", "custodial", "emergency", "courtorder", "restrain",
                "nocontact", "protectiveorder", "donotrelease", "norelease")
#: ... unless it is a detail, not a flag: of such a person (``Emergency Phone``,
#: ``Custodial Parent Name``) or of a bus pickup (``Pickup Stop``, ``PM Pickup Time``).
DETAIL_WORDS = ("phone", "name", "email", "mail", "address", "street", "city", "state", "zip",
                "postal", "relation", "priority", "employer", "language", "time", "stop",
                "location", "route", "bus")
#: ... or an identifier of one (``Emergency Contact ID``, ``EmergencyContactNumber``): its
#: last word, camel case split too. Not ``No``: ``Pickup Yes/No`` is a flag, and a header
#: wrongly taken for a flag refuses the file loudly, while a flag taken for a detail would
#: be ignored silently.
ID_WORDS = frozenset({"id", "number", "num"})
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")

#: The row field holding pickup permission.
PICKUP_FIELD = "can_pickup"


def looks_like_safety_flag(header: str) -> bool:
    """Whether a header names a pickup/custody/emergency/court-order flag."""
    name = normalise_header(header).replace(".", "")
    words = _WORDS.findall(header)
    return (any(word in name for word in SAFETY_WORDS)
            and not any(word in name for word in DETAIL_WORDS)
            and not (words and words[-1].lower() in ID_WORDS))


def unmapped_safety_reason(header: str, file_type: FileType) -> str:
    """Why an unmapped safety column refuses the file (``unmapped_safety_column``)."""
    return (f"column {quote_value(header)} looks like pickup, custody, emergency or "
            f"court-order information, which the {file_type.name} format does not map; the "
            "file is refused so that no permission is guessed. Rename it to a documented "
            "column or remove it from the export")


def absent_field_defaults(file_type: FileType, written: set[str],
                          config: ImportConfig) -> dict[str, str]:
    """Cells to assume for fields the file's header leaves out: pickup permission from the
    district's ``pickup_default`` when the file has no pickup column and the layout follows
    that setting."""
    if (PICKUP_FIELD in file_type.row_fields and PICKUP_FIELD not in written
            and file_type.follows_pickup_default):
        return {PICKUP_FIELD: "1" if config.pickup_default is PickupDefault.ALLOW else "0"}
    return {}
