"""One payout is one trace: from the client's call through payments, identity, the ledger
and the bank, including the work payments' workers do later on other threads.

The real services (payments with its workers, the ledger and identity in-process
on PostgreSQL; the sandbox bank as its own process) export into one in-memory
exporter; nothing is mocked.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from astra.ledger.v1 import ledger_pb2 as lpb
from astra.payments.v1 import payments_pb2 as pb
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from payments.domain.ledger_plan import AccountSpec, clearing_account_id, customer_account_id

from tests.identity_fixtures import (
    IdentityServer,
)
from tests.payments_fixtures import (
    SandboxBank,
    Suite,
    make_suite,
)


@pytest.fixture
def traced_suite(
    collected_spans: InMemorySpanExporter,
    payments_db_url: str,
    sandbox_bank: SandboxBank,
    ledger_target: str,
    identity_server: IdentityServer,
) -> Iterator[Suite]:
    # collected_spans first: servers and channels made from here on are traced.
    made, close = make_suite(payments_db_url, sandbox_bank, ledger_target, identity_server)
    yield made
    close()


def _fund_in_the_ledger(suite: Suite, customer: str, amount: int) -> None:
    """Money on the customer's account without a payment: the payout is payments' first
    dealing with this customer, so payments asks identity about it inside the call."""
    account = customer_account_id(customer, "EUR")
    clearing = clearing_account_id("EUR")
    suite.app.deps.ledger.ensure_accounts(
        [
            AccountSpec(
                account, "EUR", debit_normal=False, no_overdraft=True, customer_id=customer
            ),
            AccountSpec(clearing, "EUR", debit_normal=True),
        ]
    )
    legs = [
        lpb.Leg(account_id=clearing, direction=lpb.DIRECTION_DEBIT, amount=amount, currency="EUR"),
        lpb.Leg(account_id=account, direction=lpb.DIRECTION_CREDIT, amount=amount, currency="EUR"),
    ]
    suite.ledger.CreateTransfer(
        lpb.CreateTransferRequest(
            transfer=lpb.TransferSpec(id=suite.new_id("tr"), movement=lpb.Movement(legs=legs))
        )
    )
    assert suite.customer_balance(customer) == amount


def _server_spans(spans: list[ReadableSpan], method: str) -> list[ReadableSpan]:
    return [s for s in spans if s.kind is trace.SpanKind.SERVER and s.name == method]


def test_one_payout_is_one_trace_across_payments_identity_ledger_and_the_bank(
    traced_suite: Suite, collected_spans: InMemorySpanExporter
) -> None:
    suite = traced_suite
    customer = suite.customer()
    _fund_in_the_ledger(suite, customer, 10_000)

    with trace.get_tracer("test").start_as_current_span("client: pay Bob") as root:
        payout = suite.payout(customer, 2_500)
    done = suite.wait_for(payout.id)
    assert done.state == pb.PAYMENT_STATE_SETTLED

    trace_id = root.get_span_context().trace_id
    spans = [s for s in collected_spans.get_finished_spans() if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in spans}

    (create,) = _server_spans(spans, "astra.payments.v1.PaymentsService/CreatePayout")
    assert create.parent is not None
    assert by_id[create.parent.span_id].kind is trace.SpanKind.CLIENT
    # identity was asked about the customer inside the call
    assert _server_spans(spans, "astra.identity.v1.IdentityService/GetCustomer")
    # the ledger served the hold inside the call and the posting later, from a worker
    ledger_calls = [
        s for s in spans if s.kind is trace.SpanKind.SERVER and s.name.startswith("astra.ledger.")
    ]
    assert len(ledger_calls) >= 2, sorted(s.name for s in spans)
    assert any(
        by_id.get(s.parent.span_id if s.parent else 0, s).name == "payments.book"
        for s in spans
        if s.kind is trace.SpanKind.CLIENT and s.name.startswith("astra.ledger.")
    ), "the worker's ledger posting is not in the payout's trace"
    # the bank got the submission over HTTP, under the worker's span for this payment
    (submit,) = [s for s in spans if s.name == "payments.bank.submit"]
    assert submit.attributes is not None
    assert submit.attributes["payment_id"] == payout.id
    bank_http = [
        s
        for s in spans
        if s.kind is trace.SpanKind.CLIENT
        and s.parent
        and s.parent.span_id == submit.context.span_id
    ]
    assert bank_http, "no HTTP span for the bank call"
    assert all(s.name.startswith("POST") for s in bank_http)

    # and nothing of it escaped into another trace
    other_creates = [
        s
        for s in collected_spans.get_finished_spans()
        if s.name == "payments.bank.submit"
        and s.attributes is not None
        and s.attributes.get("payment_id") == payout.id
        and s.context.trace_id != trace_id
    ]
    assert other_creates == []
