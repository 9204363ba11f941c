"""Human forms of a run's outcome: the terminal table and the ``errors.csv`` attachment."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from visitor_sync.issues import Issue
from visitor_sync.summary import COUNT_FIELDS, ImportSummary

#: Characters that make a spreadsheet treat a cell as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def render_text(summary: ImportSummary, issues_per_file: int = 10) -> str:
    """The run as a table of files and counts, then each file's first issues."""
    headings = ("file", "type", "status", *(name.replace("_rows", "") for name in COUNT_FIELDS))
    rows = [(outcome.file, outcome.type or "-", outcome.status.value,
             *(f"{getattr(outcome, name):,}" for name in COUNT_FIELDS))
            for outcome in summary.files]
    lines = [f"district {summary.district_id} run {summary.run_id}: {summary.result.value} "
             f"({len(summary.files)} file(s), {summary.errors:,} error(s))"]
    if rows:
        lines += ["", *aligned([headings, *rows])]
    for outcome in summary.files:
        if outcome.held_reason:
            lines += ["", f"{outcome.file} is held: {outcome.held_reason}"]
        if outcome.waiting_reason:
            lines += ["", f"{outcome.file} is waiting: {outcome.waiting_reason}"]
        shown = outcome.issues[:issues_per_file]
        if shown:
            lines += ["", f"{outcome.file}:"]
            lines += [f"  {describe(issue)}" for issue in shown]
            more = outcome.errors + outcome.warnings - len(shown)
            if more > 0:
                lines.append(f"  ... and {more:,} more")
    if summary.pending_held:
        lines += ["", f"held files awaiting approval ({len(summary.pending_held):,}; apply "
                      "them with --approve-held RUN_ID):",
                  *(f"  {line}" for line in aligned([("file", "run", "held at", "why"), *(
                      (held.file, held.run_id, f"{held.held_at:%Y-%m-%d %H:%M} UTC",
                       held.reason or "-") for held in summary.pending_held)]))]
    if summary.report_email is not None:
        detail = f" ({summary.report_email_detail})" if summary.report_email_detail else ""
        lines += ["", f"report e-mail: {summary.report_email.value}{detail}"]
    if summary.invitations_sent or summary.invitations_failed:
        failed = (f", {summary.invitations_failed:,} failed (queued for the next run)"
                  if summary.invitations_failed else "")
        lines.append(f"invitations: {summary.invitations_sent:,} delivered{failed}")
    return "\n".join(lines)


def aligned(rows: list[tuple[str, ...]]) -> list[str]:
    """Rows as space-aligned columns (the last column, e.g. a reason, is not padded)."""
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]) - 1)]
    return ["  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)),
                       row[-1]]).rstrip() for row in rows]


def describe(issue: Issue) -> str:
    where = f"line {issue.line}" if issue.line else "file"
    column = f", column {issue.column!r}" if issue.column else ""
    reason = f": {issue.reason}" if issue.reason else ""
    return f"{issue.severity.value}: {where}{column}: {issue.code}{reason}"


def csv_safe(value: str | None) -> str:
    """A cell spreadsheets will show as text, never evaluate."""
    text = "" if value is None else value
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def errors_csv(issues: Iterable[Issue]) -> str:
    """Every issue as CSV (file, line, column, severity, error, reason), injection-safe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(("file", "line", "column", "severity", "error", "reason"))
    for issue in issues:
        writer.writerow((csv_safe(issue.file), issue.line or "", csv_safe(issue.column),
                         issue.severity.value, issue.code, csv_safe(issue.reason)))
    return buffer.getvalue()
