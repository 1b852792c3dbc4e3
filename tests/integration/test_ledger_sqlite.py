"""The embedded default that `make run` uses: the same ledger on a SQLite file.

PostgreSQL is the production store and carries every other persistence test;
this one only proves the embedded default migrates and works end to end.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from ledger.bootstrap import bootstrap
from ledger.domain.model import AccountSpec, NormalSide, TransferStatus
from ledger.service_layer import use_cases
from sqlalchemy import text

from tests.ledger_builders import credit, debit, hold, move, post, reverse
from tests.ledger_fixtures import MovableClock, ledger_settings


def test_ledger_runs_on_an_embedded_sqlite_file(tmp_path: Path) -> None:
    clock = MovableClock()
    url = f"sqlite:///{tmp_path / 'data' / 'ledger.db'}"
    ledger = bootstrap(ledger_settings(url, migrate_on_start=True), clock=clock)
    try:
        use_cases.open_account(ledger.uow, clock, AccountSpec("acct_src", "EUR", NormalSide.DEBIT))
        use_cases.open_account(
            ledger.uow,
            clock,
            AccountSpec("acct_w", "EUR", NormalSide.CREDIT, debits_must_not_exceed_credits=True),
        )
        start = clock.now()
        results = use_cases.create_transfers(
            ledger.uow,
            clock,
            [
                move("tr_1", debit("acct_src", 500), credit("acct_w", 500)),
                move("tr_2", debit("acct_w", 600), credit("acct_src", 600)),
                hold(
                    "tr_3",
                    debit("acct_w", 200),
                    credit("acct_src", 200),
                    timeout=timedelta(minutes=5),
                ),
            ],
        )
        assert [(r.ok, r.reason) for r in results] == [
            (True, ""),
            (False, "INSUFFICIENT_FUNDS"),
            (True, ""),
        ]
        clock.advance(timedelta(minutes=1))
        outcome = use_cases.execute_batch(ledger.uow, clock, [post("tr_4", "tr_3")])
        assert outcome[0].result.ok
        assert use_cases.get_transfer(ledger.uow, "tr_3").status is TransferStatus.POSTED
        balance = use_cases.get_balance(ledger.uow, "acct_w", None, clock)
        assert (balance.posted, balance.available) == (300, 300)
        earlier = use_cases.get_balance(ledger.uow, "acct_w", start, clock)
        assert (earlier.posted, earlier.available) == (500, 300)
        # Reversing tr_1 now wants 500 back from a wallet holding 300: a receivable takes 200.
        use_cases.open_account(
            ledger.uow, clock, AccountSpec("acct_receivable", "EUR", NormalSide.DEBIT)
        )
        (reversal,) = use_cases.execute_batch(
            ledger.uow, clock, [reverse("tr_5", "tr_1", "acct_receivable")]
        )
        assert reversal.result.ok, reversal.result.reason
        assert use_cases.get_balance(ledger.uow, "acct_w", None, clock).posted == 0
        assert use_cases.get_balance(ledger.uow, "acct_receivable", None, clock).posted == 200
        with ledger.engine.connect() as c:
            # Five before, then the receivable's opening and the reversal.
            assert c.execute(text("SELECT count(*) FROM outbox")).scalar_one() == 7
    finally:
        ledger.close()


def test_as_of_answers_stay_final_and_long_ids_fit_on_sqlite(tmp_path: Path) -> None:
    """Migration 0003 and the as-of seal on the embedded default."""
    clock = MovableClock()
    url = f"sqlite:///{tmp_path / 'data' / 'ledger.db'}"
    ledger = bootstrap(ledger_settings(url, migrate_on_start=True), clock=clock)
    source, wallet = "acct_s" + "x" * 59, "acct_w" + "x" * 59
    try:
        for account_id, side in ((source, NormalSide.DEBIT), (wallet, NormalSide.CREDIT)):
            use_cases.open_account(ledger.uow, clock, AccountSpec(account_id, "EUR", side))
        use_cases.create_transfers(
            ledger.uow, clock, [move("tr_1", debit(source, 5), credit(wallet, 5))]
        )
        clock.advance(timedelta(seconds=10))
        asked = clock.now()
        assert use_cases.get_balance(ledger.uow, wallet, asked, clock).posted == 5
        clock.current = asked - timedelta(seconds=3)  # a writer whose clock lags
        use_cases.create_transfers(
            ledger.uow, clock, [move("tr_2", debit(source, 2), credit(wallet, 2))]
        )
        clock.current = asked + timedelta(seconds=1)
        assert use_cases.get_balance(ledger.uow, wallet, asked, clock).posted == 5
        assert use_cases.get_balance(ledger.uow, wallet, clock.now(), clock).posted == 7
        assert use_cases.get_transfer(ledger.uow, "tr_2").created_at > asked
    finally:
        ledger.close()
