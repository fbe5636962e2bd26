"""Counting the argon2 verifications a process runs (login throttle tests)."""

from __future__ import annotations

from typing import Any

import pytest
from pwdlib.hashers.argon2 import Argon2Hasher


def count_argon2_verifications(monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """A list that grows by one per argon2 verification in this process (the real one still
    runs); the tally holds for the rest of the test."""
    calls: list[None] = []
    verify = Argon2Hasher.verify

    def counted(self: Argon2Hasher, password: Any, hash_: Any) -> bool:
        calls.append(None)  # list.append is atomic: verifications run in threads
        return bool(verify(self, password, hash_))

    monkeypatch.setattr(Argon2Hasher, "verify", counted)
    return calls
