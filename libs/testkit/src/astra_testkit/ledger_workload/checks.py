"""The ledger's guarantees, checked after a workload: in the tables, through the API, in events.

Every check records what it looked at and each violation with an example, under
a stable invariant name, so one run reports every broken guarantee at once
(``Findings.report``) instead of stopping at the first.

The tables are read with plain SQL and decoded here, independently of the
ledger's own adapters: an oracle should not share the code it judges.
Enum numbers are the contract's (``astra.ledger.v1``), which the tables store.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from astra.ledger.v1 import events_pb2 as ev
from astra.ledger.v1 import ledger_pb2 as pb
from chassis.protos import to_timestamp
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from astra_testkit.ledger_workload.chart import Chart
from astra_testkit.ledger_workload.driver import (
    NORMAL_TIMEOUT,
    Connection,
    batch_answers,
    call_until_answered,
)
from astra_testkit.ledger_workload.model import (
    BATCH,
    Answer,
    Op,
    WorkloadLog,
    answers_differ,
)

# The contract's numbers as plain ints: the tables store them so.
MOVEMENT: int = pb.TRANSFER_KIND_MOVEMENT
PENDING: int = pb.TRANSFER_KIND_PENDING
POST: int = pb.TRANSFER_KIND_POST_PENDING
VOID: int = pb.TRANSFER_KIND_VOID_PENDING
EXPIRE: int = pb.TRANSFER_KIND_EXPIRE_PENDING
REVERSAL: int = pb.TRANSFER_KIND_REVERSAL
POSTED: int = pb.ENTRY_TYPE_POSTED
HOLD: int = pb.ENTRY_TYPE_HOLD
RELEASE: int = pb.ENTRY_TYPE_RELEASE
DEBIT: int = pb.DIRECTION_DEBIT
CREDIT: int = pb.DIRECTION_CREDIT
KIND_OF_OP = {
    "movement": MOVEMENT,
    "pending": PENDING,
    "post": POST,
    "void": VOID,
    "reversal": REVERSAL,
}
EVENT_OF_KIND: dict[int, type[Message]] = {
    MOVEMENT: ev.TransferPosted,
    PENDING: ev.PendingTransferCreated,
    POST: ev.PendingTransferPosted,
    VOID: ev.PendingTransferVoided,
    EXPIRE: ev.PendingTransferExpired,
    REVERSAL: ev.TransferReversed,
}
EXPIRY_PREFIX = "exp_"
# An UNAVAILABLE this long after the ledger served again is no longer the crash's.
OUTAGE_GRACE_SECONDS = 10.0
LINKED = "LINKED_TRANSFER_FAILED"
KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
NOT_FOUND_REASONS = {"ACCOUNT_NOT_FOUND", "TRANSFER_NOT_FOUND", "PENDING_TRANSFER_NOT_FOUND"}

LegKey = tuple[str, int, int, str]
Sums = tuple[int, int, int, int]
Stamp = tuple[int, int]


def kind_name(kind: int) -> str:
    return pb.TransferKind.Name(kind)  # type: ignore[arg-type]


def entry_type_name(entry_type: int) -> str:
    return pb.EntryType.Name(entry_type)  # type: ignore[arg-type]


def swapped_legs(legs: Iterable[LegKey]) -> tuple[LegKey, ...]:
    """A reversal's legs: debits and credits swapped."""
    return tuple((a, CREDIT if d == DEBIT else DEBIT, m, c) for a, d, m, c in legs)


def stamp(value: datetime) -> Stamp:
    converted = to_timestamp(value)
    return (converted.seconds, converted.nanos)


def stamp_of(value: Timestamp) -> Stamp | None:
    return (value.seconds, value.nanos) if value.seconds or value.nanos else None


def pb_legs(legs: Iterable[pb.Leg]) -> tuple[LegKey, ...]:
    return tuple((x.account_id, int(x.direction), x.amount, x.currency) for x in legs)


# --- findings -------------------------------------------------------------------------


@dataclass
class Findings:
    """Violations per invariant (counted, a few shown) and how much each invariant saw."""

    examples_per_invariant: int = 5
    checked: Counter[str] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    notes: list[str] = field(default_factory=list)

    def saw(self, invariant: str, count: int = 1) -> None:
        self.checked[invariant] += count

    def violate(self, invariant: str, example: str) -> None:
        self.violations[invariant] += 1
        shown = self.examples[invariant]
        if len(shown) < self.examples_per_invariant:
            shown.append(example)

    def expect(self, invariant: str, holds: bool, example: Callable[[], str]) -> None:
        self.saw(invariant)
        if not holds:
            self.violate(invariant, example())

    def note(self, text: str) -> None:
        self.notes.append(text)

    @property
    def ok(self) -> bool:
        return not self.violations

    def report(self) -> str:
        lines = ["invariants (violations / checked):"]
        for name in sorted(set(self.checked) | set(self.violations)):
            bad = self.violations[name]
            lines.append(f"  {'FAIL' if bad else 'ok  '} {name}: {bad} / {self.checked[name]}")
            lines.extend(f"         e.g. {example}" for example in self.examples.get(name, []))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# --- the tables -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JournalRow:
    id: str
    kind: int
    ok: bool
    reason: str
    legs: tuple[LegKey, ...]
    pending_transfer_id: str
    reversed_transfer_id: str
    expires_at: datetime | None
    metadata: dict[str, str]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class EntryRow:
    account_id: str
    sequence: int
    transfer_id: str
    kind: int
    entry_type: int
    direction: int
    amount: int
    sums: Sums
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AccountRow:
    id: str
    currency: str
    normal_side: int
    no_overdraft: bool
    no_excess_credit: bool
    sums: Sums
    entry_sequence: int
    last_entry_at: datetime | None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    event_id: str
    event_type: str
    ordering_key: str
    payload: bytes
    published: bool


@dataclass
class Tables:
    journal: dict[str, JournalRow]
    entries: list[EntryRow]
    accounts: dict[str, AccountRow]
    outbox: list[OutboxRow]

    def entries_by_account(self) -> dict[str, list[EntryRow]]:
        grouped: dict[str, list[EntryRow]] = defaultdict(list)
        for entry in self.entries:
            grouped[entry.account_id].append(entry)
        return grouped

    def entries_by_transfer(self) -> dict[str, list[EntryRow]]:
        grouped: dict[str, list[EntryRow]] = defaultdict(list)
        for entry in self.entries:
            grouped[entry.transfer_id].append(entry)
        return grouped


def decode_legs(raw: str) -> tuple[LegKey, ...]:
    """The journal's leg text: ``account:direction:amount:currency`` joined by ``;``."""
    if not raw:
        return ()
    legs = []
    for part in raw.split(";"):
        account_id, direction, amount, currency = part.split(":")
        legs.append((account_id, int(direction), int(amount), currency))
    return tuple(legs)


def load_tables(database_url: str) -> Tables:
    with psycopg.connect(database_url) as conn:
        journal = {
            r[0]: JournalRow(
                id=r[0],
                kind=r[1],
                ok=r[2],
                reason=r[3] or "",
                legs=decode_legs(r[4]),
                pending_transfer_id=r[5] or "",
                reversed_transfer_id=r[6] or "",
                expires_at=r[7],
                metadata=json.loads(r[8]) if r[8] else {},
                created_at=r[9],
            )
            for r in conn.execute(
                "SELECT id, kind, ok, reason, legs, pending_transfer_id, reversed_transfer_id, "
                "expires_at, metadata, created_at FROM transfers"
            )
        }
        entries = [
            EntryRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], (r[7], r[8], r[9], r[10]), r[11])
            for r in conn.execute(
                "SELECT account_id, sequence, transfer_id, kind, entry_type, direction, amount, "
                "debits_posted, credits_posted, debits_pending, credits_pending, created_at "
                "FROM entries ORDER BY account_id, sequence"
            )
        ]
        accounts = {
            r[0]: AccountRow(r[0], r[1], r[2], r[3], r[4], (r[5], r[6], r[7], r[8]), r[9], r[10])
            for r in conn.execute(
                "SELECT id, currency, normal_side, debits_must_not_exceed_credits, "
                "credits_must_not_exceed_debits, debits_posted, credits_posted, debits_pending, "
                "credits_pending, entry_sequence, last_entry_at FROM accounts"
            )
        }
        outbox = [
            OutboxRow(r[0], r[1], r[2], r[3], bytes(r[4]), r[5] is not None)
            for r in conn.execute(
                "SELECT id, event_id, event_type, ordering_key, payload, published_at "
                "FROM outbox ORDER BY id"
            )
        ]
    return Tables(journal, entries, accounts, outbox)


def _count(database_url: str, query: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def count_transfers(database_url: str) -> int:
    return _count(database_url, "SELECT count(*) FROM transfers")


def open_timed_holds(database_url: str) -> int:
    return _count(database_url, "SELECT count(*) FROM open_holds WHERE expires_at IS NOT NULL")


def count_events(database_url: str) -> int:
    return _count(database_url, "SELECT count(*) FROM outbox")


def unpublished_events(database_url: str) -> int:
    return _count(database_url, "SELECT count(*) FROM outbox WHERE published_at IS NULL")


# --- balances: zero-sum, running sums, limits -------------------------------------------


def _effect(entry: EntryRow) -> Sums:
    debit = entry.direction == DEBIT
    amount = entry.amount
    if entry.entry_type == POSTED:
        return (amount, 0, 0, 0) if debit else (0, amount, 0, 0)
    sign = 1 if entry.entry_type == HOLD else -1
    return (0, 0, sign * amount, 0) if debit else (0, 0, 0, sign * amount)


def _add(a: Sums, b: Sums) -> Sums:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3])


def check_balances(tables: Tables, findings: Findings) -> None:
    """Zero-sum per currency; every entry's sums; no limited account past its limit, ever."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for account in tables.accounts.values():
        for i, value in enumerate(account.sums):
            totals[account.currency][i] += value
    for currency, (dp, cp, dq, cq) in sorted(totals.items()):
        findings.expect(
            "zero_sum",
            dp == cp and dq == cq,
            lambda: f"{currency} accounts: debits/credits posted {dp}/{cp}, pending {dq}/{cq}",
        )
    net: dict[tuple[str, int], int] = defaultdict(int)
    for entry in tables.entries:
        currency = tables.accounts[entry.account_id].currency
        d = _effect(entry)
        net[(currency, POSTED)] += d[0] - d[1]
        net[(currency, HOLD)] += d[2] - d[3]
    for (currency, what), value in sorted(net.items()):
        findings.expect(
            "zero_sum",
            value == 0,
            lambda: (
                f"{currency} entries: "
                f"{'posted' if what == POSTED else 'pending'} debits exceed credits by {value}"
            ),
        )
    for row in tables.journal.values():
        if not row.ok:
            continue
        per_currency: Counter[str] = Counter()
        for _account, direction, amount, currency in row.legs:
            per_currency[currency] += amount if direction == DEBIT else -amount
        findings.expect(
            "zero_sum",
            not any(per_currency.values()),
            lambda: f"{row.id} legs unbalanced {dict(per_currency)}",
        )

    wrong_sums: Counter[str] = Counter()
    for account_id, entries in sorted(tables.entries_by_account().items()):
        holder = tables.accounts.get(account_id)
        if holder is None:
            findings.violate("running_balances", f"entries of unknown account {account_id}")
            continue
        account = holder
        running: Sums = (0, 0, 0, 0)
        previous: EntryRow | None = None
        for position, entry in enumerate(entries, start=1):
            findings.expect(
                "entry_order",
                entry.sequence == position
                and (previous is None or entry.created_at >= previous.created_at),
                lambda: (
                    f"{entry.account_id} entry {position} has sequence {entry.sequence} "
                    f"at {entry.created_at}, after {previous.created_at if previous else None}"
                ),
            )
            running = _add(running, _effect(entry))
            if entry.sums != running:
                wrong_sums[f"{entry_type_name(entry.entry_type)} of {kind_name(entry.kind)}"] += 1
            findings.expect(
                "running_balances",
                entry.sums == running,
                lambda: (
                    f"{entry.account_id} #{entry.sequence} ({entry_type_name(entry.entry_type)} "
                    f"{entry.amount} of {entry.transfer_id}) stores {entry.sums}; the previous "
                    f"entry's plus its own effect is {running}"
                ),
            )
            findings.expect(
                "running_balances",
                min(running) >= 0,
                lambda: f"{entry.account_id} #{entry.sequence}: sums {running} below zero",
            )
            dp, cp, dq, cq = running
            if account.no_overdraft:
                findings.expect(
                    "no_overdraft",
                    dp + dq <= cp,
                    lambda: (
                        f"{entry.account_id} #{entry.sequence} ({entry.transfer_id}): "
                        f"debits {dp}+{dq} pending above credits {cp}"
                    ),
                )
            if account.no_excess_credit:
                findings.expect(
                    "no_overdraft",
                    cp + cq <= dp,
                    lambda: (
                        f"{entry.account_id} #{entry.sequence} ({entry.transfer_id}): "
                        f"credits {cp}+{cq} pending above debits {dp}"
                    ),
                )
            previous = entry
        findings.expect(
            "account_sums",
            account.sums == running
            and account.sums == entries[-1].sums
            and account.entry_sequence == len(entries)
            and account.last_entry_at == entries[-1].created_at,
            lambda: (
                f"{account.id} row sums {account.sums} seq {account.entry_sequence} at "
                f"{account.last_entry_at}; entries add up to {running}, the last "
                f"(#{entries[-1].sequence}) stores {entries[-1].sums} at {entries[-1].created_at}"
            ),
        )
    if wrong_sums:
        findings.note(f"entries storing other sums than their own, by kind: {dict(wrong_sums)}")
    with_entries = {e.account_id for e in tables.entries}
    for account in tables.accounts.values():
        if account.id not in with_entries:
            findings.expect(
                "account_sums",
                account.sums == (0, 0, 0, 0) and account.entry_sequence == 0,
                lambda: f"{account.id} has sums {account.sums} but no entries",
            )


# --- the journal: atomicity, at most once, holds ------------------------------------------


def expected_entries(
    row: JournalRow, journal: dict[str, JournalRow]
) -> Counter[tuple[Any, ...]] | None:
    """The entries an applied transfer implies: (account, type, direction, amount) counted."""
    expected: Counter[tuple[Any, ...]] = Counter()
    if row.kind in (MOVEMENT, REVERSAL, PENDING):
        kind = HOLD if row.kind == PENDING else POSTED
        for account, direction, amount, _ in row.legs:
            expected[(account, kind, direction, amount)] += 1
        return expected
    pending = journal.get(row.pending_transfer_id)
    if pending is None or not pending.ok or pending.kind != PENDING:
        return None
    for account, direction, amount, _ in pending.legs:
        expected[(account, RELEASE, direction, amount)] += 1
    if row.kind == POST:
        for account, direction, amount, _ in row.legs:
            expected[(account, POSTED, direction, amount)] += 1
    return expected


def check_journal(tables: Tables, findings: Findings) -> None:
    """Each applied transfer has exactly its entries; refusals none; holds resolved once."""
    journal = tables.journal
    by_transfer = tables.entries_by_transfer()
    for row in journal.values():
        entries = by_transfer.get(row.id, [])
        if not row.ok:
            findings.expect(
                "atomicity",
                not entries and not row.legs,
                lambda: f"refused {row.id} ({row.reason}) has {len(entries)} entries",
            )
            continue
        expected = expected_entries(row, journal)
        actual = Counter((e.account_id, e.entry_type, e.direction, e.amount) for e in entries)
        findings.expect(
            "atomicity",
            expected is not None and actual == expected,
            lambda: (
                f"{row.id} ({kind_name(row.kind)}) "
                f"entries {dict(actual)}, expected "
                f"{dict(expected) if expected is not None else 'a pending target'}"
            ),
        )
        findings.expect(
            "atomicity",
            all(e.kind == row.kind and e.created_at == row.created_at for e in entries),
            lambda: f"{row.id}: entries of another kind or instant than the transfer",
        )
        if row.kind in (VOID, EXPIRE) and row.pending_transfer_id in journal:
            findings.expect(
                "atomicity",
                row.legs == journal[row.pending_transfer_id].legs,
                lambda: (
                    f"{row.id} released legs {row.legs}, the hold has "
                    f"{journal[row.pending_transfer_id].legs}"
                ),
            )
    for transfer_id in by_transfer:
        row_or_none = journal.get(transfer_id)
        findings.expect(
            "atomicity",
            row_or_none is not None and row_or_none.ok,
            lambda: f"entries of {transfer_id}, which is not an applied transfer",
        )

    resolutions: dict[str, list[JournalRow]] = defaultdict(list)
    reversals: dict[str, list[JournalRow]] = defaultdict(list)
    for row in journal.values():
        if row.ok and row.kind in (POST, VOID, EXPIRE):
            resolutions[row.pending_transfer_id].append(row)
        if row.ok and row.kind == REVERSAL:
            reversals[row.reversed_transfer_id].append(row)
    for row in journal.values():
        if not (row.ok and row.kind == PENDING):
            continue
        resolved = resolutions.get(row.id, [])
        findings.expect(
            "holds_resolved_once",
            len(resolved) <= 1,
            lambda: f"hold {row.id} resolved by {[y.id for y in resolved]}",
        )
        if row.expires_at is None:
            continue
        findings.expect(
            "holds_expired",
            len(resolved) == 1,
            lambda: f"hold {row.id} past its expiry {row.expires_at} is still open",
        )
        for resolution in resolved:
            if resolution.kind == EXPIRE:
                findings.expect(
                    "holds_expired",
                    resolution.id == EXPIRY_PREFIX + row.id
                    and resolution.created_at >= row.expires_at,
                    lambda: (
                        f"{resolution.id} expired {row.id} at {resolution.created_at}, "
                        f"due {row.expires_at}"
                    ),
                )
            else:
                findings.expect(
                    "holds_expired",
                    resolution.created_at < row.expires_at,
                    lambda: (
                        f"{resolution.id} resolved {row.id} at {resolution.created_at}, "
                        f"after it expired at {row.expires_at}"
                    ),
                )
    for original, done in reversals.items():
        target = journal.get(original)
        findings.expect(
            "at_most_once",
            len(done) == 1 and target is not None and target.ok and target.kind in (MOVEMENT, POST),
            lambda: f"{original} reversed by {[x.id for x in done]}",
        )


# --- the clients' knowledge against the journal ------------------------------------------


def fair_refusal(op: Op, reason: str, log: WorkloadLog, tables: Tables) -> bool:
    """Whether ``reason`` is a refusal the ledger may give ``op``, given what happened:
    the workload's own doing (limits it ran into, races it started), never a lost
    transfer or account."""
    journal = tables.journal
    me = journal.get(op.id)
    accounts = tables.accounts
    in_chain = op.batch >= 0 and any(op.id in chain for chain in log.batches[op.batch].chains())
    target_op = log.ops.get(op.target)
    target_answer = target_op.answer if target_op is not None else None
    target_may_be_missing = not op.target_known or target_answer is None or not target_answer.ok

    def limited(legs: Iterable[LegKey], reason: str) -> bool:
        """Whether a leg takes a limited account in its limited direction."""
        for account_id, direction, _amount, _currency in legs:
            account = accounts.get(account_id)
            if account is None:
                continue
            debit_limited = direction == DEBIT and account.no_overdraft
            credit_limited = direction == CREDIT and account.no_excess_credit
            if (reason == "INSUFFICIENT_FUNDS" and debit_limited) or (
                reason == "CREDIT_LIMIT_EXCEEDED" and credit_limited
            ):
                return True
        return False

    def resolved_before(kind: int) -> bool:
        return me is not None and any(
            r.ok
            and r.kind == kind
            and r.pending_transfer_id == op.target
            and r.created_at <= me.created_at
            for r in journal.values()
        )

    def legit(reason: str) -> bool:
        if reason == LINKED:
            return in_chain
        if op.kind in ("movement", "pending"):
            legs = pb_legs(op.spec.movement.legs or op.spec.pending.legs)
            return reason in ("INSUFFICIENT_FUNDS", "CREDIT_LIMIT_EXCEEDED") and limited(
                legs, reason
            )
        if op.kind in ("post", "void"):
            hold = journal.get(op.target)
            if reason == "PENDING_TRANSFER_NOT_FOUND":
                return target_may_be_missing
            if reason == "ALREADY_POSTED":
                return resolved_before(POST)
            if reason == "ALREADY_VOIDED":
                return resolved_before(VOID)
            if reason == "PENDING_TRANSFER_EXPIRED":
                return (
                    hold is not None
                    and hold.expires_at is not None
                    and me is not None
                    and me.created_at >= hold.expires_at
                )
            return False
        if op.kind == "reversal":
            if reason == "TRANSFER_NOT_FOUND":
                return target_may_be_missing
            if reason == "ALREADY_REVERSED":
                return me is not None and any(
                    r.ok
                    and r.kind == REVERSAL
                    and r.reversed_transfer_id == op.target
                    and r.created_at <= me.created_at
                    for r in journal.values()
                )
            if reason in ("INSUFFICIENT_FUNDS", "CREDIT_LIMIT_EXCEEDED") and not op.shortfall:
                original = journal.get(op.target)
                if original is None:
                    return False
                return limited(swapped_legs(original.legs), reason)
            return False
        return False

    return legit(reason)


def _code_of(reason: str) -> str:
    if reason in NOT_FOUND_REASONS:
        return "NOT_FOUND"
    if reason == KEY_REUSED:
        return "ALREADY_EXISTS"
    return "FAILED_PRECONDITION"


def check_answers(log: WorkloadLog, tables: Tables, findings: Findings) -> None:
    """What each client was answered is what the journal holds, and was a fair answer."""
    journal = tables.journal
    unfair: Counter[str] = Counter()
    for op in log.ops.values():
        answer = op.answer
        findings.expect(
            "answered",
            answer is not None,
            lambda: (
                f"{op.id} ({op.purpose} via {op.via}) never got a definite answer: "
                f"{[a.code for a in op.attempts][-5:]}"
            ),
        )
        if answer is None:
            continue
        row = journal.get(op.id)
        if answer.ok:
            findings.expect(
                "durable_answers",
                row is not None and row.ok and row.kind == KIND_OF_OP[op.kind],
                lambda: (
                    f"{op.id} was answered applied; the journal has "
                    f"{'nothing' if row is None else (row.ok, row.reason, row.kind)}"
                ),
            )
            if row is not None and row.ok:
                check_content(op, answer, row, log, tables, findings)
            continue
        fair = fair_refusal(op, answer.reason, log, tables) and (
            answer.result is not None or answer.code == _code_of(answer.reason)
        )
        if not fair:
            unfair[f"{op.kind} via {op.via}: {answer.code}/{answer.reason}"] += 1
        findings.expect(
            "refusal_reasons",
            fair,
            lambda: (
                f"{op.id} ({op.purpose} via {op.via}"
                f"{', target ' + op.target if op.target else ''}"
                f"{', sent after the target was answered' if op.target_known else ''}) "
                f"refused {answer.code}/{answer.reason or '-'}"
            ),
        )
        findings.expect(
            "durable_answers",
            row is not None and not row.ok and row.reason == answer.reason,
            lambda: (
                f"{op.id} was refused {answer.reason}; the journal has "
                f"{'nothing' if row is None else (row.ok, row.reason)}"
            ),
        )

    if unfair:
        findings.note(f"refusals the workload gave no cause for: {dict(unfair)}")
    sent = set(log.ops)
    for row in journal.values():
        expiry = row.id.startswith(EXPIRY_PREFIX) and row.kind == EXPIRE and row.ok
        findings.expect(
            "at_most_once",
            row.id in sent or expiry,
            lambda: f"the journal has {row.id}, which no client sent",
        )

    for batch in log.batches:
        for chain in batch.chains():
            answers = [log.ops[i].answer for i in chain]
            rows = [journal.get(i) for i in chain]
            applied = [r is not None and r.ok for r in rows]
            findings.expect(
                "linked_chains",
                all(applied) or not any(applied),
                lambda: f"chain {chain} applied only {applied}",
            )
            if all(a is not None for a in answers) and not any(a.ok for a in answers if a):
                own = [a.reason for a in answers if a is not None and a.reason != LINKED]
                findings.expect(
                    "linked_chains",
                    len(own) == 1,
                    lambda: f"failed chain {chain} answered {[x.reason for x in answers if x]}",
                )
            elif all(a is not None for a in answers):
                findings.expect(
                    "linked_chains",
                    all(a.ok for a in answers if a),
                    lambda: f"chain {chain} answered {[x.describe() for x in answers if x]}",
                )


def check_content(
    op: Op, answer: Answer, row: JournalRow, log: WorkloadLog, tables: Tables, findings: Findings
) -> None:
    """An applied transfer is what was asked for, and what its answer said."""
    spec = op.spec
    journal = tables.journal
    problems: list[str] = []
    if row.metadata != dict(spec.metadata):
        problems.append(f"metadata {row.metadata} != {dict(spec.metadata)}")
    if op.kind == "movement" and row.legs != pb_legs(spec.movement.legs):
        problems.append(f"legs {row.legs} != asked {pb_legs(spec.movement.legs)}")
    if op.kind == "pending":
        if row.legs != pb_legs(spec.pending.legs):
            problems.append(f"legs {row.legs} != asked {pb_legs(spec.pending.legs)}")
        timeout = op.timeout_ms
        due = row.created_at + timedelta(milliseconds=timeout) if timeout is not None else None
        if row.expires_at != due:
            problems.append(
                f"expires at {row.expires_at}, asked {timeout} ms after {row.created_at}"
            )
    if op.kind in ("post", "void"):
        hold = journal.get(op.target)
        if row.pending_transfer_id != op.target or hold is None:
            problems.append(f"resolves {row.pending_transfer_id}, asked {op.target}")
        elif op.kind == "void" or not spec.post_pending.legs:
            if row.legs != hold.legs:
                problems.append(f"legs {row.legs} != the hold's {hold.legs}")
        elif row.legs != pb_legs(spec.post_pending.legs):
            problems.append(f"posted {row.legs} != asked {pb_legs(spec.post_pending.legs)}")
    if op.kind == "reversal":
        original = journal.get(op.target)
        if row.reversed_transfer_id != op.target or original is None:
            problems.append(f"reverses {row.reversed_transfer_id}, asked {op.target}")
        else:
            problems += reversal_problems(row, original, op.shortfall)
    if answer.transfer is not None:
        journal_view = (
            row.id,
            row.kind,
            row.legs,
            row.pending_transfer_id,
            row.reversed_transfer_id,
            stamp(row.expires_at) if row.expires_at else None,
            tuple(sorted(row.metadata.items())),
            stamp(row.created_at),
        )
        t = answer.transfer
        answered = (
            t.id,
            int(t.kind),
            pb_legs(t.legs),
            t.pending_transfer_id,
            t.reversed_transfer_id,
            stamp_of(t.expire_time),
            tuple(sorted(t.metadata.items())),
            stamp_of(t.create_time),
        )
        if answered != journal_view:
            problems.append(f"answered {answered}, the journal has {journal_view}")
    elif answer.create_time != stamp(row.created_at):
        problems.append(f"answered applied at {answer.create_time}, journal {row.created_at}")
    findings.expect(
        "content", not problems, lambda: f"{op.id} ({op.purpose}): {'; '.join(problems)}"
    )


def reversal_problems(row: JournalRow, original: JournalRow, shortfall: str) -> list[str]:
    """A reversal is the original's legs swapped; with a shortfall account, what limited
    accounts could not take moved to it, same direction and currency."""
    want = swapped_legs(original.legs)
    if not shortfall:
        return [] if row.legs == want else [f"legs {row.legs} != swapped {want}"]
    totals_want: Counter[tuple[int, str]] = Counter()
    for _a, d, m, c in want:
        totals_want[(d, c)] += m
    totals_got: Counter[tuple[int, str]] = Counter()
    for _a, d, m, c in row.legs:
        totals_got[(d, c)] += m
    problems = []
    if totals_got != totals_want:
        problems.append(f"totals {dict(totals_got)} != swapped {dict(totals_want)}")
    wanted = Counter({(a, d, c): m for a, d, m, c in want})
    for account, direction, amount, currency in row.legs:
        if account == shortfall:
            continue
        if amount > wanted.get((account, direction, currency), 0):
            problems.append(f"{account} takes {amount}, more than its leg")
    return problems


def check_replays(log: WorkloadLog, findings: Findings) -> None:
    for replay in log.replays:
        op = log.ops[replay.id]
        first = op.answer
        if first is None:
            continue
        if replay.same_content:
            difference = answers_differ(first, replay.answer)
            findings.expect(
                "replays_identical",
                difference is None,
                lambda: f"{replay.id} replayed via {replay.via}: {difference}",
            )
            flagged = replay.answer.ok and replay.answer.result is None  # a Transfer has no flag
            findings.expect(
                "replays_identical",
                flagged or replay.answer.replayed,
                lambda: f"{replay.id} replayed via {replay.via} not flagged as a replay",
            )
        else:
            findings.expect(
                "key_reuse_refused",
                not replay.answer.ok
                and replay.answer.reason == KEY_REUSED
                and (replay.answer.result is not None or replay.answer.code == "ALREADY_EXISTS"),
                lambda: (
                    f"{replay.id} with other content via {replay.via}: {replay.answer.describe()}"
                ),
            )


def check_statuses(log: WorkloadLog, findings: Findings) -> None:
    """No INTERNAL or UNKNOWN ever; UNAVAILABLE only while the ledger was down."""
    codes: Counter[str] = Counter()
    for what, attempt in log.every_attempt():
        codes[attempt.code] += 1
        findings.expect(
            "server_errors",
            attempt.code not in ("INTERNAL", "UNKNOWN"),
            lambda: (
                f"{what}: {attempt.code} after {attempt.answered_at - attempt.sent_at:.3f}s "
                f"(deadline {attempt.timeout}s)"
            ),
        )
        if attempt.code == "UNAVAILABLE":
            findings.expect(
                "unavailable_outside_outage",
                any(
                    o.killed_at <= attempt.answered_at <= o.healthy_at + OUTAGE_GRACE_SECONDS
                    for o in log.outages
                ),
                lambda: (
                    f"{what}: UNAVAILABLE at {attempt.answered_at:.3f}, outages "
                    f"{[(o.killed_at, o.healthy_at) for o in log.outages]}"
                ),
            )
    findings.note(f"attempts by status: {dict(sorted(codes.items()))}")
    failures = Counter(
        f"{a.code} under a {'tight' if a.timeout < NORMAL_TIMEOUT else 'normal'} deadline"
        for _what, a in log.every_attempt()
        if a.code in ("INTERNAL", "UNKNOWN")
    )
    if failures:
        findings.note(f"server errors seen by clients: {dict(failures)}")
    slow = [
        (w, a)
        for w, a in log.every_attempt()
        if a.code == "DEADLINE_EXCEEDED" and a.timeout >= NORMAL_TIMEOUT
    ]
    if slow:
        findings.note(
            f"{len(slow)} calls with a {NORMAL_TIMEOUT}s deadline expired, e.g. {slow[0][0]}"
        )
    for error in log.errors:
        findings.violate("workload_errors", error)
    findings.saw("workload_errors")


def check_server_log(text: str, findings: Findings) -> None:
    """The ledger logs each INTERNAL answer and each failed expiry round; none may happen."""
    kinds: Counter[str] = Counter()
    for line in text.splitlines():
        findings.saw("server_log_errors")
        if "rpc failed unexpectedly" in line or "hold expiry failed" in line:
            summary = _log_summary(line)
            kinds[summary.split(":", 1)[0]] += 1
            findings.violate("server_log_errors", summary)
    if kinds:
        findings.note(f"ledger log errors: {dict(kinds.most_common())}")


def _log_summary(line: str) -> str:
    """A JSON log line as its event, method and the exception's last line."""
    try:
        record = json.loads(line)
    except ValueError:  # e.g. a line the kill cut short, continued by the next process
        return "unparsed line: " + re.sub(r"\s+", " ", line)[:300]
    exception = str(record.get("exception", "")).strip().splitlines()
    return (
        f"{record.get('event')} {record.get('method', '')} "
        f"{exception[-1] if exception else ''}".strip()
    )


# --- through the API ------------------------------------------------------------------------


def _sums_of(balance: pb.Balance) -> Sums:
    return (
        balance.debits_posted,
        balance.credits_posted,
        balance.debits_pending,
        balance.credits_pending,
    )


def _derived(account: AccountRow, sums: Sums) -> tuple[int, int, int]:
    dp, cp, dq, cq = sums
    if account.normal_side == pb.NORMAL_SIDE_DEBIT:
        posted, pending = dp - cp, dq - cq
        return posted, pending, posted - cq
    posted, pending = cp - dp, cq - dq
    return posted, pending, posted - dq


def _balance_view(balance: pb.Balance) -> tuple[int, ...]:
    return (*_sums_of(balance), balance.posted, balance.pending, balance.available)


def check_as_of(
    connection: Connection, log: WorkloadLog, tables: Tables, findings: Findings
) -> None:
    """Each balance as of an instant, answered during the run, is the same answer now,
    and what the entries stamped up to that instant say."""
    by_account = tables.entries_by_account()
    rng = random.Random(0)
    for reading in log.readings:
        request = pb.GetBalanceRequest(
            account_id=reading.account_id,
            as_of=Timestamp(seconds=reading.as_of[0], nanos=reading.as_of[1]),
        )
        response, error, _ = call_until_answered(
            connection, "GetBalance", request, NORMAL_TIMEOUT, rng
        )
        then = _balance_view(reading.balance)
        now = _balance_view(response.balance) if error is None else None
        findings.expect(
            "as_of_stable",
            now == then,
            lambda: (
                f"{reading.account_id} as of {reading.as_of}: answered {then} during the run, "
                f"{now} after"
            ),
        )
        instant = request.as_of.ToDatetime(tzinfo=UTC)
        last: EntryRow | None = None
        for entry in by_account.get(reading.account_id, []):
            later = last is None or (entry.created_at, entry.sequence) > (
                last.created_at,
                last.sequence,
            )
            if entry.created_at <= instant and later:
                last = entry
        stored = last.sums if last is not None else (0, 0, 0, 0)
        findings.expect(
            "as_of_matches_entries",
            _sums_of(reading.balance) == stored,
            lambda: (
                f"{reading.account_id} as of {reading.as_of}: answered "
                f"{_sums_of(reading.balance)} during the run; the entries up to then end at "
                f"{last.transfer_id if last else None} with {stored}"
            ),
        )


def check_api(connection: Connection, log: WorkloadLog, tables: Tables, findings: Findings) -> None:
    """Balances, entries and transfers as the API reports them are the tables' own."""
    rng = random.Random(0)

    def ask(method: str, request: Message) -> Any:
        response, error, _ = call_until_answered(connection, method, request, NORMAL_TIMEOUT, rng)
        if error is not None:
            raise AssertionError(f"{method} failed after the run: {error}")
        return response

    by_account = tables.entries_by_account()
    for account in tables.accounts.values():
        balance = ask("GetBalance", pb.GetBalanceRequest(account_id=account.id)).balance
        findings.expect(
            "api_matches_tables",
            _balance_view(balance) == (*account.sums, *_derived(account, account.sums)),
            lambda: f"GetBalance {account.id} {_balance_view(balance)}, row {account.sums}",
        )
        listed: list[pb.Entry] = []
        token = ""
        while True:
            page = ask(
                "ListAccountEntries",
                pb.ListAccountEntriesRequest(
                    account_id=account.id, page_size=1000, page_token=token
                ),
            )
            listed += page.entries
            token = page.next_page_token
            if not token:
                break
        stored = by_account.get(account.id, [])
        listed_view = [
            (
                e.sequence,
                e.transfer_id,
                int(e.type),
                int(e.direction),
                e.amount,
                _sums_of(e.balance_after),
            )
            for e in listed
        ]
        stored_view = [
            (e.sequence, e.transfer_id, e.entry_type, e.direction, e.amount, e.sums) for e in stored
        ]
        findings.expect(
            "api_matches_tables",
            listed_view == stored_view,
            lambda: (
                f"ListAccountEntries {account.id}: {len(listed)} entries listed, "
                f"{len(stored)} stored, or they differ"
            ),
        )

    applied = [row for row in tables.journal.values() if row.ok]
    # The ledger's own expiry ids ("exp_...") are no transfer ids a client may ask for.
    asked = [row for row in applied if not row.id.startswith(EXPIRY_PREFIX)]
    resolutions = {r.pending_transfer_id: r for r in applied if r.kind in (POST, VOID, EXPIRE)}
    reversed_by = {r.reversed_transfer_id: r.id for r in applied if r.kind == REVERSAL}
    status_of: dict[int, int] = {
        POST: pb.TRANSFER_STATUS_POSTED,
        VOID: pb.TRANSFER_STATUS_VOIDED,
        EXPIRE: pb.TRANSFER_STATUS_EXPIRED,
    }
    for start in range(0, len(asked), 1000):
        chunk = asked[start : start + 1000]
        found = {
            t.id: t
            for t in ask(
                "LookupTransfers", pb.LookupTransfersRequest(transfer_ids=[r.id for r in chunk])
            ).transfers
        }
        for row in chunk:
            transfer = found.get(row.id)
            resolution = resolutions.get(row.id)
            status: int = pb.TRANSFER_STATUS_POSTED
            if row.kind == PENDING:
                status = status_of[resolution.kind] if resolution else pb.TRANSFER_STATUS_PENDING
            want = (
                row.kind,
                status,
                row.legs,
                row.pending_transfer_id,
                row.reversed_transfer_id,
                stamp(row.expires_at) if row.expires_at else None,
                row.metadata,
                stamp(row.created_at),
                resolution.id if resolution and row.kind == PENDING else "",
                reversed_by.get(row.id, ""),
            )
            got = (
                (
                    int(transfer.kind),
                    int(transfer.status),
                    pb_legs(transfer.legs),
                    transfer.pending_transfer_id,
                    transfer.reversed_transfer_id,
                    stamp_of(transfer.expire_time),
                    dict(transfer.metadata),
                    stamp_of(transfer.create_time),
                    transfer.resolved_by_transfer_id,
                    transfer.reversed_by_transfer_id,
                )
                if transfer is not None
                else None
            )
            findings.expect(
                "api_matches_tables",
                got == want,
                lambda: f"LookupTransfers {row.id}: {got}, the tables say {want}",
            )


def replay_everything(
    connection: Connection, log: WorkloadLog, database_url: str, findings: Findings
) -> None:
    """Every answered id once more, as unlinked batch items: each replays its first answer,
    and nothing new is written."""
    rng = random.Random(0)
    before = count_transfers(database_url)
    answered = [op for op in log.ops.values() if op.answer is not None]
    for start in range(0, len(answered), 1000):
        chunk = answered[start : start + 1000]
        specs = []
        for op in chunk:
            spec = pb.TransferSpec()
            spec.CopyFrom(op.spec)
            spec.linked = False
            specs.append(spec)
        response, error, _ = call_until_answered(
            connection, BATCH, pb.CreateTransfersRequest(transfers=specs), NORMAL_TIMEOUT, rng
        )
        answers = batch_answers(response, error, len(chunk))
        for op, answer in zip(chunk, answers, strict=True):
            assert op.answer is not None
            difference = (
                answers_differ(op.answer, answer) if answer is not None else "no definite answer"
            )
            if difference is None and answer is not None and not answer.replayed:
                difference = "not flagged as a replay"
            findings.expect(
                "replays_identical",
                difference is None,
                lambda: f"{op.id} replayed after the run: {difference}",
            )
    after = count_transfers(database_url)
    findings.expect(
        "at_most_once",
        after == before,
        lambda: f"replaying every id wrote {after - before} new transfers",
    )


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivered:
    """A message as a subscriber received it."""

    attributes: dict[str, str]
    data: bytes
    ordering_key: str


def _event_class(event_type: str) -> type[Message] | None:
    package, _, name = event_type.rpartition(".")
    if package != "astra.ledger.v1":
        return None
    found = getattr(ev, name, None)
    return found if isinstance(found, type) and issubclass(found, Message) else None


def check_events(
    tables: Tables, delivered: Sequence[Delivered], chart: Chart, findings: Findings
) -> None:
    """Each applied transfer (and each account) has exactly one event, with its fields;
    every event reached the subscriber (at least once: deduplicated by ce-id), each
    ordering key's events in the order they were written."""
    check_written_events(tables, chart, findings)
    check_delivery(tables, delivered, findings)


def check_written_events(tables: Tables, chart: Chart, findings: Findings) -> None:
    journal = tables.journal
    last_entry: dict[tuple[str, str], EntryRow] = {}
    for entry in tables.entries:
        last_entry[(entry.transfer_id, entry.account_id)] = entry  # ordered by sequence
    per_transfer: dict[str, list[tuple[OutboxRow, Any]]] = defaultdict(list)
    opened: Counter[str] = Counter()
    for written in tables.outbox:
        cls = _event_class(written.event_type)
        if cls is None:
            findings.violate(
                "event_fields", f"outbox row {written.id} of unknown type {written.event_type}"
            )
            continue
        event: Any = cls.FromString(written.payload)
        if isinstance(event, ev.AccountOpened):
            opened[event.account.id] += 1
        else:
            per_transfer[event.transfer_id].append((written, event))

    for account in chart.accounts:
        findings.expect(
            "events_exactly_once",
            opened[account.id] == 1,
            lambda: f"AccountOpened for {account.id}: {opened[account.id]}",
        )
    for transfer_id in per_transfer:
        named = journal.get(transfer_id)
        findings.expect(
            "events_exactly_once",
            named is not None and named.ok,
            lambda: f"an event for {transfer_id}, which is not an applied transfer",
        )
    for row in journal.values():
        if not row.ok:
            continue
        events = per_transfer.get(row.id, [])
        findings.expect(
            "events_exactly_once",
            len(events) == 1,
            lambda: f"{row.id} ({kind_name(row.kind)}) has {len(events)} events",
        )
        for written, event in events:
            problems = event_problems(row, written, event, tables, last_entry)
            findings.expect(
                "event_fields", not problems, lambda: f"{row.id}: {'; '.join(problems)}"
            )


# The most Pub/Sub ordering keys a topic may carry (the outbox's lanes): the emulator
# keeps a thread per key it has seen, so keys must not grow with the aggregates.
MAX_ORDERING_KEYS = 64


def check_delivery(tables: Tables, delivered: Sequence[Delivered], findings: Findings) -> None:
    outbox_by_id = {written.event_id: written for written in tables.outbox}
    first_seen: dict[str, int] = {}
    keys_of_aggregate: dict[str, set[str]] = defaultdict(set)
    duplicates = 0
    for position, received in enumerate(delivered):
        event_id = received.attributes.get("ce-id", "")
        source = outbox_by_id.get(event_id)
        if event_id in first_seen:
            duplicates += 1
            continue
        first_seen[event_id] = position
        findings.expect(
            "events_delivered",
            source is not None
            and source.payload == received.data
            and source.event_type == received.attributes.get("ce-type")
            # The outbox row names the aggregate; the message carries it as its subject.
            and source.ordering_key == received.attributes.get("ce-subject"),
            lambda: (
                f"received {event_id}: "
                f"{'not in the outbox' if source is None else 'differs from its outbox row'}"
            ),
        )
        if source is not None:
            keys_of_aggregate[source.ordering_key].add(received.ordering_key)
    # One aggregate's events share one Pub/Sub ordering key (that is what keeps them in
    # order), and a topic carries a bounded number of keys however many aggregates.
    for aggregate, keys in keys_of_aggregate.items():
        findings.expect(
            "events_delivered",
            len(keys) == 1,
            lambda: f"{aggregate}'s events arrived under {len(keys)} ordering keys {sorted(keys)}",
        )
    published_keys = set().union(*keys_of_aggregate.values()) if keys_of_aggregate else set()
    findings.expect(
        "events_delivered",
        len(published_keys) <= MAX_ORDERING_KEYS,
        lambda: f"{len(published_keys)} ordering keys on one topic (at most {MAX_ORDERING_KEYS})",
    )
    findings.saw("events_delivered", len(tables.outbox))
    for written in tables.outbox:
        if written.event_id not in first_seen:
            findings.violate(
                "events_delivered",
                f"outbox row {written.id} ({written.event_type}, key {written.ordering_key}) "
                "never received",
            )
    findings.note(f"{len(delivered)} messages received, {duplicates} redeliveries deduplicated")
    by_key: dict[str, list[OutboxRow]] = defaultdict(list)
    for written in tables.outbox:
        by_key[written.ordering_key].append(written)
    for key, rows in by_key.items():
        if len(rows) < 2 or any(r.event_id not in first_seen for r in rows):
            continue
        arrival = sorted(rows, key=lambda r: first_seen[r.event_id])
        findings.expect(
            "events_in_order",
            [r.id for r in arrival] == [r.id for r in rows],
            lambda: f"key {key}: received {[r.event_type for r in arrival]} out of written order",
        )


def event_problems(
    row: JournalRow,
    outbox_row: OutboxRow,
    message: Any,
    tables: Tables,
    last_entry: dict[tuple[str, str], EntryRow],
) -> list[str]:
    problems: list[str] = []
    expected_type = EVENT_OF_KIND[row.kind].DESCRIPTOR.full_name
    if outbox_row.event_type != expected_type:
        problems.append(f"type {outbox_row.event_type}, expected {expected_type}")
        return problems
    expected_key = row.pending_transfer_id or row.reversed_transfer_id or row.id
    if outbox_row.ordering_key != expected_key:
        problems.append(f"ordering key {outbox_row.ordering_key}, expected {expected_key}")
    if pb_legs(message.legs) != row.legs:
        problems.append(f"legs {pb_legs(message.legs)} != journal {row.legs}")
    if stamp_of(message.occur_time) != stamp(row.created_at):
        problems.append(f"occur_time {stamp_of(message.occur_time)} != {stamp(row.created_at)}")
    if hasattr(message, "metadata") and dict(message.metadata) != row.metadata:
        problems.append(f"metadata {dict(message.metadata)} != {row.metadata}")
    if (
        hasattr(message, "pending_transfer_id")
        and message.pending_transfer_id != row.pending_transfer_id
    ):
        problems.append(f"pending_transfer_id {message.pending_transfer_id!r}")
    if hasattr(message, "reversed_transfer_id") and (
        message.reversed_transfer_id != row.reversed_transfer_id
    ):
        problems.append(f"reversed_transfer_id {message.reversed_transfer_id!r}")
    if isinstance(message, ev.PendingTransferCreated):
        want = stamp(row.expires_at) if row.expires_at else None
        got = stamp_of(message.expire_time) if message.HasField("expire_time") else None
        if got != want:
            problems.append(f"expire_time {got}, the hold expires at {want}")
    accounts = list(dict.fromkeys(a for a, _d, _m, _c in row.legs))
    balances = {b.account_id: b for b in message.balances}
    if sorted(balances) != sorted(accounts) or len(message.balances) != len(accounts):
        problems.append(
            f"balances of {[b.account_id for b in message.balances]}, legs on {accounts}"
        )
    for account_id in accounts:
        balance = balances.get(account_id)
        entry = last_entry.get((row.id, account_id))
        account = tables.accounts.get(account_id)
        if balance is None or entry is None or account is None:
            continue
        want_view = (account.currency, *entry.sums, *_derived(account, entry.sums))
        got_view = (
            balance.currency,
            *_sums_of(balance),
            balance.posted,
            balance.pending,
            balance.available,
        )
        if got_view != want_view:
            problems.append(f"balance of {account_id} {got_view}, after the transfer {want_view}")
    return problems


def summarize(log: WorkloadLog) -> str:
    """What the run did: ids by kind and outcome, replays, readings, outages."""
    outcomes: Counter[str] = Counter()
    for op in log.ops.values():
        answer = op.answer
        what = (
            "unanswered" if answer is None else "ok" if answer.ok else answer.reason or answer.code
        )
        outcomes[f"{op.kind}:{what}"] += 1
    first_kill = min((o.killed_at for o in log.outages), default=None)
    before_kill = sum(
        1
        for op in log.ops.values()
        if op.answer is not None and op.answer.ok and first_kill and op.answer.at < first_kill
    )
    across = sum(1 for op in log.ops.values() if any(a.code == "UNAVAILABLE" for a in op.attempts))
    lines = [
        f"{len(log.ops)} transfer ids in {len(log.batches)} batches and single calls; "
        f"{len(log.replays)} replays; {len(log.readings)} as-of readings; "
        f"outages {[round(o.healthy_at - o.killed_at, 2) for o in log.outages]} s",
        "outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())),
        f"{before_kill} successes acknowledged before the first kill; {across} ids in flight "
        "at a kill, retried with the same id",
    ]
    return "\n".join(lines)


def check_everything(
    *,
    connection: Connection,
    database_url: str,
    log: WorkloadLog,
    chart: Chart,
    delivered: Sequence[Delivered],
    server_log: str,
) -> Findings:
    """Every check, in an order that reads before anything writes (the replay sweep last)."""
    findings = Findings()
    tables = load_tables(database_url)
    findings.note(
        f"tables: {len(tables.journal)} transfers, {len(tables.entries)} entries, "
        f"{len(tables.outbox)} events"
    )
    check_balances(tables, findings)
    check_journal(tables, findings)
    check_answers(log, tables, findings)
    check_replays(log, findings)
    check_statuses(log, findings)
    check_server_log(server_log, findings)
    check_events(tables, delivered, chart, findings)
    check_api(connection, log, tables, findings)
    check_as_of(connection, log, tables, findings)
    replay_everything(connection, log, database_url, findings)
    return findings
