"""Where a file's issues go: spooled while the file is processed, written at the end.

A file may have a million row errors, so they are never held in memory: they
wait in a temporary file and are written to ``import_errors`` in batches by
:meth:`IssueLog.flush`, after the file's data statements are done. Writing
them earlier would interleave with the COPY that is still loading the stage on
the same connection, and a safety hold's rollback would take them away.
The log keeps the counts and the first few issues (by line) for the run summary.
"""

from __future__ import annotations

import heapq
import json
import tempfile
from collections.abc import Iterable

from sqlalchemy import Connection, insert

from visitor_sync.db.schema import ImportIssue
from visitor_sync.issues import Issue, Severity

_BATCH = 1000
#: Issues per file kept in memory for summaries; the database has them all.
FIRST_ISSUES = 20
#: Spooled issues stay in memory up to this size, then go to a temporary file.
_SPOOL_BYTES = 4 << 20


class IssueLog:
    def __init__(self, connection: Connection, file_result_id: int) -> None:
        self._connection = connection
        self.file_result_id = file_result_id
        self._spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES, mode="w+")  # noqa: SIM115 - closed by flush
        self.errors = 0
        self.warnings = 0
        #: the issues of the smallest lines so far, as a heap whose top is the one to drop
        #: next: ``(-line, -order, issue)`` (checks find issues out of line order)
        self._first: list[tuple[int, int, Issue]] = []

    @property
    def first(self) -> list[Issue]:
        """The first :data:`FIRST_ISSUES` issues in line order (whole-file ones first)."""
        return [issue for *_, issue in sorted(self._first, key=lambda kept: kept[:2],
                                              reverse=True)]

    def add(self, issue: Issue) -> None:
        if issue.severity is Severity.ERROR:
            self.errors += 1
        else:
            self.warnings += 1
        kept = (-(issue.line or 0), -(self.errors + self.warnings), issue)
        if len(self._first) < FIRST_ISSUES:
            heapq.heappush(self._first, kept)
        elif kept[:2] > self._first[0][:2]:
            heapq.heapreplace(self._first, kept)
        self._spool.write(issue.model_dump_json() + "\n")

    def extend(self, issues: Iterable[Issue]) -> None:
        for issue in issues:
            self.add(issue)

    def flush(self) -> None:
        """Write every spooled issue to the database (call once, when the file is done)."""
        self._spool.seek(0)
        batch: list[dict[str, object]] = []
        for line in self._spool:
            batch.append({"file_result_id": self.file_result_id, **json.loads(line)})
            if len(batch) >= _BATCH:
                self._connection.execute(insert(ImportIssue), batch)
                batch = []
        if batch:
            self._connection.execute(insert(ImportIssue), batch)
        self._spool.close()
