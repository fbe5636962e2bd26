"""Encryption for secrets that must be used again (webhook signing secrets), at rest.

Fernet (AES-128-CBC + HMAC-SHA256) with the key from ``MILEPOST_AUTH__SECRETS_KEY``;
a MultiFernet so an old key can still decrypt while a new one encrypts.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from milepost_common.errors import AppError


class SecretUnreadable(AppError):
    """The stored secret was encrypted with a key this process does not have."""


class SecretBox:
    def __init__(self, *keys: str) -> None:
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable("A stored secret could not be decrypted.") from None
