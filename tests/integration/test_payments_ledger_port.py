"""Payments' port to the ledger against the real ledger: one bad operation in a request
costs only its own answer, never the others' (nor a worker's whole round)."""

from __future__ import annotations

import pytest
from astra.ledger.v1 import ledger_pb2 as lpb
from chassis.kernel.money import MAX_AMOUNT
from payments.domain.ledger_plan import (
    AccountSpec,
    LedgerLeg,
    LedgerOperation,
    OpKind,
    clearing_account_id,
    customer_account_id,
)
from payments.domain.model import LedgerStep
from payments.service_layer.ports import LedgerRequestRefused
from payments.service_layer.use_cases import book

from tests.payments_fixtures import Suite


def test_one_malformed_operation_in_a_ledger_request_costs_only_its_own_answer(
    suite: Suite,
) -> None:
    ledger = suite.app.deps.ledger
    customer = suite.customer()
    account = customer_account_id(customer, "EUR")
    clearing = clearing_account_id("EUR")
    ledger.ensure_accounts(
        [
            AccountSpec(account, "EUR", debit_normal=False, customer_id=customer),
            AccountSpec(clearing, "EUR", debit_normal=True),
        ]
    )

    def movement(name: str, amount: int, to: str = account) -> LedgerOperation:
        legs = (LedgerLeg(clearing, True, amount, "EUR"), LedgerLeg(to, False, amount, "EUR"))
        return LedgerOperation(name, LedgerStep.CREDIT, f"tr_{name}", OpKind.MOVEMENT, legs)

    malformed = movement("malformed", 5, to="acct_" + "x" * 61)  # not an id of the contract
    first, second = movement(suite.new_id("ok"), 10), movement(suite.new_id("ok"), 20)
    with pytest.raises(LedgerRequestRefused):
        ledger.apply([first, malformed, second])
    answers = book(ledger, [first, malformed, second])
    assert [a.ok if a else None for a in answers] == [True, False, True]
    too_large = movement(suite.new_id("huge"), MAX_AMOUNT + 1)  # no int64 can carry it
    third = movement(suite.new_id("ok"), 30)
    refused, booked = ledger.apply([too_large, third])
    assert (refused.ok, refused.reason, booked.ok) == (False, "INVALID_LEDGER_OPERATION", True)
    balance = suite.ledger.GetBalance(lpb.GetBalanceRequest(account_id=account)).balance
    assert balance.posted == 10 + 20 + 30
