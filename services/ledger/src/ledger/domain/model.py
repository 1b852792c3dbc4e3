"""The ledger's domain model: accounts, legs, transfer operations and their records.

Pure Python. Accounts here are snapshots the adapter loaded (locked) for one
business transaction; the batch decision (``ledger.domain.batch``) changes them
in memory and the adapter writes the outcome. Values made thousands of times
per batch (Balance, Entry, ItemResult) are slotted dataclasses, not frozen
ones: a frozen dataclass is several times slower to construct, and nothing
mutates them.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from chassis.kernel.audit import Requester
from chassis.kernel.money import MAX_AMOUNT

from ledger.domain.events import AccountOpened


class NormalSide(enum.IntEnum):
    DEBIT = 1
    CREDIT = 2


class Direction(enum.IntEnum):
    DEBIT = 1
    CREDIT = 2

    @property
    def opposite(self) -> Direction:
        return Direction.CREDIT if self is Direction.DEBIT else Direction.DEBIT


class TransferKind(enum.IntEnum):
    MOVEMENT = 1
    PENDING = 2
    POST_PENDING = 3
    VOID_PENDING = 4
    EXPIRE_PENDING = 5
    REVERSAL = 6


class TransferStatus(enum.IntEnum):
    PENDING = 1
    POSTED = 2
    VOIDED = 3
    EXPIRED = 4


class EntryType(enum.IntEnum):
    POSTED = 1
    HOLD = 2
    RELEASE = 3


# Kinds that resolve a pending transfer, and the status each leaves it in.
RESOLUTION_STATUS = {
    TransferKind.POST_PENDING: TransferStatus.POSTED,
    TransferKind.VOID_PENDING: TransferStatus.VOIDED,
    TransferKind.EXPIRE_PENDING: TransferStatus.EXPIRED,
}
# Kinds whose legs moved posted money and so can be reversed.
REVERSIBLE_KINDS = frozenset({TransferKind.MOVEMENT, TransferKind.POST_PENDING})

# The journal's time resolution (PostgreSQL timestamps, Python datetimes).
STAMP_STEP = timedelta(microseconds=1)

MAX_LEGS = 64
MAX_BATCH = 8189
# Transfer ids one LookupTransfers call may ask for.
MAX_LOOKUP = 1000
MAX_PENDING_TIMEOUT = timedelta(days=366)
MAX_METADATA_ENTRIES = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 256
MAX_EXTERNAL_REFERENCE = 128

Metadata = tuple[tuple[str, str], ...]


def metadata_of(mapping: dict[str, str] | None) -> Metadata:
    return tuple(sorted((mapping or {}).items()))


def _fingerprint(*parts: object) -> str:
    """A stable digest of a request's content, for idempotent replays (AIP-155)."""
    return hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class Leg:
    account_id: str
    direction: Direction | None
    amount: int
    currency: str

    def key(self) -> tuple[str, str, int, str]:
        return (
            self.account_id,
            self.direction.name if self.direction else "",
            self.amount,
            self.currency,
        )


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """What a client asks for when it opens an account."""

    id: str
    currency: str
    normal_side: NormalSide | None
    debits_must_not_exceed_credits: bool = False
    credits_must_not_exceed_debits: bool = False
    metadata: Metadata = ()
    external_reference: str = ""
    customer_id: str = ""

    def fingerprint(self) -> str:
        return _fingerprint(
            self.id,
            self.currency,
            int(self.normal_side or 0),
            self.debits_must_not_exceed_credits,
            self.credits_must_not_exceed_debits,
            self.metadata,
            self.external_reference,
            self.customer_id,
        )


@dataclass(slots=True)
class Balance:
    account_id: str
    currency: str
    normal_side: NormalSide
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0
    as_of: datetime | None = None
    # The sequence of the account's latest entry: of two balances, the higher is newer.
    version: int = 0

    @property
    def posted(self) -> int:
        if self.normal_side is NormalSide.DEBIT:
            return self.debits_posted - self.credits_posted
        return self.credits_posted - self.debits_posted

    @property
    def pending(self) -> int:
        if self.normal_side is NormalSide.DEBIT:
            return self.debits_pending - self.credits_pending
        return self.credits_pending - self.debits_pending

    @property
    def available(self) -> int:
        """Posted, less the pending amounts that would reduce it (pending increases don't count)."""
        if self.normal_side is NormalSide.DEBIT:
            return self.posted - self.credits_pending
        return self.posted - self.debits_pending


@dataclass(slots=True)
class Account:
    """An account's state as loaded for one transaction; balances change in memory."""

    id: str
    currency: str
    normal_side: NormalSide
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0
    entry_sequence: int = 0
    last_entry_at: datetime | None = None
    # No entry will be stamped at or before this instant (an as-of read sealed it).
    sealed_through: datetime | None = None
    created_at: datetime | None = None
    metadata: Metadata = ()
    external_reference: str = ""
    customer_id: str = ""
    fingerprint: str = ""
    # Who opened it (None for accounts opened before the ledger recorded it).
    created_by: Requester | None = None
    # Recorded and not yet handed to the unit of work (AccountOpened).
    events: list[AccountOpened] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def open(cls, spec: AccountSpec, now: datetime, requester: Requester | None = None) -> Account:
        assert spec.normal_side is not None
        account = cls(
            id=spec.id,
            currency=spec.currency,
            normal_side=spec.normal_side,
            debits_must_not_exceed_credits=spec.debits_must_not_exceed_credits,
            credits_must_not_exceed_debits=spec.credits_must_not_exceed_debits,
            created_at=now,
            metadata=spec.metadata,
            external_reference=spec.external_reference,
            customer_id=spec.customer_id,
            fingerprint=spec.fingerprint(),
            created_by=requester,
        )
        account.events.append(AccountOpened(account, now))
        return account

    def take_events(self) -> list[AccountOpened]:
        events, self.events = self.events, []
        return events

    def balance_after(self, entry: Entry, as_of: datetime) -> Balance:
        """This account's balance as ``entry`` left it (every entry keeps the sums after it)."""
        return Balance(
            self.id,
            self.currency,
            self.normal_side,
            entry.debits_posted,
            entry.credits_posted,
            entry.debits_pending,
            entry.credits_pending,
            as_of,
            entry.sequence,
        )

    def balance_before(self, entry: Entry, as_of: datetime | None = None) -> Balance:
        """This account's balance just before ``entry``: its sums after, less its own effect.

        Derived, not stored: an entry changes exactly one of the four sums by its amount
        (``Entry.effect``), so the previous state follows from the stored one exactly, and
        the hot entries table stays as narrow as it is. Its version is the one before.
        """
        dp, cp, dq, cq = entry.effect()
        return Balance(
            self.id,
            self.currency,
            self.normal_side,
            entry.debits_posted - dp,
            entry.credits_posted - cp,
            entry.debits_pending - dq,
            entry.credits_pending - cq,
            as_of,
            entry.sequence - 1,
        )

    def balance(self, as_of: datetime | None = None) -> Balance:
        return Balance(
            self.id,
            self.currency,
            self.normal_side,
            self.debits_posted,
            self.credits_posted,
            self.debits_pending,
            self.credits_pending,
            as_of,
            self.entry_sequence,
        )

    def history_final_through(self, instant: datetime) -> bool:
        """True when no entry stamped at or before ``instant`` can still appear.

        Batches stamp an account's entries under its lock, never before its last
        entry and always after its seal (``next_stamp``): so what this account's
        committed row says bounds every entry still to come.
        """
        if self.last_entry_at is not None and instant < self.last_entry_at:
            return True
        return self.sealed_through is not None and instant <= self.sealed_through

    def next_stamp(self, now: datetime) -> datetime:
        """The earliest instant, from ``now`` on, at which a batch may stamp this account's
        entries: its history never runs backwards, and what was sealed stays final."""
        if self.last_entry_at is not None and self.last_entry_at > now:
            now = self.last_entry_at
        if self.sealed_through is not None and self.sealed_through >= now:
            now = self.sealed_through + STAMP_STEP
        return now

    def sums(self) -> tuple[int, int, int, int, int]:
        return (
            self.debits_posted,
            self.credits_posted,
            self.debits_pending,
            self.credits_pending,
            self.entry_sequence,
        )

    def restore(self, sums: tuple[int, int, int, int, int]) -> None:
        (
            self.debits_posted,
            self.credits_posted,
            self.debits_pending,
            self.credits_pending,
            self.entry_sequence,
        ) = sums

    def limit_room(self, direction: Direction) -> int | None:
        """How much more the limit flags let this account take in ``direction`` now.

        Negative when its sums are already past the limit; None when no flag limits
        that direction. Pending amounts count against it, as against availability.
        """
        if direction is Direction.DEBIT and self.debits_must_not_exceed_credits:
            return self.credits_posted - self.debits_posted - self.debits_pending
        if direction is Direction.CREDIT and self.credits_must_not_exceed_debits:
            return self.debits_posted - self.credits_posted - self.credits_pending
        return None

    def limit_breach(self) -> str | None:
        """The reason this account's balance-limit flags refuse its current sums, if any.

        Called for every account of every transfer: the arithmetic of
        ``limit_room`` and ``overflows`` inline, the exact range check only when
        a sum is near the top.
        """
        dp, cp, dq, cq = (
            self.debits_posted,
            self.credits_posted,
            self.debits_pending,
            self.credits_pending,
        )
        if self.debits_must_not_exceed_credits and cp - dp - dq < 0:
            return "INSUFFICIENT_FUNDS"
        if self.credits_must_not_exceed_debits and dp - cp - cq < 0:
            return "CREDIT_LIMIT_EXCEEDED"
        if (dp + dq > MAX_AMOUNT or cp + cq > MAX_AMOUNT) and self.overflows():
            return "BALANCE_OVERFLOW"
        return None

    def overflows(self) -> bool:
        """True when a sum, or a figure derived from them, leaves the signed 64-bit range.

        Each sum is at most MAX_AMOUNT and never negative, so posted and pending
        always fit; only available (posted less the opposite side's pending) can
        fall below the range's floor.
        """
        if (
            max(self.debits_posted, self.credits_posted) > MAX_AMOUNT
            or max(self.debits_pending, self.credits_pending) > MAX_AMOUNT
        ):
            return True
        if self.normal_side is NormalSide.DEBIT:
            available = self.debits_posted - self.credits_posted - self.credits_pending
        else:
            available = self.credits_posted - self.debits_posted - self.debits_pending
        return available < -MAX_AMOUNT - 1


# --- operations a client asks for --------------------------------------------


@dataclass(frozen=True, slots=True)
class MovementOp:
    legs: tuple[Leg, ...]


@dataclass(frozen=True, slots=True)
class PendingOp:
    legs: tuple[Leg, ...]
    timeout: timedelta | None = None


@dataclass(frozen=True, slots=True)
class PostPendingOp:
    pending_transfer_id: str
    legs: tuple[Leg, ...] = ()


@dataclass(frozen=True, slots=True)
class VoidPendingOp:
    pending_transfer_id: str


@dataclass(frozen=True, slots=True)
class ExpirePendingOp:
    """Issued by the ledger itself when a hold's timeout has passed."""

    pending_transfer_id: str


@dataclass(frozen=True, slots=True)
class ReversalOp:
    transfer_id: str
    # Takes what a reversing leg's limited account cannot (a receivable); "" for none.
    shortfall_account_id: str = ""


Operation = MovementOp | PendingOp | PostPendingOp | VoidPendingOp | ExpirePendingOp | ReversalOp

OPERATION_KIND: dict[type, TransferKind] = {
    MovementOp: TransferKind.MOVEMENT,
    PendingOp: TransferKind.PENDING,
    PostPendingOp: TransferKind.POST_PENDING,
    VoidPendingOp: TransferKind.VOID_PENDING,
    ExpirePendingOp: TransferKind.EXPIRE_PENDING,
    ReversalOp: TransferKind.REVERSAL,
}


@dataclass(frozen=True, slots=True)
class TransferRequest:
    id: str
    operation: Operation | None
    linked: bool = False
    metadata: Metadata = ()
    # Who asks: recorded with the transfer, not part of what the transfer is (a
    # replay by another caller is the same transfer, answered as first recorded).
    requester: Requester | None = None

    @property
    def kind(self) -> TransferKind:
        assert self.operation is not None
        return OPERATION_KIND[type(self.operation)]

    def fingerprint(self) -> str:
        # `linked` is how the batch is shaped, not what the transfer is: a
        # transfer replayed in another batch shape is the same transfer.
        op = self.operation
        if isinstance(op, MovementOp | PendingOp | PostPendingOp):
            legs = tuple(leg.key() for leg in op.legs)
        else:
            legs = ()
        timeout = op.timeout.total_seconds() if isinstance(op, PendingOp) and op.timeout else None
        target = getattr(op, "pending_transfer_id", None) or getattr(op, "transfer_id", None)
        # Only when given, so that the digests of earlier reversals stay as stored.
        shortfall = (
            (op.shortfall_account_id,)
            if isinstance(op, ReversalOp) and op.shortfall_account_id
            else ()
        )
        return _fingerprint(
            self.id, int(self.kind), legs, timeout, target, self.metadata, *shortfall
        )

    def account_ids(self) -> set[str]:
        """The accounts this request names itself (not those of a transfer it refers to)."""
        op = self.operation
        named = {leg.account_id for leg in getattr(op, "legs", ())}
        if isinstance(op, ReversalOp) and op.shortfall_account_id:
            named.add(op.shortfall_account_id)
        return named

    def referenced_transfer_id(self) -> str | None:
        op = self.operation
        if isinstance(op, PostPendingOp | VoidPendingOp | ExpirePendingOp):
            return op.pending_transfer_id
        if isinstance(op, ReversalOp):
            return op.transfer_id
        return None


# --- what the journal holds ----------------------------------------------------


@dataclass(slots=True)
class TransferRecord:
    """A transfer id the ledger has seen: applied (``ok``) or refused with a reason."""

    id: str
    kind: TransferKind
    fingerprint: str
    ok: bool
    created_at: datetime
    reason: str = ""
    message: str = ""
    legs: tuple[Leg, ...] = ()
    pending_transfer_id: str = ""
    reversed_transfer_id: str = ""
    expires_at: datetime | None = None
    metadata: Metadata = ()
    # Who created it; None for the ledger's own (expiries) and those made before it recorded it.
    created_by: Requester | None = None
    # Derived, for pending and reversible transfers:
    resolved_by: str = ""
    resolution_kind: TransferKind | None = None
    reversed_by: str = ""
    # Set when the record was written by this batch (not loaded).
    new: bool = field(default=False, compare=False)

    @property
    def status(self) -> TransferStatus:
        if self.kind is not TransferKind.PENDING:
            return TransferStatus.POSTED
        if self.resolution_kind is None:
            return TransferStatus.PENDING
        return RESOLUTION_STATUS[self.resolution_kind]


@dataclass(slots=True)
class Entry:
    """One change to one account, with the account's sums after it.

    ``sequence`` is the account's version after the entry: every entry adds one, so
    an account's entries are numbered 1, 2, 3, ... and ``Balance.version`` of the
    balance an entry leaves is its sequence.
    """

    account_id: str
    sequence: int
    transfer_id: str
    kind: TransferKind
    entry_type: EntryType
    direction: Direction
    amount: int
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    created_at: datetime

    def effect(self) -> tuple[int, int, int, int]:
        """What the entry added to (debits posted, credits posted, debits pending, credits
        pending): a posting adds to a posted sum, a hold to a pending one, a release takes
        its amount off a pending one."""
        debit = self.direction is Direction.DEBIT
        if self.entry_type is EntryType.POSTED:
            return (self.amount, 0, 0, 0) if debit else (0, self.amount, 0, 0)
        amount = -self.amount if self.entry_type is EntryType.RELEASE else self.amount
        return (0, 0, amount, 0) if debit else (0, 0, 0, amount)


@dataclass(slots=True)
class ItemResult:
    id: str
    ok: bool
    reason: str = ""
    message: str = ""
    replayed: bool = False
    kind: TransferKind | None = None
    status: TransferStatus | None = None
    created_at: datetime | None = None
