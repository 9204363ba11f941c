"""After a run: deliver the district's report and pending invitations, and record what happened.

Delivery is SMTP when ``VISITOR_SYNC_SMTP_*`` settings exist (deployment
settings, never the district's ``ImportConfig``), else ``.eml`` files in a
local outbox, else nothing (said in the summary). Mail problems never fail
the import: SMTP is retried with exponential backoff, then the failure is
logged and put in the run summary. The report itself always stays in the
database; ``import_runs.report_sent`` records whether it went out, and a
later run never resends an old report. Invitations that fail stay queued and
are tried again by the next run; an account is invited at most once.
"""

from __future__ import annotations

import enum
import logging
import os
import re
import smtplib
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import Engine, Row, exists, select, update
from sqlalchemy.orm import aliased

from visitor_sync.config import ImportConfig, NotifyWhen
from visitor_sync.db.schema import ImportRun, Invitation, User
from visitor_sync.locking import DistrictBusy, district_lock
from visitor_sync.mail import SENDER, invitation_message, report_message, write_to_outbox
from visitor_sync.pipeline import stored_issues
from visitor_sync.summary import ImportSummary, ReportEmail

log = logging.getLogger(__name__)

ENV_PREFIX = "VISITOR_SYNC_SMTP_"
#: Longest error text kept in a summary or an invitation row (the summary must stay small).
DETAIL_CHARS = 300

Sleep = Callable[[float], None]


# -- settings ------------------------------------------------------------------------------


class SmtpSecurity(enum.StrEnum):
    """How the connection is protected; there is no silent downgrade from TLS to plain text."""

    STARTTLS = "starttls"
    TLS = "tls"
    NONE = "none"


_DEFAULT_PORTS = {SmtpSecurity.STARTTLS: 587, SmtpSecurity.TLS: 465, SmtpSecurity.NONE: 25}


class SmtpSettingsError(ValueError):
    """The ``VISITOR_SYNC_SMTP_*`` environment does not describe a usable SMTP server."""


class SmtpSettings(BaseModel):
    """The SMTP server the importer sends through; read from ``VISITOR_SYNC_SMTP_<FIELD>``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, description="SMTP server host name.")
    port: int | None = Field(None, gt=0, lt=65536,
                             description="Port (default 587 for starttls, 465 for tls, 25).")
    security: SmtpSecurity = Field(SmtpSecurity.STARTTLS,
                                   description="`starttls`, `tls` (implicit TLS) or `none`.")
    username: str | None = Field(None, description="Login name; needs password_file.")
    password_file: Path | None = Field(
        None, description="File holding the password (a mounted Secret), read when sending.")
    sender: str = Field(description="From address, e.g. 'Visitor Sync <no-reply@example.org>'.")
    ca_file: Path | None = Field(
        None, description="PEM CA bundle to trust instead of the system's (private CAs).")
    timeout: float = Field(30, gt=0, description="Seconds to wait for the server, per step.")
    attempts: int = Field(3, ge=1, le=10, description="Tries per message before giving up.")
    retry_delay: float = Field(2, ge=0, description="Seconds before the first retry; doubles "
                                                    "after each failed try.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if "@" not in parseaddr(self.sender)[1]:
            raise ValueError(f"sender {self.sender!r} is not an e-mail address")
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file go together")
        if self.username is not None and self.security is SmtpSecurity.NONE:
            raise ValueError("refusing to send a password over an unencrypted connection; "
                             "use security starttls or tls")
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SmtpSettings | None:
        """The settings in ``VISITOR_SYNC_SMTP_*`` (empty ones ignored); ``None`` if there are none.

        An unknown variable is an error, so a typo cannot silently turn e-mail off.
        """
        environ = os.environ if environ is None else environ
        values = {name.removeprefix(ENV_PREFIX).lower(): value
                  for name, value in environ.items() if name.startswith(ENV_PREFIX) and value}
        if not values:
            return None
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            problems = "; ".join(
                f"{ENV_PREFIX}{'_'.join(map(str, problem['loc'])).upper() or '*'}: "
                f"{problem['msg']}" for problem in error.errors())
            raise SmtpSettingsError(f"invalid SMTP settings: {problems}") from None

    @property
    def effective_port(self) -> int:
        return self.port or _DEFAULT_PORTS[self.security]

    @property
    def envelope_sender(self) -> str:
        return parseaddr(self.sender)[1]

    def delays(self) -> Iterator[float]:
        """Waits between tries: ``retry_delay``, doubled each time, ``attempts - 1`` of them."""
        for attempt in range(self.attempts - 1):
            yield self.retry_delay * 2**attempt


# -- sending -------------------------------------------------------------------------------


class MailError(Exception):
    """A message was not delivered; the text is safe to log and to show (no credentials)."""


class _ConnectFailed(Exception):
    """Wraps a failure while connecting or logging in (it concerns every message)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class SmtpMailer:
    """Sends messages over one SMTP connection, reconnecting and retrying with backoff.

    A failure to connect or log in concerns every message: after it (or after the
    retries of a message are exhausted) the server counts as *down* for the rest of
    the run and further sends fail at once instead of waiting through backoff again.
    A message the server refuses outright (5xx, all recipients refused) fails alone.
    """

    def __init__(self, settings: SmtpSettings, *, sleep: Sleep = time.sleep) -> None:
        self.settings = settings
        self._sleep = sleep
        self._smtp: smtplib.SMTP | None = None
        self._password: str | None = None
        #: why the server counts as down, once it does
        self.down: str | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                self._smtp.close()
            self._smtp = None

    def send(self, message: EmailMessage) -> list[str]:
        """Deliver ``message``; returns the recipients the server refused (others got it)."""
        if self.down is not None:
            raise MailError(self.down)
        if self.settings.password_file is not None and self._password is None:
            try:  # a missing Secret does not get better by retrying
                self._password = self.settings.password_file.read_text().rstrip("\r\n")
            except OSError as error:
                self.down = (f"cannot read the SMTP password file "
                             f"{self.settings.password_file}: {error.strerror}")
                raise MailError(self.down) from error
        delays = self.settings.delays()
        attempt = 0
        while True:
            attempt += 1
            try:
                refused = self._connection().send_message(
                    message, from_addr=self.settings.envelope_sender)
                return sorted(refused)
            except _ConnectFailed as failed:
                self.close()
                error, connecting = failed.error, True
            except (smtplib.SMTPException, OSError) as caught:
                self.close()
                error, connecting = caught, False
            detail = self._describe(error)
            if not _transient(error):
                if connecting:  # wrong password, untrusted certificate, no STARTTLS...
                    self.down = detail
                raise MailError(detail) from error
            delay = next(delays, None)
            if delay is None:
                self.down = f"{detail} (gave up after {attempt} attempts)"
                log.error("SMTP server %s: %s", self.settings.host, self.down)
                raise MailError(self.down) from error
            log.warning("SMTP attempt %d/%d to %s failed (%s); retrying in %.1f s", attempt,
                        self.settings.attempts, self.settings.host, detail, delay)
            self._sleep(delay)

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        settings = self.settings
        context = ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file else None)
        smtp: smtplib.SMTP | None = None
        try:
            if settings.security is SmtpSecurity.TLS:
                smtp = smtplib.SMTP_SSL(settings.host, settings.effective_port,
                                        timeout=settings.timeout, context=context)
            else:
                smtp = smtplib.SMTP(settings.host, settings.effective_port,
                                    timeout=settings.timeout)
            smtp.ehlo()
            if settings.security is SmtpSecurity.STARTTLS:
                smtp.starttls(context=context)  # SMTPNotSupportedError: never sent in clear
                smtp.ehlo()
            if settings.username is not None:
                assert self._password is not None
                smtp.login(settings.username, self._password)
        except (smtplib.SMTPException, OSError) as error:
            if smtp is not None:
                smtp.close()
            raise _ConnectFailed(error) from error
        self._smtp = smtp
        return smtp

    def _describe(self, error: BaseException) -> str:
        """The error for logs and summaries: type, SMTP code and text; never the password."""
        if isinstance(error, smtplib.SMTPResponseException):
            text = f"{error.smtp_code} {_decode(error.smtp_error)}"
        elif isinstance(error, smtplib.SMTPRecipientsRefused):
            codes = sorted({f"{code} {_decode(reply)}" for code, reply
                            in error.recipients.values()})
            text = f"all {len(error.recipients)} recipient(s) refused: {'; '.join(codes)}"
        else:
            text = str(error) or "no detail"
        text = f"{type(error).__name__}: {' '.join(text.split())}"
        if self._password:
            text = text.replace(self._password, "***")
        return text[:DETAIL_CHARS]


def _without(text: str, address: str) -> str:
    """``text`` with ``address`` (in any case) replaced by ``<recipient>``, for logs."""
    return re.sub(re.escape(address), "<recipient>", text, flags=re.IGNORECASE)


def _decode(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply


def _transient(error: BaseException) -> bool:
    """Whether trying again soon may help: dropped or refused connections, timeouts, 4xx."""
    if isinstance(error, smtplib.SMTPResponseException):
        return 400 <= error.smtp_code < 500
    if isinstance(error, smtplib.SMTPRecipientsRefused | smtplib.SMTPNotSupportedError
                  | ssl.SSLCertVerificationError):
        return False  # the next run tries a refused recipient again; the others never help
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return True
    return isinstance(error, OSError) and not isinstance(error, smtplib.SMTPException)


# -- after a run ----------------------------------------------------------------------------


@dataclass
class _Postbox:
    """Where messages go: the SMTP server, else the outbox folder, else nowhere."""

    mailer: SmtpMailer | None
    outbox: Path | None

    @property
    def available(self) -> bool:
        return self.mailer is not None or self.outbox is not None

    @property
    def sender(self) -> str:
        """The configured From for SMTP; a placeholder in outbox files."""
        return self.mailer.settings.sender if self.mailer is not None else SENDER

    @property
    def down(self) -> str | None:
        return self.mailer.down if self.mailer is not None else None

    def deliver(self, message: EmailMessage, stem: str) -> tuple[ReportEmail, str | None]:
        """Send or write one message; :class:`MailError` when it did not go."""
        if self.mailer is not None:
            refused = self.mailer.send(message)
            return ReportEmail.SENT, (f"refused by the server for {len(refused)} recipient(s)"
                                      if refused else None)
        assert self.outbox is not None
        try:
            path = write_to_outbox(message, self.outbox, stem)
        except OSError as error:
            raise MailError(f"cannot write to the outbox: {error}"[:DETAIL_CHARS]) from error
        log.info("e-mail written to %s", path)
        return ReportEmail.WRITTEN, None


def notify(engine: Engine, summary: ImportSummary, config: ImportConfig, *,
           smtp: SmtpSettings | None, outbox: Path | None = None,
           recipients: Sequence[str] = (), sleep: Sleep = time.sleep) -> ImportSummary:
    """Deliver the run's report and the district's pending invitations, record the outcome.

    Returns the summary with ``report_email`` and the invitation counts set (also
    stored on the run row). SMTP wins over ``outbox``; with neither, nothing is
    delivered and invitations stay queued. Mail failures never raise.
    """
    summary = summary.model_copy()
    with SmtpMailer(smtp, sleep=sleep) if smtp is not None else nullcontext() as mailer:
        postbox = _Postbox(mailer, outbox)
        summary.report_email, summary.report_email_detail = _send_report(
            engine, summary, config, postbox, recipients)
        _record(engine, summary)
        if postbox.available and postbox.down is None:
            summary.invitations_sent, summary.invitations_failed = _send_invitations(
                engine, summary, config, postbox)
            if summary.invitations_sent or summary.invitations_failed:
                _record(engine, summary)
    return summary


def _send_report(engine: Engine, summary: ImportSummary, config: ImportConfig,
                 postbox: _Postbox, extra_recipients: Sequence[str]
                 ) -> tuple[ReportEmail, str | None]:
    settings = config.notifications
    if settings.when is NotifyWhen.NEVER:
        return ReportEmail.SKIPPED, "notifications.when is never"
    if settings.when is NotifyWhen.FAILURE and not summary.needs_attention:
        return ReportEmail.SKIPPED, "nothing needs attention (notifications.when is failure)"
    if not postbox.available:
        return ReportEmail.SKIPPED, "no SMTP settings and no outbox: nothing was sent"
    recipients = list(dict.fromkeys([*settings.recipients, *extra_recipients]))
    if not recipients:
        if postbox.mailer is not None:
            return ReportEmail.SKIPPED, "no recipients (notifications.recipients)"
        recipients = [f"sis-admin@{config.district_id}.invalid"]  # a local preview only
    message = report_message(
        summary, stored_issues(engine, summary.run_id), recipients, config.district_name,
        sender=postbox.sender,
        max_listed_errors=settings.max_listed_errors)
    message["X-Visitor-Sync-Run"] = summary.run_id
    try:
        status, detail = postbox.deliver(message, f"report-{summary.run_id}")
    except MailError as error:
        log.error("the report of run %s was not sent: %s", summary.run_id, error)
        return ReportEmail.FAILED, str(error)
    log.info("report of run %s %s to %d recipient(s)", summary.run_id, status.value,
             len(recipients))
    return status, detail


def _record(engine: Engine, summary: ImportSummary) -> None:
    """Put the mail outcome on the run row: ``report_sent`` and the summary JSON."""
    with engine.begin() as connection:
        connection.execute(update(ImportRun).where(ImportRun.id == summary.run_id).values(
            report_sent=summary.report_email is ReportEmail.SENT,
            summary=summary.without_values().model_dump(mode="json")))


def _send_invitations(engine: Engine, summary: ImportSummary, config: ImportConfig,
                      postbox: _Postbox) -> tuple[int, int]:
    """One invitation per pending account, under the district lock so no other run races it."""
    try:
        with district_lock(engine, config.district_id):
            return _deliver_invitations(engine, config, postbox)
    except DistrictBusy:
        log.info("another run of %s started; it sends the pending invitations",
                 config.district_id)
        return 0, 0


def _deliver_invitations(engine: Engine, config: ImportConfig,
                         postbox: _Postbox) -> tuple[int, int]:
    district = config.district_name or config.district_id
    sent = failed = 0
    done: set[str] = set()
    for invitation in _pending_invitations(engine, config.district_id):
        if invitation.email in done:
            continue
        done.add(invitation.email)
        message = invitation_message(
            invitation.email, invitation.name, invitation.role, district,
            sender=postbox.sender)
        try:
            postbox.deliver(message, f"invitation-{invitation.id}")
        except MailError as error:
            failed += 1
            # an SMTP reply often quotes the address, a value of the district's users.csv
            log.warning("invitation %d of %s not sent: %s", invitation.id,
                        config.district_id, _without(str(error), invitation.email))
            with engine.begin() as connection:
                connection.execute(update(Invitation).where(Invitation.id == invitation.id)
                                   .values(attempts=Invitation.attempts + 1,
                                           last_error=str(error)[:DETAIL_CHARS]))
            if postbox.down is not None:
                break  # the server is down: the rest wait for the next run, untried
            continue
        sent += 1
        with engine.begin() as connection:  # every queued row of the account: never twice
            connection.execute(update(Invitation).where(
                Invitation.district_id == config.district_id,
                Invitation.email == invitation.email, Invitation.sent_at.is_(None))
                .values(sent_at=datetime.now(UTC), attempts=Invitation.attempts + 1,
                        last_error=None))
    if sent or failed:
        log.info("invitations of %s: %d delivered, %d failed", config.district_id, sent, failed)
    return sent, failed


def _pending_invitations(engine: Engine, district_id: str) -> list[Row[Any]]:
    """Unsent invitations of active accounts never invited before, oldest first."""
    earlier = aliased(Invitation)
    query = (select(Invitation.id, Invitation.email, Invitation.name, User.role)
             .join(User, (User.district_id == Invitation.district_id)
                   & (User.email == Invitation.email))
             .where(Invitation.district_id == district_id, Invitation.sent_at.is_(None),
                    User.active,
                    ~exists().where(earlier.district_id == Invitation.district_id,
                                    earlier.email == Invitation.email,
                                    earlier.sent_at.is_not(None)))
             .order_by(Invitation.id))
    with engine.connect() as connection:
        return list(connection.execute(query))
