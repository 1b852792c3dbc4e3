"""The ledger's batch decision as a pure function: no database, no gRPC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from chassis.kernel.errors import RetryTransaction
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger.domain.batch import BatchOutcome, decide_batch
from ledger.domain.model import (
    Account,
    Direction,
    Entry,
    EntryType,
    ExpirePendingOp,
    NormalSide,
    TransferKind,
    TransferRecord,
    TransferRequest,
    TransferStatus,
)

from tests.ledger_builders import account, credit, debit, hold, move, post, reverse, void

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class Book:
    """Accounts and journal records carried from one decided batch to the next."""

    def __init__(self, *accounts: Account) -> None:
        self.accounts = {a.id: a for a in accounts}
        self.known: dict[str, TransferRecord] = {}

    def run(self, *requests: TransferRequest, now: datetime = NOW) -> BatchOutcome:
        outcome = decide_batch(list(requests), self.accounts, self.known, now)
        # Resolution and reversal marks land on the shared record objects, as the
        # store would show them on the next read; new records are added here.
        for record in outcome.records:
            self.known[record.id] = record
        return outcome

    def sums(self, account_id: str) -> tuple[int, int, int, int]:
        a = self.accounts[account_id]
        return (a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending)


def funded_book() -> Book:
    """A customer wallet (no overdraft) funded with 1,000 from a bank asset account."""
    book = Book(
        account("acct_bank", side=NormalSide.DEBIT),
        account("acct_alice", no_overdraft=True),
        account("acct_bob", no_overdraft=True),
    )
    outcome = book.run(move("tr_fund", debit("acct_bank", 1000), credit("acct_alice", 1000)))
    assert outcome.results[0].ok
    return book


def test_movement_posts_every_leg_and_records_entries_with_balances_after() -> None:
    book = funded_book()
    outcome = book.run(move("tr_1", debit("acct_alice", 300), credit("acct_bob", 300)))
    assert outcome.results[0].ok
    assert outcome.results[0].status is TransferStatus.POSTED
    assert book.sums("acct_alice") == (300, 1000, 0, 0)
    assert book.sums("acct_bob") == (0, 300, 0, 0)
    alice_entry = next(e for e in outcome.entries if e.account_id == "acct_alice")
    assert (alice_entry.sequence, alice_entry.debits_posted, alice_entry.credits_posted) == (
        2,
        300,
        1000,
    )
    assert [e.kind for e in outcome.events] == [TransferKind.MOVEMENT]
    assert {b.account_id: b.available for b in outcome.events[0].balances} == {
        "acct_alice": 700,
        "acct_bob": 300,
    }


def test_multi_leg_transfer_with_fee_leg_applies_atomically() -> None:
    book = funded_book()
    book.accounts["acct_fees"] = account("acct_fees")
    outcome = book.run(
        move("tr_fee", debit("acct_alice", 110), credit("acct_bob", 100), credit("acct_fees", 10))
    )
    assert outcome.results[0].ok
    assert book.sums("acct_alice")[0] == 110
    assert book.sums("acct_fees")[1] == 10


def test_overdraft_refused_with_insufficient_funds_and_nothing_applied() -> None:
    book = funded_book()
    outcome = book.run(move("tr_big", debit("acct_alice", 1001), credit("acct_bob", 1001)))
    result = outcome.results[0]
    assert not result.ok
    assert result.reason == "INSUFFICIENT_FUNDS"
    assert book.sums("acct_alice") == (0, 1000, 0, 0)
    assert book.sums("acct_bob") == (0, 0, 0, 0)
    assert outcome.entries == []
    assert outcome.events == []
    # The refusal is recorded so that a replay returns it again.
    assert [(r.id, r.ok, r.reason) for r in outcome.records] == [
        ("tr_big", False, "INSUFFICIENT_FUNDS")
    ]


def test_credit_limit_flag_refuses_credits_above_debits() -> None:
    book = Book(
        account("acct_loan", side=NormalSide.DEBIT, no_credit_above_debits=True),
        account("acct_cash", side=NormalSide.DEBIT),
    )
    outcome = book.run(move("tr_repay", debit("acct_cash", 5), credit("acct_loan", 5)))
    assert outcome.results[0].reason == "CREDIT_LIMIT_EXCEEDED"


def test_unknown_account_and_currency_mismatch_are_refused() -> None:
    book = funded_book()
    book.accounts["acct_usd"] = account("acct_usd", currency="USD")
    outcome = book.run(
        move("tr_a", debit("acct_alice", 1), credit("acct_nobody", 1)),
        move("tr_b", debit("acct_alice", 1), credit("acct_usd", 1)),
    )
    assert [r.reason for r in outcome.results] == ["ACCOUNT_NOT_FOUND", "CURRENCY_MISMATCH"]


def test_items_see_the_effect_of_earlier_items_in_the_same_batch() -> None:
    book = funded_book()
    outcome = book.run(
        move("tr_1", debit("acct_alice", 600), credit("acct_bob", 600)),
        move("tr_2", debit("acct_alice", 600), credit("acct_bob", 600)),
        move("tr_3", debit("acct_bob", 600), credit("acct_alice", 600)),
    )
    assert [r.ok for r in outcome.results] == [True, False, True]
    assert outcome.results[1].reason == "INSUFFICIENT_FUNDS"
    assert book.sums("acct_alice") == (600, 1600, 0, 0)


def test_linked_chain_fails_as_one_and_names_the_failing_member() -> None:
    book = funded_book()
    outcome = book.run(
        move("tr_1", debit("acct_alice", 100), credit("acct_bob", 100), linked=True),
        move("tr_2", debit("acct_bob", 50), credit("acct_alice", 50), linked=True),
        move("tr_3", debit("acct_alice", 5000), credit("acct_bob", 5000)),
        move("tr_4", debit("acct_alice", 1), credit("acct_bob", 1)),
    )
    reasons = [(r.ok, r.reason) for r in outcome.results]
    assert reasons == [
        (False, "LINKED_TRANSFER_FAILED"),
        (False, "LINKED_TRANSFER_FAILED"),
        (False, "INSUFFICIENT_FUNDS"),
        (True, ""),
    ]
    # Only the unlinked tr_4 moved money.
    assert book.sums("acct_alice") == (1, 1000, 0, 0)
    assert [e.transfer_id for e in outcome.events] == ["tr_4"]
    assert {e.transfer_id for e in outcome.entries} == {"tr_4"}
    assert {r.id for r in outcome.records} == {"tr_1", "tr_2", "tr_3", "tr_4"}


def test_linked_chain_succeeds_as_one() -> None:
    book = funded_book()
    outcome = book.run(
        move("tr_1", debit("acct_alice", 700), credit("acct_bob", 700), linked=True),
        move("tr_2", debit("acct_bob", 700), credit("acct_alice", 700)),
    )
    assert all(r.ok for r in outcome.results)
    assert book.sums("acct_alice") == (700, 1700, 0, 0)


def test_replay_with_same_content_returns_original_result_including_failures() -> None:
    book = funded_book()
    book.run(
        move("tr_ok", debit("acct_alice", 10), credit("acct_bob", 10)),
        move("tr_no", debit("acct_alice", 99999), credit("acct_bob", 99999)),
    )
    before = book.sums("acct_alice")
    # Even with funds now sufficient, tr_no replays its recorded refusal.
    book.run(move("tr_topup", debit("acct_bank", 200000), credit("acct_alice", 200000)))
    topped = book.sums("acct_alice")
    outcome = book.run(
        move("tr_ok", debit("acct_alice", 10), credit("acct_bob", 10)),
        move("tr_no", debit("acct_alice", 99999), credit("acct_bob", 99999)),
    )
    assert [(r.ok, r.replayed, r.reason) for r in outcome.results] == [
        (True, True, ""),
        (False, True, "INSUFFICIENT_FUNDS"),
    ]
    assert outcome.records == []
    assert outcome.entries == []
    assert book.sums("acct_alice") == topped
    assert topped[1] - before[1] == 200000


def test_same_id_with_different_content_is_refused_and_not_recorded() -> None:
    book = funded_book()
    book.run(move("tr_x", debit("acct_alice", 10), credit("acct_bob", 10)))
    outcome = book.run(move("tr_x", debit("acct_alice", 11), credit("acct_bob", 11)))
    assert outcome.results[0].reason == "IDEMPOTENCY_KEY_REUSED"
    assert outcome.records == []
    assert book.sums("acct_alice") == (10, 1000, 0, 0)


def test_duplicate_id_inside_one_batch_replays_the_first() -> None:
    book = funded_book()
    outcome = book.run(
        move("tr_d", debit("acct_alice", 10), credit("acct_bob", 10)),
        move("tr_d", debit("acct_alice", 10), credit("acct_bob", 10)),
    )
    assert [(r.ok, r.replayed) for r in outcome.results] == [(True, False), (True, True)]
    assert book.sums("acct_alice") == (10, 1000, 0, 0)


def test_pending_counts_against_available_then_partial_post_releases_the_rest() -> None:
    book = funded_book()
    held = book.run(hold("tr_h", debit("acct_alice", 800), credit("acct_bob", 800)))
    assert held.results[0].status is TransferStatus.PENDING
    assert book.sums("acct_alice") == (0, 1000, 800, 0)
    # The hold blocks spending past the available 200.
    blocked = book.run(move("tr_m", debit("acct_alice", 201), credit("acct_bob", 201)))
    assert blocked.results[0].reason == "INSUFFICIENT_FUNDS"
    posted = book.run(post("tr_p", "tr_h", debit("acct_alice", 500), credit("acct_bob", 500)))
    assert posted.results[0].ok
    assert book.sums("acct_alice") == (500, 1000, 0, 0)
    assert book.sums("acct_bob") == (0, 500, 0, 0)
    types = sorted((e.account_id, e.entry_type) for e in posted.entries)
    assert types == [
        ("acct_alice", EntryType.POSTED),
        ("acct_alice", EntryType.RELEASE),
        ("acct_bob", EntryType.POSTED),
        ("acct_bob", EntryType.RELEASE),
    ]
    assert book.known["tr_h"].status is TransferStatus.POSTED
    assert posted.closed_holds == ["tr_h"]


def test_full_post_void_and_second_resolution() -> None:
    book = funded_book()
    book.run(
        hold("tr_h1", debit("acct_alice", 100), credit("acct_bob", 100)),
        hold("tr_h2", debit("acct_alice", 100), credit("acct_bob", 100)),
    )
    outcome = book.run(post("tr_p1", "tr_h1"), void("tr_v2", "tr_h2"))
    assert all(r.ok for r in outcome.results)
    assert book.sums("acct_alice") == (100, 1000, 0, 0)
    again = book.run(void("tr_v1", "tr_h1"), post("tr_p2", "tr_h2"))
    assert [r.reason for r in again.results] == ["ALREADY_POSTED", "ALREADY_VOIDED"]


def test_post_refusals_for_bad_targets_and_amounts() -> None:
    book = funded_book()
    book.run(
        hold("tr_h", debit("acct_alice", 100), credit("acct_bob", 100)),
        move("tr_m", debit("acct_alice", 1), credit("acct_bob", 1)),
    )
    outcome = book.run(
        post("tr_1", "tr_missing"),
        post("tr_2", "tr_m"),
        post("tr_3", "tr_h", debit("acct_alice", 101), credit("acct_bob", 101)),
        post("tr_4", "tr_h", debit("acct_bank", 10), credit("acct_bob", 10)),
    )
    assert [r.reason for r in outcome.results] == [
        "PENDING_TRANSFER_NOT_FOUND",
        "TRANSFER_NOT_PENDING",
        "POST_EXCEEDS_PENDING",
        "LEG_NOT_IN_PENDING_TRANSFER",
    ]
    assert book.sums("acct_alice") == (1, 1000, 100, 0)


def test_expired_hold_cannot_be_posted_and_expiry_releases_it() -> None:
    book = funded_book()
    book.run(
        hold(
            "tr_h", debit("acct_alice", 100), credit("acct_bob", 100), timeout=timedelta(seconds=30)
        )
    )
    assert book.known["tr_h"].expires_at == NOW + timedelta(seconds=30)
    early = book.run(TransferRequest("exp_tr_h", ExpirePendingOp("tr_h")))
    assert early.results[0].reason == "PENDING_TRANSFER_NOT_EXPIRED"
    assert early.records == []  # so the worker can try again later under the same id
    later = NOW + timedelta(seconds=31)
    refused = book.run(post("tr_p", "tr_h"), now=later)
    assert refused.results[0].reason == "PENDING_TRANSFER_EXPIRED"
    expired = book.run(TransferRequest("exp_tr_h", ExpirePendingOp("tr_h")), now=later)
    assert expired.results[0].ok
    assert expired.events[0].kind is TransferKind.EXPIRE_PENDING
    assert book.known["tr_h"].status is TransferStatus.EXPIRED
    assert book.sums("acct_alice") == (0, 1000, 0, 0)
    after = book.run(void("tr_v", "tr_h"), now=later)
    assert after.results[0].reason == "PENDING_TRANSFER_EXPIRED"


def test_reversal_swaps_legs_once_and_respects_limits() -> None:
    book = funded_book()
    book.run(move("tr_1", debit("acct_alice", 400), credit("acct_bob", 400)))
    outcome = book.run(reverse("tr_r", "tr_1"))
    assert outcome.results[0].ok
    assert book.sums("acct_alice") == (400, 1400, 0, 0)
    assert book.sums("acct_bob") == (400, 400, 0, 0)
    assert outcome.events[0].reversed_transfer_id == "tr_1"
    again = book.run(reverse("tr_r2", "tr_1"))
    assert again.results[0].reason == "ALREADY_REVERSED"
    # Bob spent the money: reversing his incoming transfer would overdraw him.
    book.run(move("tr_2", debit("acct_alice", 300), credit("acct_bob", 300)))
    book.run(move("tr_3", debit("acct_bob", 300), credit("acct_alice", 300)))
    refused = book.run(reverse("tr_r3", "tr_2"))
    assert refused.results[0].reason == "INSUFFICIENT_FUNDS"
    not_reversible = book.run(
        hold("tr_h", debit("acct_alice", 1), credit("acct_bob", 1)), reverse("tr_r4", "tr_h")
    )
    assert not_reversible.results[1].reason == "TRANSFER_NOT_REVERSIBLE"


def spent_book() -> Book:
    """Bob received 600 from Alice and has since paid 450 of it away (150 left)."""
    book = funded_book()
    book.accounts["acct_receivable"] = account("acct_receivable", side=NormalSide.DEBIT)
    book.accounts["acct_usd_receivable"] = account(
        "acct_usd_receivable", "USD", side=NormalSide.DEBIT
    )
    book.run(
        move("tr_in", debit("acct_alice", 600), credit("acct_bob", 600)),
        move("tr_out", debit("acct_bob", 450), credit("acct_alice", 450)),
    )
    return book


def test_a_reversal_spills_what_a_limited_account_cannot_take_to_the_shortfall_account() -> None:
    book = spent_book()
    outcome = book.run(reverse("tr_r", "tr_in", "acct_receivable"))
    result = outcome.results[0]
    assert result.ok, result.reason
    record = outcome.records[0]
    # Bob gives back the 150 he has; the receivable takes the 450 he spent; Alice gets all 600.
    assert [(leg.account_id, leg.direction, leg.amount) for leg in record.legs] == [
        ("acct_alice", Direction.CREDIT, 600),
        ("acct_bob", Direction.DEBIT, 150),
        ("acct_receivable", Direction.DEBIT, 450),
    ]
    assert book.sums("acct_bob") == (600, 600, 0, 0)
    assert book.sums("acct_receivable") == (450, 0, 0, 0)
    assert book.sums("acct_alice") == (600, 1000 + 450 + 600, 0, 0)
    # Replayed with the same content: the same result; with another shortfall account: refused.
    assert book.run(reverse("tr_r", "tr_in", "acct_receivable")).results[0].replayed
    reused = book.run(reverse("tr_r", "tr_in", "acct_alice")).results[0]
    assert reused.reason == "IDEMPOTENCY_KEY_REUSED"


def test_a_reversal_the_limits_allow_books_as_a_plain_mirror_even_with_a_shortfall_account() -> (
    None
):
    book = spent_book()
    outcome = book.run(reverse("tr_r", "tr_out", "acct_receivable"))
    assert outcome.results[0].ok
    assert [(leg.account_id, leg.amount) for leg in outcome.records[0].legs] == [
        ("acct_bob", 450),
        ("acct_alice", 450),
    ]
    assert book.sums("acct_receivable") == (0, 0, 0, 0)


def test_held_funds_are_not_available_to_a_reversal() -> None:
    book = spent_book()
    assert book.run(hold("tr_h", debit("acct_bob", 100), credit("acct_alice", 100))).results[0].ok
    outcome = book.run(reverse("tr_r", "tr_in", "acct_receivable"))
    assert [(leg.account_id, leg.amount) for leg in outcome.records[0].legs][1:] == [
        ("acct_bob", 50),
        ("acct_receivable", 550),
    ]
    assert book.sums("acct_bob") == (500, 600, 100, 0)


def test_a_shortfall_account_must_exist_and_hold_the_spilled_currency() -> None:
    book = spent_book()
    missing = book.run(reverse("tr_r1", "tr_in", "acct_nobody")).results[0]
    assert missing.reason == "ACCOUNT_NOT_FOUND"
    other_currency = book.run(reverse("tr_r2", "tr_in", "acct_usd_receivable")).results[0]
    assert other_currency.reason == "CURRENCY_MISMATCH"
    # Nothing moved, and the transfer is still reversible.
    assert book.sums("acct_bob") == (450, 600, 0, 0)
    assert book.run(reverse("tr_r3", "tr_in", "acct_receivable")).results[0].ok


def test_a_split_reversal_in_a_failed_chain_leaves_nothing_behind() -> None:
    book = spent_book()
    before = {a: book.sums(a) for a in ("acct_alice", "acct_bob", "acct_receivable")}
    outcome = book.run(
        reverse("tr_r", "tr_in", "acct_receivable", linked=True),
        move("tr_x", debit("acct_bob", 1), credit("acct_alice", 1)),
    )
    assert [(r.ok, r.reason) for r in outcome.results] == [
        (False, "LINKED_TRANSFER_FAILED"),
        (False, "INSUFFICIENT_FUNDS"),
    ]
    assert {a: book.sums(a) for a in before} == before
    assert [e for e in outcome.entries if e.transfer_id == "tr_r"] == []
    # The reversal can still be made afterwards, split as before.
    assert book.run(reverse("tr_r2", "tr_in", "acct_receivable")).results[0].ok
    assert book.sums("acct_receivable") == (450, 0, 0, 0)


def test_a_limited_shortfall_account_is_held_to_its_own_limit() -> None:
    book = spent_book()
    book.accounts["acct_carol"] = account("acct_carol", no_overdraft=True)
    refused = book.run(reverse("tr_r", "tr_in", "acct_carol")).results[0]
    assert refused.reason == "INSUFFICIENT_FUNDS"
    assert book.sums("acct_bob") == (450, 600, 0, 0)


def test_balance_overflow_is_refused() -> None:
    big = 2**63 - 1
    book = Book(account("acct_a", side=NormalSide.DEBIT), account("acct_b"))
    assert book.run(move("tr_1", debit("acct_a", big), credit("acct_b", big))).results[0].ok
    outcome = book.run(move("tr_2", debit("acct_a", 1), credit("acct_b", 1)))
    assert outcome.results[0].reason == "BALANCE_OVERFLOW"
    assert book.sums("acct_a")[0] == big


# --- invariants over random batches ----------------------------------------------

ACCOUNTS = ["acct_a", "acct_b", "acct_c", "acct_d"]


def _random_request(draw: st.DrawFn, index: int, pending_ids: list[str]) -> TransferRequest:
    kind = draw(st.sampled_from(["move", "hold", "post", "void", "reverse"]))
    tid = f"tr_{index}"
    src, dst = draw(st.permutations(ACCOUNTS))[:2]
    amount = draw(st.integers(min_value=1, max_value=400))
    linked = draw(st.booleans())
    if kind in ("post", "void", "reverse") and pending_ids:
        target = draw(st.sampled_from(pending_ids))
        if kind == "post":
            return post(tid, target)
        if kind == "void":
            return void(tid, target)
        return reverse(tid, target)
    if kind == "hold":
        pending_ids.append(tid)
        return hold(tid, debit(src, amount), credit(dst, amount), linked=linked)
    pending_ids.append(tid)
    return move(tid, debit(src, amount), credit(dst, amount), linked=linked)


@st.composite
def batches(draw: st.DrawFn) -> list[list[TransferRequest]]:
    pending_ids: list[str] = []
    out: list[list[TransferRequest]] = []
    counter = 0
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        batch = []
        for _ in range(draw(st.integers(min_value=1, max_value=12))):
            counter += 1
            batch.append(_random_request(draw, counter, pending_ids))
        last = batch[-1]
        batch[-1] = TransferRequest(last.id, last.operation, False, last.metadata)
        out.append(batch)
    return out


def random_chart() -> list[Account]:
    """The accounts ``batches`` moves money between: two wallets, an open account, a bank."""
    return [
        account("acct_a", no_overdraft=True),
        account("acct_b", no_overdraft=True),
        account("acct_c"),
        account("acct_d", side=NormalSide.DEBIT),
    ]


@settings(max_examples=150, deadline=None)
@given(batches())
def test_random_batches_keep_the_books_balanced_and_limits_respected(
    plan: list[list[TransferRequest]],
) -> None:
    book = Book(*random_chart())
    seed = book.run(
        move("tr_seed_a", debit("acct_d", 500), credit("acct_a", 500)),
        move("tr_seed_b", debit("acct_d", 500), credit("acct_b", 500)),
    )
    assert all(r.ok for r in seed.results)
    replayed_entries: dict[str, tuple[int, int, int, int]] = {}
    for batch in plan:
        outcome = book.run(*batch)
        assert len(outcome.results) == len(batch)
        for entry in outcome.entries:
            replayed_entries[entry.account_id] = (
                entry.debits_posted,
                entry.credits_posted,
                entry.debits_pending,
                entry.credits_pending,
            )
        # Double entry: debits equal credits, posted and pending, across all accounts.
        assert sum(a.debits_posted for a in book.accounts.values()) == sum(
            a.credits_posted for a in book.accounts.values()
        )
        assert sum(a.debits_pending for a in book.accounts.values()) == sum(
            a.credits_pending for a in book.accounts.values()
        )
        for a in book.accounts.values():
            assert min(a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending) >= 0
            if a.debits_must_not_exceed_credits:
                assert a.debits_posted + a.debits_pending <= a.credits_posted
    # The last entry of each account carries exactly the account's sums.
    for account_id, sums in replayed_entries.items():
        assert book.sums(account_id) == sums


@pytest.mark.parametrize("count", [1, 50])
def test_every_item_gets_exactly_one_result_in_order(count: int) -> None:
    book = funded_book()
    requests = [
        move(f"tr_{i}", debit("acct_alice", 1), credit("acct_bob", 1)) for i in range(count)
    ]
    outcome = book.run(*requests)
    assert [r.id for r in outcome.results] == [r.id for r in requests]


# --- every entry stores the sums after itself, and only itself -----------------------

FLOW_ACCOUNTS = ["acct_a", "acct_b", "acct_c", "acct_d"]


def _flow_request(
    draw: st.DrawFn, tid: str, made: dict[str, tuple[str, str, str, int]]
) -> TransferRequest:
    """A random operation; ``made`` remembers (kind, debited, credited, amount) per id."""
    kind = draw(st.sampled_from(["move", "hold", "post", "post_part", "void", "expire", "reverse"]))
    linked = draw(st.booleans())
    holds = [t for t, m in made.items() if m[0] == "hold"]
    moved = [t for t, m in made.items() if m[0] == "move"]
    if kind in ("post", "post_part", "void", "expire") and holds:
        target = draw(st.sampled_from(holds))
        _, src, dst, amount = made[target]
        if kind == "post":
            return post(tid, target)
        if kind == "post_part":
            part = draw(st.integers(min_value=1, max_value=amount))
            return post(tid, target, debit(src, part), credit(dst, part))
        if kind == "void":
            return void(tid, target)
        return TransferRequest(tid, ExpirePendingOp(target))
    if kind == "reverse" and moved:
        target = draw(st.sampled_from(moved))
        shortfall = draw(st.sampled_from(["", "acct_r"]))
        return reverse(tid, target, shortfall, linked=linked)
    src, dst = draw(st.permutations(FLOW_ACCOUNTS))[:2]
    amount = draw(st.integers(min_value=1, max_value=600))
    if kind == "hold":
        made[tid] = ("hold", src, dst, amount)
        timeout = draw(st.sampled_from([None, timedelta(seconds=15)]))
        return hold(tid, debit(src, amount), credit(dst, amount), timeout=timeout, linked=linked)
    made[tid] = ("move", src, dst, amount)
    return move(tid, debit(src, amount), credit(dst, amount), linked=linked)


@st.composite
def flows(draw: st.DrawFn) -> list[list[TransferRequest]]:
    made: dict[str, tuple[str, str, str, int]] = {}
    plan: list[list[TransferRequest]] = []
    for b in range(draw(st.integers(min_value=1, max_value=5))):
        batch = [
            _flow_request(draw, f"tr_{b}_{i}", made)
            for i in range(draw(st.integers(min_value=1, max_value=10)))
        ]
        last = batch[-1]
        batch[-1] = TransferRequest(last.id, last.operation, False, last.metadata)
        plan.append(batch)
    return plan


def _effect(entry_type: EntryType, direction: Direction, amount: int) -> tuple[int, ...]:
    """What one entry adds to (debits posted, credits posted, debits pending, credits pending)."""
    column = {
        (EntryType.POSTED, Direction.DEBIT): 0,
        (EntryType.POSTED, Direction.CREDIT): 1,
        (EntryType.HOLD, Direction.DEBIT): 2,
        (EntryType.HOLD, Direction.CREDIT): 3,
        (EntryType.RELEASE, Direction.DEBIT): 2,
        (EntryType.RELEASE, Direction.CREDIT): 3,
    }[(entry_type, direction)]
    sign = -1 if entry_type is EntryType.RELEASE else 1
    return tuple(sign * amount if i == column else 0 for i in range(4))


@settings(max_examples=200, deadline=None)
@given(flows())
def test_every_entry_adds_exactly_its_own_effect_to_the_sums_before_it(
    plan: list[list[TransferRequest]],
) -> None:
    """Movements, holds, full and partial posts, voids, expiries, reversals (split or not)."""
    book = Book(
        account("acct_a", no_overdraft=True),
        account("acct_b", no_overdraft=True),
        account("acct_c"),
        account("acct_d", side=NormalSide.DEBIT),
        account("acct_r", side=NormalSide.DEBIT),
    )
    seed = book.run(
        move("tr_seed_a", debit("acct_d", 500), credit("acct_a", 500)),
        move("tr_seed_b", debit("acct_d", 500), credit("acct_b", 500)),
    )
    last = {e.account_id: (e.sequence, *_entry_sums(e)) for e in seed.entries}
    for b, batch in enumerate(plan):
        # Time passes between batches: 15-second holds expire in the next batch but one.
        outcome = book.run(*batch, now=NOW + timedelta(seconds=10 * (b + 1)))
        for entry in outcome.entries:
            sequence, *before = last.get(entry.account_id, (0, 0, 0, 0, 0))
            effect = _effect(entry.entry_type, entry.direction, entry.amount)
            assert entry.sequence == sequence + 1
            assert _entry_sums(entry) == tuple(
                x + d for x, d in zip(before, effect, strict=True)
            ), entry
            last[entry.account_id] = (entry.sequence, *_entry_sums(entry))
    for account_id, (sequence, *sums) in last.items():
        assert book.accounts[account_id].entry_sequence == sequence
        assert book.sums(account_id) == tuple(sums)


def _entry_sums(entry: Entry) -> tuple[int, int, int, int]:
    return (entry.debits_posted, entry.credits_posted, entry.debits_pending, entry.credits_pending)


def test_a_partial_post_releases_the_hold_and_then_posts_in_two_entries() -> None:
    book = funded_book()
    book.run(hold("tr_h", debit("acct_alice", 300), credit("acct_bob", 300)))
    outcome = book.run(post("tr_p", "tr_h", debit("acct_alice", 100), credit("acct_bob", 100)))
    alice = [
        (e.entry_type, e.amount, _entry_sums(e))
        for e in outcome.entries
        if e.account_id == "acct_alice"
    ]
    assert alice == [
        (EntryType.RELEASE, 300, (0, 1000, 0, 0)),
        (EntryType.POSTED, 100, (100, 1000, 0, 0)),
    ]


def test_a_hold_with_a_timeout_says_when_it_expires_in_its_event() -> None:
    book = funded_book()
    outcome = book.run(
        hold("tr_h", debit("acct_alice", 5), credit("acct_bob", 5), timeout=timedelta(minutes=2)),
        hold("tr_h2", debit("acct_alice", 5), credit("acct_bob", 5)),
    )
    assert [e.expires_at for e in outcome.events] == [NOW + timedelta(minutes=2), None]


@pytest.mark.parametrize("kind", ["post", "void", "reverse"])
def test_a_referenced_transfer_whose_accounts_are_not_in_the_snapshot_is_decided_again(
    kind: str,
) -> None:
    """It became visible after the accounts were locked: neither ACCOUNT_NOT_FOUND nor a crash."""
    book = funded_book()
    original = hold if kind != "reverse" else move
    book.run(original("tr_x", debit("acct_alice", 5), credit("acct_bob", 5)))
    request = {
        "post": post("tr_r", "tr_x"),
        "void": void("tr_r", "tr_x"),
        "reverse": reverse("tr_r", "tr_x"),
    }[kind]
    partial = {"acct_alice": book.accounts["acct_alice"]}  # acct_bob was not locked
    with pytest.raises(RetryTransaction):
        decide_batch([request], partial, book.known, NOW)


def test_balance_overflow_is_refused_on_every_kind_and_on_available() -> None:
    big = 2**63 - 1
    book = Book(
        account("acct_a", side=NormalSide.DEBIT),
        account("acct_b"),
        account("acct_c"),
        account("acct_d", side=NormalSide.DEBIT),
    )
    assert book.run(move("tr_1", debit("acct_a", big), credit("acct_b", big))).results[0].ok
    # A hold onto the full account is fine (pending apart), its post is not.
    assert book.run(hold("tr_h", debit("acct_c", 1), credit("acct_b", 1))).results[0].ok
    assert book.run(post("tr_p", "tr_h")).results[0].reason == "BALANCE_OVERFLOW"
    # Posted credits at the top and the same again pending against it: available
    # would fall below the signed 64-bit floor.
    assert book.run(move("tr_2", debit("acct_b", big), credit("acct_d", big))).results[0].ok
    held = book.run(hold("tr_h2", debit("acct_a", big), credit("acct_d", big))).results[0]
    assert held.reason == "BALANCE_OVERFLOW"
    # A reversal past the top is refused too; a void only ever gives room back.
    book.accounts["acct_e"] = account("acct_e")
    book.accounts["acct_f"] = account("acct_f", side=NormalSide.DEBIT)
    assert book.run(move("tr_3", debit("acct_e", 1), credit("acct_f", 1))).results[0].ok
    assert book.run(move("tr_4", debit("acct_f", big), credit("acct_e", big))).results[0].ok
    assert book.run(reverse("tr_r", "tr_4")).results[0].reason == "BALANCE_OVERFLOW"
    assert book.run(void("tr_v", "tr_h")).results[0].ok
    for a in book.accounts.values():
        assert a.balance().available >= -(2**63)
