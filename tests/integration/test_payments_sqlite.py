"""Payments on SQLite (the ``make run`` default): the same money paths, one process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from astra.payments.v1 import payments_pb2 as pb

from tests.identity_fixtures import (
    IdentityServer,
)
from tests.payments_fixtures import SandboxBank, Suite, make_suite


@pytest.fixture
def sqlite_suite(
    tmp_path: Path, sandbox_bank: SandboxBank, ledger_target: str, identity_server: IdentityServer
) -> Iterator[Suite]:
    made, close = make_suite(
        f"sqlite:///{tmp_path / 'payments.db'}",
        sandbox_bank,
        ledger_target,
        identity_server,
        migrate_on_start=True,
    )
    yield made
    close()


def test_collection_payout_refund_and_reconciliation_on_sqlite(sqlite_suite: Suite) -> None:
    suite = sqlite_suite
    customer = suite.customer()
    collected = suite.fund(customer, 10_000)
    payout = suite.wait_for(suite.payout(customer, 3_000).id)
    refund = suite.payments.RefundPayment(
        pb.RefundPaymentRequest(
            refund_id=suite.new_id("pay"), payment_id=collected.id, amount=2_000
        )
    ).refund
    assert suite.wait_for(refund.id).state == pb.PAYMENT_STATE_SETTLED
    assert payout.state == pb.PAYMENT_STATE_SETTLED
    assert suite.customer_balance(customer) == 10_000 - 3_000 - 2_000
    run = suite.reconcile()
    assert list(run.breaks) == []
    assert run.matched_count == 3
