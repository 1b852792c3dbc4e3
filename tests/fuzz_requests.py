"""Hypothesis strategies that build any request message from its proto descriptor.

The contract fuzzer (tests/e2e/test_contract_fuzz.py) walks each RPC's request
descriptor and draws every field from a mix of *plausible* values (ids with the
right prefix, some of them existing, real currencies, ISO dates), so that
requests get past the first check and reach deeper code, and *hostile* values:
NUL bytes, control characters, non-ASCII text (never lone surrogates: protobuf
strings are UTF-8), very long strings, int64 and int32 extremes, undefined enum
numbers, Timestamp and Duration seconds and nanos outside their ranges, garbage
and forged page tokens, oversized repeated fields. Raw byte strings that do not
decode as the request message are drawn by ``undecodable_bodies``.

Nothing here knows the services' rules beyond field names: the plausible values
are keyed by field name (``account_id`` -> ``acct_...``), and a page token can
be forged with the digest of the request's own filters (``PageTokenForger``),
so that the token's decoded position, not its digest, is what gets attacked.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

# Descriptors come from upb at run time and from google.protobuf.descriptor in the stubs.
Descriptor = Any
Field = Any

INT64 = (-(2**63), 2**63 - 1)
INT32 = (-(2**31), 2**31 - 1)
UINT64 = (0, 2**64 - 1)
UINT32 = (0, 2**32 - 1)
# google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
TIMESTAMP_MIN, TIMESTAMP_MAX = -62_135_596_800, 253_402_300_799
# google.protobuf.Duration's valid range: about +-10,000 years.
DURATION_MAX = 315_576_000_000

# Plausible id prefixes, by field name and by the message whose ``id`` it is.
PREFIX_BY_FIELD = {
    "account_id": "acct",
    "shortfall_account_id": "acct",
    "transfer_id": "tr",
    "transfer_ids": "tr",
    "pending_transfer_id": "tr",
    "reversed_transfer_id": "tr",
    "customer_id": "cus",
    "payment_id": "pay",
    "refund_id": "pay",
    "run_id": "rec",
    "client_id": "cli",
}
PREFIX_OF_ID = {
    "astra.ledger.v1.Account": "acct",
    "astra.ledger.v1.TransferSpec": "tr",
    "astra.identity.v1.Customer": "cus",
    "astra.identity.v1.Client": "cli",
}
# The fields that name what a request creates (renewed before a created request is mutated).
OWN_IDS = {"id", "request_id", "payment_id", "refund_id", "run_id", "transfer_id"}
REQUEST_ID_PREFIX = {"SubmitKyc": "kyc", "ReviewKyc": "kyc", "RotateSigningKey": "rot"}

HOSTILE_TEXT = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x01\x02\x1b[31m\x1f\x7f",
    "\u0085\u009f",
    "line\nbreak\r\n\t",
    "é",
    "名前",
    "😀" * 3,
    "\u202eevil\u202c",
    "\ufeff",
    "\uffff\ufffe",
    "' OR '1'='1' --",
    "%_\\",
    "x" * 300,
    "y" * 70_000,
)
# Fragments spliced into otherwise plausible text.
SPLICED = ("\x00", "\x00", "\x07", "\x1b", "\x7f", "\u0085", "\n", "é", "😀", "\u202e", "\ufeff")
TOKEN_AFTERS: tuple[object, ...] = (
    "",
    "abc",
    "²",
    "١٢٣",
    "99999999999999999999999",
    "9223372036854775808",
    "-1",
    "1e5",
    " 7",
    "\x00",
    "acct_\x00",
    "x" * 5000,
    7,
    -1,
    2**70,
    1.5,
    None,
    True,
    ["acct_a"],
    {"a": "b"},
)
DATES = (
    "2024-01-01",
    "2024-02-29",
    "2023-02-29",
    "0001-01-01",
    "9999-12-31",
    "2999-01-01",
    "20240101",
    "2024-W01-1",
    "2024-001",
    "2024-1-1",
    "2024-01-01T00:00:00",
    "2024-01-01 ",
    "\uff12\uff10\uff12\uff14-01-01",  # full-width digits
    "+2024-01-01",
)


def _characters() -> st.SearchStrategy[str]:
    return st.characters(exclude_categories=["Cs"])


def free_text() -> st.SearchStrategy[str]:
    """Any text protobuf can carry (valid UTF-8: no lone surrogates)."""
    return st.text(_characters(), max_size=40)


def hostile_text() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(HOSTILE_TEXT), free_text())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def garbage_page_tokens() -> st.SearchStrategy[str]:
    """Tokens no service issued: broken base64, JSON of every shape, deep nesting, non-ASCII."""
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | free_text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(free_text(), inner, max_size=3),
        max_leaves=8,
    )
    shaped = st.builds(
        lambda a, f: _b64(json.dumps({"a": a, "f": f}).encode()),
        json_values,
        st.one_of(free_text(), st.just("0" * 16)),
    )
    return st.one_of(
        hostile_text(),
        st.sampled_from(
            (
                "not-a-token!",
                "====",
                "e30",  # {}
                _b64(b"[" * 100_000),
                _b64(b'{"a":' * 50_000),
                _b64(b"\xff\xfe\x00"),
                _b64(b'"just a string"'),
                _b64(b'{"a": "x", "f": "' + b"\xc3\xa9" + b'"}'),
                "ñandú",
                "eyJhIjoiYSJ9\x00",
            )
        ),
        json_values.map(lambda v: _b64(json.dumps(v).encode())),
        shaped,
        st.binary(max_size=40).map(_b64),
    )


# A hook per method: the filters a list derives from its request, for forging a token
# whose digest matches, so that the token's decoded position is what gets attacked.
FiltersOf = Callable[[Message], Mapping[str, object] | None]


@dataclass
class PageTokenForger:
    encode: Callable[[str, Mapping[str, object]], str]
    filters_by_method: Mapping[str, FiltersOf]

    def forge(self, method: str, request: Message, after: object) -> str | None:
        filters_of = self.filters_by_method.get(method)
        filters = filters_of(request) if filters_of is not None else None
        if filters is None:
            return None
        issued = self.encode("x", filters)
        padded = issued + "=" * (-len(issued) % 4)
        digest = json.loads(base64.urlsafe_b64decode(padded))["f"]
        return _b64(json.dumps({"a": after, "f": digest}).encode())


@dataclass
class Pools:
    """Values worth reusing: ids that exist, tokens a service really issued, scopes."""

    ids: dict[str, list[str]] = field(default_factory=dict)
    page_tokens: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    # Requests that were answered OK, by method name: the bases that mutations start from.
    corpus: dict[str, list[Message]] = field(default_factory=dict)

    def frozen(self) -> Pools:
        """A copy as the pools are now: a strategy must draw the same way on every example."""
        return Pools(
            {k: list(v) for k, v in self.ids.items()},
            list(self.page_tokens),
            list(self.scopes),
            list(self.secrets),
            {k: list(v) for k, v in self.corpus.items()},
        )


def _int_strategy(bounds: tuple[int, int], name: str, hostile: bool) -> st.SearchStrategy[int]:
    low, high = bounds
    if hostile:
        edges = sorted({low, high, max(low, -1), high // 2 + 1, min(high, 2**53 + 1)})
        return st.one_of(st.sampled_from(edges), st.integers(low, high))
    if name == "amount":
        return st.one_of(st.just(100), st.sampled_from((1, 2500)), st.integers(1, 10_000))
    return st.integers(max(low, 0), min(high, 5))


_INT_BOUNDS = {
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_SINT64: INT64,
    FieldDescriptor.TYPE_SFIXED64: INT64,
    FieldDescriptor.TYPE_INT32: INT32,
    FieldDescriptor.TYPE_SINT32: INT32,
    FieldDescriptor.TYPE_SFIXED32: INT32,
    FieldDescriptor.TYPE_UINT64: UINT64,
    FieldDescriptor.TYPE_FIXED64: UINT64,
    FieldDescriptor.TYPE_UINT32: UINT32,
    FieldDescriptor.TYPE_FIXED32: UINT32,
}
# Per request, how hostile it is: None for exactly one hostile value (at a drawn place:
# the request gets past every other check and reaches the code behind), else the share
# of values (in percent) drawn hostile: none (the request may well succeed), a few, all.
HOSTILITY = (None, None, None, 0, 15, 100)


@dataclass
class _Draw:
    """One request being drawn: the draw function and its hostility."""

    draw: st.DrawFn
    method: str
    percent: int | None
    # With ``percent`` None: the decision, counted from 0, that is hostile.
    only: int = 0
    decisions: int = 0

    def hostile(self) -> bool:
        if self.percent is None:
            self.decisions += 1
            return self.decisions - 1 == self.only
        return self.percent > 0 and self.draw(st.integers(0, 99)) < self.percent


@dataclass
class RequestStrategies:
    """Strategies for the request messages of one service's methods."""

    pools: Pools
    forger: PageTokenForger | None = None
    max_depth: int = 6

    def request(self, method: str, descriptor: Descriptor) -> st.SearchStrategy[Message]:
        """Requests drawn field by field from the descriptor."""
        frozen = RequestStrategies(self.pools.frozen(), self.forger, self.max_depth)

        @st.composite
        def build(draw: st.DrawFn) -> Message:
            message = message_factory.GetMessageClass(descriptor)()
            percent = draw(st.sampled_from(HOSTILITY))
            only = draw(st.integers(0, 7)) if percent is None else 0
            frozen._fill(_Draw(draw, method, percent, only), message, 0)
            if "page_token" in descriptor.fields_by_name:
                frozen._page_token(draw, message, method)
            return message

        return build()

    def mutation(self, method: str) -> st.SearchStrategy[Message] | None:
        """A request that was answered OK with one value made hostile (None: no such request).

        Everything else in it is known to pass, so the one bad value is what the service
        meets. Half of the time the request's own ids are made new first, so that a
        create is not answered by the replay of the one it copies.
        """
        bases = list(self.pools.corpus.get(method, ()))
        if not bases or not bases[0].DESCRIPTOR.fields:
            return None
        frozen = RequestStrategies(self.pools.frozen(), self.forger, self.max_depth)

        @st.composite
        def build(draw: st.DrawFn) -> Message:
            message = type(bases[0])()
            message.CopyFrom(draw(st.sampled_from(bases)))
            if draw(st.booleans()):
                frozen._renew_ids(draw, message, method)
            # Mostly a value the base request sets (what the service reads), now and then any.
            slots = list(_slots(message, set_only=draw(st.integers(0, 3)) > 0))
            slots = slots or list(_slots(message, set_only=False))
            parent, fd = slots[draw(st.integers(0, len(slots) - 1))]
            frozen._set(_Draw(draw, method, 100), parent, fd, 0, replace=True)
            return message

        return build()

    def _renew_ids(self, draw: st.DrawFn, message: Message, method: str) -> None:
        for fd, value in message.ListFields():
            if fd.message_type is not None:
                children = value if fd.is_repeated else [value]
                for child in children:
                    if not fd.message_type.GetOptions().map_entry:
                        self._renew_ids(draw, child, method)
            elif fd.name in OWN_IDS and not fd.is_repeated:
                prefix = self._prefix(fd, message.DESCRIPTOR, method)
                if prefix is not None:
                    setattr(message, fd.name, draw(self._fresh_id(prefix)))

    # --- messages -----------------------------------------------------------------

    def _fill(self, d: _Draw, message: Message, depth: int) -> None:
        descriptor = message.DESCRIPTOR
        if descriptor.full_name == "google.protobuf.Timestamp":
            self._time(d, message, TIMESTAMP_MIN, TIMESTAMP_MAX, (1_600_000_000, 2_000_000_000))
            return
        if descriptor.full_name == "google.protobuf.Duration":
            self._time(d, message, -DURATION_MAX, DURATION_MAX, (1, 86_400))
            return
        chosen_oneof = {
            oneof.name: d.draw(
                st.sampled_from([None, *oneof.fields] if d.percent else [*oneof.fields])
            )
            for oneof in descriptor.oneofs
        }
        for fd in descriptor.fields:
            oneof = fd.containing_oneof
            if oneof is not None and chosen_oneof[oneof.name] is not fd:
                continue
            # Most fields set, some left at their defaults (a missing field is input too).
            if oneof is None and d.percent is not None and not d.draw(st.integers(0, 5)):
                continue
            self._set(d, message, fd, depth)

    def _set(
        self, d: _Draw, message: Message, fd: Field, depth: int, *, replace: bool = False
    ) -> None:
        if replace:
            message.ClearField(fd.name)
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            self._map(d, getattr(message, fd.name))
            return
        if fd.is_repeated:
            count, drawn = self._count(d, depth)
            target = getattr(message, fd.name)
            for _ in range(drawn):
                if fd.message_type is not None:
                    if depth < self.max_depth:
                        self._fill(d, target.add(), depth + 1)
                else:
                    target.append(self._scalar(d, fd, message.DESCRIPTOR))
            # An oversized list repeats its drawn items: cheap to draw, as long on the wire.
            while 0 < len(target) < count:
                if fd.message_type is not None:
                    target.add().CopyFrom(target[len(target) % drawn])
                else:
                    target.append(target[len(target) % drawn])
            return
        if fd.message_type is not None:
            if depth < self.max_depth:
                self._fill(d, getattr(message, fd.name), depth + 1)
            return
        setattr(message, fd.name, self._scalar(d, fd, message.DESCRIPTOR))

    def _count(self, d: _Draw, depth: int) -> tuple[int, int]:
        """How many items the list gets, and how many of them are drawn (the rest repeat)."""
        if d.hostile() and depth < 2:
            # More than any list of ours allows, or none at all.
            count = d.draw(st.sampled_from((0, 65, 101, 1001, 8190)))
            return count, min(count, d.draw(st.integers(1, 2)))
        count = d.draw(st.integers(1, 3))
        return count, count

    def _map(self, d: _Draw, target: Any) -> None:
        size = 17 if d.hostile() else d.draw(st.integers(0, 2))
        for _ in range(size):
            key = d.draw(hostile_text()) if d.hostile() else d.draw(st.sampled_from(("note", "k")))
            target[key] = d.draw(hostile_text()) if d.hostile() else "v"

    def _time(
        self, d: _Draw, message: Any, low: int, high: int, plausible: tuple[int, int]
    ) -> None:
        if d.hostile():
            message.seconds = d.draw(
                st.one_of(
                    st.sampled_from((low - 1, high + 1, -(2**63), 2**63 - 1, -1, 0, low, high)),
                    st.integers(*INT64),
                )
            )
        else:
            message.seconds = d.draw(st.integers(*plausible))
        if d.hostile():
            message.nanos = d.draw(
                st.one_of(
                    st.sampled_from((1_000_000_000, -1, -999_999_999, *INT32)),
                    st.integers(*INT32),
                )
            )
        else:
            message.nanos = d.draw(st.integers(0, 999_999_999))

    # --- scalars ------------------------------------------------------------------

    def _scalar(self, d: _Draw, fd: Field, owner: Descriptor) -> object:
        hostile = d.hostile()
        if fd.type == FieldDescriptor.TYPE_STRING:
            plausible = self._plausible(fd, owner, d.method)
            if not hostile:
                return d.draw(plausible)
            how = d.draw(st.integers(0, 2))
            if how == 0:
                return d.draw(hostile_text())
            if how == 1:
                return d.draw(self._hostile_like(fd, owner, d.method))
            # A plausible value with one bad fragment spliced in: it passes every other check.
            value = d.draw(plausible)
            at = d.draw(st.integers(0, len(value)))
            # NUL half of the time: the one character no PostgreSQL text can hold.
            fragment = d.draw(st.one_of(st.just("\x00"), st.sampled_from(SPLICED)))
            return value[:at] + fragment + value[at:]
        if fd.type == FieldDescriptor.TYPE_BOOL:
            return d.draw(st.booleans())
        if fd.type == FieldDescriptor.TYPE_ENUM:
            assert fd.enum_type is not None
            defined = [v.number for v in fd.enum_type.values]
            if hostile:
                return d.draw(st.sampled_from((0, -1, max(defined) + 1, 99, *INT32)))
            return d.draw(st.sampled_from([n for n in defined if n] or defined))
        if fd.type == FieldDescriptor.TYPE_BYTES:
            return d.draw(st.binary(max_size=64))
        if fd.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return d.draw(st.floats(allow_nan=hostile, allow_infinity=hostile, width=32))
        return d.draw(_int_strategy(_INT_BOUNDS[fd.type], fd.name, hostile))

    def _prefix(self, fd: Field, owner: Descriptor, method: str) -> str | None:
        if fd.name == "id":
            return PREFIX_OF_ID.get(owner.full_name)
        if fd.name == "request_id":
            return REQUEST_ID_PREFIX.get(method, "req")
        return PREFIX_BY_FIELD.get(fd.name)

    def _plausible(self, fd: Field, owner: Descriptor, method: str) -> st.SearchStrategy[str]:
        name = fd.name
        prefix = self._prefix(fd, owner, method)
        if prefix is not None:
            return self._id(prefix)
        if name == "currency":
            return st.sampled_from(("EUR", "EUR", "USD", "JPY"))
        if name == "statement_date":
            return st.dates().map(lambda d: d.isoformat())
        if name == "page_token":
            return st.sampled_from(["", *self.pools.page_tokens])
        if name in ("scopes", "allowed_scopes"):
            return st.sampled_from(self.pools.scopes or ["ledger.accounts.read"])
        if name == "client_secret":
            return st.sampled_from(self.pools.secrets or ["secret"])
        if name == "email":
            return st.sampled_from(("ada@example.com", "a@b.co"))
        if name == "account_number":
            return st.sampled_from(("DE89370400440532013000", "12345678"))
        return st.sampled_from(("Ada Lovelace", "fuzz", "note"))

    def _hostile_like(self, fd: Field, owner: Descriptor, method: str) -> st.SearchStrategy[str]:
        """A hostile value shaped like the field's plausible ones, to get past a first glance."""
        name = fd.name
        prefix = self._prefix(fd, owner, method)
        if prefix is not None:
            return st.sampled_from(
                (
                    f"{prefix}_" + "a" * 61,
                    f"{prefix}_\x00",
                    f"{prefix}_é",
                    f"exp_{prefix}_x",
                    f"{prefix}_",
                    f"{prefix}_a\nb",
                )
            )
        if name == "currency":
            return st.sampled_from(("XXX", "eur", "EU\x00", "€", "EURO"))
        if name == "statement_date":
            return st.sampled_from(DATES)
        if name == "page_token":
            return garbage_page_tokens()
        if name in ("scopes", "allowed_scopes"):
            return st.sampled_from(("no.such.scope", "ledger.accounts", "identity.everything"))
        if name == "email":
            return st.sampled_from(("x@\x00.com", "é@é.fr", "a@b.c\x01"))
        return hostile_text()

    def _id(self, prefix: str) -> st.SearchStrategy[str]:
        known = self.pools.ids.get(prefix, [])
        fresh = self._fresh_id(prefix)
        return st.one_of(st.sampled_from(known), fresh) if known else fresh

    def _fresh_id(self, prefix: str) -> st.SearchStrategy[str]:
        return st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12).map(
            lambda body: f"{prefix}_fz{body}"
        )

    def _page_token(self, draw: st.DrawFn, message: Any, method: str) -> None:
        if self.forger is None or draw(st.integers(0, 2)):
            return
        after = draw(st.one_of(st.sampled_from(TOKEN_AFTERS), free_text()))
        forged = self.forger.forge(method, message, after)
        if forged is not None:
            message.page_token = forged


def _slots(message: Message, *, set_only: bool) -> Iterator[tuple[Message, Field]]:
    """The fields a mutation may replace: those of the message and of its set parts (only
    the ones set, with ``set_only``)."""
    present = {fd.name for fd, _ in message.ListFields()}
    for fd in message.DESCRIPTOR.fields:
        if not set_only or fd.name in present:
            yield message, fd
        if fd.message_type is None or fd.message_type.GetOptions().map_entry:
            continue
        if fd.message_type.full_name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
            continue
        if fd.is_repeated:
            for child in getattr(message, fd.name):
                yield from _slots(child, set_only=set_only)
        elif message.HasField(fd.name):
            yield from _slots(getattr(message, fd.name), set_only=set_only)


# --- bodies that are not the request message -------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


UNDECODABLE = (
    b"\xff",
    b"\x0a\x01\xff",  # field 1 as length-delimited: invalid UTF-8 (or a broken message)
    b"\x12\x02\xc3\x28",  # field 2: invalid UTF-8
    b"\x1a\x03\xe2\x82",  # field 3: truncated
    b"\x08\xff\xff\xff",  # truncated varint
    b"\x08" + b"\xff" * 11,  # varint longer than ten bytes
    b"\x0a" + _varint(2**31) + b"x",  # length beyond the body
    b"\x0b" * 200 + b"\x0c" * 200,  # groups nested 200 deep
    b"\x0a\x02\x0b\x0b",  # an open group inside field 1
    b"\x0f",  # wire type 7 does not exist
    b"\x00",  # field number 0 does not exist
)


def undecodable_bodies() -> st.SearchStrategy[bytes]:
    """Bodies that must not decode as any of our requests, and random ones that may."""
    nested = st.integers(101, 3000).map(lambda n: b"\x0b" * n + b"\x0c" * n)
    return st.one_of(st.sampled_from(UNDECODABLE), nested, st.binary(min_size=1, max_size=64))


def method_paths(services: Sequence[Any]) -> list[tuple[str, Any]]:
    """``(/pkg.Service/Method, method descriptor)`` of every method of ``services``."""
    return [
        (f"/{service.full_name}/{method.name}", method)
        for service in services
        for method in service.methods
    ]
