"""The district's SFTP server: a hardened OpenSSH ``sshd_config`` rendered from settings.

One sshd per district, SFTP only (``internal-sftp``), two accounts:

- the **district** account (password and/or keys) is chrooted to
  ``<root>/district`` and sees only ``/upload``;
- the **importer** account (keys only) is chrooted to ``<root>`` and sees
  ``/district/upload`` (to read and remove what the district sent) and
  ``/held`` (files held for approval), which lies outside the district's chroot.

Both accounts are the same Unix uid (two login names, two credentials): files
a district client uploads as ``0644`` or ``0600`` stay readable, writable (for
the zero overwrite before removal) and removable by the importer whatever mode
the client asked for, while ``held/`` is kept from the district by its chroot,
the boundary that already keeps it from the rest of the machine. Directory
layout and ownership (see :func:`layout`; the image's entrypoint creates it)::

    <root>/                  root:root 0755   importer's chroot (sshd demands root-owned)
    <root>/district/         root:root 0755   district's chroot
    <root>/district/upload/  uid:gid   0700   the drop box
    <root>/held/             uid:gid   0700   held files, importer only

The renderer is a pure function so the operator can put its output in a
ConfigMap and tests can start the very same configuration with a real sshd.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

#: The district's chroot, relative to the server root.
DISTRICT_DIRECTORY = "district"
#: Held files, relative to the server root (outside the district's chroot).
HELD_DIRECTORY = "held"

#: Algorithms offered, strongest first: curve25519 and >= 4096-bit fixed DH groups,
#: AEAD or CTR ciphers with encrypt-then-MAC MACs, ed25519 and RSA with SHA-2; no NIST
#: curves, no SHA-1. ssh-audit (Debian 12's 2.5.0) passes each without a warning; it
#: flags the post-quantum sntrup761x25519 hybrid as "experimental", so it is left out
#: until the audit tool accepts it.
KEX_ALGORITHMS = ("curve25519-sha256", "curve25519-sha256@libssh.org",
                  "diffie-hellman-group18-sha512", "diffie-hellman-group16-sha512")
CIPHERS = ("chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes128-gcm@openssh.com",
           "aes256-ctr", "aes192-ctr", "aes128-ctr")
MACS = ("hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com",
        "umac-128-etm@openssh.com")
HOST_KEY_ALGORITHMS = ("ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256")
PUBKEY_ALGORITHMS = ("ssh-ed25519", "sk-ssh-ed25519@openssh.com", "rsa-sha2-512",
                     "rsa-sha2-256")

#: SFTP requests nobody needs in a drop box: links could point the importer's
#: session (which sees more than the district's) at files outside ``upload/``.
DENIED_SFTP_REQUESTS = ("symlink", "hardlink")
#: Refused to the district too: changing a file's mode or times after the upload.
#: internal-sftp's umask (-u) narrows the mode a file is created with, but a client's
#: later SETSTAT (``sftp put -p``, clients that "preserve permissions") would widen an
#: upload to 0644 again. OpenSSH's client reports the refusal and keeps the upload.
DISTRICT_DENIED_SFTP_REQUESTS = ("setstat", "fsetstat", "lsetstat")

_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,30}$")
#: Paths end up verbatim in sshd_config: no spaces, quotes, ``%`` tokens or newlines.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/-]*$")
_DIRECTORY_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def _user_name(value: str) -> str:
    if not _USER_NAME.fullmatch(value):
        raise ValueError("a user name is 1-31 of a-z, 0-9, '_' and '-', not starting with "
                         "a digit or '-'")
    return value


def _absolute_path(value: str) -> str:
    if not _SAFE_PATH.fullmatch(value) or "/../" in f"{value}/" or "//" in value:
        raise ValueError(f"not a plain absolute path: {value!r}")
    return value


def _directory_name(value: str) -> str:
    if not _DIRECTORY_NAME.fullmatch(value) or value in (".", ".."):
        raise ValueError(f"not a plain directory name: {value!r}")
    return value


UserName = Annotated[str, AfterValidator(_user_name)]
AbsolutePath = Annotated[str, AfterValidator(_absolute_path)]
DirectoryName = Annotated[str, AfterValidator(_directory_name)]
Network = IPv4Network | IPv6Network


class SshdSettings(BaseModel):
    """A district's SFTP server settings (the operator fills it from the DistrictSync spec)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen_address: IPv4Address | IPv6Address = Field(
        IPv4Address("0.0.0.0"), description="Address sshd listens on.")
    port: int = Field(2222, ge=1, le=65535,
                      description="Port sshd listens on (unprivileged in the container).")
    root: AbsolutePath = Field("/srv/sftp", description="The importer's chroot; the district's "
                               "is its 'district' subdirectory.")
    upload_directory: DirectoryName = Field(
        "upload", description="The drop box, inside the district's chroot.")
    district_user: UserName
    importer_user: UserName
    password_login: bool = Field(True, description="Whether the district may log in "
                                 "with its password (keys always work when configured).")
    district_authorized_keys: AbsolutePath | None = Field(
        None, description="authorized_keys file of the district account (root-owned).")
    importer_authorized_keys: AbsolutePath = Field(
        description="authorized_keys file of the importer account (root-owned).")
    allowed_networks: list[Network] = Field(
        default_factory=list, description="Source networks the district may connect from "
        "(empty: any). Enforced by sshd with AllowUsers user@CIDR.")
    importer_networks: list[Network] = Field(
        default_factory=list, description="Source networks the importer connects from "
        "(empty: any; the NetworkPolicy restricts it too).")
    host_keys: list[AbsolutePath] = Field(min_length=1, description="Private host key files.")
    pid_file: AbsolutePath = "/run/sshd.pid"
    use_pam: bool = Field(False, description="PAM is not needed for local accounts and "
                          "would need more capabilities in the container.")
    max_auth_tries: int = Field(3, ge=1, le=10)
    login_grace_time: int = Field(30, ge=1, le=600, description="Seconds to authenticate.")
    max_startups: tuple[int, int, int] = Field(
        (10, 30, 60), description="start:rate:full of unauthenticated connections.")
    max_sessions: int = Field(4, ge=1, le=16)
    client_alive_interval: int = Field(15, ge=1, le=3600)
    client_alive_count_max: int = Field(4, ge=1, le=100)
    required_rsa_size: int = Field(3072, ge=2048, description="Smallest RSA user key.")

    @model_validator(mode="after")
    def _consistent(self) -> SshdSettings:
        if self.district_user == self.importer_user:
            raise ValueError("the district and importer accounts must have different names")
        if not self.password_login and self.district_authorized_keys is None:
            raise ValueError("the district needs password login or authorized keys")
        start, rate, full = self.max_startups
        if not (start <= full and 1 <= rate <= 100):
            raise ValueError("max_startups must be start:rate:full with start <= full")
        return self


@dataclass(frozen=True)
class Layout:
    """Where things are on the server's disk and as each account sees them."""

    root: str
    district_chroot: str
    upload: str
    held: str
    #: the drop box as the district sees it (its SFTP start directory)
    district_upload_path: str
    #: the drop box and the held area as the importer sees them
    importer_upload_path: str
    importer_held_path: str


def layout(settings: SshdSettings) -> Layout:
    """The directory layout the settings imply (created by the image's entrypoint)."""
    district_chroot = posixpath.join(settings.root, DISTRICT_DIRECTORY)
    return Layout(
        root=settings.root,
        district_chroot=district_chroot,
        upload=posixpath.join(district_chroot, settings.upload_directory),
        held=posixpath.join(settings.root, HELD_DIRECTORY),
        district_upload_path=f"/{settings.upload_directory}",
        importer_upload_path=f"/{DISTRICT_DIRECTORY}/{settings.upload_directory}",
        importer_held_path=f"/{HELD_DIRECTORY}")


def _allow_users(user: str, networks: list[Network]) -> list[str]:
    return [f"{user}@{network}" for network in networks] or [user]


def _sftp_command(start_directory: str | None, denied: tuple[str, ...] = ()) -> str:
    """internal-sftp with transactions logged (audit), links and ``denied`` refused."""
    command = ["internal-sftp", "-l", "VERBOSE", "-f", "AUTH", "-u", "0077",
               "-P", ",".join((*DENIED_SFTP_REQUESTS, *denied))]
    if start_directory is not None:
        command += ["-d", start_directory]
    return " ".join(command)


def render_sshd_config(settings: SshdSettings) -> str:
    """The complete ``sshd_config`` for a district's server (no I/O)."""
    paths = layout(settings)
    district_sftp = _sftp_command(paths.district_upload_path, DISTRICT_DENIED_SFTP_REQUESTS)
    district_methods = " ".join(
        method for method, enabled in (("publickey", settings.district_authorized_keys),
                                       ("password", settings.password_login)) if enabled)
    lines = [
        "# visitor-sync: a district's SFTP drop box. Rendered; do not edit by hand.",
        f"ListenAddress {settings.listen_address}",
        f"Port {settings.port}",
        *(f"HostKey {path}" for path in settings.host_keys),
        f"PidFile {settings.pid_file}",
        "",
        "# Algorithms: modern only (checked with ssh-audit by the tests).",
        f"KexAlgorithms {','.join(KEX_ALGORITHMS)}",
        f"Ciphers {','.join(CIPHERS)}",
        f"MACs {','.join(MACS)}",
        f"HostKeyAlgorithms {','.join(HOST_KEY_ALGORITHMS)}",
        f"PubkeyAcceptedAlgorithms {','.join(PUBKEY_ALGORITHMS)}",
        f"RequiredRSASize {settings.required_rsa_size}",
        "",
        "# Who may log in, and how.",
        f"AllowUsers {' '.join(_allow_users(settings.district_user, settings.allowed_networks))}"
        f" {' '.join(_allow_users(settings.importer_user, settings.importer_networks))}",
        "PermitRootLogin no",
        f"UsePAM {'yes' if settings.use_pam else 'no'}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "HostbasedAuthentication no",
        "GSSAPIAuthentication no",
        "PermitEmptyPasswords no",
        "AuthorizedKeysFile none",
        "StrictModes yes",
        f"MaxAuthTries {settings.max_auth_tries}",
        f"LoginGraceTime {settings.login_grace_time}",
        f"MaxStartups {':'.join(str(value) for value in settings.max_startups)}",
        f"MaxSessions {settings.max_sessions}",
        f"ClientAliveInterval {settings.client_alive_interval}",
        f"ClientAliveCountMax {settings.client_alive_count_max}",
        "UseDNS no",
        "",
        "# SFTP only: no shell, no TTY, no forwarding of any kind.",
        "Subsystem sftp internal-sftp",
        "PermitTTY no",
        "PermitTunnel no",
        "AllowTcpForwarding no",
        "AllowStreamLocalForwarding no",
        "AllowAgentForwarding no",
        "X11Forwarding no",
        "GatewayPorts no",
        "DisableForwarding yes",
        "PermitUserEnvironment no",
        "PermitUserRC no",
        "PrintMotd no",
        "PrintLastLog no",
        "DebianBanner no",
        "Compression no",
        "",
        "# Audit: logins, key fingerprints and every SFTP transaction.",
        "SyslogFacility AUTH",
        "LogLevel VERBOSE",
        "",
        "# Unmatched users cannot log in (AllowUsers); should one ever, it is jailed too.",
        f"ChrootDirectory {paths.district_chroot}",
        f"ForceCommand {district_sftp}",
        "",
        f"Match User {settings.district_user}",
        f"    ChrootDirectory {paths.district_chroot}",
        f"    ForceCommand {district_sftp}",
        f"    AuthorizedKeysFile {settings.district_authorized_keys or 'none'}",
        f"    PasswordAuthentication {'yes' if settings.password_login else 'no'}",
        f"    AuthenticationMethods {district_methods}",
        "",
        f"Match User {settings.importer_user}",
        f"    ChrootDirectory {paths.root}",
        f"    ForceCommand {_sftp_command(None)}",
        f"    AuthorizedKeysFile {settings.importer_authorized_keys}",
        "    PasswordAuthentication no",
        "    AuthenticationMethods publickey",
    ]
    return "\n".join(lines) + "\n"


#: Where the image's entrypoint expects the rendered config (a ConfigMap) and the Secret.
CONFIG_PATH = "/etc/visitor-sync/sshd_config"
SECRETS_DIRECTORY = "/etc/visitor-sync/secrets"
#: The uid (and gid) both accounts run as; fixed so files on the volume keep their owner.
ACCOUNT_UID = 10000


def entrypoint_environment(settings: SshdSettings, *, uid: int = ACCOUNT_UID,
                           config_path: str = CONFIG_PATH,
                           secrets_directory: str = SECRETS_DIRECTORY) -> dict[str, str]:
    """What ``images/sftp/entrypoint.sh`` needs to know to prepare what the config expects.

    The Secret mounted at ``secrets_directory`` holds ``district-password`` (when
    password login is on), ``district-authorized-keys`` (when configured),
    ``importer-authorized-keys`` and one file per host key, named like the key's
    ``HostKey`` path (e.g. ``ssh_host_ed25519_key``).
    """
    return {
        "SFTP_CONFIG": config_path,
        "SFTP_SECRETS": secrets_directory,
        "SFTP_ROOT": settings.root,
        "SFTP_UPLOAD_DIRECTORY": settings.upload_directory,
        "SFTP_DISTRICT_USER": settings.district_user,
        "SFTP_IMPORTER_USER": settings.importer_user,
        "SFTP_UID": str(uid),
        "SFTP_PASSWORD_LOGIN": "yes" if settings.password_login else "no",
        "SFTP_DISTRICT_AUTHORIZED_KEYS": settings.district_authorized_keys or "",
        "SFTP_IMPORTER_AUTHORIZED_KEYS": settings.importer_authorized_keys,
        "SFTP_HOST_KEYS": " ".join(settings.host_keys),
    }
