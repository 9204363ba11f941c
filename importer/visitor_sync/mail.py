"""The e-mails a district receives, built but not sent: the run report and invitations.

Sending (SMTP or the local outbox) is :mod:`visitor_sync.notify`'s job. Every
value that comes from the district or its configuration (district name, file
names, columns, reasons quoting cell values) is escaped with ``html.escape``
in the HTML part, so a file or value named ``<script>`` stays text.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path

from visitor_sync.issues import Issue, Severity
from visitor_sync.report import aligned, errors_csv
from visitor_sync.summary import FileOutcome, FileStatus, ImportSummary, RunResult

SENDER = "visitor-sync <no-reply@visitor-sync.invalid>"
#: Errors listed in a report's body unless the district's configuration says otherwise.
MAX_LISTED_ERRORS = 100

_INTRO = {
    RunResult.SUCCESS: "Your files were imported without errors.",
    RunResult.PARTIAL: "Your files were imported, but some rows or files had errors. "
                       "Rows in error were skipped; fix them and upload the file again.",
    RunResult.HELD: "A file was held for review instead of applied. Nothing from it has "
                    "changed; support will approve it or you can upload a corrected file.",
    RunResult.FAILED: "No file could be imported. Fix the errors below and upload again.",
    RunResult.WAITING: "Your files were uploaded moments ago and may still be uploading, so "
                       "none was read yet; the next run imports them (see below for when).",
}
_FILE_HEADINGS = ("file", "status", "created", "updated", "unchanged", "deactivated",
                  "rejected", "held", "errors")
_ERROR_HEADINGS = ("file", "line", "column", "error", "reason")


def report_message(summary: ImportSummary, issues: Iterable[Issue], recipients: list[str],
                   district_name: str | None = None, sender: str = SENDER,
                   max_listed_errors: int = MAX_LISTED_ERRORS) -> EmailMessage:
    """Subject with district, result and counts; text and HTML bodies; all issues in errors.csv.

    ``issues`` is read once (it may be a database stream of a million rows): every
    issue goes to the attachment, the first ``max_listed_errors`` to the bodies.
    """
    name = _one_line(district_name or summary.district_id)
    listed, total, attachment = _collect(issues, max_listed_errors)
    message = _message(sender, recipients, _report_subject(summary, name))
    message["Date"] = format_datetime(summary.finished_at)
    message.set_content(_report_text(summary, name, listed, total))
    message.add_alternative(_report_html(summary, name, listed, total), subtype="html")
    # UTF-8 with a byte-order mark: what spreadsheet programs need to read names right.
    message.add_attachment(attachment.encode("utf-8-sig"), maintype="text", subtype="csv",
                           filename="errors.csv", params={"charset": "utf-8"})
    return message


def invitation_message(email: str, name: str, role: str, district_name: str,
                       sender: str = SENDER) -> EmailMessage:
    """Welcome a new account: who invited them and with which role; never a password."""
    district = _one_line(district_name)
    role_name = role.replace("_", " ")
    message = _message(sender, [email], f"Welcome to {district} visitor management")
    message.set_content(
        f"Hello {name},\n\n"
        f"{district} has created a visitor-management account for you with the role "
        f"{role_name}.\n\n"
        f"Sign in with this e-mail address ({email}); the first time, choose "
        "\"Forgot password\" to set your own password. Nobody will ever ask you for it "
        "by e-mail.\n\n"
        "If you did not expect this message, tell your district's administrator.\n")
    message.add_alternative(
        f"<p>Hello {_e(name)},</p>"
        f"<p>{_e(district)} has created a visitor-management account for you with the role "
        f"<b>{_e(role_name)}</b>.</p>"
        f"<p>Sign in with this e-mail address ({_e(email)}); the first time, choose "
        "&quot;Forgot password&quot; to set your own password. Nobody will ever ask you "
        "for it by e-mail.</p>"
        "<p>If you did not expect this message, tell your district's administrator.</p>",
        subtype="html")
    return message


def write_to_outbox(message: EmailMessage, outbox: Path, stem: str) -> Path:
    """Save a message as ``<stem>.eml`` (what would have been sent)."""
    outbox.mkdir(parents=True, exist_ok=True)
    path = outbox / f"{stem}.eml"
    path.write_bytes(bytes(message))
    return path


# -- the parts ---------------------------------------------------------------------------


def _message(sender: str, recipients: list[str], subject: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "visitor-sync.invalid"
    message["Message-ID"] = make_msgid(domain=domain)
    # RFC 3834: machines (autoresponders) must not answer it.
    message["Auto-Submitted"] = "auto-generated"
    return message


def _one_line(text: str) -> str:
    """A configured name fit for a header: no line breaks (header injection), no runs."""
    return " ".join(text.split())


def _collect(issues: Iterable[Issue], limit: int) -> tuple[list[Issue], int, str]:
    """One pass over the issues: the first ``limit``, how many there were, the CSV of all."""
    listed: list[Issue] = []
    total = 0

    def counted() -> Iterable[Issue]:
        nonlocal total
        for issue in issues:
            total += 1
            if len(listed) < limit:
                listed.append(issue)
            yield issue

    attachment = errors_csv(counted())
    return listed, total, attachment


def _report_subject(summary: ImportSummary, name: str) -> str:
    totals = summary.totals()
    counts = [f"{totals['created']:,} created", f"{totals['updated']:,} updated",
              f"{totals['deactivated']:,} deactivated", f"{totals['errors']:,} errors"]
    for status in (FileStatus.REJECTED, FileStatus.HELD):
        files = sum(outcome.status is status for outcome in summary.files)
        if files:
            counts.append(f"{files} file{'s' if files > 1 else ''} {status.value}")
    return f"[visitor-sync] {name}: import {summary.result.value} - {', '.join(counts)}"


def _file_row(outcome: FileOutcome) -> tuple[str, ...]:
    held = outcome.rows_read if outcome.status is FileStatus.HELD else 0
    return (outcome.file, outcome.status.value,
            *(f"{number:,}" for number in (outcome.created, outcome.updated, outcome.unchanged,
                                           outcome.deactivated, outcome.rejected_rows, held,
                                           outcome.errors)))


def _error_row(issue: Issue) -> tuple[str, ...]:
    code = issue.code if issue.severity is Severity.ERROR else f"{issue.code} (warning)"
    return (issue.file, str(issue.line or ""), issue.column or "", code, issue.reason)


def _issues_heading(summary: ImportSummary) -> str:
    totals = summary.totals()
    warnings = f" and warnings ({totals['warnings']:,})" if totals["warnings"] else ""
    return f"Errors ({totals['errors']:,}){warnings}"


def _more_note(listed: list[Issue], total: int) -> str | None:
    more = total - len(listed)
    return f"{more:,} more in errors.csv" if more > 0 else None


def _report_text(summary: ImportSummary, name: str, listed: list[Issue], total: int) -> str:
    lines = [f"{name}: import {summary.result.value}", "", _INTRO[summary.result], ""]
    if summary.files:
        lines += aligned([_FILE_HEADINGS, *map(_file_row, summary.files)])
    else:
        lines.append("No files were waiting in the drop box.")
    for outcome in summary.files:
        if outcome.held_reason:
            lines += ["", f"{outcome.file} is held: {outcome.held_reason}"]
        if outcome.waiting_reason:
            lines += ["", f"{outcome.file} is waiting: {outcome.waiting_reason}"]
    if listed:
        lines += ["", f"{_issues_heading(summary)}:", ""]
        lines += aligned([_ERROR_HEADINGS, *map(_error_row, listed)])
    note = _more_note(listed, total)
    if note:
        lines += ["", note]
    lines += ["", "Every error is listed in the attached errors.csv." if total
              else "The attached errors.csv is empty: nothing needs fixing.",
              "", f"Run {summary.run_id}, finished {summary.finished_at:%Y-%m-%d %H:%M} UTC."]
    return "\n".join(lines) + "\n"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _html_table(headings: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> str:
    """A plain bordered table (attributes, not CSS: mail clients drop much CSS)."""
    head = "".join(f"<th align=\"left\">{_e(heading)}</th>" for heading in headings)
    body = "".join("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>\n"
                   for row in rows)
    return (f'<table border="1" cellpadding="4" cellspacing="0" '
            f'style="border-collapse:collapse"><thead><tr>{head}</tr></thead>\n'
            f"<tbody>{body}</tbody></table>")


def _report_html(summary: ImportSummary, name: str, listed: list[Issue], total: int) -> str:
    parts = [f"<h2>{_e(name)}: import {_e(summary.result.value)}</h2>",
             f"<p>{_e(_INTRO[summary.result])}</p>"]
    if summary.files:
        parts.append(_html_table(_FILE_HEADINGS, map(_file_row, summary.files)))
    else:
        parts.append("<p>No files were waiting in the drop box.</p>")
    parts += [f"<p><b>{_e(outcome.file)}</b> is held: {_e(outcome.held_reason)}</p>"
              for outcome in summary.files if outcome.held_reason]
    parts += [f"<p><b>{_e(outcome.file)}</b> is waiting: {_e(outcome.waiting_reason)}</p>"
              for outcome in summary.files if outcome.waiting_reason]
    if listed:
        parts.append(f"<h3>{_e(_issues_heading(summary))}</h3>")
        parts.append(_html_table(_ERROR_HEADINGS, map(_error_row, listed)))
    note = _more_note(listed, total)
    if note:
        parts.append(f"<p><b>{_e(note)}</b></p>")
    parts.append("<p>Every error is listed in the attached errors.csv.</p>" if total else
                 "<p>The attached errors.csv is empty: nothing needs fixing.</p>")
    parts.append(f'<p style="color:#666">Run {_e(summary.run_id)}, finished '
                 f"{summary.finished_at:%Y-%m-%d %H:%M} UTC.</p>")
    return f'<!DOCTYPE html><html><body style="font-family:sans-serif">{"".join(parts)}' \
           "</body></html>\n"

