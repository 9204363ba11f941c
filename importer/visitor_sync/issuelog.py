"""Where a file's issues go: streamed into ``import_errors`` in the file's transaction.

A file may have a million row errors; they are written in batches, never
held in memory. The log keeps the counts and the first few issues for the
run summary.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, insert

from visitor_sync.db.schema import ImportIssue
from visitor_sync.issues import Issue, Severity

_BATCH = 1000
#: Issues per file kept in memory for summaries; the database has them all.
FIRST_ISSUES = 20


class IssueLog:
    def __init__(self, connection: Connection, file_result_id: int) -> None:
        self._connection = connection
        self._file_result_id = file_result_id
        self._pending: list[dict[str, object]] = []
        self.errors = 0
        self.warnings = 0
        self.first: list[Issue] = []

    def add(self, issue: Issue) -> None:
        if issue.severity is Severity.ERROR:
            self.errors += 1
        else:
            self.warnings += 1
        if len(self.first) < FIRST_ISSUES:
            self.first.append(issue)
        self._pending.append({"file_result_id": self._file_result_id, **issue.model_dump()})
        if len(self._pending) >= _BATCH:
            self.flush()

    def extend(self, issues: Iterable[Issue]) -> None:
        for issue in issues:
            self.add(issue)

    def flush(self) -> None:
        if self._pending:
            self._connection.execute(insert(ImportIssue), self._pending)
            self._pending = []
