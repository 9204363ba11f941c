"""One problem found in an import file, as districts see it in reports.

Every problem is a single :class:`Issue` with file, physical line, column,
a stable snake_case code and a reason that says how to fix it.
"""

from __future__ import annotations

import enum
from typing import Self

from pydantic import BaseModel

#: How much of a district's value a report may quote.
QUOTED_VALUE_CHARS = 40


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


class Issue(BaseModel):
    """A row error, a file error or a warning."""

    file: str
    line: int | None = None
    column: str | None = None
    code: str
    #: how to fix it; may quote the district's values, so outputs that people without
    #: access to student data read leave it empty (:meth:`ImportSummary.without_values`)
    reason: str = ""
    severity: Severity = Severity.ERROR

    @classmethod
    def warning(cls, file: str, code: str, reason: str, **where: object) -> Self:
        return cls(file=file, code=code, reason=reason, severity=Severity.WARNING, **where)


class FileRejected(Exception):
    """Raised when a whole file must be rejected; nothing from it is applied."""

    def __init__(self, code: str, reason: str, line: int | None = None,
                 column: str | None = None, file: str | None = None) -> None:
        super().__init__(reason)
        self.problems = [(code, reason, line, column)]
        #: the file the problem is in, when not the uploaded file itself (a zip member)
        self.file = file

    @classmethod
    def all_of(cls, problems: list[tuple[str, str, int | None, str | None]]) -> FileRejected:
        """Reject for several reasons at once (e.g. every missing column)."""
        rejected = cls(*problems[0])
        rejected.problems = problems
        return rejected

    def issues(self, file: str) -> list[Issue]:
        return [Issue(file=self.file or file, line=line, column=column, code=code,
                      reason=reason) for code, reason, line, column in self.problems]


def quote_value(value: str) -> str:
    """Quote a district value for a reason, truncated so reports stay small."""
    if len(value) > QUOTED_VALUE_CHARS:
        value = value[: QUOTED_VALUE_CHARS - 1] + "…"
    return repr(value) if "'" in value else f"'{value}'"
