"""The ledger's use cases on the in-memory unit of work: the whole service layer, no I/O.

The database tests (tests/integration/test_ledger_*.py) show the same behaviour
through gRPC on PostgreSQL; these show each use case's rules in milliseconds, and
the contract tests (tests/integration/test_ledger_repository_contract.py) show
that the fake answers as the SQL repository does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from chassis.batching import GroupCommitter
from chassis.kernel.audit import Requester
from chassis.kernel.errors import (
    DomainError,
    ErrorCategory,
    IdempotencyKeyReused,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RetryTransaction,
)
from chassis.kernel.uow import run_in_transaction
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger.adapters.memory import (
    MemoryLedgerDatabase,
    MemoryLedgerRepository,
    MemoryLedgerUnitOfWork,
)
from ledger.domain.batch import decide_batch
from ledger.domain.events import AccountOpened, TransferApplied
from ledger.domain.model import (
    Account,
    AccountSpec,
    Direction,
    EntryType,
    NormalSide,
    TransferKind,
    TransferRecord,
    TransferRequest,
    TransferStatus,
)
from ledger.service_layer import use_cases
from ledger.service_layer.ports import ItemOutcome
from ledger.service_layer.unit_of_work import LedgerUnitOfWork
from ledger.service_layer.use_cases import Caller

from tests.ledger_builders import credit, debit, hold, move, post, reverse, void
from tests.ledger_fixtures import MovableClock

START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ALICE = Caller(customer_id="cus_alice")


class Ledger:
    """The service layer over one in-memory database, with a clock tests move."""

    def __init__(self) -> None:
        self.db = MemoryLedgerDatabase()
        self.clock = MovableClock(START)
        self.submitted: list[TransferRequest] = []

    def uow(self) -> LedgerUnitOfWork:
        return self.db.uow()

    def submit(self, request: TransferRequest) -> ItemOutcome:
        """The group commit, as a batch of one (no threads)."""
        self.submitted.append(request)
        return use_cases.execute_batch(self.uow, self.clock, [request])[0]

    def open(
        self,
        account_id: str,
        side: NormalSide = NormalSide.CREDIT,
        *,
        no_overdraft: bool = False,
        customer_id: str = "",
    ) -> None:
        spec = AccountSpec(
            account_id,
            "EUR",
            side,
            debits_must_not_exceed_credits=no_overdraft,
            customer_id=customer_id,
        )
        use_cases.open_account(self.uow, self.clock, spec)

    def run(self, *requests: TransferRequest) -> list[str]:
        """Each item's outcome: "ok" or its reason."""
        results = use_cases.create_transfers(self.uow, self.clock, list(requests))
        return ["ok" if r.ok else r.reason for r in results]

    def posted(self, account_id: str) -> int:
        return use_cases.get_balance(self.uow, account_id, None, self.clock).posted

    def available(self, account_id: str) -> int:
        return use_cases.get_balance(self.uow, account_id, None, self.clock).available


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture
def funded(ledger: Ledger) -> Ledger:
    """acct_bank (debit-normal) funded acct_alice (no overdraft, cus_alice's) with 1,000."""
    ledger.open("acct_bank", NormalSide.DEBIT)
    ledger.open("acct_alice", no_overdraft=True, customer_id="cus_alice")
    ledger.open("acct_bob", no_overdraft=True, customer_id="cus_bob")
    assert ledger.run(move("tr_fund", debit("acct_bank", 1000), credit("acct_alice", 1000))) == [
        "ok"
    ]
    return ledger


def violated(call: Callable[[], object]) -> list[str]:
    with pytest.raises(InvalidArgument) as refused:
        call()
    return [v.field for v in refused.value.violations]


def refused_reason(call: Callable[[], object]) -> str:
    with pytest.raises(DomainError) as refused:
        call()
    return refused.value.reason


# --- accounts -------------------------------------------------------------------


def test_opening_an_account_is_idempotent_and_records_one_event(ledger: Ledger) -> None:
    spec = AccountSpec("acct_a", "EUR", NormalSide.CREDIT, metadata=(("k", "v"),))
    first = use_cases.open_account(ledger.uow, ledger.clock, spec)
    again = use_cases.open_account(ledger.uow, ledger.clock, spec)
    assert (again.id, again.created_at, again.metadata) == (first.id, START, (("k", "v"),))
    assert [type(e) for e in ledger.db.events] == [AccountOpened]
    with pytest.raises(IdempotencyKeyReused):
        use_cases.open_account(
            ledger.uow, ledger.clock, AccountSpec("acct_a", "USD", spec.normal_side)
        )


def test_an_invalid_account_is_refused_naming_its_fields_and_nothing_is_written(
    ledger: Ledger,
) -> None:
    fields = violated(
        lambda: use_cases.open_account(ledger.uow, ledger.clock, AccountSpec("nope", "XXX", None))
    )
    assert fields == ["account.id", "account.currency", "account.normal_side"]
    assert len(ledger.db.accounts) == 0
    assert ledger.db.events == []


def test_an_account_is_read_by_its_owner_or_a_service_only(funded: Ledger) -> None:
    assert use_cases.get_account(funded.uow, "acct_alice", ALICE).customer_id == "cus_alice"
    assert use_cases.get_account(funded.uow, "acct_bob").id == "acct_bob"
    with pytest.raises(PermissionDenied):
        use_cases.get_account(funded.uow, "acct_bob", ALICE)
    with pytest.raises(NotFound):
        use_cases.get_account(funded.uow, "acct_nobody")
    assert violated(lambda: use_cases.get_account(funded.uow, "acct_\x00")) == ["account_id"]


def test_accounts_are_listed_in_pages_and_a_customer_sees_only_its_own(ledger: Ledger) -> None:
    for i in range(7):
        ledger.open(f"acct_{i:02d}", customer_id="cus_a" if i % 2 else "cus_b")
    seen, token = [], ""
    while True:
        page = use_cases.list_accounts(ledger.uow, 3, token)
        seen += [a.id for a in page.items]
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"acct_{i:02d}" for i in range(7)]
    mine = use_cases.list_accounts(ledger.uow, 10, "", caller=Caller("cus_a"))
    assert [a.id for a in mine.items] == ["acct_01", "acct_03", "acct_05"]
    with pytest.raises(PermissionDenied):
        use_cases.list_accounts(ledger.uow, 10, "", "cus_b", Caller("cus_a"))
    assert violated(lambda: use_cases.list_accounts(ledger.uow, 10, "forged")) == ["page_token"]


# --- transfers ---------------------------------------------------------------------


def test_a_batch_applies_in_order_and_records_its_events_with_its_state(funded: Ledger) -> None:
    before = len(funded.db.events)
    assert funded.run(
        move("tr_1", debit("acct_alice", 300), credit("acct_bob", 300)),
        move("tr_2", debit("acct_alice", 800), credit("acct_bob", 800)),
        hold("tr_3", debit("acct_alice", 700), credit("acct_bob", 700)),
    ) == ["ok", "INSUFFICIENT_FUNDS", "ok"]
    events = funded.db.events[before:]
    assert [(type(e), e.transfer_id) for e in events] == [
        (TransferApplied, "tr_1"),
        (TransferApplied, "tr_3"),
    ]
    assert (funded.posted("acct_alice"), funded.available("acct_alice")) == (700, 0)


def test_a_replayed_batch_answers_the_same_and_changes_nothing(funded: Ledger) -> None:
    batch = [
        move("tr_1", debit("acct_alice", 300), credit("acct_bob", 300)),
        move("tr_2", debit("acct_alice", 5000), credit("acct_bob", 5000)),
    ]
    first = use_cases.create_transfers(funded.uow, funded.clock, batch)
    events = len(funded.db.events)
    funded.clock.advance(timedelta(minutes=1))
    again = use_cases.create_transfers(funded.uow, funded.clock, batch)
    assert [(r.ok, r.reason, r.created_at) for r in again] == [
        (r.ok, r.reason, r.created_at) for r in first
    ]
    assert all(r.replayed for r in again)
    assert len(funded.db.events) == events
    assert funded.posted("acct_bob") == 300


def test_an_invalid_batch_is_refused_whole_naming_each_field(funded: Ledger) -> None:
    fields = violated(
        lambda: use_cases.create_transfers(
            funded.uow,
            funded.clock,
            [
                move("tr_ok", debit("acct_alice", 1), credit("acct_bob", 1)),
                move("tr_bad", debit("acct_alice", 0), credit("acct_bob", 1)),
            ],
        )
    )
    assert fields == ["transfers[1].movement.legs[0].amount"]
    assert use_cases.lookup_transfers(funded.uow, ["tr_ok", "tr_bad"]) == []


def test_a_linked_chain_that_fails_leaves_nothing_behind(funded: Ledger) -> None:
    assert funded.run(
        move("tr_a", debit("acct_alice", 100), credit("acct_bob", 100), linked=True),
        move("tr_b", debit("acct_bob", 500), credit("acct_alice", 500)),
    ) == ["LINKED_TRANSFER_FAILED", "INSUFFICIENT_FUNDS"]
    assert funded.posted("acct_bob") == 0


def test_single_transfer_calls_join_the_group_commit_and_raise_their_refusal(
    funded: Ledger,
) -> None:
    held = use_cases.create_transfer(
        funded.submit, hold("tr_hold", debit("acct_alice", 400), credit("acct_bob", 400))
    )
    assert held.status is TransferStatus.PENDING
    posted = use_cases.post_pending_transfer(
        funded.submit, "tr_post", "tr_hold", (debit("acct_alice", 150), credit("acct_bob", 150))
    )
    assert (posted.kind, posted.pending_transfer_id) == (TransferKind.POST_PENDING, "tr_hold")
    assert funded.posted("acct_bob") == 150
    assert refused_reason(
        lambda: use_cases.void_pending_transfer(funded.submit, "tr_v", "tr_hold")
    ) == ("ALREADY_POSTED")
    reversal = use_cases.reverse_transfer(funded.submit, "tr_rev", "tr_post")
    assert reversal.reversed_transfer_id == "tr_post"
    assert funded.posted("acct_bob") == 0
    # A refusal is recorded: the same id answers the same, replayed.
    with pytest.raises(DomainError) as again:
        use_cases.reverse_transfer(funded.submit, "tr_rev2", "tr_post")
    assert (again.value.reason, again.value.category) == (
        "ALREADY_REVERSED",
        ErrorCategory.FAILED_PRECONDITION,
    )
    with pytest.raises(DomainError) as replayed:
        use_cases.reverse_transfer(funded.submit, "tr_rev2", "tr_post")
    assert replayed.value.metadata == {
        "transfer_id": "tr_rev2",
        "replayed": "true",
        "create_time": START.isoformat(),
    }
    with pytest.raises(DomainError) as missing:
        use_cases.void_pending_transfer(funded.submit, "tr_v2", "tr_missing")
    assert (missing.value.reason, missing.value.category) == (
        "PENDING_TRANSFER_NOT_FOUND",
        ErrorCategory.NOT_FOUND,
    )


def test_a_voided_hold_releases_its_funds(funded: Ledger) -> None:
    use_cases.create_transfer(
        funded.submit, hold("tr_hold", debit("acct_alice", 400), credit("acct_bob", 400))
    )
    assert funded.available("acct_alice") == 600
    voided = use_cases.void_pending_transfer(funded.submit, "tr_void", "tr_hold", (("why", "x"),))
    assert (voided.kind, voided.metadata) == (TransferKind.VOID_PENDING, (("why", "x"),))
    assert funded.available("acct_alice") == 1000
    assert use_cases.get_transfer(funded.uow, "tr_hold").status is TransferStatus.VOIDED


@pytest.mark.parametrize(
    ("call", "fields"),
    [
        (
            lambda s: use_cases.reverse_transfer(s, "x", "acct_bob"),
            ["transfer_id", "reversed_transfer_id"],
        ),
        (
            lambda s: use_cases.reverse_transfer(s, "tr_r", "tr_fund", "bob"),
            ["shortfall_account_id"],
        ),
        (
            lambda s: use_cases.post_pending_transfer(s, "tr_p", "", (debit("acct_bob", 0),)),
            ["pending_transfer_id", "legs[0].amount"],
        ),
        (
            lambda s: use_cases.void_pending_transfer(s, "tr_v", "nope", (("", "v"),)),
            ["metadata['']", "pending_transfer_id"],
        ),
        (
            lambda s: use_cases.create_transfer(
                s, move("tr_c", debit("acct_alice", 1), credit("acct_bob", 2), linked=True)
            ),
            ["transfer.movement.legs", "transfer.linked"],
        ),
    ],
)
def test_single_transfer_calls_name_their_own_fields_and_submit_nothing_refused(
    funded: Ledger,
    call: Callable[[Callable[[TransferRequest], ItemOutcome]], object],
    fields: list[str],
) -> None:
    assert sorted(violated(lambda: call(funded.submit))) == sorted(fields)
    assert funded.submitted == []


def test_a_customer_cannot_move_money(funded: Ledger) -> None:
    calls = [
        lambda: use_cases.create_transfer(
            funded.submit, move("tr_c", debit("acct_alice", 1), credit("acct_bob", 1)), ALICE
        ),
        lambda: use_cases.post_pending_transfer(funded.submit, "tr_p", "tr_h", caller=ALICE),
        lambda: use_cases.void_pending_transfer(funded.submit, "tr_v", "tr_h", caller=ALICE),
        lambda: use_cases.reverse_transfer(funded.submit, "tr_r", "tr_fund", caller=ALICE),
        lambda: use_cases.lookup_transfers(funded.uow, ["tr_fund"], ALICE),
    ]
    for call in calls:
        assert refused_reason(call) == "SERVICE_CALLER_REQUIRED"
    assert funded.submitted == []


def test_a_transfer_is_read_by_a_party_to_it_and_a_refused_one_is_not_found(
    funded: Ledger,
) -> None:
    funded.run(move("tr_big", debit("acct_alice", 10**6), credit("acct_bob", 10**6)))
    assert use_cases.get_transfer(funded.uow, "tr_fund", ALICE).id == "tr_fund"
    assert refused_reason(
        lambda: use_cases.get_transfer(funded.uow, "tr_fund", Caller("cus_bob"))
    ) == ("NOT_TRANSFER_PARTY")
    with pytest.raises(NotFound) as refused:
        use_cases.get_transfer(funded.uow, "tr_big")
    assert refused.value.metadata["refused_reason"] == "INSUFFICIENT_FUNDS"
    assert violated(lambda: use_cases.get_transfer(funded.uow, "acct_x")) == ["transfer_id"]


def test_lookup_returns_the_applied_transfers_asked_for_once_in_order(funded: Ledger) -> None:
    funded.run(
        move("tr_1", debit("acct_alice", 1), credit("acct_bob", 1)),
        move("tr_no", debit("acct_bob", 99), credit("acct_alice", 99)),
    )
    found = use_cases.lookup_transfers(
        funded.uow, ["tr_1", "tr_missing", "tr_no", "tr_fund", "tr_1"]
    )
    assert [r.id for r in found] == ["tr_1", "tr_fund"]
    assert violated(lambda: use_cases.lookup_transfers(funded.uow, [])) == ["transfer_ids"]


def test_due_holds_expire_once_and_release_their_funds(funded: Ledger) -> None:
    funded.run(
        hold(
            "tr_h1",
            debit("acct_alice", 100),
            credit("acct_bob", 100),
            timeout=timedelta(seconds=30),
        ),
        hold("tr_h2", debit("acct_alice", 200), credit("acct_bob", 200)),
    )
    assert use_cases.expire_due_holds(funded.uow, funded.clock) == 0
    funded.clock.advance(timedelta(seconds=30))
    assert use_cases.expire_due_holds(funded.uow, funded.clock) == 1
    assert use_cases.expire_due_holds(funded.uow, funded.clock) == 0
    assert use_cases.get_transfer(funded.uow, "tr_h1").status is TransferStatus.EXPIRED
    assert funded.available("acct_alice") == 800
    assert refused_reason(
        lambda: use_cases.post_pending_transfer(funded.submit, "tr_p", "tr_h1")
    ) == ("PENDING_TRANSFER_EXPIRED")


# --- balances and history --------------------------------------------------------------


def test_an_as_of_balance_never_changes_afterwards(funded: Ledger) -> None:
    asked = funded.clock.now()
    assert use_cases.get_balance(funded.uow, "acct_bob", asked, funded.clock).posted == 0
    # A writer whose clock lags behind the instant answered for stamps after it.
    funded.clock.current = asked - timedelta(seconds=1)
    funded.run(move("tr_late", debit("acct_alice", 7), credit("acct_bob", 7)))
    funded.clock.current = asked
    assert use_cases.get_balance(funded.uow, "acct_bob", asked, funded.clock).posted == 0
    assert use_cases.get_transfer(funded.uow, "tr_late").created_at > asked
    funded.clock.advance(timedelta(seconds=1))
    assert (
        use_cases.get_balance(funded.uow, "acct_bob", funded.clock.now(), funded.clock).posted == 7
    )
    future = use_cases.get_balance(funded.uow, "acct_bob", asked + timedelta(days=1), funded.clock)
    assert future.as_of == funded.clock.now()


def test_entries_are_listed_in_pages_with_the_sums_after_each(funded: Ledger) -> None:
    for i in range(5):
        funded.run(move(f"tr_{i}", debit("acct_alice", 10), credit("acct_bob", 10)))
    account, first = use_cases.list_entries(funded.uow, "acct_alice", 4, "")
    _, rest = use_cases.list_entries(funded.uow, "acct_alice", 4, first.next_page_token)
    entries = [*first.items, *rest.items]
    assert account.id == "acct_alice"
    assert [e.sequence for e in entries] == [1, 2, 3, 4, 5, 6]
    assert rest.next_page_token == ""
    assert [e.debits_posted for e in entries] == [0, 10, 20, 30, 40, 50]
    assert {e.entry_type for e in entries} == {EntryType.POSTED}
    assert (
        refused_reason(lambda: use_cases.list_entries(funded.uow, "acct_bob", 4, "", ALICE))
        == "NOT_ACCOUNT_OWNER"
    )


# --- the unit of work -------------------------------------------------------------------


def test_a_failed_transaction_leaves_nothing_behind(funded: Ledger) -> None:
    def work(uow: LedgerUnitOfWork) -> None:
        uow.ledger.seal_history("acct_alice", START)
        uow.ledger.insert_account(
            Account.open(AccountSpec("acct_new", "EUR", NormalSide.DEBIT), START)
        )
        uow.ledger.write(
            decide_batch(
                [move("tr_lost", debit("acct_alice", 5), credit("acct_bob", 5))],
                uow.ledger.load_for_batch(["tr_lost"], ["acct_alice", "acct_bob"], [])[1],
                {},
                START,
            )
        )
        raise RuntimeError("crash after the writes, before the commit")

    events = len(funded.db.events)
    with pytest.raises(RuntimeError):
        run_in_transaction(funded.uow, work)
    assert funded.db.accounts.get("acct_new") is None
    account = funded.db.accounts.get("acct_alice")
    assert account is not None
    assert (account.sealed_through, account.debits_posted, account.entry_sequence) == (None, 0, 1)
    assert use_cases.lookup_transfers(funded.uow, ["tr_lost"]) == []
    assert len(funded.db.entries["acct_bob"]) == 0
    assert len(funded.db.events) == events


def test_a_batch_decided_on_a_stale_snapshot_loses_the_race_and_its_retry_answers_it(
    funded: Ledger,
) -> None:
    use_cases.create_transfer(
        funded.submit, hold("tr_hold", debit("acct_alice", 100), credit("acct_bob", 100))
    )
    # A rival voids the hold between the batch's reads and its write (as another process
    # could if the accounts were not locked): the batch's write loses, its transaction
    # starts over on the new state and answers from it.
    rivals = [lambda: funded.submit(void("tr_rival", "tr_hold"))]

    class RacedRepository(MemoryLedgerRepository):
        def load_for_batch(
            self,
            transfer_ids: Sequence[str],
            leg_account_ids: Iterable[str],
            referenced_ids: Iterable[str],
        ) -> tuple[dict[str, TransferRecord], dict[str, Account]]:
            read = super().load_for_batch(transfer_ids, leg_account_ids, referenced_ids)
            if rivals:
                funded.db.end()
                rivals.pop()()
                funded.db.begin()
            return read

    class RacedUnitOfWork(MemoryLedgerUnitOfWork):
        def _open_repositories(self, database: MemoryLedgerDatabase) -> None:
            self.ledger = RacedRepository(database)

    [outcome] = use_cases.execute_batch(
        lambda: RacedUnitOfWork(funded.db), funded.clock, [post("tr_post", "tr_hold")]
    )
    assert rivals == []
    assert (outcome.result.ok, outcome.result.reason) == (False, "ALREADY_VOIDED")
    assert use_cases.get_transfer(funded.uow, "tr_hold").resolved_by == "tr_rival"
    assert funded.available("acct_alice") == 1000


def test_the_group_commit_answers_concurrent_callers_each_with_their_own_outcome(
    funded: Ledger,
) -> None:
    batcher: GroupCommitter[TransferRequest, ItemOutcome] = GroupCommitter(
        lambda requests: use_cases.execute_batch(funded.uow, funded.clock, requests),
        max_batch=16,
        workers=2,
        name="test-transfers",
    )
    answers: dict[str, str] = {}

    def call(i: int) -> None:
        amount = 5000 if i == 3 else 10
        try:
            record = use_cases.create_transfer(
                batcher.submit,
                move(f"tr_c{i}", debit("acct_alice", amount), credit("acct_bob", amount)),
            )
            answers[record.id] = "ok"
        except DomainError as refused:
            answers[f"tr_c{i}"] = refused.reason

    threads = [threading.Thread(target=call, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batcher.close()
    assert answers == {f"tr_c{i}": "INSUFFICIENT_FUNDS" if i == 3 else "ok" for i in range(20)}
    assert (funded.posted("acct_alice"), funded.posted("acct_bob")) == (810, 190)


# --- properties over random traffic ------------------------------------------------------

ACCOUNTS = ("acct_a", "acct_b", "acct_c")


@st.composite
def traffic(draw: st.DrawFn) -> list[list[TransferRequest]]:
    batches: list[list[TransferRequest]] = []
    made: list[tuple[str, str]] = []  # (id, kind)
    for b in range(draw(st.integers(min_value=1, max_value=4))):
        batch = []
        for i in range(draw(st.integers(min_value=1, max_value=6))):
            tid = f"tr_{b}_{i}"
            kind = draw(st.sampled_from(["move", "hold", "post", "void", "reverse", "replay"]))
            src, dst = draw(st.permutations(ACCOUNTS))[:2]
            amount = draw(st.integers(min_value=1, max_value=300))
            holds = [t for t, k in made if k == "hold"]
            moved = [t for t, k in made if k == "move"]
            if kind == "post" and holds:
                batch.append(post(tid, draw(st.sampled_from(holds))))
            elif kind == "void" and holds:
                batch.append(void(tid, draw(st.sampled_from(holds))))
            elif kind == "reverse" and moved:
                batch.append(reverse(tid, draw(st.sampled_from(moved))))
            elif kind == "replay" and batches:
                batch.append(draw(st.sampled_from([r for past in batches for r in past])))
            elif kind == "hold":
                batch.append(hold(tid, debit(src, amount), credit(dst, amount)))
                made.append((tid, "hold"))
            else:
                batch.append(move(tid, debit(src, amount), credit(dst, amount)))
                made.append((tid, "move"))
        batches.append(list({r.id: r for r in batch}.values()))
    return batches


@settings(max_examples=60, deadline=None)
@given(traffic())
def test_random_traffic_keeps_the_books_balanced_limits_respected_and_replays_identical(
    batches: list[list[TransferRequest]],
) -> None:
    ledger = Ledger()
    ledger.open("acct_a", NormalSide.DEBIT)
    ledger.open("acct_b", no_overdraft=True)
    ledger.open("acct_c", no_overdraft=True)
    answered: dict[str, tuple[bool, str]] = {}
    for batch in batches:
        results = use_cases.create_transfers(ledger.uow, ledger.clock, batch)
        for request, result in zip(batch, results, strict=True):
            if request.id in answered and result.reason != "IDEMPOTENCY_KEY_REUSED":
                assert result.replayed
                assert (result.ok, result.reason) == answered[request.id]
            answered.setdefault(request.id, (result.ok, result.reason))
        ledger.clock.advance(timedelta(seconds=1))
    balances = {a: use_cases.get_balance(ledger.uow, a, None, ledger.clock) for a in ACCOUNTS}
    debits = sum(b.debits_posted + b.debits_pending for b in balances.values())
    credits = sum(b.credits_posted + b.credits_pending for b in balances.values())
    assert debits == credits
    for account_id in ("acct_b", "acct_c"):
        assert balances[account_id].available >= 0
    for account_id, balance in balances.items():
        _, page = use_cases.list_entries(ledger.uow, account_id, 1000, "")
        last = page.items[-1] if page.items else None
        sums = (
            (last.debits_posted, last.credits_posted, last.debits_pending, last.credits_pending)
            if last
            else (0, 0, 0, 0)
        )
        assert sums == (
            balance.debits_posted,
            balance.credits_posted,
            balance.debits_pending,
            balance.credits_pending,
        )
        assert balance.version == len(page.items)
        assert all(e.direction in (Direction.DEBIT, Direction.CREDIT) for e in page.items)


def test_a_customer_sees_its_own_balance_only(funded: Ledger) -> None:
    assert use_cases.get_balance(funded.uow, "acct_alice", None, funded.clock, ALICE).posted == 1000
    with pytest.raises(PermissionDenied):
        use_cases.get_balance(funded.uow, "acct_bob", None, funded.clock, ALICE)


def test_a_race_lost_on_every_attempt_reaches_the_caller(ledger: Ledger) -> None:
    def always(uow: LedgerUnitOfWork) -> None:
        raise RetryTransaction("always")

    with pytest.raises(RetryTransaction):
        run_in_transaction(ledger.uow, always, attempts=2)
    assert ledger.db.events == []


# --- who asked ---------------------------------------------------------------------


def test_every_write_records_its_requester_and_a_replay_keeps_the_first(funded: Ledger) -> None:
    maker = Caller(requester=Requester("cli_maker", None, "req-1"))
    other = Caller(requester=Requester("cli_other", None, "req-2"))
    spec = AccountSpec("acct_carol", "EUR", NormalSide.CREDIT, customer_id="cus_carol")
    opened = use_cases.open_account(funded.uow, funded.clock, spec, maker.requester)
    assert opened.created_by == maker.requester
    single = move("tr_single", debit("acct_alice", 10), credit("acct_bob", 10))
    made = use_cases.create_transfer(funded.submit, single, maker)
    hold_request = hold("tr_hold", debit("acct_alice", 5), credit("acct_bob", 5))
    use_cases.create_transfers(funded.uow, funded.clock, [hold_request], other.requester)
    voided = use_cases.void_pending_transfer(funded.submit, "tr_void", "tr_hold", caller=maker)
    replayed = use_cases.create_transfer(funded.submit, single, other)
    assert (made.created_by, voided.created_by, replayed.created_by) == (
        maker.requester,
        maker.requester,
        maker.requester,
    )
    assert use_cases.get_transfer(funded.uow, "tr_hold").created_by == other.requester
    assert use_cases.get_transfer(funded.uow, "tr_fund").created_by is None
    assert use_cases.get_account(funded.uow, "acct_carol").created_by == maker.requester
