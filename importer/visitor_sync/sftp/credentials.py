"""Credentials of the district account: a strong generated password.

Generated once by the operator into a Secret and never rotated silently; the
district reads it from there. The alphabet avoids characters that are hard to
read aloud or type (``0O1lI``) and those with a meaning to ``chpasswd`` or a
shell (``:``, quotes, backslash, whitespace), and every password mixes all
four character classes so it passes any composition rule a district's SIS
imposes on stored passwords.
"""

from __future__ import annotations

import secrets
import string

LOWER = "abcdefghijkmnopqrstuvwxyz"
UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ"
DIGITS = "23456789"
SYMBOLS = "-_.+=@%^*!~#"
ALPHABET = LOWER + UPPER + DIGITS + SYMBOLS
#: 24 characters of a 69-symbol alphabet: about 146 bits of entropy.
DEFAULT_LENGTH = 24
MIN_LENGTH = 16


def generate_password(length: int = DEFAULT_LENGTH) -> str:
    """A random password of ``length`` characters containing every character class."""
    if length < MIN_LENGTH:
        raise ValueError(f"passwords have at least {MIN_LENGTH} characters")
    while True:
        password = "".join(secrets.choice(ALPHABET) for _ in range(length))
        if all(any(character in group for character in password)
               for group in (LOWER, UPPER, DIGITS, SYMBOLS)):
            return password


def is_safe_password(password: str) -> bool:
    """Whether ``password`` can be fed to ``chpasswd`` as ``user:password`` unchanged."""
    return (len(password) >= MIN_LENGTH and ":" not in password
            and all(character in string.printable and not character.isspace()
                    for character in password))
