"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, optionally with TLS and AUTH.

The server records every message it accepted (parsed with the stdlib ``email``
package) with its envelope and session facts (TLS used, who logged in). It can
be told to answer the next DATA commands with a temporary failure, or to refuse
some recipients, to exercise retries.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Received:
    """One message the server accepted."""

    message: EmailMessage
    mail_from: str
    rcpt_tos: list[str]
    tls: bool
    login: str | None


@dataclass
class Recorder:
    """The aiosmtpd handler: keeps accepted messages, fails on request."""

    received: list[Received] = field(default_factory=list)
    #: DATA commands still to answer with 451 (a temporary failure)
    fail_data: int = 0
    #: recipients answered with 550 at RCPT TO
    refuse: set[str] = field(default_factory=set)

    async def handle_RCPT(self, server: SMTPServer, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session,
                          envelope: Envelope) -> str:
        if self.fail_data > 0:
            self.fail_data -= 1
            return "451 4.3.0 try again later"
        assert envelope.original_content is not None and envelope.mail_from is not None
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(Received(
            message, envelope.mail_from, list(envelope.rcpt_tos),
            server.transport is not None
            and server.transport.get_extra_info("ssl_object") is not None,
            session.auth_data if session.authenticated else None))
        return "250 OK"

    def subjects(self) -> list[str]:
        return [str(item.message["Subject"]) for item in self.received]


class _Controller(Controller):
    """aiosmtpd 1.4's Controller cannot use port 0 (it probes the port it was given):
    learn the port the kernel chose before the probe."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class SmtpServer:
    """A running server: its port, recorder and what a client needs to trust and log in."""

    controller: Controller
    recorder: Recorder
    ca_file: Path | None = None
    username: str | None = None
    password: str | None = None

    @property
    def port(self) -> int:
        return self.controller.port

    @property
    def received(self) -> list[Received]:
        return self.recorder.received

    def stop(self) -> None:
        self.controller.stop()


def start_server(*, tls: ssl.SSLContext | None = None, implicit_tls: bool = False,
                 credentials: tuple[str, str] | None = None, ca_file: Path | None = None
                 ) -> SmtpServer:
    """Start aiosmtpd on 127.0.0.1:<free port>.

    ``tls`` alone: STARTTLS offered and required; with ``implicit_tls`` the socket
    speaks TLS from the first byte (port 465 style). ``credentials``: AUTH required (with
    STARTTLS only: aiosmtpd 1.4 offers no AUTH on implicit TLS when it requires TLS for it).
    """
    recorder = Recorder()
    options: dict[str, Any] = {}
    if tls is not None and implicit_tls:
        options["ssl_context"] = tls
    elif tls is not None:
        options.update(tls_context=tls, require_starttls=True)
    if credentials is not None:
        username, password = credentials

        def authenticate(server: SMTPServer, session: Session, envelope: Envelope,
                         mechanism: str, auth_data: Any) -> AuthResult:
            ok = isinstance(auth_data, LoginPassword) and auth_data == (
                username.encode(), password.encode())
            # handled=False: aiosmtpd answers (235, or 535 on failure) itself
            return AuthResult(success=ok, handled=False, auth_data=username if ok else None)

        options.update(authenticator=authenticate, auth_required=True,
                       auth_require_tls=tls is not None)
    controller = _Controller(recorder, hostname="127.0.0.1", port=0, **options)
    controller.start()
    return SmtpServer(controller, recorder, ca_file, *(credentials or (None, None)))


# -- certificates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    """A private CA and a server certificate for 127.0.0.1/localhost signed by it."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_certificates(directory: Path) -> Certificates:
    """Generate the CA and server certificate with ``cryptography`` (EC P-256: fast)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), \
        ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "visitor-sync test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
              .issuer_name(ca_name).public_key(server_key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([
                  x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                  critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                             critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                  ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    files = Certificates(directory / "ca.pem", directory / "server.pem",
                             directory / "server.key")
    files.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return files
