"""Deciding a whole batch of transfer operations in memory.

The adapter loads every account the batch touches (locked, in id order) and
every transfer record it refers to; ``decide_batch`` is then a pure function
from those snapshots to the outcome: one result per item, the new journal
records (applied and refused), the entries with the balances after them, the
accounts' new sums and the events. The adapter writes all of it with a few
set-based statements and one commit.

Semantics, after TigerBeetle:
- Items are applied in order; each sees the effect of the ones before it.
- A run of items with ``linked`` set, closed by the first item without it, is a
  chain: if any member fails, none of the chain's effects remain; the failing
  member reports its own reason and the others LINKED_TRANSFER_FAILED.
- An id seen before replays its original result (``replayed``), success or
  failure; with different content it is refused with IDEMPOTENCY_KEY_REUSED.
  A replayed success inside a failing chain stays a success: it was committed
  earlier and is not undone.
- Refusals decided here are recorded, so a replay returns the same refusal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from chassis.kernel.errors import RetryTransaction

from ledger.domain.events import TransferApplied
from ledger.domain.model import (
    REVERSIBLE_KINDS,
    Account,
    Direction,
    Entry,
    EntryType,
    ExpirePendingOp,
    ItemResult,
    Leg,
    MovementOp,
    PendingOp,
    PostPendingOp,
    ReversalOp,
    TransferKind,
    TransferRecord,
    TransferRequest,
    VoidPendingOp,
)

LINKED_TRANSFER_FAILED = "LINKED_TRANSFER_FAILED"
IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"

_ALREADY = {
    TransferKind.POST_PENDING: ("ALREADY_POSTED", "was already posted"),
    TransferKind.VOID_PENDING: ("ALREADY_VOIDED", "was already voided"),
    TransferKind.EXPIRE_PENDING: ("PENDING_TRANSFER_EXPIRED", "expired and was voided"),
}


class _RefusalError(Exception):
    """Internal: an item cannot be applied; carries the stable reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class BatchOutcome:
    results: list[ItemResult] = field(default_factory=list)
    # New journal records, applied and refused, in item order.
    records: list[TransferRecord] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    # Accounts whose sums changed, with their final state.
    accounts: dict[str, Account] = field(default_factory=dict)
    opened_holds: list[TransferRecord] = field(default_factory=list)
    closed_holds: list[str] = field(default_factory=list)
    events: list[TransferApplied] = field(default_factory=list)

    def take_events(self) -> list[TransferApplied]:
        """The transfers' events, for the unit of work that writes this outcome."""
        events, self.events = self.events, []
        return events


class _Savepoint:
    """Everything needed to undo a chain: account sums, list lengths, record marks."""

    def __init__(self, outcome: BatchOutcome, known: dict[str, TransferRecord]) -> None:
        self.sums: dict[str, tuple[int, int, int, int, int]] = {}
        self.lengths = (
            len(outcome.records),
            len(outcome.entries),
            len(outcome.opened_holds),
            len(outcome.closed_holds),
            len(outcome.events),
        )
        self.undo: list[Callable[[], None]] = []
        self.touched: list[Account] = []
        self._known = known

    def touch(self, account: Account) -> None:
        if account.id not in self.sums:
            self.sums[account.id] = account.sums()
            self.touched.append(account)

    def rollback(self, outcome: BatchOutcome) -> None:
        for account in self.touched:
            account.restore(self.sums[account.id])
        records, entries, opened, closed, events = self.lengths
        for record in outcome.records[records:]:
            self._known.pop(record.id, None)
        del outcome.records[records:]
        del outcome.entries[entries:]
        del outcome.opened_holds[opened:]
        del outcome.closed_holds[closed:]
        del outcome.events[events:]
        for undo in reversed(self.undo):
            undo()


class _Decider:
    def __init__(
        self,
        accounts: Mapping[str, Account],
        known: dict[str, TransferRecord],
        now: datetime,
    ) -> None:
        self.accounts = accounts
        self.known = known
        self.now = now
        self.out = BatchOutcome()
        self.sp: _Savepoint | None = None

    # --- chains -------------------------------------------------------------

    def run(self, requests: Sequence[TransferRequest]) -> BatchOutcome:
        results: list[ItemResult | None] = [None] * len(requests)
        start = 0
        n = len(requests)
        while start < n:
            end = start
            while end < n - 1 and requests[end].linked:
                end += 1
            self._chain(requests, start, end, results)
            start = end + 1
        self.out.results = [r for r in results if r is not None]
        assert len(self.out.results) == n
        for account in self._changed_accounts():
            self.out.accounts[account.id] = account
        return self.out

    def _changed_accounts(self) -> list[Account]:
        seen: dict[str, Account] = {}
        for entry in self.out.entries:
            if entry.account_id not in seen:
                seen[entry.account_id] = self.accounts[entry.account_id]
        return list(seen.values())

    def _chain(
        self,
        requests: Sequence[TransferRequest],
        start: int,
        end: int,
        results: list[ItemResult | None],
    ) -> None:
        self.sp = _Savepoint(self.out, self.known)
        failed_at: int | None = None
        for i in range(start, end + 1):
            result = self._item(requests[i])
            results[i] = result
            if not result.ok:
                failed_at = i
                break
        if failed_at is None:
            self.sp = None
            return
        # The chain fails as one (an unlinked item is a chain of one): undo its
        # effects, then settle every member against what existed before it.
        self.sp.rollback(self.out)
        failure = results[failed_at]
        assert failure is not None
        for i in range(start, end + 1):
            request = requests[i]
            existing = self.known.get(request.id)
            if existing is not None:
                results[i] = self._replay(request, existing)
            elif i == failed_at:
                if failure.reason == IDEMPOTENCY_KEY_REUSED:
                    continue  # the id belongs to other content: record nothing under it
                results[i] = self._refuse(request, failure.reason, failure.message)
            else:
                results[i] = self._refuse(
                    request,
                    LINKED_TRANSFER_FAILED,
                    f"linked transfer {requests[failed_at].id} failed: {failure.reason}",
                )
        self.sp = None

    # --- one item -------------------------------------------------------------

    def _item(self, request: TransferRequest) -> ItemResult:
        existing = self.known.get(request.id)
        if existing is not None:
            return self._replay(request, existing)
        try:
            record = self._apply(request)
        except _RefusalError as refusal:
            return ItemResult(request.id, False, refusal.reason, refusal.message)
        return ItemResult(
            request.id,
            True,
            kind=record.kind,
            status=record.status,
            created_at=record.created_at,
        )

    def _replay(self, request: TransferRequest, existing: TransferRecord) -> ItemResult:
        if existing.fingerprint != request.fingerprint():
            return ItemResult(
                request.id,
                False,
                IDEMPOTENCY_KEY_REUSED,
                f"transfer {request.id} already exists with different content",
            )
        return ItemResult(
            request.id,
            existing.ok,
            existing.reason,
            existing.message,
            replayed=True,
            kind=existing.kind if existing.ok else None,
            status=existing.status if existing.ok else None,
            created_at=existing.created_at,
        )

    def _refuse(self, request: TransferRequest, reason: str, message: str) -> ItemResult:
        if isinstance(request.operation, ExpirePendingOp):
            # The ledger's own expiry is no client's idempotency key: a refused
            # attempt (not due yet, resolved meanwhile) leaves no record to replay.
            return ItemResult(request.id, False, reason, message, created_at=self.now)
        record = TransferRecord(
            id=request.id,
            kind=request.kind,
            fingerprint=request.fingerprint(),
            ok=False,
            created_at=self.now,
            reason=reason,
            message=message,
            metadata=request.metadata,
            created_by=request.requester,
            new=True,
        )
        self.out.records.append(record)
        self.known[record.id] = record
        return ItemResult(request.id, False, reason, message, created_at=self.now)

    def _apply(self, request: TransferRequest) -> TransferRecord:
        op = request.operation
        if isinstance(op, MovementOp):
            return self._move(request, op.legs, TransferKind.MOVEMENT)
        if isinstance(op, PendingOp):
            expires_at = self.now + op.timeout if op.timeout is not None else None
            record = self._move(request, op.legs, TransferKind.PENDING, expires_at)
            self.out.opened_holds.append(record)
            return record
        if isinstance(op, PostPendingOp | VoidPendingOp | ExpirePendingOp):
            return self._resolve(request, op)
        if isinstance(op, ReversalOp):
            return self._reverse(request, op)
        raise _RefusalError("INVALID_OPERATION", "no operation given")

    def _account(self, leg: Leg) -> Account:
        account = self.accounts.get(leg.account_id)
        if account is None:
            raise _RefusalError("ACCOUNT_NOT_FOUND", f"account {leg.account_id} does not exist")
        if account.currency != leg.currency:
            raise _RefusalError(
                "CURRENCY_MISMATCH",
                f"account {account.id} holds {account.currency}, the leg is in {leg.currency}",
            )
        return account

    def _move(
        self,
        request: TransferRequest,
        legs: tuple[Leg, ...],
        kind: TransferKind,
        expires_at: datetime | None = None,
    ) -> TransferRecord:
        targets = [self._account(leg) for leg in legs]
        entry_type = EntryType.HOLD if kind is TransferKind.PENDING else EntryType.POSTED
        self._post_legs(request.id, kind, legs, targets, entry_type)
        return self._record(request, kind, legs, targets, expires_at=expires_at)

    def _post_legs(
        self,
        transfer_id: str,
        kind: TransferKind,
        legs: Sequence[Leg],
        targets: Sequence[Account],
        entry_type: EntryType,
        *,
        shared_accounts: bool = False,
    ) -> None:
        """Apply legs to accounts, refusing if any account's limits would be breached.

        Each leg's entry is made right after its own effect, so that an entry's
        sums are the previous entry's plus its own amount even when one account
        has two legs (a reversal's shortfall account). The limits hold the whole
        transfer, checked once all legs are applied; a refusal undoes the entries
        with the rest (the chain's savepoint). With ``shared_accounts`` (an
        account may have two legs) every entry's sums must be representable,
        not only the last: a debit's entry could leave the range its credit
        would bring back.
        """
        assert self.sp is not None
        for account in targets:
            self.sp.touch(account)
        for leg, account in zip(legs, targets, strict=True):
            _add(account, leg.direction, leg.amount, entry_type)
            if shared_accounts and account.overflows():
                raise _RefusalError("BALANCE_OVERFLOW", _limit_message("BALANCE_OVERFLOW", account))
            self._entry(account, transfer_id, kind, entry_type, leg.direction, leg.amount)
        self._check_limits(targets)

    def _check_limits(self, targets: Sequence[Account]) -> None:
        for account in targets:
            reason = account.limit_breach()
            if reason is not None:
                raise _RefusalError(reason, _limit_message(reason, account))

    def _entry(
        self,
        account: Account,
        transfer_id: str,
        kind: TransferKind,
        entry_type: EntryType,
        direction: Direction | None,
        amount: int,
    ) -> None:
        assert direction is not None
        account.entry_sequence += 1
        self.out.entries.append(
            Entry(
                account.id,
                account.entry_sequence,
                transfer_id,
                kind,
                entry_type,
                direction,
                amount,
                account.debits_posted,
                account.credits_posted,
                account.debits_pending,
                account.credits_pending,
                self.now,
            )
        )

    def _record(
        self,
        request: TransferRequest,
        kind: TransferKind,
        legs: tuple[Leg, ...],
        targets: Sequence[Account],
        *,
        pending_transfer_id: str = "",
        reversed_transfer_id: str = "",
        expires_at: datetime | None = None,
    ) -> TransferRecord:
        record = TransferRecord(
            id=request.id,
            kind=kind,
            fingerprint=request.fingerprint(),
            ok=True,
            created_at=self.now,
            legs=legs,
            pending_transfer_id=pending_transfer_id,
            reversed_transfer_id=reversed_transfer_id,
            expires_at=expires_at,
            metadata=request.metadata,
            created_by=request.requester,
            new=True,
        )
        self.out.records.append(record)
        self.known[record.id] = record
        unique: dict[str, Account] = {a.id: a for a in targets}
        self.out.events.append(
            TransferApplied(
                kind=kind,
                transfer_id=request.id,
                legs=legs,
                # The event's own instant dates these balances.
                balances=tuple(a.balance() for a in unique.values()),
                metadata=request.metadata,
                occurred_at=self.now,
                pending_transfer_id=pending_transfer_id,
                reversed_transfer_id=reversed_transfer_id,
                expires_at=expires_at,
            )
        )
        return record

    def _target(self, transfer_id: str, *, pending: bool) -> TransferRecord:
        record = self.known.get(transfer_id)
        if record is None or not record.ok:
            reason = "PENDING_TRANSFER_NOT_FOUND" if pending else "TRANSFER_NOT_FOUND"
            raise _RefusalError(reason, f"transfer {transfer_id} does not exist")
        missing = {leg.account_id for leg in record.legs} - self.accounts.keys()
        if missing:
            # The accounts of a transfer in the journal exist: they are missing
            # from this snapshot because the transfer became visible after the
            # accounts were locked (it was committing). Deciding now would refuse
            # with a wrong reason, and record it; decide again on a new snapshot.
            raise RetryTransaction(
                f"transfer {transfer_id} names accounts not locked for this batch: "
                f"{', '.join(sorted(missing))}"
            )
        return record

    def _resolve(
        self, request: TransferRequest, op: PostPendingOp | VoidPendingOp | ExpirePendingOp
    ) -> TransferRecord:
        kind = request.kind
        pending = self._target(op.pending_transfer_id, pending=True)
        if pending.kind is not TransferKind.PENDING:
            raise _RefusalError("TRANSFER_NOT_PENDING", f"transfer {pending.id} is not pending")
        if pending.resolution_kind is not None:
            reason, text = _ALREADY[pending.resolution_kind]
            raise _RefusalError(reason, f"pending transfer {pending.id} {text}")
        expired = pending.expires_at is not None and pending.expires_at <= self.now
        if isinstance(op, ExpirePendingOp):
            if not expired:
                raise _RefusalError(
                    "PENDING_TRANSFER_NOT_EXPIRED", f"pending transfer {pending.id} has not expired"
                )
        elif expired:
            raise _RefusalError(
                "PENDING_TRANSFER_EXPIRED", f"pending transfer {pending.id} expired and is voided"
            )
        posted = _posted_amounts(op, pending) if isinstance(op, PostPendingOp) else {}
        targets = [self.accounts[leg.account_id] for leg in pending.legs]
        assert self.sp is not None
        for account in targets:
            self.sp.touch(account)
        applied: list[Leg] = []
        # The release, then the posting: each entry stores the sums after itself only.
        # A release only lowers a pending sum, so no state between them can leave
        # the range when the one before the post and the one after it are in it.
        for leg, account in zip(pending.legs, targets, strict=True):
            _release(account, leg.direction, leg.amount)
            self._entry(account, request.id, kind, EntryType.RELEASE, leg.direction, leg.amount)
            amount = posted.get(leg.account_id, 0)
            if amount:
                _add(account, leg.direction, amount, EntryType.POSTED)
                self._entry(account, request.id, kind, EntryType.POSTED, leg.direction, amount)
                applied.append(Leg(leg.account_id, leg.direction, amount, leg.currency))
        self._check_limits(targets)
        legs = tuple(applied) if kind is TransferKind.POST_PENDING else pending.legs
        record = self._record(request, kind, legs, targets, pending_transfer_id=pending.id)
        pending.resolution_kind = kind
        pending.resolved_by = request.id
        self.sp.undo.append(lambda: _unresolve(pending))
        self.out.closed_holds.append(pending.id)
        return record

    def _reverse(self, request: TransferRequest, op: ReversalOp) -> TransferRecord:
        original = self._target(op.transfer_id, pending=False)
        if original.kind not in REVERSIBLE_KINDS:
            raise _RefusalError(
                "TRANSFER_NOT_REVERSIBLE",
                f"transfer {original.id} is a {original.kind.name.lower()}; only movements "
                "and posted holds can be reversed",
            )
        if original.reversed_by:
            raise _RefusalError(
                "ALREADY_REVERSED", f"transfer {original.id} was reversed by {original.reversed_by}"
            )
        legs = tuple(
            Leg(
                leg.account_id,
                leg.direction.opposite if leg.direction else None,
                leg.amount,
                leg.currency,
            )
            for leg in original.legs
        )
        if op.shortfall_account_id:
            legs = self._spill(legs, op.shortfall_account_id)
        targets = [self._account(leg) for leg in legs]
        self._post_legs(
            request.id,
            TransferKind.REVERSAL,
            legs,
            targets,
            EntryType.POSTED,
            shared_accounts=bool(op.shortfall_account_id),
        )
        record = self._record(
            request, TransferKind.REVERSAL, legs, targets, reversed_transfer_id=original.id
        )
        original.reversed_by = request.id
        assert self.sp is not None
        self.sp.undo.append(lambda: setattr(original, "reversed_by", ""))
        return record

    def _spill(self, legs: tuple[Leg, ...], shortfall_id: str) -> tuple[Leg, ...]:
        """``legs`` with what their limited accounts cannot take moved to ``shortfall_id``.

        A limited account keeps as much of its leg as its available balance allows
        now (after the batch's earlier items and this transfer's earlier legs); the
        shortfall account takes the rest, one leg per direction and currency. Its
        own limits, if it has any, are checked like any other account's.
        """
        if shortfall_id not in self.accounts:
            raise _RefusalError("ACCOUNT_NOT_FOUND", f"account {shortfall_id} does not exist")
        # What each limited account can still take, per direction, as legs use it up.
        room: dict[tuple[str, Direction], int] = {}
        kept: list[Leg] = []
        spilled: dict[tuple[Direction, str], int] = {}
        for leg in legs:
            account = self._account(leg)
            assert leg.direction is not None
            limit = account.limit_room(leg.direction)
            if limit is None or account.id == shortfall_id:
                kept.append(leg)
                continue
            left = room.setdefault((account.id, leg.direction), max(0, limit))
            covered = min(left, leg.amount)
            room[(account.id, leg.direction)] = left - covered
            if covered:
                kept.append(Leg(leg.account_id, leg.direction, covered, leg.currency))
            if covered < leg.amount:
                spill = (leg.direction, leg.currency)
                spilled[spill] = spilled.get(spill, 0) + leg.amount - covered
        extra = [
            Leg(shortfall_id, direction, amount, currency)
            for (direction, currency), amount in spilled.items()
        ]
        return (*kept, *extra)


def _unresolve(record: TransferRecord) -> None:
    record.resolution_kind = None
    record.resolved_by = ""


def _posted_amounts(op: PostPendingOp, pending: TransferRecord) -> dict[str, int]:
    """Amounts to post per account: everything, or the partial amounts asked for."""
    held = {leg.account_id: leg for leg in pending.legs}
    if not op.legs:
        return {leg.account_id: leg.amount for leg in pending.legs}
    amounts: dict[str, int] = {}
    for leg in op.legs:
        match = held.get(leg.account_id)
        if match is None or match.direction is not leg.direction or match.currency != leg.currency:
            raise _RefusalError(
                "LEG_NOT_IN_PENDING_TRANSFER",
                f"pending transfer {pending.id} has no {leg.currency} "
                f"{leg.direction.name.lower() if leg.direction else ''} leg on {leg.account_id}",
            )
        if leg.amount > match.amount:
            raise _RefusalError(
                "POST_EXCEEDS_PENDING",
                f"cannot post {leg.amount} on {leg.account_id}: only {match.amount} is pending",
            )
        amounts[leg.account_id] = leg.amount
    return amounts


def _add(account: Account, direction: Direction | None, amount: int, entry_type: EntryType) -> None:
    if entry_type is EntryType.POSTED:
        if direction is Direction.DEBIT:
            account.debits_posted += amount
        else:
            account.credits_posted += amount
    elif direction is Direction.DEBIT:
        account.debits_pending += amount
    else:
        account.credits_pending += amount


def _release(account: Account, direction: Direction | None, amount: int) -> None:
    if direction is Direction.DEBIT:
        account.debits_pending -= amount
    else:
        account.credits_pending -= amount


def _limit_message(reason: str, account: Account) -> str:
    if reason == "INSUFFICIENT_FUNDS":
        return (
            f"account {account.id} would have debits "
            f"{account.debits_posted + account.debits_pending} above its credits "
            f"{account.credits_posted}"
        )
    if reason == "CREDIT_LIMIT_EXCEEDED":
        return (
            f"account {account.id} would have credits "
            f"{account.credits_posted + account.credits_pending} above its debits "
            f"{account.debits_posted}"
        )
    return f"account {account.id} would exceed the largest representable balance"


def decide_batch(
    requests: Sequence[TransferRequest],
    accounts: Mapping[str, Account],
    known: Mapping[str, TransferRecord],
    now: datetime,
) -> BatchOutcome:
    """Decide every item of a validated batch. ``accounts`` are changed in place.

    ``known`` must hold the records of every id the batch names (its own ids, the
    pending transfers it posts or voids, the transfers it reverses) that exist,
    with their resolution state; ``accounts`` every account those touch.
    """
    return _Decider(accounts, dict(known), now).run(requests)
