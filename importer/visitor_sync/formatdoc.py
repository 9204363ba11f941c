"""The Markdown reference of every file type, generated from the declarations.

``docs/formats.md`` embeds :func:`render_formats` between two markers and
``tests/test_docs.py`` fails when the two differ, so the documented columns,
aliases, value formats, defaults, references and error codes are the ones the
importer really uses. Regenerate with::

    python3 -c "from visitor_sync.formatdoc import write_formats; write_formats()"
"""

from __future__ import annotations

import enum
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import AfterValidator, BaseModel, BeforeValidator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError, PydanticUndefined

from visitor_sync import grades, safety, values
from visitor_sync.config import ImportConfig, Limits, Notifications, Retention
from visitor_sync.filetypes import APPLY_ORDER, FILE_TYPES
from visitor_sync.filetypes.base import FileType, Reference, SyncMode
from visitor_sync.filetypes.powerschool import parse_enroll_status
from visitor_sync.oneroster import conformance as oneroster_conformance
from visitor_sync.oneroster import roles as oneroster_roles
from visitor_sync.oneroster import types as oneroster_types
from visitor_sync.safety import PICKUP_FIELD

BEGIN_MARKER = "<!-- BEGIN GENERATED: visitor-sync formats -->"
END_MARKER = "<!-- END GENERATED -->"
#: ``docs/formats.md`` of the source checkout this module lives in.
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "docs" / "formats.md"
REGENERATE = 'python3 -c "from visitor_sync.formatdoc import write_formats; write_formats()"'

#: A value no converter accepts: probing a converter with it yields its error code.
_PROBE = "\x00"


class Kind(enum.StrEnum):
    """What an error code does to the file (the report's consequence, not its severity)."""

    FILE = "file error"
    ROW = "row error"
    WARNING = "warning"


_KIND_EFFECT = {
    Kind.FILE: "nothing from the file is applied (and nothing is deactivated)",
    Kind.ROW: "the row is skipped; the record it names is left as it was",
    Kind.WARNING: "reported only; the file is applied",
}

#: Every stable code the importer emits. Hand-kept, but tests/test_docs.py scans the
#: importer source and fails when a code is missing here or no longer emitted.
ERROR_CODES: dict[str, tuple[Kind, str]] = {
    "unrecognised_file": (Kind.FILE, "the file name is not one of the accepted names"),
    "unreadable_file_name": (Kind.FILE, "the file name is not valid UTF-8 or holds control or "
                                        "invisible characters (it is shown escaped)"),
    "type_not_accepted": (Kind.FILE, "the district's configuration does not enable this type "
                                     "(`accepted_types`)"),
    "duplicate_source": (Kind.FILE, "another file of the same run is already this type "
                                    "(one file per type per run)"),
    "file_too_large": (Kind.FILE, "the file is larger than `limits.max_file_bytes` (refused "
                                  "from the drop box listing, before it is downloaded)"),
    "binary_file": (Kind.FILE, "the file holds NUL bytes (not a text export)"),
    "invalid_encoding": (Kind.FILE, "a line is neither UTF-8 nor Windows-1252 text (or not "
                                    "UTF-16 in a file with a UTF-16 BOM)"),
    "mixed_encoding": (Kind.FILE, "the file mixes encodings: a line that is not UTF-8 in a "
                                  "file with UTF-8 text or a UTF-8 BOM"),
    "empty_file": (Kind.FILE, "the file has no header row"),
    "malformed_csv": (Kind.FILE, "the CSV cannot be parsed (e.g. text after a closing "
                                 "quote)"),
    "unclosed_quote": (Kind.FILE, "a quoted value is never closed: it runs to the end of the "
                                  "file, closes in the middle of a later value, or takes in "
                                  "later lines holding the delimiter"),
    "field_too_long": (Kind.FILE, "a field is longer than `limits.max_field_chars` "
                                  "(often an unclosed quote)"),
    "too_many_rows": (Kind.FILE, "the file has more data rows than `limits.max_rows`"),
    "invalid_zip_file": (Kind.FILE, "the file (or a member) is not a readable zip"),
    "zip_too_many_members": (Kind.FILE, "the zip declares more entries than "
                                        "`limits.zip_max_members`, or its directory is larger "
                                        "than that many entries need (read before the "
                                        "directory itself)"),
    "zip_too_large": (Kind.FILE, "the members add up to more than "
                                 "`limits.zip_max_uncompressed_bytes` uncompressed"),
    "zip_bomb": (Kind.FILE, "a member compresses better than `limits.zip_max_ratio` to 1, or "
                            "inflates past its declared size (refused before inflating)"),
    "zip_unsafe_path": (Kind.FILE, "a member has an absolute or `..` path, or is a symbolic "
                                   "link"),
    "zip_nested_archive": (Kind.FILE, "a member is itself an archive"),
    "zip_encrypted": (Kind.FILE, "a member is password-protected"),
    "missing_manifest": (Kind.FILE, "the zip has no `manifest.csv` at its root (a OneRoster "
                                    "1.0 zip has none: 1.0 is not supported)"),
    "invalid_manifest": (Kind.FILE, "a `file.X` manifest entry of a table visitor-sync reads "
                                    "(orgs, users, roles, demographics) is not bulk, delta or "
                                    "absent"),
    "missing_member": (Kind.FILE, "the manifest declares a table visitor-sync reads (or 1.2 "
                                  "needs `roles.csv`) the zip does not have"),
    "unsupported_version": (Kind.FILE, "`oneroster.version` is not 1.1 or 1.2 (OneRoster 1.0 "
                                       "is not supported)"),
    "conflicts_with_oneroster": (Kind.FILE, "a students, visitors or users CSV in the same run "
                                            "as a OneRoster zip (the zip provides them)"),
    "internal_error": (Kind.FILE, "the importer itself failed on the file; nothing was applied, "
                                  "the file stays and is tried again next run"),
    "held_file_missing": (Kind.FILE, "an approved held file is no longer in the held area "
                                     "(upload it again)"),
    "database_error": (Kind.FILE, "the database failed while applying the file; nothing was "
                                  "applied, the file stays and is tried again next run"),
    "interrupted": (Kind.FILE, "the run was stopped (SIGTERM: a deadline, an eviction) while "
                               "applying the file; nothing was applied, the file stays and is "
                               "tried again next run"),
    "missing_column": (Kind.FILE, "a required column is not in the header row "
                                  "(every missing column is listed)"),
    "unmapped_safety_column": (
        Kind.FILE, "a header cell we do not map looks like a pickup, custody, emergency or "
                   "court-order flag: compared like headers, its name holds "
                   + ", ".join(f"`{word}`" for word in safety.SAFETY_WORDS)
                   + " and none of " + ", ".join(f"`{word}`" for word in safety.DETAIL_WORDS)
                   + " (nor ends with the word "
                   + ", ".join(f"`{word}`" for word in sorted(safety.ID_WORDS))
                   + "); the file is refused rather than a permission guessed"),
    "duplicate_column": (Kind.FILE, "two header cells name the same field (e.g. `DOB` and "
                                    "`Date of Birth`)"),
    "wrong_field_count": (Kind.ROW, "the row has more non-empty fields than the header has "
                                    "columns (an unquoted delimiter)"),
    "missing_value": (Kind.ROW, "a required value is empty"),
    "invalid_value": (Kind.ROW, "a value the row model rejects for a reason with no "
                                "dedicated code"),
    "invalid_boolean": (Kind.ROW, "not a yes/no value"),
    "invalid_enroll_status": (Kind.ROW, "a PowerSchool `Enroll_Status` that is not a whole "
                                        "number"),
    "invalid_date": (Kind.ROW, "not a date in an accepted format, an impossible date, or a "
                               "date of birth in the future"),
    "invalid_grade": (Kind.ROW, "not a grade that maps to a CEDS code"),
    "invalid_email": (Kind.ROW, "not an e-mail address"),
    "invalid_phone": (Kind.ROW, "not a phone number (7 to 15 digits)"),
    "invalid_zip": (Kind.ROW, "not a ZIP or ZIP+4 code"),
    "invalid_time": (Kind.ROW, "not a time of day"),
    "invalid_role": (Kind.ROW, "not one of the accepted user roles"),
    "invalid_order_type": (Kind.ROW, "not one of the accepted court-order types"),
    "invalid_direction": (Kind.ROW, "not one of the accepted bus directions"),
    "duplicate_key": (Kind.ROW, "the row repeats the key of an earlier row of the file "
                                "(every row after the first)"),
    "unknown_student": (Kind.ROW, "Student ID does not name an active student of the "
                                  "district"),
    "unknown_school": (Kind.ROW, "School ID does not name a school of the district (schools "
                                 "come from the rows of students files, and from Clever's "
                                 "schools.csv)"),
    "unused_file": (Kind.WARNING, "a file of Clever's format this import does not use "
                                  "(`sections.csv`, `enrollments.csv`, `staff.csv`, "
                                  "`admins.csv`): reported as ignored and removed"),
    "unknown_column": (Kind.WARNING, "a header cell matches no column or alias of the type; "
                                     "the column is ignored"),
    "encoding_fallback": (Kind.WARNING, "the file is not valid UTF-8 and was read as "
                                        "Windows-1252"),
    "unmapped_role": (Kind.WARNING, "a OneRoster user's role has no counterpart (e.g. "
                                    "counselor), or a 1.2 user has no role in roles.csv; that "
                                    "role is ignored (the user is skipped if no role maps)"),
    "secondary_admin_role": (Kind.WARNING, "a OneRoster 1.2 administrator role that is not the "
                                           "user's primary role; it is ignored (administrator "
                                           "rights come only from a primary role)"),
    "manifest_value_ignored": (Kind.WARNING, "a OneRoster manifest entry for a table "
                                             "visitor-sync never reads is blank, unexpected, or "
                                             "names a file the zip lacks; it changes nothing"),
    "absent_member_ignored": (Kind.WARNING, "the OneRoster manifest declares a table `absent` "
                                            "that the zip holds; as declared, it is not read"),
    "unknown_agent": (Kind.WARNING, "agentSourcedIds names a user not in users.csv; that link "
                                    "is ignored"),
    "conflicting_values": (Kind.WARNING, "a record repeated on several rows (a visitor, a "
                                         "school) has other details than on its first row "
                                         "(the reason names the columns); the first row "
                                         "wins"),
}


@dataclass(frozen=True)
class ValueFormat:
    """How the docs describe one converter of :mod:`visitor_sync.values`.

    ``examples`` are values the converter accepts and ``rejected`` values it
    refuses; the tests check both, so hand-written wording cannot drift from the code.
    """

    name: str
    summary: str
    detail: str
    examples: tuple[str, ...]
    rejected: tuple[str, ...] = ()


def _true_false() -> list[tuple[str, str]]:
    """Pairs of yes/no spellings, shortest first (``1``/``0``, ``t``/``f``, ...)."""
    def by_length(spelling: str) -> tuple[int, str]:
        return len(spelling), spelling

    return list(zip(sorted(values.TRUE_SPELLINGS, key=by_length),
                    sorted(values.FALSE_SPELLINGS, key=by_length), strict=True))


def _grade_codes(quote: str = "") -> str:
    """The CEDS codes ``parse_grade`` stores, numbers as a range."""
    codes = [f"{quote}{grade.code}{quote}" for grade in grades.CEDS_CODES
             if not grade.code.isdigit()]
    return ", ".join([*codes, f"{quote}01{quote} to {quote}13{quote}"])


def _value_formats() -> dict[Callable[..., Any], ValueFormat]:
    booleans = ", ".join(f"{yes}/{no}" for yes, no in _true_false())
    dates = "YYYY-MM-DD, MM/DD/YYYY, M/D/YYYY, YYYYMMDD"
    date_examples = ("2014-03-09", "03/09/2014", "3/9/2014", "20140309")
    return {
        values.parse_bool: ValueFormat(
            "yes/no", f"yes/no ({booleans}; any case)",
            f"`{booleans.replace(', ', '`, `')}`, any case. Stored as true/false.",
            ("1", "0", "TRUE", "no", "Y", "f"), ("2", "on", "x")),
        values.parse_date: ValueFormat(
            "date", f"date ({dates})",
            f"`{dates.replace(', ', '`, `')}`. Anything else, including impossible dates "
            "such as `2023-02-30`, is an error.", date_examples,
            ("2023-02-30", "3/9/14", "2014.03.09", "9 March 2014")),
        values.parse_birth_date: ValueFormat(
            "date of birth", f"date ({dates}), not in the future",
            "A date as above that is not after today.", date_examples, ("9999-12-31",)),
        grades.parse_grade: ValueFormat(
            "grade", f"grade, stored as a CEDS code ({_grade_codes()})",
            f"Stored as a CEDS code: {_grade_codes('`')}. Numbers "
            "are zero-padded (`5`, `05`, `5th`, `Grade 5` -> `05`). Every other code real "
            "systems send is in the [grade vocabulary](#grade-vocabulary); anything else "
            "is an error on that row only.",
            ("K", "5", "05", "5th", "Grade 5", "Pre-K", "12", "13", "Other", "-1", "EE",
             "KF", "PK3", "PostGraduate"), ("14", "Z", "-3", "0.5")),
        parse_enroll_status: ValueFormat(
            "PowerSchool enrollment status", "PowerSchool `Enroll_Status`: `0` is active, "
            "any other whole number is not",
            "PowerSchool's codes: `0` enrolled (active); `-1` pre-registered, `1` inactive, "
            "`2` transferred out, `3` graduated and any other whole number: not active.",
            ("0", "-1", "2", "3"), ("A", "0.5")),
        values.parse_email: ValueFormat(
            "e-mail", "e-mail address (stored lower-case)",
            "`name@example.org`; stored lower-case, so keys on e-mail ignore case.",
            ("Ana.Lopez@example.org",), ("ana", "ana@example", "a b@example.org")),
        values.parse_phone: ValueFormat(
            "phone", "phone number (7 to 15 digits, any punctuation, optional extension)",
            "Any punctuation; 7 to 15 digits before an optional `x` extension. Stored "
            "as written (leading zeros kept).",
            ("555-123-4567", "(555) 123-4567 x12", "+44 20 7946 0958"), ("123", "n/a")),
        values.parse_zip: ValueFormat(
            "ZIP", "ZIP code (5 digits or ZIP+4)",
            "`02134`, `02134-1234` or `021341234`; a string, leading zeros kept.",
            ("02134", "02134-1234", "021341234"), ("2134", "0213A")),
        values.parse_id_list: ValueFormat(
            "list of IDs", "list of IDs separated by `;` or `|`",
            "IDs separated by `;` or `|`, spaces around them ignored; stored in order "
            "without duplicates (`001; 002|001` -> `001;002`).",
            ("001", "001;002", "001 | 002", "001; 002|001")),
        values.parse_time: ValueFormat(
            "time", "time (HH:MM 24h, or h:mm AM/PM)",
            "`HH:MM` (24h), `HH:MM:SS`, or `h:mm AM`/`h:mm PM` (`7:05 am`, `3:40pm`, "
            "`3:40 p.m.`); stored as `HH:MM` (24h).",
            ("07:05", "7:05", "15:40", "7:05 AM", "3:40pm", "3:40 p.m.", "15:40:00"),
            ("25:00", "7", "noon")),
    }


VALUE_FORMATS: dict[Callable[..., Any], ValueFormat] = _value_formats()

#: Row-model validators without a docstring: what they check, as districts read it.
VALIDATOR_NOTES: dict[str, str] = {
    "UserRow._schools_unless_administrator":
        "School IDs is required unless Role is `administrator` (`missing_value`).",
    "CleverStudentRow._contact_needs_an_id":
        "A contact needs both Contact_sis_id and Contact_name (`missing_value` otherwise: a "
        "contact without its id is never guessed); Contact_type `Emergency` marks an "
        "emergency contact.",
    "CourtOrderRow._expired_orders_are_inactive":
        "An order whose Expiry Date is in the past is stored inactive.",
}

#: ``ImportConfig`` settings that change what happens to a district's files.
_SETTINGS = ("max_deactivate_percent", "quiet_period_seconds", "held_retention_days",
             "accepted_types", "pickup_default")

_SYNC_MODES = {
    SyncMode.FULL_SYNC: "full sync: records absent from the file are deactivated",
    SyncMode.UPSERT: "created and updated, never deactivated by this file",
    SyncMode.DELTA: "change set: rows applied with their own active flag, absent records "
                    "left alone",
}


# -- reading the declarations -------------------------------------------------------------


@dataclass(frozen=True)
class Choices:
    """What a ``values.one_of`` type accepts: canonical value -> other accepted spellings."""

    code: str
    accepted: dict[str, list[str]]


def choices_of(converter: Callable[..., Any]) -> Choices | None:
    """The choices behind a ``one_of`` converter (read from its closure), else ``None``."""
    if converter.__name__ != "parse" or converter.__qualname__ != "one_of.<locals>.parse":
        return None
    captured = inspect.getclosurevars(converter).nonlocals
    spellings: dict[str, str] = captured["choices"]
    accepted: dict[str, list[str]] = {}
    for spelling, canonical in spellings.items():
        others = accepted.setdefault(canonical, [])
        if spelling != _compact(canonical):
            others.append(spelling)
    return Choices(captured["code"], accepted)


def _compact(text: str) -> str:
    """The form ``one_of`` compares spellings in (no case, spaces, ``_`` or ``-``)."""
    return re.sub(r"[\s_\-]+", "", text.lower())


def converters_of(field: FieldInfo) -> list[Callable[..., Any]]:
    """The value converters of a row-model field, looking inside ``X | None``."""
    metadata = list(field.metadata)
    annotation = field.annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for member in typing.get_args(annotation):
            if typing.get_origin(member) is typing.Annotated:
                metadata += typing.get_args(member)[1:]
    return [item.func for item in metadata
            if isinstance(item, BeforeValidator | AfterValidator)]


def error_code_of(converter: Callable[..., Any]) -> str | None:
    """The code a converter reports, found by feeding it a value nothing accepts."""
    try:
        converter(_PROBE)
    except PydanticCustomError as error:
        return error.type
    return None


@dataclass(frozen=True)
class Column:
    """One documented column of a file type."""

    header: str
    aliases: tuple[str, ...]
    required: bool
    value: str
    default: str
    codes: tuple[str, ...]


def columns_of(file_type: FileType) -> list[Column]:
    """Every header of a type with what its row-model field accepts."""
    required = set(file_type.required_headers())
    columns = []
    for header, aliases in file_type.headers.items():
        field = file_type.row_model.model_fields[file_type.field_of(header)]
        value, codes = _describe_value(file_type, header, field)
        if header in required:
            codes = ("missing_value", *codes)
        columns.append(Column(header, tuple(aliases), header in required, value,
                              _default(field), codes))
    return columns


def _describe_value(file_type: FileType, header: str, field: FieldInfo,
                    ) -> tuple[str, tuple[str, ...]]:
    converters = converters_of(field)
    if not converters:
        base = _base_type(field.annotation)
        if base is not str:
            raise TypeError(f"{file_type.name}.{header}: document values of type {base!r} "
                            "in visitor_sync.formatdoc")
        return "text", ()
    if len(converters) > 1:
        raise TypeError(f"{file_type.name}.{header}: several converters; document them")
    converter = converters[0]
    choices = choices_of(converter)
    if choices is not None:
        return _describe_choices(choices), (choices.code,)
    known = VALUE_FORMATS.get(converter)
    if known is None:
        raise TypeError(f"{file_type.name}.{header}: converter {converter!r} is not in "
                        "visitor_sync.formatdoc.VALUE_FORMATS")
    code = error_code_of(converter)
    return known.summary, (code,) if code else ()


def _base_type(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        return members[0] if len(members) == 1 else annotation
    return annotation


def _describe_choices(choices: Choices) -> str:
    parts = []
    for canonical, others in choices.accepted.items():
        also = f" (or {', '.join(f'`{other}`' for other in others)})" if others else ""
        parts.append(f"`{canonical}`{also}")
    return "one of: " + "; ".join(parts)


def _default(field: FieldInfo) -> str:
    default = field.default
    if default is PydanticUndefined or default is None:
        return ""
    if isinstance(default, bool):
        return "1" if default else "0"
    return f"`{default}`"


def validator_notes(model: type[BaseModel]) -> list[str]:
    """What the row model's own validators check (docstring, else :data:`VALIDATOR_NOTES`)."""
    decorators = model.__pydantic_decorators__
    notes = []
    for name, decorator in (*decorators.field_validators.items(),
                            *decorators.model_validators.items()):
        doc = inspect.getdoc(decorator.func)
        key = f"{model.__name__}.{name}"
        if doc:
            notes.append(doc.splitlines()[0].rstrip("."))
        elif key in VALIDATOR_NOTES:
            notes.append(VALIDATOR_NOTES[key].rstrip("."))
        else:
            raise KeyError(f"{key} has no docstring: describe it in "
                           "visitor_sync.formatdoc.VALIDATOR_NOTES")
    return notes


def fillers_of(reference: Reference) -> list[str]:
    """File names whose types fill the table a reference points at."""
    return list(dict.fromkeys(
        f"`{name}`" for file_type in FILE_TYPES.values()
        if any(target.model is reference.model for target in file_type.targets)
        for name in file_type.file_names))


# -- rendering ----------------------------------------------------------------------------


def canonical_of(file_type: FileType) -> FileType:
    """The canonical type a layout feeds (itself for a canonical type)."""
    return FILE_TYPES[file_type.kind]


def _filled_column(file_type: FileType, row_field: str) -> str:
    """Where a vendor field the canonical file lacks goes: ``table.column`` it fills
    (Clever's contacts), else it is only the input of a conversion."""
    filled = [f"`{target.name}.{column}`" for target in file_type.targets
              for column, source in target.fields(file_type.row_fields).items()
              if source == row_field]
    return ", ".join(filled) if filled else "- (conversion input)"


def _cell(text: str) -> str:
    """A Markdown table cell: pipes escaped (also inside code spans, as GFM requires)."""
    return text.replace("|", "\\|")


def _codes(codes: tuple[str, ...]) -> str:
    return ", ".join(f"`{code}`" for code in codes)


def _headers(file_type: FileType, fields: tuple[str, ...]) -> str:
    return " + ".join(file_type.header_of(name) for name in fields)


def render_file_type(file_type: FileType) -> str:
    """The section of one file type."""
    lines = [f"### {', '.join(file_type.file_names)}", ""]
    if file_type.description:
        lines += [file_type.description, ""]
    after = ", ".join(f"`{name}`" for other in file_type.after
                      for name in FILE_TYPES[other].file_names)
    lines += [
        f"- **Type**: `{file_type.name}`; file name"
        f"{'s' if len(file_type.file_names) > 1 else ''} "
        + ", ".join(f"`{name}`" for name in file_type.file_names) + " (any case)",
        f"- **Key**: {_headers(file_type, file_type.key)} (`duplicate_key` for every "
        "repeat after the first row)",
        f"- **Applied after**: {after} of the same run" if after
        else "- **Applied after**: nothing (no dependency)",
    ]
    for target in file_type.targets:
        key = file_type.target_key(target)
        line = (f"- **Fills** `{target.name}` (keyed by {_headers(file_type, key)}; "
                f"{_SYNC_MODES[target.mode]})")
        if key != file_type.key:
            shared = [source for source in target.fields(file_type.row_fields).values()
                      if source not in key]
            line += (f". Rows repeating a {_headers(file_type, key)} must agree on "
                     f"{', '.join(file_type.header_of(name) for name in shared)}: the first "
                     "row wins, later differing rows get `conflicting_values`")
            if target.mode is not SyncMode.UPSERT:
                line += (f". A {target.name.removesuffix('s').replace('_', ' ')} is active "
                         "while any of its rows is (`Active` = 0 on one row deactivates only "
                         "what that row alone fills)")
        if target.on_create is not None:
            doc = inspect.getdoc(target.on_create) or target.on_create.__name__
            line += f". New records: {doc[0].lower()}{doc[1:].rstrip('.')}"
        lines.append(line)
    required = set(file_type.required_headers())
    for reference in file_type.references:
        header = file_type.header_of(reference.field)
        lines.append(
            f"- **Reference**: {header}{'' if header in required else ', when given,'} must name "
            f"an active {reference.noun} of the district (already imported, or in this run's "
            f"{' or '.join(fillers_of(reference))}), else row error `{reference.code}`")
    if any(file_type.field_of(header) == "active" for header in file_type.headers):
        lines.append("- **Active** = 0 deactivates the record as absence from the file does")
    if PICKUP_FIELD in file_type.row_fields:
        without = ("every link it creates takes the district's `pickup_default` (`allow` "
                   "unless set) and stored links keep theirs"
                   if file_type.follows_pickup_default else "every link is stored as no pickup")
        if any(file_type.field_of(header) == PICKUP_FIELD for header in file_type.headers):
            header = file_type.header_of(PICKUP_FIELD)
            rule = (f"an empty {header} cell means no pickup; from a file without a {header} "
                    f"column, {without}")
        else:
            rule = f"this format has no pickup column: {without}"
        lines.append(f"- **Pickup** fails closed: {rule}; a column that looks like a pickup, "
                     "custody or emergency flag but is not mapped refuses the file "
                     "(`unmapped_safety_column`)")
    older = [f"`{alias}` for `{header}`" for header, aliases in file_type.headers.items()
             for alias in aliases if canonical_of(file_type) is not file_type]
    if older:
        lines.append("- **Earlier headers still accepted**: " + ", ".join(older))
    if file_type.ignored:
        lines.append("- **Read and not imported** (no warning): "
                     + ", ".join(f"`{_cell(header)}`" for header in file_type.ignored))
    for note in validator_notes(file_type.row_model):
        lines.append(f"- **Rule**: {note}")
    canonical = FILE_TYPES[file_type.kind]
    if canonical is file_type:
        lines += ["", "| column | required | aliases | value | default | error codes |",
                  "|---|---|---|---|---|---|"]
    else:  # a vendor layout: each column's canonical column is the mapping table
        lines += ["", f"| column | required | becomes `{canonical.file_names[0]}` column | value "
                  "| default | error codes |", "|---|---|---|---|---|---|"]
    for column in columns_of(file_type):
        second = (", ".join(f"`{alias}`" for alias in column.aliases) or "-"
                  if canonical is file_type else
                  f"`{canonical.header_of(file_type.field_of(column.header))}`"
                  if file_type.field_of(column.header) in canonical.row_fields
                  else _filled_column(file_type, file_type.field_of(column.header)))
        lines.append("| " + " | ".join(_cell(text) for text in (
            f"`{column.header}`", "yes" if column.required else "no", second, column.value,
            column.default or "-", _codes(column.codes) or "-")) + " |")
    return "\n".join(lines) + "\n"


def _render_value_formats() -> Iterator[str]:
    yield "## Value formats\n"
    yield ("Cells are trimmed of surrounding spaces first; an empty cell is an absent "
           "value (`missing_value` when the column is required, the default otherwise).\n")
    yield "| value | accepted | error code |"
    yield "|---|---|---|"
    yield "| text | anything; IDs, ZIP codes and phone numbers stay strings | - |"
    for converter, known in VALUE_FORMATS.items():
        code = error_code_of(converter)
        yield (f"| {known.name} | {_cell(known.detail)} | "
               f"{f'`{code}`' if code else '-'} |")
    yield ""


def _render_grades() -> Iterator[str]:
    yield "## Grade vocabulary\n"
    yield ("Every grade is stored as one CEDS code (the vocabulary OneRoster uses too), "
           "whatever system sent it. Words are compared without case, spaces, `-`, `_`, "
           "`.` and `/`; numbers exactly (`-1` is not `1`). `1` to `13` (also `05`, `5th`, "
           "`Grade 5`) are stored zero-padded. A grade in none of these lists is "
           "`invalid_grade` on that row only; the file's other rows are applied.\n")
    yield "| stored | meaning | also accepted | who sends them, notes |"
    yield "|---|---|---|---|"
    for grade in grades.CEDS_CODES:
        accepted = ", ".join(f"`{spelling}`" for spelling in (*grade.numbers, *grade.words))
        yield (f"| `{grade.code}` | {grade.meaning} | {_cell(accepted) or '-'} | "
               f"{_cell(grade.sent_by) or '-'} |")
    yield "| `01` to `12` | grades 1 to 12 | `1`, `01`, `1st`, `Grade 1`, `1st Grade` | - |"
    yield ""


def _render_settings() -> Iterator[str]:
    yield "## Limits and settings\n"
    yield ("Defaults of the district's `ImportConfig` (`visitor_sync.config`); over a limit "
           "the file is rejected.\n")
    yield "| setting | default | meaning |"
    yield "|---|---|---|"
    yield from _nested_settings("limits", Limits)
    for name in _SETTINGS:
        field = ImportConfig.model_fields[name]
        default = "all types" if field.default is None else _number(field.default)
        yield f"| `{name}` | {default} | {_cell(field.description or '')} |"
    for name, field in Notifications.model_fields.items():
        default = "none" if field.default_factory is list else _number(field.default)
        yield (f"| `notifications.{name}` | {default} | "
               f"{_cell(field.description or '')} |")
    yield from _nested_settings("retention", Retention)
    yield ""
    yield ("Retention is applied by the importer at the end of every run; what it removes "
           "is in [security.md](security.md#retention).\n")
    yield ("What the report e-mail contains, and the SMTP settings, are in "
           "[email.md](email.md).\n")


def _nested_settings(prefix: str, model: type[BaseModel]) -> Iterator[str]:
    for name, field in model.model_fields.items():
        yield (f"| `{prefix}.{name}` | {_number(field.default)} | "
               f"{_cell(field.description or '')} |")


def _number(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        text = f"{value:,}" if value == int(value) else f"{value:g}"
        text = text.removesuffix(".0")
        if isinstance(value, int) and value >= 1024**2 and value % 1024**2 == 0:
            mebibytes = value // 1024**2
            unit = f"{mebibytes // 1024} GiB" if mebibytes % 1024 == 0 else f"{mebibytes} MiB"
            text += f" ({unit})"
        return text
    return f"`{value}`"


def _render_error_codes() -> Iterator[str]:
    yield "## Error codes\n"
    yield "Stable, snake_case; every issue of a report carries one of them.\n"
    for kind, effect in _KIND_EFFECT.items():
        yield f"- *{kind.value}*: {effect}"
    yield ""
    yield "| code | kind | meaning |"
    yield "|---|---|---|"
    for kind in Kind:
        for code, (code_kind, meaning) in ERROR_CODES.items():
            if code_kind is kind:
                yield f"| `{code}` | {kind.value} | {_cell(meaning)} |"
    yield ""


def render_formats() -> str:
    """The generated part of ``docs/formats.md``: file types, value formats, limits, codes."""
    parts = ["## File types\n",
             "Generated from `visitor_sync.filetypes`; types are listed in the order a "
             "run applies them.\n"]
    parts += [render_file_type(file_type) for kind in APPLY_ORDER
              for file_type in FILE_TYPES.values() if file_type.kind == kind]
    parts.append(_render_oneroster())
    parts += [*_render_value_formats(), *_render_grades(), *_render_settings(),
              *_render_error_codes()]
    return "\n".join(parts).rstrip("\n") + "\n"


def _render_oneroster() -> str:
    """The OneRoster zip: what each table's columns become, and the role mapping."""
    lines = ["### OneRoster.zip", "",
             "Any `*.zip` (OneRoster 1.1 or 1.2 CSV binding). Its tables are applied as the "
             "members below, in this order, in one transaction; each member's rows are "
             "validated like the canonical file it stands for.", ""]
    for file_type in oneroster_types.BULK_TYPES:
        lines += [f"#### {file_type.name}", "", file_type.description, "",
                  "| OneRoster column | becomes (table `" + file_type.primary.name + "`) |",
                  "|---|---|"]
        lines += [f"| `{header}` | `{file_type.field_of(header)}` |"
                  for header in file_type.headers]
        lines.append("")
    lines += ["#### Roles", "", "| OneRoster role | becomes |", "|---|---|"]
    lines += [f"| `{role}` | student |" for role in sorted(oneroster_roles.STUDENT_ROLES)]
    lines += [f"| `{role}` | visitor, linked through agentSourcedIds |"
              for role in sorted(oneroster_roles.GUARDIAN_ROLES)]
    lines += [f"| `{role}` | user account `{account}` |"
              for role, account in oneroster_roles.STAFF_ROLES.items()]
    lines += ["", "A 1.1 `administrator` whose orgs include no school becomes `administrator`. "
              "Other roles are skipped with `unmapped_role`.", ""]
    lines += ["#### How the OneRoster specification is read", ""]
    lines += [f"- **{rule.topic}**: {rule.rule} *Source:* {rule.source}."
              for rule in oneroster_conformance.RULES]
    lines.append("")
    return "\n".join(lines)


# -- the document -------------------------------------------------------------------------


def generated_block(document: str) -> str:
    """The text between the markers of a document (what :func:`render_formats` must equal)."""
    start = document.index(BEGIN_MARKER) + len(BEGIN_MARKER)
    end = document.index(END_MARKER, start)
    return document[start:end].removeprefix("\n")


def replace_generated(document: str, generated: str) -> str:
    """The document with only its generated block replaced."""
    start = document.index(BEGIN_MARKER) + len(BEGIN_MARKER)
    end = document.index(END_MARKER, start)
    return f"{document[:start]}\n{generated}{document[end:]}"


def write_formats(path: Path = DEFAULT_PATH) -> None:
    """Rewrite the generated block of ``docs/formats.md``; the hand-written text stays."""
    document = path.read_text(encoding="utf-8")
    path.write_text(replace_generated(document, render_formats()), encoding="utf-8")
