"""The district's three Secrets: login credentials, SFTP host keys, the importer's key.

They are generated once and then only read back: the operator never rotates
a credential silently (a district's SIS would stop uploading, and a changed
host key looks like an attack). Rotation is an explicit annotation, see
:mod:`visitor_sync_operator.handlers`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from visitor_sync.sftp.credentials import generate_password
from visitor_sync.sftp.keys import fingerprint, generate_key, public_line_of
from visitor_sync_operator.district import District

#: Host key files, named as sshd's HostKey paths end (the entrypoint installs them by name).
HOST_KEY_FILES = {"ed25519": "ssh_host_ed25519_key", "rsa": "ssh_host_rsa_key"}
IMPORTER_KEY_FILE = "id_ed25519"


def encode(data: dict[str, str | bytes]) -> dict[str, str]:
    """A Secret's ``data``: base64 of every value (kmock and some tools ignore stringData)."""
    return {key: base64.b64encode(value if isinstance(value, bytes) else value.encode()).decode()
            for key, value in data.items()}


def decode(secret: dict[str, Any]) -> dict[str, bytes]:
    return {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}


@dataclass(frozen=True)
class Material:
    """The secret material of one district, new or read back from its Secrets."""

    password: str
    host_keys: dict[str, bytes]
    importer_key: bytes

    @classmethod
    def generate(cls) -> Material:
        return cls(password=generate_password(),
                   host_keys={file: generate_key(kind).private_openssh
                              for kind, file in HOST_KEY_FILES.items()},
                   importer_key=generate_key("ed25519").private_openssh)

    # Cached: loading an RSA private key to derive its public half takes a while.
    @cached_property
    def _host_public_lines(self) -> tuple[str, ...]:
        return tuple(public_line_of(self.host_keys[file]) for file in HOST_KEY_FILES.values())

    def host_public_lines(self) -> list[str]:
        return list(self._host_public_lines)

    def host_fingerprints(self) -> list[str]:
        return [fingerprint(line) for line in self.host_public_lines()]

    @cached_property
    def importer_public_line(self) -> str:
        return public_line_of(self.importer_key)


def material_from(credentials: dict[str, Any] | None, host_keys: dict[str, Any] | None,
                  importer_key: dict[str, Any] | None) -> Material:
    """What existing Secrets hold, with anything missing or unreadable generated anew.

    Only absent pieces are generated: an existing password or key is always kept.
    """
    fresh: Material | None = None

    def new() -> Material:
        nonlocal fresh
        fresh = fresh or Material.generate()
        return fresh

    stored = decode(credentials or {})
    password = stored["password"].decode() if stored.get("password") else new().password
    keys = decode(host_keys or {})
    host = {file: keys[file] if keys.get(file) else new().host_keys[file]
            for file in HOST_KEY_FILES.values()}
    importer = decode(importer_key or {}).get(IMPORTER_KEY_FILE) or new().importer_key
    return Material(password=password, host_keys=host, importer_key=importer)


def credentials_secret(district: District, material: Material) -> dict[str, Any]:
    """What the district is given: its login name and password."""
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": district.metadata(district.credentials_secret, "credentials"),
        "data": encode({"username": district.spec.sftp_username(),
                        "password": material.password}),
    }


def host_keys_secret(district: District, material: Material) -> dict[str, Any]:
    files: dict[str, str | bytes] = dict(material.host_keys)
    for file, line in zip(HOST_KEY_FILES.values(), material.host_public_lines(), strict=True):
        files[f"{file}.pub"] = line + "\n"
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": district.metadata(district.host_keys_secret, "sftp"),
        "data": encode(files),
    }


def importer_key_secret(district: District, material: Material) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": district.metadata(district.importer_key_secret, "importer"),
        "data": encode({IMPORTER_KEY_FILE: material.importer_key,
                        f"{IMPORTER_KEY_FILE}.pub": material.importer_public_line + "\n"}),
    }
