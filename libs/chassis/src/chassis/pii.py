"""Personal data at rest: envelope encryption with AES-GCM.

Each data subject (a customer) has a data key of its own (256-bit AES-GCM),
stored only wrapped by the context's key-encryption key (KEK: Fernet keys
from settings, the mechanism identity already uses for its signing keys; the
first key wraps, any unwraps, so the KEK itself can rotate). A personal field
is sealed with the subject's data key and associated data naming its row and
column (``customers.email:cus_1``): a ciphertext copied to another row or
column does not open. Deleting the subject's data key erases every field it
sealed, wherever it was copied (crypto-shredding).

The tables of data keys live in each context's database (``chassis.db.data_keys``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

DATA_KEY_BYTES = 32
_NONCE_BYTES = 12
# The format of a sealed value: version byte, nonce, ciphertext and tag. A new
# format gets a new version, so old values stay readable.
_VERSION = b"\x01"


class KeyEncryptionKeyError(RuntimeError):
    """The key-encryption key is missing, malformed, or not the one the data was sealed with."""


class SealedDataError(ValueError):
    """A sealed value does not open: wrong key, wrong row or column, or tampered with."""


def generate_key_encryption_key() -> str:
    return Fernet.generate_key().decode()


def key_encryption_fernet(keys: Sequence[str]) -> MultiFernet:
    """The KEK as Fernet keys: the first encrypts, any decrypts."""
    if not keys:
        raise KeyEncryptionKeyError("no key-encryption key given")
    try:
        return MultiFernet([Fernet(k.strip().encode()) for k in keys])
    except ValueError as error:
        raise KeyEncryptionKeyError(
            "a key-encryption key must be 32 url-safe base64-encoded bytes (a Fernet key)"
        ) from error


def read_key_encryption_keys(
    value: SecretStr | None, file: str, *, env_prefix: str, command: str
) -> list[str]:
    """The KEK from a setting's value (comma-separated) or file (one key per line).

    ``env_prefix`` and ``command`` name the variables and the command that makes a
    key, for an error that says how to provide one.
    """
    hint = f"(create one with: {command} generate-kek --out FILE)"
    if value is not None:
        raw = value.get_secret_value().replace(",", "\n")
    elif file:
        path = Path(file)
        if not path.is_file():
            raise KeyEncryptionKeyError(
                f"{env_prefix}KEY_ENCRYPTION_KEY_FILE names {path}, which does not exist {hint}"
            )
        raw = path.read_text()
    else:
        raise KeyEncryptionKeyError(
            f"set {env_prefix}KEY_ENCRYPTION_KEY or {env_prefix}KEY_ENCRYPTION_KEY_FILE {hint}"
        )
    keys = [line.strip() for line in raw.splitlines() if line.strip()]
    if not keys:
        raise KeyEncryptionKeyError("the key-encryption key is empty")
    return keys


def write_key_encryption_key_file(path: Path) -> None:
    """A new KEK in a new file, created 0600 from the start (never readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(generate_key_encryption_key() + "\n")


def associated_data(table: str, column: str, row_id: str) -> bytes:
    """What binds a sealed value to its place: ``table.column:row id``."""
    return f"{table}.{column}:{row_id}".encode()


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=DATA_KEY_BYTES * 8)


def seal(data_key: bytes, plaintext: str, associated: bytes) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return _VERSION + nonce + AESGCM(data_key).encrypt(nonce, plaintext.encode(), associated)


def open_sealed(data_key: bytes, sealed: bytes, associated: bytes) -> str:
    if len(sealed) < 1 + _NONCE_BYTES + 16 or sealed[:1] != _VERSION:
        raise SealedDataError("not a sealed value of a known format")
    nonce, body = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
    try:
        return AESGCM(data_key).decrypt(nonce, body, associated).decode()
    except (InvalidTag, ValueError):
        raise SealedDataError("the sealed value does not open with this key and place") from None


class Envelope:
    """Data keys wrapped and unwrapped by the KEK; fields sealed and opened with them.

    Unwrapped keys are cached by their wrapped bytes (each wrapping is unique, so
    the cache never answers for a key that was replaced); a deleted key is simply
    never asked for again, since its wrapped bytes are gone from the table.
    """

    _CACHE_LIMIT = 10_000

    def __init__(self, key_encryption_keys: Sequence[str]) -> None:
        self._fernet = key_encryption_fernet(key_encryption_keys)
        self._lock = threading.Lock()
        self._unwrapped: dict[bytes, bytes] = {}

    def __repr__(self) -> str:  # never the keys
        return "Envelope()"

    def new_wrapped_key(self) -> bytes:
        return self._fernet.encrypt(new_data_key())

    def unwrap(self, wrapped: bytes) -> bytes:
        with self._lock:
            cached = self._unwrapped.get(wrapped)
        if cached is not None:
            return cached
        try:
            key = self._fernet.decrypt(wrapped)
        except InvalidToken:
            raise KeyEncryptionKeyError(
                "a data key cannot be unwrapped with the configured key-encryption key"
            ) from None
        with self._lock:
            if len(self._unwrapped) >= self._CACHE_LIMIT:
                self._unwrapped.clear()
            self._unwrapped[wrapped] = key
        return key

    def forget(self, wrapped: bytes) -> None:
        """Drop the unwrapped key from the cache (its subject was erased)."""
        with self._lock:
            self._unwrapped.pop(wrapped, None)

    def rewrap(self, wrapped: bytes) -> bytes:
        """The data key wrapped by the first (newest) KEK: for rotating the KEK."""
        return self._fernet.rotate(wrapped)

    def seal(self, wrapped: bytes, plaintext: str, associated: bytes) -> bytes:
        return seal(self.unwrap(wrapped), plaintext, associated)

    def open(self, wrapped: bytes | None, sealed: bytes | None, associated: bytes) -> str:
        """The field's plaintext; empty when it was erased (no key, or no value)."""
        if wrapped is None or not sealed:
            return ""
        return open_sealed(self.unwrap(wrapped), sealed, associated)
