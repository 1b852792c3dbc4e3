"""Hostile input to payments over gRPC: each is INVALID_ARGUMENT naming its field, nothing is
written, and no call is INTERNAL (found by the contract fuzzer, tests/e2e/test_contract_fuzz.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from astra.payments.v1 import payments_pb2 as pb
from chassis.grpc.status import bad_request
from payments.adapters import tables
from sqlalchemy import func, select

from tests.payments_fixtures import Suite


def refused(call: Callable[[], Any]) -> list[tuple[str, str]]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    violations = bad_request(caught.value)
    assert violations is not None
    return [(v.field, v.reason) for v in violations.field_violations]


def rows(suite: Suite) -> tuple[int, int]:
    with suite.app.engine.connect() as connection:
        return (
            connection.execute(select(func.count()).select_from(tables.payments)).scalar_one(),
            connection.execute(
                select(func.count()).select_from(tables.reconciliation_runs)
            ).scalar_one(),
        )


def test_hostile_input_to_payments_is_refused_naming_its_field_and_writes_nothing(
    suite: Suite,
) -> None:
    customer = suite.customer()
    before = rows(suite)
    collection = pb.CreateCollectionRequest(
        payment_id=suite.new_id("pay"),
        customer_id=customer,
        amount=1000,
        currency="EUR",
        source=pb.BankAccount(account_number="FR7630006000011234567890189", holder_name="Ca\x00"),
        description="rent\x07",
    )
    assert refused(lambda: suite.payments.CreateCollection(collection)) == [
        ("source.holder_name", ""),
        ("description", ""),
    ]
    # A statement for a day far ahead: a date no bank has, and one past datetime's last day.
    for day in ("2999-01-01", "9999-12-31"):
        run = pb.RunReconciliationRequest(run_id="rec_future", statement_date=day)
        assert refused(lambda r=run: suite.payments.RunReconciliation(r)) == [  # type: ignore[misc]
            ("statement_date", "STATEMENT_DATE_IN_FUTURE")
        ]
    for day in ("20261201", "2026-W48-1"):
        run = pb.RunReconciliationRequest(run_id="rec_basic", statement_date=day)
        assert refused(lambda r=run: suite.payments.RunReconciliation(r)) == [  # type: ignore[misc]
            ("statement_date", "")
        ]
    assert refused(
        lambda: suite.payments.GetReconciliationRun(
            pb.GetReconciliationRunRequest(run_id="rec_\x00")
        )
    ) == [("run_id", "")]
    assert refused(
        lambda: suite.payments.ListPayments(pb.ListPaymentsRequest(customer_id="cus_\x00"))
    ) == [("customer_id", "")]
    assert refused(
        lambda: suite.payments.ListPayments(pb.ListPaymentsRequest(state=99))  # type: ignore[arg-type]
    ) == [("state", "")]
    assert rows(suite) == before
