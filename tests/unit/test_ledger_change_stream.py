"""The change stream's service layer and its pure reading of bodies (no I/O).

A body's entries hold each account's sums after the entry, so the last entry of an
account in a record is its balance after the record; these tests check that reading
against the ledger's own balances, record by record, on the in-memory ledger. The
gRPC stream over PostgreSQL is in tests/integration/test_ledger_change_stream.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from chassis.kernel.errors import DomainError, ErrorCategory, InvalidArgument, PermissionDenied
from ledger.adapters.memory import MemoryLedgerDatabase
from ledger.domain.journal import GENESIS, canonical
from ledger.domain.journal_changes import (
    AccountTerms,
    JournalChange,
    accounts_named,
    decoded,
    journal_change,
)
from ledger.domain.journal_records import JournalRow, entry_fields, transfer_row_fields
from ledger.domain.model import (
    AccountSpec,
    Direction,
    Entry,
    EntryType,
    NormalSide,
    TransferKind,
    TransferRecord,
)
from ledger.domain.replay import ENTRY_FIELDS, TRANSFER_FIELDS
from ledger.service_layer import change_stream, use_cases
from ledger.service_layer.unit_of_work import LedgerUnitOfWork
from ledger.service_layer.use_cases import Caller

from tests.ledger_builders import credit, debit, hold, move
from tests.ledger_fixtures import MovableClock

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _entry(account_id: str, sequence: int, **sums: int) -> Entry:
    return Entry(
        account_id=account_id,
        sequence=sequence,
        transfer_id="tr_1",
        kind=TransferKind.MOVEMENT,
        entry_type=EntryType.POSTED,
        direction=Direction.DEBIT,
        amount=5,
        debits_posted=sums.get("d", 0),
        credits_posted=sums.get("c", 0),
        debits_pending=sums.get("dp", 0),
        credits_pending=sums.get("cp", 0),
        created_at=START + timedelta(microseconds=sequence),
    )


ENTRIES = [
    _entry("acct_a", 3, d=10),
    _entry("acct_a", 4, d=10, dp=7),  # the same account twice: this one is after
    _entry("acct_b", 9, c=10, cp=7),
]
RECORD = TransferRecord("tr_1", TransferKind.MOVEMENT, "f" * 32, True, START)


def _keyed_body() -> dict[str, object]:
    """Layout 1, as journals written before layout 2 hold it."""
    keyed_entries = []
    for entry in ENTRIES:
        row = dict(zip(ENTRY_FIELDS, entry_fields(entry), strict=True))
        keyed_entries.append({**row, "transfer_id": "tr_1"})
    return {
        "kind": "transfer",
        "transfer": {
            **dict(zip(TRANSFER_FIELDS, transfer_row_fields(RECORD), strict=True)),
            "requester": None,
        },
        "entries": keyed_entries,
        "holds": {"opened": [], "closed": []},
    }


@pytest.mark.parametrize("layout", [1, 2])
def test_the_last_entry_of_each_account_is_its_balance_after_the_record(layout: int) -> None:
    body: object = (
        _keyed_body()
        if layout == 1
        else ["transfer", transfer_row_fields(RECORD), [entry_fields(e) for e in ENTRIES], [], []]
    )
    row = JournalRow(1, "transfer", canonical(body), GENESIS, b"h" * 32)
    terms = {
        "acct_a": AccountTerms("EUR", NormalSide.DEBIT),
        "acct_b": AccountTerms("EUR", NormalSide.CREDIT),
    }
    assert accounts_named(decoded(row)) == {"acct_a", "acct_b"}
    change = journal_change(row, decoded(row), terms)
    assert (change.transfer_id, change.account_id, change.ok) == ("tr_1", "", True)
    assert change.created_at == START
    a, b = change.balances
    assert (a.account_id, a.version, a.debits_posted, a.debits_pending) == ("acct_a", 4, 10, 7)
    assert (a.posted, a.available) == (10, 10)  # debit-normal: a pending debit does not reduce
    assert (b.account_id, b.version, b.posted, b.pending, b.available) == ("acct_b", 9, 10, 7, 10)
    assert b.as_of == START + timedelta(microseconds=9)


class Ledger:
    def __init__(self) -> None:
        self.db = MemoryLedgerDatabase()
        self.clock = MovableClock(START)

    def uow(self) -> LedgerUnitOfWork:
        return self.db.uow()

    def open(self, account_id: str, side: NormalSide = NormalSide.CREDIT) -> None:
        spec = AccountSpec(account_id, "EUR", side, debits_must_not_exceed_credits=side == 2)
        use_cases.open_account(self.uow, self.clock, spec)

    def follow(self, after: int = 0, page_size: int = 500) -> list[JournalChange]:
        """Everything after ``after``, page by page until caught up (as the servicer reads)."""
        follower = change_stream.JournalFollower(self.uow, after, page_size=page_size)
        changes = follower.next_page()
        while not follower.caught_up:
            changes += follower.next_page()
        return changes


@pytest.fixture
def ledger() -> Ledger:
    ledger = Ledger()
    ledger.open("acct_bank", NormalSide.DEBIT)  # may be overdrawn; the others may not
    ledger.open("acct_alice")
    ledger.open("acct_bob")
    use_cases.create_transfers(
        ledger.uow,
        ledger.clock,
        [
            move("tr_fund", debit("acct_bank", 100), credit("acct_alice", 100)),
            hold("tr_hold", debit("acct_alice", 30), credit("acct_bob", 30), timeout=timedelta(1)),
            move("tr_nope", debit("acct_bob", 50), credit("acct_alice", 50)),  # refused
        ],
    )
    ledger.clock.advance(timedelta(days=2))
    assert use_cases.expire_due_holds(ledger.uow, ledger.clock) == 1
    return ledger


def test_every_record_once_in_order_with_the_balances_it_left(ledger: Ledger) -> None:
    changes = ledger.follow()
    assert [c.row.sequence for c in changes] == list(range(1, len(changes) + 1))
    about = [c.account_id or c.transfer_id for c in changes]
    assert about[:6] == ["acct_bank", "acct_alice", "acct_bob", "tr_fund", "tr_hold", "tr_nope"]
    assert len(about) == 7  # the hold's expiry is a transfer record too
    expiry = changes[6]
    assert expiry.ok
    assert {b.account_id for b in expiry.balances} == {"acct_alice", "acct_bob"}
    refused = [c for c in changes if not c.ok]
    assert [(c.transfer_id, c.balances) for c in refused] == [("tr_nope", ())]
    # The last balance the stream says of each account is the ledger's balance now.
    latest = {b.account_id: b for c in changes for b in c.balances}
    for account_id, streamed in latest.items():
        now = use_cases.get_balance(ledger.uow, account_id, None, ledger.clock)
        assert (streamed.posted, streamed.pending, streamed.available, streamed.version) == (
            now.posted,
            now.pending,
            now.available,
            now.version,
        ), account_id
    assert latest["acct_alice"].available == 100
    assert latest["acct_bank"].posted == 100


def test_pages_and_resumes_give_the_same_records(ledger: Ledger) -> None:
    whole = ledger.follow()
    # A resumed stream has not seen the accounts opened: it reads their terms once.
    assert ledger.follow(page_size=2) == whole
    assert ledger.follow(after=4, page_size=1) == whole[4:]
    assert ledger.follow(after=len(whole)) == []


def test_a_caught_up_follower_goes_on_with_what_commits_later() -> None:
    ledger = Ledger()
    ledger.open("acct_a")
    follower = change_stream.JournalFollower(ledger.uow, 0)
    assert [c.account_id for c in follower.next_page()] == ["acct_a"]
    assert follower.caught_up
    assert follower.next_page() == []
    ledger.open("acct_b")
    assert [c.account_id for c in follower.next_page()] == ["acct_b"]
    assert follower.after == 2


def test_a_sequence_beyond_the_head_is_out_of_range_not_waited_for(ledger: Ledger) -> None:
    """A consumer past the head holds records this ledger does not have (it was restored from
    an older backup, or is another ledger): the records the ledger writes next under those
    sequences are not the ones it had, so it is told at once instead of waiting for them."""
    head = len(ledger.follow())
    at_head = change_stream.JournalFollower(ledger.uow, head)
    assert at_head.next_page() == []  # caught up: it waits for the next record
    assert at_head.caught_up
    with pytest.raises(DomainError) as beyond:
        change_stream.JournalFollower(ledger.uow, head + 1).next_page()
    assert beyond.value.category is ErrorCategory.OUT_OF_RANGE
    assert beyond.value.reason == "SEQUENCE_BEYOND_HEAD"
    assert beyond.value.metadata == {"after_sequence": str(head + 1), "head_sequence": str(head)}
    assert [v.field for v in beyond.value.violations] == ["after_sequence"]
    # The journal cut back under a caught-up stream (a restore): its next poll says so.
    del ledger.db.journal[head - 2 :]
    with pytest.raises(DomainError) as restored:
        at_head.next_page()
    assert restored.value.metadata["head_sequence"] == str(head - 2)


def test_a_negative_sequence_or_a_customer_is_refused(ledger: Ledger) -> None:
    with pytest.raises(InvalidArgument) as refused:
        change_stream.JournalFollower(ledger.uow, -1)
    assert [v.field for v in refused.value.violations] == ["after_sequence"]
    with pytest.raises(PermissionDenied):
        change_stream.JournalFollower(ledger.uow, 0, Caller("cus_x"))


def test_an_account_opened_has_a_zero_balance_of_its_own_terms(ledger: Ledger) -> None:
    first = ledger.follow()[0]
    body = json.loads(first.row.body)
    assert body["kind"] == "account_opened"
    assert first.account_id == "acct_bank"
    (balance,) = first.balances
    assert (balance.normal_side, balance.currency, balance.version) == (NormalSide.DEBIT, "EUR", 0)
    assert balance.posted == 0
    assert balance.as_of == first.created_at
