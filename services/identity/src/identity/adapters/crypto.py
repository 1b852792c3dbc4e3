"""Key material and secrets: the only place identity touches cryptography.

- ``KeyVault`` makes ES256 signing keys, keeps their private half encrypted
  at rest with the key-encryption key (Fernet; several keys may be given so the
  encryption key itself can be rotated: the first encrypts, any decrypts), and
  signs tokens with them.
- ``Argon2SecretHasher`` hashes client secrets with Argon2id (argon2-cffi's
  defaults, RFC 9106's second recommended setting), so a stolen table does not
  give the secrets away.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from chassis.auth.claims import new_private_key, public_jwk, sign
from chassis.kernel.ids import new_id
from chassis.pii import KeyEncryptionKeyError, key_encryption_fernet
from cryptography.fernet import InvalidToken
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from identity.domain.model import SigningKey

SECRET_PREFIX = "astra_cs_"  # noqa: S105 - a marker for secret scanners, not a secret


__all__ = ["Argon2SecretHasher", "KeyEncryptionKeyError", "KeyVault"]


class KeyVault:
    def __init__(self, encryption_keys: Sequence[str]) -> None:
        self._fernet = key_encryption_fernet(encryption_keys)
        self._lock = threading.Lock()
        self._private: dict[str, ec.EllipticCurvePrivateKey] = {}

    def __repr__(self) -> str:
        return "KeyVault()"

    def new_signing_key(self, now: datetime, request_id: str = "") -> SigningKey:
        private = new_private_key()
        kid = new_id("key")
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with self._lock:
            self._private[kid] = private
        return SigningKey(kid, public_jwk(private, kid), self._fernet.encrypt(pem), now, request_id)

    def private_key(self, key: SigningKey) -> ec.EllipticCurvePrivateKey:
        with self._lock:
            cached = self._private.get(key.kid)
        if cached is not None:
            return cached
        try:
            pem = self._fernet.decrypt(key.encrypted_private_key)
        except InvalidToken:
            raise KeyEncryptionKeyError(
                f"signing key {key.kid} cannot be decrypted with the configured key-encryption key"
            ) from None
        loaded = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise KeyEncryptionKeyError(f"signing key {key.kid} is not an EC key")
        with self._lock:
            self._private[key.kid] = loaded
        return loaded

    def sign(self, claims: dict[str, Any], key: SigningKey) -> str:
        return sign(claims, self.private_key(key), key.kid)


class Argon2SecretHasher:
    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        # Verified against when the client does not exist, so both paths cost the same.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def new_secret(self) -> str:
        return SECRET_PREFIX + secrets.token_urlsafe(32)

    def hash(self, secret: str) -> str:
        return self._hasher.hash(secret)

    def verify(self, secret_hash: str | None, secret: str) -> bool:
        try:
            return self._hasher.verify(secret_hash or self._dummy, secret) and bool(secret_hash)
        except (VerificationError, InvalidHashError):
            return False
