"""``--source``: a local folder or ``sftp://user@host:port/path``, opened for one run.

The CLI's only entry into the SFTP code. Secrets come from files or the
environment (a Kubernetes Secret mounted or injected), never from the command
line, where ``ps`` and the Job's spec would show them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from visitor_sync.sftp.source import (
    Retry,
    SftpCredentials,
    SftpSource,
    SftpTarget,
    Timeouts,
)
from visitor_sync.sources import LocalFolderSource, Source

#: Environment variable holding the SFTP password when no password file is given.
PASSWORD_ENVIRONMENT = "VISITOR_SYNC_SFTP_PASSWORD"


class SourceConfigError(ValueError):
    """The source options do not make a usable source (a usage error, not an outage)."""


def is_sftp(source: str) -> bool:
    return source.lower().startswith("sftp://")


@contextmanager
def open_source(source: str, *, key_file: Path | None = None,
                password_file: Path | None = None, known_hosts: Path | None = None,
                environ: Mapping[str, str] = os.environ, timeouts: Timeouts | None = None,
                retry: Retry | None = None) -> Iterator[Source]:
    """The drop box ``source`` names, connected; an SFTP connection is closed on exit.

    Raises :class:`SourceConfigError` for options that cannot work and
    :class:`~visitor_sync.sftp.source.SftpUnavailable` when the server cannot be used.
    """
    if not is_sftp(source):
        if key_file or password_file or known_hosts:
            raise SourceConfigError("--sftp-key, --sftp-password-file and --known-hosts "
                                    "only apply to sftp:// sources")
        if not Path(source).is_dir():
            raise SourceConfigError(f"--source {source}: no such folder")
        yield LocalFolderSource(Path(source))
        return
    try:
        target = SftpTarget.parse(source)
    except ValueError as error:
        raise SourceConfigError(str(error)) from error
    if known_hosts is None:
        raise SourceConfigError("an sftp:// source needs --known-hosts FILE: the server's "
                                "host key is always verified")
    password = (_read_secret(password_file) if password_file is not None
                else environ.get(PASSWORD_ENVIRONMENT) or None)
    if key_file is None and password is None:
        raise SourceConfigError(f"an sftp:// source needs --sftp-key FILE, "
                                f"--sftp-password-file FILE or ${PASSWORD_ENVIRONMENT}")
    with SftpSource(target, SftpCredentials(key_file, password), known_hosts,
                    timeouts=timeouts, retry=retry) as sftp:
        yield sftp


def _read_secret(path: Path) -> str:
    """A secret file's content without the trailing newline editors and Secrets add."""
    secret = path.read_text(encoding="utf-8").rstrip("\r\n")
    if not secret:
        raise SourceConfigError(f"{path} is empty")
    return secret
