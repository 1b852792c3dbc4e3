"""The bank workload's oracle catches what it claims to: a clean journal passes, each
kind of damage is named (without a ledger: tables built by hand)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from astra.ledger.v1 import events_pb2 as ev
from astra.ledger.v1 import ledger_pb2 as pb
from astra_testkit.ledger_workload.chart import AccountDef, Chart
from astra_testkit.ledger_workload.checks import (
    CREDIT,
    DEBIT,
    HOLD,
    MOVEMENT,
    PENDING,
    POST,
    POSTED,
    RELEASE,
    AccountRow,
    EntryRow,
    Findings,
    JournalRow,
    OutboxRow,
    Tables,
    check_balances,
    check_journal,
    check_replays,
    check_written_events,
    decode_legs,
)
from astra_testkit.ledger_workload.model import Answer, Op, Replay, WorkloadLog
from chassis.protos import to_timestamp

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
WALLET, MERCHANT = "acct_eur_wallet_1", "acct_eur_merchant"
CHART = Chart(
    (
        AccountDef(WALLET, "EUR", pb.NORMAL_SIDE_CREDIT, "wallet", no_overdraft=True),
        AccountDef(MERCHANT, "EUR", pb.NORMAL_SIDE_CREDIT, "merchant"),
    )
)


def journal_row(
    transfer_id: str, kind: int, legs: str, at: datetime, **fields: object
) -> JournalRow:
    values: dict[str, object] = {
        "ok": True,
        "reason": "",
        "pending_transfer_id": "",
        "reversed_transfer_id": "",
        "expires_at": None,
        "metadata": {},
        **fields,
    }
    return JournalRow(
        id=transfer_id,
        kind=kind,
        legs=decode_legs(legs),
        created_at=at,
        **values,  # type: ignore[arg-type]
    )


def tables(
    journal: list[JournalRow],
    changes: list[tuple[str, str, int, int, int]],
    outbox: list[OutboxRow] | None = None,
) -> Tables:
    """The tables, with entries storing the right sums, from changes given as
    (account, transfer, entry type, direction, amount)."""
    sums: dict[str, list[int]] = {WALLET: [0, 0, 0, 0], MERCHANT: [0, 0, 0, 0]}
    sequence = dict.fromkeys(sums, 0)
    rows = {r.id: r for r in journal}
    entries = []
    for account, transfer_id, entry_type, direction, amount in changes:
        column = (0 if direction == DEBIT else 1) + (0 if entry_type == POSTED else 2)
        sums[account][column] += -amount if entry_type == RELEASE else amount
        sequence[account] += 1
        entries.append(
            EntryRow(
                account,
                sequence[account],
                transfer_id,
                rows[transfer_id].kind,
                entry_type,
                direction,
                amount,
                (sums[account][0], sums[account][1], sums[account][2], sums[account][3]),
                rows[transfer_id].created_at,
            )
        )
    last = {e.account_id: e for e in entries}
    accounts = {
        a.id: AccountRow(
            a.id,
            "EUR",
            int(a.normal_side),
            a.no_overdraft,
            a.no_excess_credit,
            (sums[a.id][0], sums[a.id][1], sums[a.id][2], sums[a.id][3]),
            sequence[a.id],
            last[a.id].created_at if a.id in last else None,
        )
        for a in CHART.accounts
    }
    entries.sort(key=lambda e: (e.account_id, e.sequence))
    return Tables({r.id: r for r in journal}, entries, accounts, outbox or [])


def a_partly_posted_hold() -> Tables:
    """Funding, then a hold of 100 on the wallet, posted 60 (40 released)."""
    journal = [
        journal_row("tr_fund", MOVEMENT, f"{MERCHANT}:1:500:EUR;{WALLET}:2:500:EUR", T0),
        journal_row("tr_hold", PENDING, f"{WALLET}:1:100:EUR;{MERCHANT}:2:100:EUR", T0),
        journal_row(
            "tr_post",
            POST,
            f"{WALLET}:1:60:EUR;{MERCHANT}:2:60:EUR",
            T0 + timedelta(seconds=1),
            pending_transfer_id="tr_hold",
        ),
    ]
    return tables(
        journal,
        [
            (MERCHANT, "tr_fund", POSTED, DEBIT, 500),
            (WALLET, "tr_fund", POSTED, CREDIT, 500),
            (WALLET, "tr_hold", HOLD, DEBIT, 100),
            (MERCHANT, "tr_hold", HOLD, CREDIT, 100),
            (WALLET, "tr_post", RELEASE, DEBIT, 100),
            (WALLET, "tr_post", POSTED, DEBIT, 60),
            (MERCHANT, "tr_post", RELEASE, CREDIT, 100),
            (MERCHANT, "tr_post", POSTED, CREDIT, 60),
        ],
    )


def checked(state: Tables) -> Findings:
    findings = Findings()
    check_balances(state, findings)
    check_journal(state, findings)
    return findings


def test_a_sound_journal_passes_every_table_check() -> None:
    findings = checked(a_partly_posted_hold())
    assert findings.ok, findings.report()
    assert findings.checked["running_balances"] > 0
    assert findings.checked["no_overdraft"] > 0


def test_a_release_entry_that_already_includes_the_posting_is_named() -> None:
    state = a_partly_posted_hold()
    entries = []
    for entry in state.entries:
        if entry.transfer_id == "tr_post" and entry.entry_type == RELEASE:
            after_post = next(
                e
                for e in state.entries
                if e.transfer_id == "tr_post"
                and e.account_id == entry.account_id
                and e.entry_type == POSTED
            )
            entry = replace(entry, sums=after_post.sums)
        entries.append(entry)
    state.entries = entries
    findings = checked(state)
    assert dict(findings.violations) == {"running_balances": 2}, findings.report()


def test_an_overdraft_at_one_entry_is_named_even_if_later_entries_cover_it() -> None:
    journal = [
        journal_row("tr_spend", MOVEMENT, f"{WALLET}:1:50:EUR;{MERCHANT}:2:50:EUR", T0),
        journal_row("tr_fund", MOVEMENT, f"{MERCHANT}:1:80:EUR;{WALLET}:2:80:EUR", T0),
    ]
    state = tables(
        journal,
        [
            (WALLET, "tr_spend", POSTED, DEBIT, 50),
            (MERCHANT, "tr_spend", POSTED, CREDIT, 50),
            (MERCHANT, "tr_fund", POSTED, DEBIT, 80),
            (WALLET, "tr_fund", POSTED, CREDIT, 80),
        ],
    )
    findings = checked(state)
    assert dict(findings.violations) == {"no_overdraft": 1}, findings.report()


def test_a_missing_entry_breaks_atomicity_and_zero_sum() -> None:
    state = a_partly_posted_hold()
    state.entries = [
        e for e in state.entries if not (e.transfer_id == "tr_fund" and e.account_id == MERCHANT)
    ]
    findings = checked(state)
    assert findings.violations["atomicity"] == 1
    assert findings.violations["zero_sum"] >= 1


def test_a_hold_resolved_twice_is_named() -> None:
    state = a_partly_posted_hold()
    state.journal["tr_void"] = journal_row(
        "tr_void",
        pb.TRANSFER_KIND_VOID_PENDING,
        f"{WALLET}:1:100:EUR;{MERCHANT}:2:100:EUR",
        T0 + timedelta(seconds=2),
        pending_transfer_id="tr_hold",
    )
    findings = Findings()
    check_journal(state, findings)
    assert findings.violations["holds_resolved_once"] == 1


def test_a_replay_with_another_answer_and_a_key_reuse_accepted_are_named() -> None:
    log = WorkloadLog()
    spec = pb.TransferSpec(id="tr_a", movement=pb.Movement())
    op = Op("tr_a", "movement", "spend", spec, "CreateTransfer", client=0)
    op.answer = Answer(ok=False, code="FAILED_PRECONDITION", reason="INSUFFICIENT_FUNDS")
    log.add(op)
    same = Answer(ok=False, code="FAILED_PRECONDITION", reason="INSUFFICIENT_FUNDS", replayed=True)
    other = Answer(ok=False, code="NOT_FOUND", reason="ACCOUNT_NOT_FOUND", replayed=True)
    log.add_replay(Replay("tr_a", "CreateTransfer", True, same, ()))
    log.add_replay(Replay("tr_a", "CreateTransfer", True, other, ()))
    log.add_replay(Replay("tr_a", "CreateTransfer", False, same, ()))
    findings = Findings()
    check_replays(log, findings)
    assert dict(findings.violations) == {"replays_identical": 1, "key_reuse_refused": 1}


def test_a_hold_event_without_its_expire_time_is_named() -> None:
    state = a_partly_posted_hold()
    hold = state.journal["tr_hold"]
    state.journal["tr_hold"] = replace(hold, expires_at=T0 + timedelta(seconds=5))
    event = ev.PendingTransferCreated(transfer_id="tr_hold")
    for account_id, direction, amount, currency in hold.legs:
        event.legs.add(
            account_id=account_id,
            direction=direction,
            amount=amount,
            currency=currency,
        )
    for account_id, sums in ((WALLET, (0, 500, 100, 0)), (MERCHANT, (500, 0, 0, 100))):
        posted = sums[1] - sums[0]
        pending = sums[3] - sums[2]
        event.balances.add(
            account_id=account_id,
            currency="EUR",
            debits_posted=sums[0],
            credits_posted=sums[1],
            debits_pending=sums[2],
            credits_pending=sums[3],
            posted=posted,
            pending=pending,
            available=posted - sums[2],
        )
    event.occur_time.CopyFrom(to_timestamp(T0))
    event_type = ev.PendingTransferCreated.DESCRIPTOR.full_name

    def events_checked() -> Findings:
        state.outbox = [OutboxRow(1, "e1", event_type, "tr_hold", event.SerializeToString(), True)]
        findings = Findings()
        check_written_events(state, CHART, findings)
        return findings

    problems = events_checked().examples["event_fields"]
    assert len(problems) == 1
    assert "expire_time None" in problems[0]
    event.expire_time.CopyFrom(to_timestamp(T0 + timedelta(seconds=5)))
    fixed = events_checked()
    assert "event_fields" not in fixed.violations, fixed.report()
