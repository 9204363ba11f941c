"""Rows an earlier file of the run rejected, so that a row referring to one says why.

``visitors.csv`` naming student S42 used to get "send the student first" when S42 was
in ``students.csv`` all along, on a row rejected for a bad date. The run now remembers
the keys of rejected rows per table, and the reference check explains with them:
"student 'S42' was rejected in students.csv line 43 (invalid_date)".
"""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from visitor_sync.db.schema import ImportIssue, SyncedRecord
from visitor_sync.issues import Severity, quote_value
from visitor_sync.staging import Stage

#: Rejected keys remembered per table; past it, references fall back to the plain advice
#: (a file with more rejected rows than this needs fixing before anything else).
REMEMBERED_PER_TABLE = 100_000


class RejectedRecords:
    """Keys of rows rejected by the files of one run, by the table they would have filled."""

    def __init__(self) -> None:
        #: model -> record key -> (file label, first line, file result id)
        self._rows: dict[type[SyncedRecord], dict[str, tuple[str, int, int]]] = {}
        self._codes: dict[tuple[int, int], str] = {}

    def remember(self, connection: Connection, stage: Stage, label: str,
                 file_result_id: int) -> None:
        """The keys of the stage's rows in error (call it before the stage is dropped)."""
        table, target = stage.table, stage.file_type.primary
        key = stage.target_key(target)
        known = self._rows.setdefault(target.model, {})
        rows = connection.execute(
            select(key, func.min(table.c.line)).where(table.c.skip, key.is_not(None))
            .group_by(key).limit(max(REMEMBERED_PER_TABLE - len(known), 0)))
        for record_key, line in rows:
            known.setdefault(record_key, (label, line, file_result_id))

    def explain(self, connection: Connection, model: type[SyncedRecord], noun: str,
                record_key: str) -> str | None:
        """Why no record has this key, if a row of an earlier file was rejected for it."""
        found = self._rows.get(model, {}).get(record_key)
        if found is None:
            return None
        label, line, file_result_id = found
        if (file_result_id, line) not in self._codes:
            self._codes[file_result_id, line] = connection.scalar(
                select(ImportIssue.code).where(
                    ImportIssue.file_result_id == file_result_id, ImportIssue.line == line,
                    ImportIssue.severity == Severity.ERROR.value)
                .order_by(ImportIssue.id).limit(1)) or "error"
        return (f"{noun} {quote_value(record_key)} was rejected in {label} line {line} "
                f"({self._codes[file_result_id, line]}); fix that row, and this one is "
                "applied with it")
