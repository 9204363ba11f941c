"""The district's report e-mail, and the local outbox it is written to without SMTP."""

from __future__ import annotations

from collections.abc import Iterable
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from visitor_sync.issues import Issue
from visitor_sync.report import errors_csv, render_text
from visitor_sync.summary import ImportSummary, RunResult

SENDER = "visitor-sync <no-reply@visitor-sync.invalid>"


def report_message(summary: ImportSummary, issues: Iterable[Issue], recipients: list[str],
                   district_name: str | None = None, sender: str = SENDER) -> EmailMessage:
    """Subject with district, result and counts; the run table; every issue in errors.csv."""
    totals = summary.totals()
    name = district_name or summary.district_id
    message = EmailMessage()
    message["Subject"] = (f"[visitor-sync] {name}: import {summary.result.value} - "
                          f"{totals['created']:,} created, {totals['updated']:,} updated, "
                          f"{totals['deactivated']:,} deactivated, {totals['errors']:,} errors")
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(summary.finished_at)
    message["Message-ID"] = make_msgid(domain="visitor-sync.invalid")
    intro = {
        RunResult.SUCCESS: "Your files were imported without errors.",
        RunResult.PARTIAL: "Your files were imported, but some rows or files had errors. "
                           "Rows in error were skipped; fix them and upload the file again.",
        RunResult.HELD: "A file was held for review instead of applied. Nothing from it has "
                        "changed; support will approve it or you can upload a corrected file.",
        RunResult.FAILED: "No file could be imported. Fix the errors below and upload again.",
    }[summary.result]
    message.set_content(f"{intro}\n\n{render_text(summary)}\n\n"
                        "Every error is listed in the attached errors.csv.\n")
    message.add_attachment(errors_csv(issues).encode(), maintype="text", subtype="csv",
                           filename="errors.csv")
    return message


def write_to_outbox(message: EmailMessage, outbox: Path, stem: str) -> Path:
    """Save a message as ``<stem>.eml`` (what would have been sent)."""
    outbox.mkdir(parents=True, exist_ok=True)
    path = outbox / f"{stem}.eml"
    path.write_bytes(bytes(message))
    return path
