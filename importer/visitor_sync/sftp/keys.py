"""SSH keys: host keys the operator generates once, their fingerprints and known_hosts lines.

Host keys are generated with ``cryptography`` in OpenSSH's own private-key format
(what sshd's ``HostKey`` reads); the SHA256 fingerprint is the one ``ssh-keygen
-lf`` prints, shown in the CR status so a district can verify the server on first
connection; the known_hosts line pins the key for the importer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

KeyKind = Literal["ed25519", "rsa"]

#: Smallest RSA key generated or accepted (NIST SP 800-57: 128-bit security).
MIN_RSA_BITS = 3072
#: Public key types a district may put in its authorized keys.
ACCEPTED_USER_KEY_TYPES = ("ssh-ed25519", "sk-ssh-ed25519@openssh.com", "ssh-rsa")


@dataclass(frozen=True)
class KeyPair:
    """A private key in OpenSSH format and its one-line public key."""

    private_openssh: bytes
    public_line: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_line)


def generate_key(kind: KeyKind = "ed25519", rsa_bits: int = MIN_RSA_BITS) -> KeyPair:
    """A new key pair (a host key, or the importer's own login key)."""
    private: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    if kind == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    elif kind == "rsa":
        if rsa_bits < MIN_RSA_BITS:
            raise ValueError(f"RSA keys need at least {MIN_RSA_BITS} bits")
        private = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    else:
        raise ValueError(f"unknown key kind {kind!r}")
    pem = private.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    return KeyPair(pem, public_line_of(pem))


def public_line_of(private_openssh: bytes) -> str:
    """``type base64`` of a private key (as in ``ssh-keygen -y``), to pin or authorize it.

    RSA consistency checks are skipped: they guard signing with a tampered key and cost
    ~130 ms for RSA-3072, while only the public half (n, e) is read here; the operator
    derives it for every district on every resync.
    """
    private = serialization.load_ssh_private_key(private_openssh, password=None,
                                                 unsafe_skip_rsa_key_validation=True)
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH)
    return public.decode("ascii")


def _blob(public_line: str) -> tuple[str, bytes]:
    fields = public_line.split()
    if len(fields) < 2:
        raise ValueError("a public key line is 'type base64 [comment]'")
    try:
        blob = base64.b64decode(fields[1], validate=True)
    except binascii.Error as error:
        raise ValueError("the public key is not valid base64") from error
    return fields[0], blob


def fingerprint(public_line: str) -> str:
    """``SHA256:...`` of a public key, exactly as ``ssh-keygen -lf`` prints it."""
    _, blob = _blob(public_line)
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii")
    return f"SHA256:{digest.rstrip('=')}"


def known_hosts_line(host: str, port: int, public_line: str) -> str:
    """A known_hosts line pinning ``public_line`` for ``host:port`` (bracketed off port 22)."""
    if any(character.isspace() or character in ",[]" for character in host):
        raise ValueError(f"not a host name or address: {host!r}")
    key_type, blob = _blob(public_line)
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {key_type} {base64.b64encode(blob).decode('ascii')}"


def check_authorized_keys(text: str, min_rsa_bits: int = MIN_RSA_BITS) -> list[str]:
    """The keys of an authorized_keys text, normalised to ``type base64 [comment]`` lines.

    Rejects options (``command=``, ``from=``...: the server decides those), key types
    the server refuses anyway and RSA keys under ``min_rsa_bits``, so a district learns
    at configuration time rather than at its first failed login.
    """
    keys = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key_type = line.split()[0]
        if key_type not in ACCEPTED_USER_KEY_TYPES:
            raise ValueError(f"line {number}: key type {key_type!r} is not accepted "
                             f"(use one of {', '.join(ACCEPTED_USER_KEY_TYPES)}, no options)")
        _blob(line)  # valid base64, or ValueError
        if key_type == "ssh-rsa":
            public = serialization.load_ssh_public_key(f"{key_type} {line.split()[1]}".encode())
            assert isinstance(public, rsa.RSAPublicKey)
            if public.key_size < min_rsa_bits:
                raise ValueError(f"line {number}: RSA key of {public.key_size} bits; "
                                 f"at least {min_rsa_bits} are required")
        keys.append(" ".join(line.split()[:3]))
    return keys
