"""Versions and balances per entry, and commit times (no I/O).

For any operations on an account, each entry's balance before is the previous
entry's balance after, the account's version grows by one per entry, and before
and after differ by exactly the entry's own effect; every balance in an event
says the account's version after the change. Transfers and transfer results say
when they were committed, and a replay says the original instant, however late.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from astra.ledger.v1 import events_pb2 as ev
from chassis.events.decoding import decode
from chassis.kernel.errors import DomainError
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger.adapters.events import to_outbox_message
from ledger.adapters.memory import MemoryLedgerDatabase
from ledger.adapters.protos import entry_to_pb, results_to_pb, transfer_to_pb
from ledger.domain.batch import decide_batch
from ledger.domain.events import AccountOpened, TransferApplied
from ledger.domain.model import (
    REVERSIBLE_KINDS,
    Account,
    AccountSpec,
    Balance,
    Direction,
    Entry,
    EntryType,
    ItemResult,
    NormalSide,
    TransferKind,
    TransferRecord,
    TransferRequest,
)
from ledger.service_layer import use_cases
from ledger.service_layer.ports import ItemOutcome
from ledger.service_layer.unit_of_work import LedgerUnitOfWork

from tests.ledger_builders import account, credit, debit, hold, move, post, reverse, void
from tests.ledger_fixtures import MovableClock

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
NAMES = ("acct_bank", "acct_alice", "acct_bob")


def _sums(balance: Balance) -> tuple[int, int, int, int]:
    return (
        balance.debits_posted,
        balance.credits_posted,
        balance.debits_pending,
        balance.credits_pending,
    )


def _expected_change(entry: Entry) -> tuple[int, int, int, int]:
    """The entry's effect as the journal's rules say it, worked out apart from the model."""
    slot = (0 if entry.direction is Direction.DEBIT else 1) + (
        0 if entry.entry_type is EntryType.POSTED else 2
    )
    change = [0, 0, 0, 0]
    change[slot] = -entry.amount if entry.entry_type is EntryType.RELEASE else entry.amount
    return (change[0], change[1], change[2], change[3])


# --- the domain, for any operations ----------------------------------------------------

_account_name = st.sampled_from(NAMES)
_operation = st.one_of(
    st.tuples(st.sampled_from(["move", "hold"]), _account_name, _account_name, st.integers(1, 600)),
    st.tuples(st.just("post"), st.integers(0, 40), st.integers(0, 400), st.booleans()),
    st.tuples(st.just("void"), st.integers(0, 40), st.just(0), st.booleans()),
    st.tuples(st.just("reverse"), st.integers(0, 40), st.just(0), st.booleans()),
)
_batches = st.lists(
    st.lists(st.tuples(_operation, st.sampled_from([False, False, False, True])), max_size=6),
    min_size=1,
    max_size=8,
)


def _requests(
    batch: Sequence[tuple[tuple[object, ...], bool]],
    b: int,
    known: dict[str, TransferRecord],
) -> list[TransferRequest]:
    """One batch's requests from drawn operations (references pick among applied transfers,
    so that most of them apply)."""
    applied = [r for r in known.values() if r.ok]
    holds = [
        (r.id, r.legs[0].account_id, r.legs[1].account_id)
        for r in applied
        if r.kind is TransferKind.PENDING and r.resolution_kind is None
    ]
    moves = [r.id for r in applied if r.kind in REVERSIBLE_KINDS and not r.reversed_by]
    requests = []
    for i, (op, linked) in enumerate(batch):
        tid = f"tr_{b}_{i}"
        link = linked and i < len(batch) - 1
        kind = op[0]
        if kind in ("move", "hold"):
            src, dst, amount = str(op[1]), str(op[2]), int(op[3])  # type: ignore[call-overload]
            if src == dst:
                dst = NAMES[(NAMES.index(src) + 1) % len(NAMES)]
            if kind == "move":
                requests.append(move(tid, debit(src, amount), credit(dst, amount), linked=link))
            else:
                requests.append(hold(tid, debit(src, amount), credit(dst, amount), linked=link))
        elif kind in ("post", "void") and holds:
            target, src, dst = holds[int(op[1]) % len(holds)]  # type: ignore[call-overload]
            partial = int(op[2])  # type: ignore[call-overload]
            if kind == "void":
                request = void(tid, target)
            elif partial:
                request = post(tid, target, debit(src, partial), credit(dst, partial))
            else:
                request = post(tid, target)
            requests.append(TransferRequest(request.id, request.operation, link))
        elif kind == "reverse" and moves:
            target = moves[int(op[1]) % len(moves)]  # type: ignore[call-overload]
            requests.append(reverse(tid, target, "acct_bank" if op[3] else "", linked=link))
    return requests


@settings(max_examples=100, deadline=None)
@given(_batches)
def test_every_entry_chains_before_to_after_by_its_own_effect_and_one_version(
    batches: list[list[tuple[tuple[object, ...], bool]]],
) -> None:
    accounts = {
        "acct_bank": account("acct_bank", side=NormalSide.DEBIT),
        "acct_alice": account("acct_alice", no_overdraft=True),
        "acct_bob": account("acct_bob", no_overdraft=True),
    }
    known: dict[str, TransferRecord] = {}
    entries: list[Entry] = []
    events: list[TransferApplied] = []
    now = T0
    funding = [
        move("tr_fund_a", debit("acct_bank", 2000), credit("acct_alice", 2000)),
        move("tr_fund_b", debit("acct_bank", 2000), credit("acct_bob", 2000)),
    ]
    for b, batch in enumerate(batches):
        requests = _requests(batch, b, known)
        if b == 0:
            requests = funding + requests
        if not requests:
            continue
        outcome = decide_batch(requests, accounts, known, now)
        known.update({record.id: record for record in outcome.records})
        entries.extend(outcome.entries)
        events.extend(outcome.take_events())
        now += timedelta(seconds=1)

    history: dict[str, list[Entry]] = {name: [] for name in NAMES}
    for entry in entries:
        history[entry.account_id].append(entry)
    for name, acct in accounts.items():
        previous = Balance(name, acct.currency, acct.normal_side)  # nothing, version 0
        for entry in history[name]:
            before = acct.balance_before(entry)
            after = acct.balance_after(entry, entry.created_at)
            assert (_sums(before), before.version) == (_sums(previous), previous.version)
            assert after.version == before.version + 1 == entry.sequence
            change = tuple(a - b for a, b in zip(_sums(after), _sums(before), strict=True))
            assert change == _expected_change(entry) == entry.effect()
            assert sum(1 for c in change if c) == 1
            previous = after
        # The account as the batches left it is its last entry's balance, at its version.
        assert acct.sums() == (*_sums(previous), previous.version)

    # Each event's balance is the account after that transfer, at its version; per account
    # the versions only grow in commit order.
    newest: dict[str, int] = {}
    for event in events:
        for balance in event.balances:
            assert balance.version > newest.get(balance.account_id, 0)
            newest[balance.account_id] = balance.version
            entry = history[balance.account_id][balance.version - 1]
            assert entry.transfer_id == event.transfer_id
            acct = accounts[balance.account_id]
            assert _sums(balance) == _sums(acct.balance_after(entry, entry.created_at))
    assert newest == {name: a.entry_sequence for name, a in accounts.items() if a.entry_sequence}


# --- the use cases on the fake ------------------------------------------------------------


class Books:
    """The service layer over one in-memory database; single calls as batches of one."""

    def __init__(self) -> None:
        self.db = MemoryLedgerDatabase()
        self.clock = MovableClock(T0)
        for name in NAMES:
            side = NormalSide.DEBIT if name == "acct_bank" else NormalSide.CREDIT
            spec = AccountSpec(
                name, "EUR", side, debits_must_not_exceed_credits=name != "acct_bank"
            )
            use_cases.open_account(self.uow, self.clock, spec)

    def uow(self) -> LedgerUnitOfWork:
        return self.db.uow()

    def submit(self, request: TransferRequest) -> ItemOutcome:
        return use_cases.execute_batch(self.uow, self.clock, [request])[0]

    def tick(self) -> datetime:
        self.clock.advance(timedelta(seconds=7))
        return self.clock.now()


def test_every_answer_about_a_transfer_says_its_commit_time_and_a_replay_the_original() -> None:
    books = Books()
    times: dict[str, datetime] = {}
    fund = move("tr_fund", debit("acct_bank", 1000), credit("acct_alice", 1000))
    times["tr_fund"] = books.tick()
    [funded] = use_cases.create_transfers(books.uow, books.clock, [fund])
    times["tr_hold"] = books.tick()
    held = use_cases.create_transfer(
        books.submit, hold("tr_hold", debit("acct_alice", 300), credit("acct_bob", 300))
    )
    times["tr_post"] = books.tick()
    posted = use_cases.post_pending_transfer(
        books.submit, "tr_post", "tr_hold", (debit("acct_alice", 100), credit("acct_bob", 100))
    )
    times["tr_hold2"] = books.tick()
    use_cases.create_transfer(
        books.submit, hold("tr_hold2", debit("acct_alice", 50), credit("acct_bob", 50))
    )
    times["tr_void"] = books.tick()
    voided = use_cases.void_pending_transfer(books.submit, "tr_void", "tr_hold2")
    times["tr_rev"] = books.tick()
    reversed_ = use_cases.reverse_transfer(books.submit, "tr_rev", "tr_post")
    # Refusals are recorded too, in a batch and on a single call.
    too_much = move("tr_big", debit("acct_alice", 10**6), credit("acct_bob", 10**6))
    times["tr_big"] = books.tick()
    [refused] = use_cases.create_transfers(books.uow, books.clock, [too_much])
    too_much_alone = move("tr_big1", debit("acct_bob", 10**6), credit("acct_alice", 10**6))
    times["tr_big1"] = books.tick()
    with pytest.raises(DomainError) as first:
        use_cases.create_transfer(books.submit, too_much_alone)

    first_answers: list[ItemResult | TransferRecord] = [
        funded,
        held,
        posted,
        voided,
        reversed_,
        refused,
    ]
    assert [a.created_at for a in first_answers] == [
        times[t] for t in ("tr_fund", "tr_hold", "tr_post", "tr_void", "tr_rev", "tr_big")
    ]
    assert first.value.metadata["create_time"] == times["tr_big1"].isoformat()

    # A month later: every replay, batch or single call, and every read says the original.
    books.clock.advance(timedelta(days=30))
    late = books.clock.now()
    replays = [
        fund,
        hold("tr_hold", debit("acct_alice", 300), credit("acct_bob", 300)),
        post("tr_post", "tr_hold", debit("acct_alice", 100), credit("acct_bob", 100)),
        void("tr_void", "tr_hold2"),
        reverse("tr_rev", "tr_post"),
        too_much,
        move("tr_new", debit("acct_bank", 5), credit("acct_bob", 5)),
    ]
    results = use_cases.create_transfers(books.uow, books.clock, replays)
    assert [(r.replayed, r.created_at) for r in results] == [
        *((True, times[t]) for t in ("tr_fund", "tr_hold", "tr_post", "tr_void", "tr_rev")),
        (True, times["tr_big"]),
        (False, late),  # new in the same batch as the replays: committed now
    ]
    wire = results_to_pb(results)
    assert [m.create_time.ToDatetime(tzinfo=UTC) for m in wire] == [r.created_at for r in results]
    again = use_cases.create_transfer(
        books.submit, hold("tr_hold", debit("acct_alice", 300), credit("acct_bob", 300))
    )
    assert again.created_at == times["tr_hold"]
    assert (
        use_cases.post_pending_transfer(
            books.submit, "tr_post", "tr_hold", (debit("acct_alice", 100), credit("acct_bob", 100))
        ).created_at
        == times["tr_post"]
    )
    assert (
        use_cases.void_pending_transfer(books.submit, "tr_void", "tr_hold2").created_at
        == (times["tr_void"])
    )
    assert (
        use_cases.reverse_transfer(books.submit, "tr_rev", "tr_post").created_at
        == (times["tr_rev"])
    )
    with pytest.raises(DomainError) as replayed:
        use_cases.create_transfer(books.submit, too_much_alone)
    assert replayed.value.metadata["replayed"] == "true"
    assert replayed.value.metadata["create_time"] == times["tr_big1"].isoformat()
    for tid in ("tr_fund", "tr_hold", "tr_post", "tr_void", "tr_rev"):
        record = use_cases.get_transfer(books.uow, tid)
        assert transfer_to_pb(record).create_time.ToDatetime(tzinfo=UTC) == times[tid]
    looked_up = use_cases.lookup_transfers(books.uow, ["tr_fund", "tr_rev"])
    assert [r.created_at for r in looked_up] == [times["tr_fund"], times["tr_rev"]]


def test_listed_entries_carry_balance_before_and_after_and_the_account_version() -> None:
    books = Books()
    use_cases.create_transfers(
        books.uow,
        books.clock,
        [
            move("tr_fund", debit("acct_bank", 1000), credit("acct_alice", 1000)),
            hold("tr_hold", debit("acct_alice", 300), credit("acct_bob", 300)),
        ],
    )
    books.tick()
    # A partial post: a release and a posting entry, two versions in one transfer.
    use_cases.create_transfers(
        books.uow,
        books.clock,
        [post("tr_post", "tr_hold", debit("acct_alice", 120), credit("acct_bob", 120))],
    )
    acct, page = use_cases.list_entries(books.uow, "acct_alice", 100, "")
    wire = [entry_to_pb(entry, acct) for entry in page.items]
    assert [(m.sequence, m.type) for m in wire] == [(1, 1), (2, 2), (3, 3), (4, 1)]
    for previous, current in itertools.pairwise(wire):
        assert current.balance_before.version == previous.balance_after.version
        assert current.balance_before.available == previous.balance_after.available
        assert (current.balance_before.posted, current.balance_before.pending) == (
            previous.balance_after.posted,
            previous.balance_after.pending,
        )
    assert [(m.balance_before.version, m.balance_after.version) for m in wire] == [
        (0, 1),
        (1, 2),
        (2, 3),
        (3, 4),
    ]
    assert [(m.balance_before.posted, m.balance_after.posted) for m in wire] == [
        (0, 1000),
        (1000, 1000),
        (1000, 1000),
        (1000, 880),
    ]
    assert [(m.balance_before.available, m.balance_after.available) for m in wire] == [
        (0, 1000),
        (1000, 700),
        (700, 1000),
        (1000, 880),
    ]
    assert not wire[0].balance_before.HasField("as_of")
    balance = use_cases.get_balance(books.uow, "acct_alice", None, books.clock)
    assert balance.version == wire[-1].balance_after.version == acct.entry_sequence


def test_event_balances_carry_versions_that_grow_per_account() -> None:
    books = Books()
    for i in range(4):
        use_cases.create_transfers(
            books.uow,
            books.clock,
            [
                move(f"tr_m{i}", debit("acct_bank", 100), credit("acct_alice", 100)),
                hold(f"tr_h{i}", debit("acct_alice", 30), credit("acct_bob", 30)),
            ],
        )
        books.tick()
        use_cases.create_transfer(books.submit, post(f"tr_p{i}", f"tr_h{i}"))
    messages = [to_outbox_message(event) for event in books.db.events]
    decoded = [decode(m.event_type, m.payload) for m in messages]
    assert {type(m) for m in decoded} == {
        ev.AccountOpened,
        ev.TransferPosted,
        ev.PendingTransferCreated,
        ev.PendingTransferPosted,
    }
    assert sum(isinstance(e, AccountOpened) for e in books.db.events) == 3
    versions: dict[str, list[int]] = {}
    for message in decoded:
        if isinstance(message, ev.AccountOpened):
            assert message.account.balance.version == 0
            continue
        for balance in message.balances:  # type: ignore[attr-defined]
            versions.setdefault(balance.account_id, []).append(balance.version)
    for account_id, seen in versions.items():
        assert seen == sorted(set(seen)), account_id
        assert seen[-1] == use_cases.get_account(books.uow, account_id).entry_sequence
    # Alice: +1 (move), +1 (hold), +2 (release and posting of the post) per round.
    assert versions["acct_alice"] == [1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 16]


def test_balance_before_undoes_exactly_the_entrys_own_effect() -> None:
    acct = Account("acct_a", "EUR", NormalSide.CREDIT, False, False)
    after = (500, 900, 40, 70)
    cases = {
        (EntryType.POSTED, Direction.DEBIT): (475, 900, 40, 70),
        (EntryType.POSTED, Direction.CREDIT): (500, 875, 40, 70),
        (EntryType.HOLD, Direction.DEBIT): (500, 900, 15, 70),
        (EntryType.HOLD, Direction.CREDIT): (500, 900, 40, 45),
        (EntryType.RELEASE, Direction.DEBIT): (500, 900, 65, 70),
        (EntryType.RELEASE, Direction.CREDIT): (500, 900, 40, 95),
    }
    for (entry_type, direction), before in cases.items():
        entry = Entry(
            "acct_a", 9, "tr_x", TransferKind.MOVEMENT, entry_type, direction, 25, *after, T0
        )
        balance = acct.balance_before(entry)
        assert (_sums(balance), balance.version) == (before, 8)
