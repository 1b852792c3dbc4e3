"""What the use cases need from the outside, as protocols (adapters/crypto.py implements them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from identity.domain.model import SigningKey


class SecretHasher(Protocol):
    def new_secret(self) -> str: ...

    def hash(self, secret: str) -> str: ...

    def verify(self, secret_hash: str | None, secret: str) -> bool:
        """True if ``secret`` matches; ``None`` (no such client) costs the same and is False."""
        ...


class KeyStore(Protocol):
    def new_signing_key(self, now: datetime, request_id: str = "") -> SigningKey: ...

    def sign(self, claims: dict[str, Any], key: SigningKey) -> str: ...
