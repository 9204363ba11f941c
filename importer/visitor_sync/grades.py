"""The grade vocabulary: every grade code real exports send, mapped onto one CEDS code.

Student information systems each have their own grade codes (PowerSchool sends
``-2``, ``-1`` and ``0`` for its pre-K and kindergarten levels, Ascender ``EE``;
others send ``KF``/``KA``/``KP`` for full- and half-day kindergarten, ``PK3``/``PK4``,
``PostGraduate``...). We store the CEDS code (the vocabulary OneRoster also uses), so a
student's grade means the same whatever system sent it. A value that is in none of
the lists below is an ``invalid_grade`` error on that row: a grade is never guessed.

Public names (``CEDS_CODES``, ``SPELLINGS``, ``NUMBERS``, ``parse_grade``, ``Grade``)
are what other modules (the OneRoster reader, the format docs) use; keep them stable.
``visitor_sync.values`` re-exports ``Grade`` and ``parse_grade``, where they used to be.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from visitor_sync.issues import quote_value


@dataclass(frozen=True)
class GradeCode:
    """One stored CEDS code, the spellings that become it, and where those come from."""

    code: str
    meaning: str
    #: spellings compared without case, spaces, ``-``, ``_``, ``.`` and ``/``
    words: tuple[str, ...] = ()
    #: spellings compared exactly (after trimming): numbers, where ``-1`` is not ``1``
    numbers: tuple[str, ...] = ()
    #: which systems send the non-CEDS spellings, where a public source says so
    sent_by: str = ""


CEDS_CODES: tuple[GradeCode, ...] = (
    GradeCode("IT", "infant/toddler", ("Infant", "Infant Toddler")),
    GradeCode("PR", "preschool / early education", ("Preschool", "EE", "Early Education"),
              sent_by="`EE`: Ascender (its published interface layouts: EE, PK, KG, 01-12)"),
    GradeCode("PK", "pre-kindergarten",
              ("Pre-K", "PreK", "Pre-Kindergarten", "P", "PK3", "PK4", "P3", "P4"),
              ("-1", "-2"),
              sent_by="`-1`, `-2`: PowerSchool's pre-K levels; `PK3`, `PK4`: pre-K for 3- and "
                      "4-year-olds"),
    GradeCode("TK", "transitional kindergarten", ("Transitional Kindergarten",)),
    GradeCode("KG", "kindergarten", ("K", "Kindergarten", "Kinder", "KF", "KA", "KP"),
              ("0", "00"),
              sent_by="`0`: PowerSchool; `KF`, `KA`, `KP`: full-day, AM and PM half-day "
                      "kindergarten"),
    GradeCode("13", "grade 13"),
    GradeCode("PS", "postsecondary", ("Postsecondary", "PostGraduate", "PG")),
    GradeCode("UG", "ungraded", ("Ungraded",)),
    GradeCode("Other", "other", ()),
)


def _compact(text: str) -> str:
    return re.sub(r"[\s\-_./]+", "", text.upper())


#: compacted word spelling -> CEDS code (each code's own name included)
SPELLINGS: dict[str, str] = {
    _compact(spelling): grade.code
    for grade in CEDS_CODES for spelling in (grade.code, *grade.words)
    if not spelling.isdigit()}
#: exact number spelling -> CEDS code (``1`` to ``13`` are handled as numbers below)
NUMBERS: dict[str, str] = {number: grade.code for grade in CEDS_CODES
                           for number in grade.numbers}
#: grade 1 to 13, written ``5``, ``05``, ``5th``, ``Grade 5`` or ``5th Grade``
_GRADE_NUMBER = re.compile(r"(?:GRADE\s*)?0*(\d{1,2})(?:ST|ND|RD|TH)?(?:\s*GRADE)?")
ACCEPTED = "KG, PK, TK, 01-12, 13, IT, PR, PS, UG or Other (see the grade vocabulary)"


@functools.lru_cache(maxsize=1024)  # a roster repeats its grades a lot
def parse_grade(value: str) -> str:
    """The CEDS code of a grade as any supported system writes it; else ``invalid_grade``."""
    trimmed = value.strip()
    if trimmed in NUMBERS:
        return NUMBERS[trimmed]
    number = _GRADE_NUMBER.fullmatch(trimmed.upper())
    if number and 1 <= int(number.group(1)) <= 13:
        return f"{int(number.group(1)):02d}"
    # words may be spelled with separators (Pre-K); SPELLINGS holds no bare number, so a
    # number with separators (0.5, 1-2, -3) is never read as another one
    compact = _compact(trimmed)
    if compact in SPELLINGS:
        return SPELLINGS[compact]
    # what values.invalid builds; not imported from there, as values re-exports this module
    raise PydanticCustomError("invalid_grade", "{value} is not a grade; use " + ACCEPTED,
                              {"value": quote_value(value)})


Grade = Annotated[str, BeforeValidator(parse_grade)]
