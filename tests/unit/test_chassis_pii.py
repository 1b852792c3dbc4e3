"""Personal data sealed at rest: AES-GCM data keys wrapped by a key-encryption key."""

from __future__ import annotations

import pytest
from chassis.pii import (
    Envelope,
    KeyEncryptionKeyError,
    SealedDataError,
    associated_data,
    generate_key_encryption_key,
    new_data_key,
    open_sealed,
    seal,
)
from hypothesis import given
from hypothesis import strategies as st

HERE = associated_data("customers", "email", "cus_1")


@given(st.text(max_size=300))
def test_a_sealed_value_opens_to_what_was_sealed(plaintext: str) -> None:
    key = new_data_key()
    sealed = seal(key, plaintext, HERE)
    assert open_sealed(key, sealed, HERE) == plaintext
    if len(plaintext.encode()) >= 8:  # shorter ones may turn up in random bytes by chance
        assert plaintext.encode() not in sealed


def test_two_seals_of_one_value_differ() -> None:
    key = new_data_key()
    assert seal(key, "ada@example.com", HERE) != seal(key, "ada@example.com", HERE)


def test_a_value_moved_to_another_row_or_column_does_not_open() -> None:
    key = new_data_key()
    sealed = seal(key, "ada@example.com", HERE)
    with pytest.raises(SealedDataError):
        open_sealed(key, sealed, associated_data("customers", "email", "cus_2"))
    with pytest.raises(SealedDataError):
        open_sealed(key, sealed, associated_data("customers", "display_name", "cus_1"))


def test_another_key_or_a_tampered_value_does_not_open() -> None:
    sealed = seal(new_data_key(), "ada@example.com", HERE)
    with pytest.raises(SealedDataError):
        open_sealed(new_data_key(), sealed, HERE)
    key = new_data_key()
    tampered = bytearray(seal(key, "ada@example.com", HERE))
    tampered[-1] ^= 1
    with pytest.raises(SealedDataError):
        open_sealed(key, bytes(tampered), HERE)
    with pytest.raises(SealedDataError):
        open_sealed(key, b"\x01short", HERE)


def test_data_keys_unwrap_only_with_their_kek_and_survive_its_rotation() -> None:
    old, new = generate_key_encryption_key(), generate_key_encryption_key()
    envelope = Envelope([old])
    wrapped = envelope.new_wrapped_key()
    sealed = envelope.seal(wrapped, "Ada Lovelace", HERE)
    with pytest.raises(KeyEncryptionKeyError):
        Envelope([new]).unwrap(wrapped)
    rotated = Envelope([new, old])
    assert rotated.open(wrapped, sealed, HERE) == "Ada Lovelace"
    rewrapped = rotated.rewrap(wrapped)
    assert Envelope([new]).open(rewrapped, sealed, HERE) == "Ada Lovelace"


def test_an_erased_field_opens_empty_and_a_bad_kek_is_refused() -> None:
    envelope = Envelope([generate_key_encryption_key()])
    assert envelope.open(None, b"anything", HERE) == ""
    assert envelope.open(envelope.new_wrapped_key(), None, HERE) == ""
    with pytest.raises(KeyEncryptionKeyError):
        Envelope(["not-a-fernet-key"])
    with pytest.raises(KeyEncryptionKeyError):
        Envelope([])
