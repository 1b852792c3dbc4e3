"""The journal's chain: a canonical encoding of each change and the hash that links it.

Every change to the ledger's state (an account opened, a transfer row written:
applied, refused and kept for replay, or a hold's expiry) is one record with a
global sequence number. Its hash covers the previous record's hash, its own
sequence and its body, so changing, removing or reordering any record breaks
every hash after it. The encoding is ours and fixed (services/ledger/JOURNAL.md),
not a library's: sorted-key JSON of strings, integers, booleans, null, lists and
objects, instants as integer microseconds since the Unix epoch (UTC).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, NoReturn

import orjson

GENESIS = bytes(32)  # the previous hash of the first record
_DOMAIN = b"astra-ledger-journal-v1\x00"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

ACCOUNT_OPENED = "account_opened"
TRANSFER = "transfer"
KINDS = (ACCOUNT_OPENED, TRANSFER)


class NotCanonical(ValueError):
    """A value the encoding does not admit (a float, a naive instant, a non-string key)."""


def micros(instant: datetime) -> int:
    """An aware instant as integer microseconds since the Unix epoch."""
    if instant.tzinfo is None:
        raise NotCanonical(f"naive instant {instant!r}: the journal names instants in UTC")
    delta = instant - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def instant(value: int | None) -> datetime | None:
    """The inverse of ``micros`` (None stays None)."""
    if value is None:
        return None
    return _EPOCH + timedelta(microseconds=value)


def _locate(value: object, path: str) -> None:
    """Raise naming where in ``value`` the first value without a canonical form is."""
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _locate(item, f"{path}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical(f"{path}: key {key!r} is not a string")
            _locate(item, f"{path}.{key}")
        return
    raise NotCanonical(f"{path}: {type(value).__name__} has no canonical form")


_ATOMS = frozenset({str, int, bool, type(None)})


def _check(value: object) -> None:
    # Every body of every write passes here: walk without building paths, and only
    # when something is wrong walk again (``_locate``) to name it.
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind in _ATOMS:
            continue
        if kind is dict:
            assert isinstance(item, dict)
            if all(type(key) is str for key in item):
                stack.extend(item.values())
                continue
        elif kind is list or kind is tuple:
            assert isinstance(item, list | tuple)
            stack.extend(item)
            continue
        _locate(value, "$")  # subclasses and anything else: the careful walk decides
        return


# The reference encoder: the spec's encoding, by the standard library. It decides
# whenever the fast one cannot (integers past 64 bits) and pins the fast one in tests.
_REFERENCE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
# orjson writes the same bytes (sorted keys, no spaces, UTF-8, the same escapes;
# tests/unit/test_ledger_journal.py holds it to the reference with Hypothesis) about
# several times as fast, on every write's path. Datetimes and dataclasses are passed to
# ``_refuse`` instead of being given a form of orjson's; subclasses of str and int are
# written as their values, as the reference writes them.
_FAST_OPTIONS = (
    orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def _refuse(value: object) -> NoReturn:
    raise NotCanonical(f"{type(value).__name__} has no canonical form")


def reference_canonical(value: object) -> bytes:
    """The spec's encoding by the standard library's encoder (checked)."""
    _check(value)
    try:
        return _REFERENCE.encode(value).encode()
    except UnicodeEncodeError as error:  # a lone surrogate is not text
        raise NotCanonical(f"text that is not Unicode: {error}") from None


def canonical(value: object) -> bytes:
    """The one byte string for ``value`` (checked: no floats, no other types)."""
    _check(value)
    return encode_built(value)


def encode_built(value: object) -> bytes:
    """The canonical bytes of a value built by this module's own builders.

    The write path's encoder: ``ledger.domain.journal_records`` builds bodies only
    of strings, integers, booleans, null, lists and string-keyed dicts from typed
    domain objects (checked for every kind of body in the tests), so it skips the
    walk that ``canonical`` makes over values from anywhere.
    """
    try:
        return orjson.dumps(value, default=_refuse, option=_FAST_OPTIONS)
    except orjson.JSONEncodeError as error:
        if isinstance(error.__cause__, NotCanonical):
            raise error.__cause__ from None
        # orjson stops at 64-bit integers and at text that is not Unicode: the
        # reference decides (it writes big integers, and refuses the rest).
        return reference_canonical(value)


_DOMAIN_HASH = hashlib.sha256(_DOMAIN)  # copied per record: the prefix is hashed once


def record_hash(prev_hash: bytes, sequence: int, body: bytes) -> bytes:
    if len(prev_hash) != 32:
        raise ValueError("a previous hash is 32 bytes")
    if sequence < 1:
        raise ValueError("sequences start at 1")
    return _unchecked_hash(prev_hash, sequence, body)


def _unchecked_hash(prev_hash: bytes, sequence: int, body: bytes) -> bytes:
    digest = _DOMAIN_HASH.copy()
    digest.update(prev_hash + sequence.to_bytes(8, "big"))
    digest.update(body)
    return digest.digest()


class Link(NamedTuple):
    """Where a body sits in the chain (a tuple: one is made per record on every write)."""

    sequence: int
    prev_hash: bytes
    hash: bytes


def chain(head_sequence: int, head_hash: bytes, bodies: Sequence[bytes]) -> list[Link]:
    """The links of ``bodies`` appended, in order, after the head (0 and GENESIS: empty)."""
    if bodies:
        record_hash(head_hash, head_sequence + 1, b"")  # the head's hash and sequence, checked once
    links: list[Link] = []
    prev = head_hash
    for sequence, body in enumerate(bodies, start=head_sequence + 1):
        digest = _unchecked_hash(prev, sequence, body)
        links.append(Link(sequence, prev, digest))
        prev = digest
    return links


@dataclass(frozen=True, slots=True)
class Broken:
    """The first record that does not verify, and why."""

    sequence: int
    reason: str


def first_break(
    records: Iterable[tuple[int, bytes, bytes, bytes]],
    *,
    after_sequence: int = 0,
    after_hash: bytes = GENESIS,
) -> Broken | None:
    """Check ``(sequence, prev_hash, hash, body)`` records in order, from a known head.

    Names the first sequence that is missing, out of order, linked to anything but
    the hash before it, or whose hash is not its content's.
    """
    expected_sequence, expected_prev = after_sequence + 1, after_hash
    for sequence, prev_hash, stored_hash, body in records:
        if sequence != expected_sequence:
            return Broken(expected_sequence, f"found sequence {sequence} in its place")
        if prev_hash != expected_prev:
            return Broken(sequence, "its previous hash is not the hash of the record before")
        if record_hash(prev_hash, sequence, body) != stored_hash:
            return Broken(sequence, "its hash is not the hash of its content")
        expected_sequence, expected_prev = sequence + 1, stored_hash
    return None
