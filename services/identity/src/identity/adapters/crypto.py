"""Key material and secrets: the only place identity touches cryptography.

- ``KeyVault`` makes ES256 signing keys, keeps their private half encrypted
  at rest with the key-encryption key (Fernet; several keys may be given so the
  encryption key itself can be rotated: the first encrypts, any decrypts), and
  signs tokens with them.
- ``KeyedSecretHasher`` hashes client secrets with HMAC-SHA256 under a key
  derived (HKDF) from the key-encryption key. A secret is 256 random bits, so
  it needs no memory-hard password hash to resist guessing: a keyed hash makes
  a stolen table useless without the key, costs microseconds, and cannot be
  turned into a memory-exhaustion lever by a flood of IssueToken calls. Each
  hash names (by a short tag) the key-encryption key it was made under, so
  rotating the key-encryption key (a new one first in the list, the old one
  kept) leaves existing hashes verifiable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from chassis.auth.claims import new_private_key, public_jwk, sign
from chassis.kernel.ids import new_id
from chassis.pii import KeyEncryptionKeyError, key_encryption_fernet
from cryptography.fernet import InvalidToken
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from identity.domain.model import SigningKey

SECRET_PREFIX = "astra_cs_"  # noqa: S105 - a marker for secret scanners, not a secret


__all__ = ["KeyEncryptionKeyError", "KeyVault", "KeyedSecretHasher"]


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


HASH_SCHEME = "hmac-sha256"
_HKDF_INFO = b"astra identity client secret hash v1"


def _secret_hash_key(encryption_key: str) -> bytes:
    try:
        material = base64.urlsafe_b64decode(encryption_key.strip().encode())
    except ValueError as error:
        raise KeyEncryptionKeyError("a key-encryption key must be url-safe base64") from error
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO)
    return hkdf.derive(material)


class KeyedSecretHasher:
    """``hmac-sha256$<tag>$<hex>``: the tag names the derived key (8 hex digits of its hash)."""

    def __init__(self, encryption_keys: Sequence[str]) -> None:
        if not encryption_keys:
            raise KeyEncryptionKeyError("no key-encryption key given")
        derived = [_secret_hash_key(k) for k in encryption_keys]
        self._keys = {hashlib.sha256(key).hexdigest()[:8]: key for key in derived}
        self._tag = hashlib.sha256(derived[0]).hexdigest()[:8]
        # Compared against when the client does not exist, so both paths cost the same.
        self._dummy = self.hash(secrets.token_urlsafe(32))

    def __repr__(self) -> str:
        return "KeyedSecretHasher()"

    def new_secret(self) -> str:
        # 32 random bytes: 256 bits, beyond guessing whatever the hash.
        return SECRET_PREFIX + secrets.token_urlsafe(32)

    def _digest(self, key: bytes, secret: str) -> str:
        return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()

    def hash(self, secret: str) -> str:
        return f"{HASH_SCHEME}${self._tag}${self._digest(self._keys[self._tag], secret)}"

    def verify(self, secret_hash: str | None, secret: str) -> bool:
        scheme, tag, expected = _split(secret_hash or "")
        key = self._keys.get(tag) if scheme == HASH_SCHEME else None
        known = key is not None
        if key is None:
            # No such client, or a hash this hasher cannot check (an old Argon2id one, a key
            # no longer configured): the same work against the dummy, then refused.
            _, _, expected = _split(self._dummy)
            key = self._keys[self._tag]
        matches = hmac.compare_digest(self._digest(key, secret), expected)
        return matches and known and secret_hash is not None


def _split(secret_hash: str) -> tuple[str, str, str]:
    parts = secret_hash.split("$")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else ("", "", "")
