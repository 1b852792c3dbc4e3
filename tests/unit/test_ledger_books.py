"""Replaying a journal's arithmetic: what the ledger decided adds up; a forged record does not.

The bodies come from the real decision (``decide_batch``) through the real builders,
so a replay that passes says the decision and the journal agree; each forgery
changes one thing a hand-made journal could get wrong, and must be named.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from ledger.domain.books import ReplayedBooks, check_history
from ledger.domain.journal import GENESIS, chain, encode_built
from ledger.domain.journal_records import (
    JournalRow,
    account_opened_body,
    entry_fields,
    transfer_bodies,
    transfer_row_fields,
)
from ledger.domain.model import (
    Account,
    Direction,
    Entry,
    EntryType,
    NormalSide,
    TransferKind,
    TransferRecord,
    TransferRequest,
)
from ledger.domain.replay import AccountOpenedChange, Change, TransferChange, read_body

from tests.ledger_builders import account, credit, debit, hold, move, post
from tests.unit.test_ledger_batch import Book, batches, random_chart

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def _opened(*accounts: Account) -> list[Change]:
    return [
        read_body(encode_built(account_opened_body(replace(a, created_at=NOW)))) for a in accounts
    ]


def _history(plan: list[list[TransferRequest]]) -> list[Change]:
    chart = random_chart()
    changes = _opened(*chart)
    book = Book(*(replace(a) for a in chart))
    for batch in [[move("tr_seed", debit("acct_d", 500), credit("acct_a", 500))], *plan]:
        outcome = book.run(*batch, now=NOW)
        changes += [read_body(encode_built(body)) for body in transfer_bodies(outcome)]
    return changes


def _replay(changes: list[Change]) -> str | None:
    books = ReplayedBooks()
    for change in changes:
        problem = books.apply(change)
        if problem is not None:
            return problem
    return None


@settings(max_examples=150, deadline=None)
@given(batches())
def test_every_history_the_ledger_decides_adds_up(plan: list[list[TransferRequest]]) -> None:
    assert _replay(_history(plan)) is None


def _funded() -> list[Change]:
    return _history(
        [
            [hold("tr_h", debit("acct_a", 100), credit("acct_b", 100), timeout=timedelta(hours=1))],
            [post("tr_p", "tr_h")],
            [move("tr_m", debit("acct_a", 50), credit("acct_c", 50))],
        ]
    )


def _forge(changes: list[Change], transfer_id: str, index: int, **fields: object) -> list[Change]:
    """``changes`` with one entry of ``transfer_id`` changed."""
    forged = []
    for change in changes:
        if isinstance(change, TransferChange) and change.record.id == transfer_id:
            entries = list(change.entries)
            entries[index] = replace(entries[index], **fields)  # type: ignore[arg-type]
            change = replace(change, entries=tuple(entries))
        forged.append(change)
    return forged


def _entry(changes: list[Change], transfer_id: str, index: int) -> Entry:
    found = next(c for c in changes if isinstance(c, TransferChange) and c.record.id == transfer_id)
    return found.entries[index]


def test_the_untouched_history_adds_up() -> None:
    assert _replay(_funded()) is None


def test_a_changed_amount_with_its_sums_left_is_named() -> None:
    changes = _funded()
    problem = _replay(_forge(changes, "tr_m", 0, amount=51))
    assert problem is not None
    assert "tr_m" in problem
    assert "sums after" in problem


def test_a_changed_amount_with_its_sums_made_to_follow_is_unbalanced() -> None:
    changes = _funded()
    entry = _entry(changes, "tr_m", 0)  # acct_a's debit of 50 (entries in account order)
    assert (entry.account_id, entry.amount) == ("acct_a", 50)
    problem = _replay(_forge(changes, "tr_m", 0, amount=40, debits_posted=entry.debits_posted - 10))
    assert problem is not None
    assert "does not balance in EUR" in problem


def test_a_skipped_version_is_named() -> None:
    changes = _funded()
    entry = _entry(changes, "tr_m", 1)
    problem = _replay(_forge(changes, "tr_m", 1, sequence=entry.sequence + 1))
    assert problem is not None
    assert f"version {entry.sequence + 1}, not {entry.sequence}" in problem


def _posted(
    account_id: str, sequence: int, transfer_id: str, side: Direction, amount: int, dp: int, cp: int
) -> Entry:
    return Entry(
        account_id, sequence, transfer_id, TransferKind.MOVEMENT, EntryType.POSTED, side,
        amount, dp, cp, 0, 0, NOW,
    )  # fmt: skip


def _moved(transfer_id: str, *entries: Entry) -> TransferChange:
    record = TransferRecord(transfer_id, TransferKind.MOVEMENT, "f" * 32, True, NOW)
    return TransferChange(record, entries, (), ())


def test_an_overdraft_whose_sums_all_agree_is_named() -> None:
    # A forger who keeps every sum consistent still cannot overdraw a wallet unseen.
    D, C = Direction.DEBIT, Direction.CREDIT  # noqa: N806
    opened = _opened(account("acct_a", no_overdraft=True), account("acct_d", side=NormalSide.DEBIT))
    fund = _moved(
        "tr_f",
        _posted("acct_a", 1, "tr_f", C, 100, 0, 100),
        _posted("acct_d", 1, "tr_f", D, 100, 100, 0),
    )
    assert _replay([*opened, fund]) is None
    spend = _moved(
        "tr_s",
        _posted("acct_a", 2, "tr_s", D, 101, 101, 100),
        _posted("acct_d", 2, "tr_s", C, 101, 100, 101),
    )
    problem = _replay([*opened, fund, spend])
    assert problem is not None
    assert "acct_a is overdrawn" in problem


def test_a_refused_transfer_with_entries_and_an_unknown_account_are_named() -> None:
    changes = _funded()
    seed = changes[4]
    assert isinstance(seed, TransferChange)
    refused = replace(seed, record=replace(seed.record, ok=False))
    assert "refused yet has entries" in (_replay([*changes[:4], refused]) or "")
    assert "not opened" in (_replay([changes[1], seed]) or "")


def test_the_whole_history_check_names_the_first_record_that_does_not_add_up() -> None:
    changes = _funded()
    forged = _forge(changes, "tr_m", 0, amount=51)
    bodies = [encode_built(_body_of(change)) for change in forged]
    links = chain(0, GENESIS, bodies)
    rows = [
        JournalRow(link.sequence, "x", body, link.prev_hash, link.hash)
        for link, body in zip(links, bodies, strict=True)
    ]
    head = (links[-1].sequence, links[-1].hash)
    broken = check_history(rows, head=head)
    at = next(
        i + 1
        for i, c in enumerate(forged)
        if isinstance(c, TransferChange) and c.record.id == "tr_m"
    )
    assert broken is not None
    assert broken.sequence == at
    untouched = [encode_built(_body_of(change)) for change in changes]
    good = chain(0, GENESIS, untouched)
    rows = [
        JournalRow(link.sequence, "x", body, link.prev_hash, link.hash)
        for link, body in zip(good, untouched, strict=True)
    ]
    assert check_history(rows, head=(good[-1].sequence, good[-1].hash)) is None


def _body_of(change: Change) -> object:
    """A change written back as a body (the builders' layouts)."""
    if isinstance(change, AccountOpenedChange):
        return account_opened_body(change.account)
    return [
        "transfer",
        transfer_row_fields(change.record),
        [entry_fields(e) for e in change.entries],
        [[held, None] for held, _ in change.holds_opened],
        list(change.holds_closed),
    ]
