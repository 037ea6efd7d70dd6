"""Encryption of stored secrets (trunk passwords) with a key kept outside redis.

Passwords are written to redis as Fernet tokens (AES-128-CBC + HMAC-SHA256,
from the ``cryptography`` package); the key lives in a file whose path is in
the settings (``security.secret_key_file``), readable by root only.  Nothing
that prints, logs or exports trunk data ever sees the plain password: only
the call path decrypts, to verify or answer a digest challenge.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from routing.errors import EdgeError

__all__ = ["SecretError", "SecretBox", "create_key"]


class SecretError(EdgeError, RuntimeError):
    """The key file is missing or unreadable, or a stored secret cannot be decrypted with it."""


def create_key(path: str | Path) -> bool:
    """Create a new key file (mode 0600) unless one exists; returns True when created."""
    path = Path(path)
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(Fernet.generate_key())
    return True


class SecretBox:
    """Encrypts and decrypts secrets with the key in ``key_path``.

    Raises:
        SecretError: the key file cannot be read or does not hold a Fernet key.
    """

    def __init__(self, key_path: str | Path) -> None:
        try:
            key = Path(key_path).read_bytes().strip()
            self._fernet = Fernet(key)
        except OSError as exc:
            raise SecretError(f"secret key file {key_path}: {exc.strerror}") from None
        except ValueError:
            raise SecretError(f"secret key file {key_path}: not a valid key") from None

    def encrypt(self, secret: str) -> str:
        """Token to store in redis for ``secret``."""
        return self._fernet.encrypt(secret.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The secret behind a stored token.

        Raises:
            SecretError: the token was made with another key or was altered.
        """
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError):
            raise SecretError("stored secret cannot be decrypted with this key (wrong key file?)") from None
