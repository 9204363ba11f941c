"""Value types of the import contract (FORMATS.md), as pydantic annotated types.

Each converter raises a ``PydanticCustomError`` whose type is the stable error
code of the report and whose message starts with the offending value, so the
pipeline can prefix it with the column header the district used:
``Date of Birth '13/45/2010' is not a date; use YYYY-MM-DD``.
"""

from __future__ import annotations

import functools
import re
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

from visitor_sync.grades import Grade as Grade  # re-exported: the grade type's old home
from visitor_sync.grades import parse_grade as parse_grade
from visitor_sync.issues import quote_value

TRUE_SPELLINGS = frozenset({"1", "true", "yes", "y", "t"})
FALSE_SPELLINGS = frozenset({"0", "false", "no", "n", "f"})


def invalid(code: str, value: str, problem: str) -> PydanticCustomError:
    """The error a converter raises: ``code``, and a reason starting with the value."""
    return PydanticCustomError(code, "{value} " + problem, {"value": quote_value(value)})


def parse_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in TRUE_SPELLINGS:
        return True
    if lowered in FALSE_SPELLINGS:
        return False
    raise invalid("invalid_boolean", value, "is not a yes/no value; use 1 or 0")


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@functools.lru_cache(maxsize=65536)  # a roster repeats its dates (and grades) a lot
def parse_date(value: str) -> date:
    """Accept YYYY-MM-DD, MM/DD/YYYY, M/D/YYYY and YYYYMMDD, nothing else."""
    try:
        if _ISO_DATE.fullmatch(value):
            return date.fromisoformat(value)
        if len(value) == 8 and value.isdigit():
            return date(int(value[:4]), int(value[4:6]), int(value[6:]))
        month, day, year = value.split("/")
        if len(year) == 4 and 1 <= len(month) <= 2 and 1 <= len(day) <= 2:
            return date(int(year), int(month), int(day))
    except ValueError:
        pass
    raise invalid("invalid_date", value, "is not a date; use YYYY-MM-DD")


@functools.lru_cache(maxsize=65536)
def parse_birth_date(value: str) -> date:
    return born_on(parse_date(value), value)


def born_on(born: date, value: str) -> date:
    """A parsed date of birth, or an error quoting ``value`` if it is in the future."""
    if born > date.today():
        raise invalid("invalid_date", value, "is in the future; use the real date of birth")
    return born


_EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>.]+")


def parse_email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise invalid("invalid_email", value, "is not an e-mail address; use name@example.org")
    return value.lower()


def parse_phone(value: str) -> str:
    digits = re.sub(r"\D", "", value.split("x")[0].split("X")[0])
    if not 7 <= len(digits) <= 15:
        raise invalid("invalid_phone", value,
                     "is not a phone number; use 10 digits like 555-123-4567")
    return value


_ZIP = re.compile(r"\d{5}(?:-?\d{4})?")


def parse_zip(value: str) -> str:
    if not _ZIP.fullmatch(value):
        raise invalid("invalid_zip", value, "is not a ZIP code; use 5 digits (or ZIP+4)")
    return value


def parse_id_list(value: str) -> str:
    """``001; 002|003`` -> ``001;002;003`` (order kept, duplicates dropped)."""
    parts = [part.strip() for part in re.split(r"[;|]", value)]
    return ";".join(dict.fromkeys(part for part in parts if part))


def parse_time(value: str) -> str:
    """``7:05``, ``07:05``, ``7:05 AM`` or ``3:40pm`` -> ``HH:MM`` (24h)."""
    compact = value.strip().upper().replace(".", "")
    for pattern in ("%H:%M", "%I:%M %p", "%I:%M%p", "%H:%M:%S"):
        try:
            return datetime.strptime(compact, pattern).time().strftime("%H:%M")
        except ValueError:
            continue
    raise invalid("invalid_time", value, "is not a time; use HH:MM (24h) or 7:05 AM")


def one_of(code: str, choices: dict[str, str]) -> Any:
    """A text type accepting the given spellings (compared without case, spaces, ``_``, ``-``)
    and storing their canonical value."""
    allowed = ", ".join(dict.fromkeys(choices.values()))

    def parse(value: str) -> str:
        canonical = choices.get(re.sub(r"[\s_\-]+", "", value.lower()))
        if canonical is None:
            raise invalid(code, value, f"is not allowed; use one of: {allowed}")
        return canonical

    return Annotated[str, BeforeValidator(parse)]


Bool = Annotated[bool, BeforeValidator(parse_bool)]
Date = Annotated[date, BeforeValidator(parse_date)]
BirthDate = Annotated[date, BeforeValidator(parse_birth_date)]
Email = Annotated[str, AfterValidator(parse_email)]
Phone = Annotated[str, AfterValidator(parse_phone)]
Zip = Annotated[str, AfterValidator(parse_zip)]
IdList = Annotated[str, AfterValidator(parse_id_list)]
Time = Annotated[str, BeforeValidator(parse_time)]
