"""The whole suite as real processes, driven by real traffic, then looked at as on-call would.

Identity, the ledger, payments (with its workers and KYC subscriber), the
sandbox bank and the identity and payments outbox relays run as their own
processes on fresh PostgreSQL databases and the Pub/Sub emulator. A customer is
verified, funded by a collection and paid out twice (one payout too large for
the balance). Then:

- every service's /metrics endpoint is scraped and the families operations
  relies on are there with values that match the traffic;
- every line every process logged is scanned: no secret, token, key or full
  account number appears, while masked account numbers and the payments' ids do.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc
import pytest
from astra.identity.v1 import identity_pb2 as ipb
from astra.identity.v1.identity_pb2_grpc import IdentityServiceStub
from astra.payments.v1 import payments_pb2 as pb
from astra.payments.v1.payments_pb2_grpc import PaymentsServiceStub
from astra_testkit.customers import create_customer
from astra_testkit.postgres import PostgresServer
from astra_testkit.processes import ServiceProcess
from astra_testkit.pubsub_emulator import PubSubEmulator
from astra_testkit.suite import running_suite
from astra_testkit.tls import tls_channel, tls_files
from astra_testkit.waiting import wait_until
from chassis.grpc.client import open_channel

from tests.observability_fixtures import Samples, sample, scrape
from tests.payments_fixtures import TERMINAL

PAYOUT_ACCOUNT = "DE89370400440532013000"
COLLECTION_ACCOUNT = "FR7630006000011234567890189"


@dataclass
class Suite:
    identity: str
    payments: str
    metrics: dict[str, int]
    processes: dict[str, ServiceProcess]
    # Every secret handed out or configured, for the log scan.
    secrets: list[str] = field(default_factory=list)
    payment_ids: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    breaks: dict[str, int] = field(default_factory=dict)

    def logs(self) -> dict[str, str]:
        return {name: process.logs() for name, process in self.processes.items()}


@pytest.fixture(scope="module")
def suite(
    postgres: PostgresServer,
    pubsub_emulator: PubSubEmulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Suite]:
    pubsub = {
        "PUBSUB_EMULATOR_HOST": pubsub_emulator.host,
        "ASTRA_PUBSUB_PROJECT": f"astra-obs-{uuid.uuid4().hex[:8]}",
        "ASTRA_PUBSUB_CREATE_TOPICS": "true",
    }
    with running_suite(
        postgres,
        tmp_path_factory.mktemp("observed-suite"),
        name="obs",
        common_env=pubsub,
        relays=("identity", "payments"),
        metrics=True,
        log_level="DEBUG",
        env={
            "payments": {"PAYMENTS_STATUS_POLL_SECONDS": "2"},
            "relay": {"RELAY_LAG_INTERVAL_SECONDS": "0.5"},
        },
    ) as running:
        yield Suite(
            identity=running.identity,
            payments=running.payments,
            metrics=running.metrics_ports,
            processes=running.processes,
            # Registered the operator's way; each secret was printed once.
            secrets=[
                running.admin_secret,
                running.payments_secret,
                *running.kek.read_text().split(),
            ],
        )


@pytest.fixture(scope="module")
def traffic(suite: Suite) -> Suite:
    """A verified customer, funded by a collection, paid out once and refused once."""
    tokens: dict[str, str] = {}
    with tls_channel(suite.identity) as channel:
        for audience in ("identity", "payments"):  # a token is for one service
            tokens[audience] = (
                IdentityServiceStub(channel)
                .IssueToken(
                    ipb.IssueTokenRequest(
                        client_id="cli_obs_admin",
                        client_secret=suite.secrets[0],
                        audience=audience,
                    ),
                    timeout=30,
                )
                .access_token
            )
    suite.secrets.extend(tokens.values())
    identity_channel = open_channel(
        suite.identity, tls=tls_files(), default_timeout=30, token_source=lambda: tokens["identity"]
    )
    payments_channel = open_channel(
        suite.payments, tls=tls_files(), default_timeout=30, token_source=lambda: tokens["payments"]
    )
    identity = IdentityServiceStub(identity_channel)
    payments = PaymentsServiceStub(payments_channel)
    customer = f"cus_obs_{uuid.uuid4().hex[:10]}"
    create_customer(identity, customer)

    def settle(payment_id: str) -> int:
        state = pb.PAYMENT_STATE_UNSPECIFIED

        def done() -> bool:
            nonlocal state
            payment = payments.GetPayment(pb.GetPaymentRequest(payment_id=payment_id)).payment
            state = payment.state
            return state in TERMINAL and not payment.ledger_pending

        wait_until(done, 90, f"payment {payment_id} to finish")
        suite.payment_ids.append(payment_id)
        suite.outcomes[payment_id] = state
        return state

    collection = f"pay_obs_col_{uuid.uuid4().hex[:8]}"
    payments.CreateCollection(
        pb.CreateCollectionRequest(
            payment_id=collection,
            customer_id=customer,
            amount=10_000,
            currency="EUR",
            source=pb.BankAccount(account_number=COLLECTION_ACCOUNT, holder_name="Ada"),
        )
    )
    assert settle(collection) == pb.PAYMENT_STATE_SETTLED
    codes: list[grpc.StatusCode] = []
    for amount in (2_500, 1_000_000):  # the second is more than the customer has
        payout = f"pay_obs_out_{uuid.uuid4().hex[:8]}"
        request = pb.CreatePayoutRequest(
            payment_id=payout,
            customer_id=customer,
            amount=amount,
            currency="EUR",
            destination=pb.BankAccount(account_number=PAYOUT_ACCOUNT, holder_name="Bob"),
        )
        code = grpc.StatusCode.OK
        try:
            payments.CreatePayout(request)
        except grpc.RpcError as error:  # declined at once when the hold is refused in the call
            code = error.code()
        codes.append(code)
        settle(payout)
    run = payments.RunReconciliation(
        pb.RunReconciliationRequest(
            run_id=f"rec_obs_{uuid.uuid4().hex[:8]}",
            statement_date=datetime.now(UTC).date().isoformat(),
        )
    ).run
    for kind in ("MISSING_AT_BANK", "UNKNOWN_AT_BANK", "AMOUNT_MISMATCH", "STATUS_MISMATCH"):
        value = pb.BreakKind.Value(f"BREAK_KIND_{kind}")
        suite.breaks[kind] = sum(1 for b in run.breaks if b.kind == value)
    identity_channel.close()
    payments_channel.close()
    assert codes[0] == grpc.StatusCode.OK
    assert codes[1] in (grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION)
    assert sorted(suite.outcomes.values()) == sorted(
        [pb.PAYMENT_STATE_SETTLED, pb.PAYMENT_STATE_SETTLED, pb.PAYMENT_STATE_DECLINED]
    )
    return suite


def _eventually(port: int, check: Callable[[Samples], bool], what: str) -> Samples:
    """Scrape until ``check`` holds: gauges sampled from the database lag a few seconds."""
    found: Samples = {}

    def holds() -> bool:
        nonlocal found
        found = scrape(port)
        return check(found)

    wait_until(holds, 90, what)
    return found


def test_every_service_serves_the_operations_metrics_after_real_traffic(traffic: Suite) -> None:
    ports = traffic.metrics

    # identity: its calls, by method and code, timed
    identity = scrape(ports["identity"])
    service = "astra.identity.v1.IdentityService"
    for method in ("CreateCustomer", "SubmitKyc", "ReviewKyc"):
        labels = {"grpc_service": service, "grpc_method": method}
        assert sample(identity, "grpc_server_handled_total", grpc_code="OK", **labels) == 1
        assert sample(identity, "grpc_server_handling_seconds_count", **labels) == 1
        assert (sample(identity, "grpc_server_handling_seconds_sum", **labels) or 0) > 0
        assert sample(identity, "grpc_server_in_flight_requests", **labels) == 0
    assert (sample(identity, "grpc_server_handled_total", grpc_method="IssueToken") or 0) >= 2

    # ledger: the hold and posting of the settled payout, the refused one by reason
    ledger = scrape(ports["ledger"])
    assert (sample(ledger, "ledger_transfers_total", kind="PENDING", status="PENDING") or 0) >= 1
    assert (sample(ledger, "ledger_transfers_total", kind="POST_PENDING") or 0) >= 1
    assert sample(ledger, "ledger_transfer_rejections_total", reason="INSUFFICIENT_FUNDS") == 1
    assert (
        sample(ledger, "grpc_server_handled_total", grpc_service="astra.ledger.v1.LedgerService")
        or 0
    ) >= 3

    # payments: calls, payments by state (sampled), the bank calls and the breaker
    # A scrape can land while the sampler is setting the states one by one: wait
    # for the whole picture, not just its first part.
    payments = _eventually(
        ports["payments"],
        lambda s: (
            sample(s, "payments_by_state", state="SETTLED") == 2
            and sample(s, "payments_by_state", state="DECLINED") == 1
            and sample(s, "payments_by_state", state="SUBMITTING") == 0
        ),
        "payments_by_state to show both settled payments and the declined one",
    )
    labels = {"grpc_service": "astra.payments.v1.PaymentsService", "grpc_method": "CreatePayout"}
    assert sample(payments, "grpc_server_handled_total", **labels) == 2  # every code
    assert (sample(payments, "grpc_server_handled_total", grpc_code="OK", **labels) or 0) >= 1
    assert sample(payments, "grpc_server_handling_seconds_count", **labels) == 2
    assert sample(payments, "payments_by_state", state="DECLINED") == 1
    assert sample(payments, "payments_by_state", state="SUBMITTING") == 0
    assert sample(payments, "payments_transitions_total", kind="PAYOUT", state="SETTLED") == 1
    bank = {"dependency": "bank", "operation": "submit"}
    assert (sample(payments, "dependency_call_attempts_total", result="ok", **bank) or 0) >= 2
    assert (sample(payments, "dependency_call_outcomes_total", **bank) or 0) >= 2
    assert (sample(payments, "dependency_call_seconds_count", **bank) or 0) >= 2
    assert sample(payments, "circuit_breaker_state", breaker="bank") == 0
    # the latest reconciliation's breaks, by kind, as the run reported them
    assert traffic.breaks
    for kind, count in traffic.breaks.items():
        assert sample(payments, "payments_reconciliation_breaks", kind=kind) == count
    kyc = _eventually(
        ports["payments"],
        lambda s: (sample(s, "events_handled_total", outcome="APPLIED") or 0) >= 1,
        "the KYC subscriber to apply identity's events",
    )
    assert (sample(kyc, "events_handled_total", outcome="APPLIED") or 0) >= 1

    # relays: everything published, nothing waiting
    for context in ("identity", "payments"):
        relay = _eventually(
            ports[f"relay-{context}"],
            lambda s, c=context: (  # type: ignore[misc]
                (sample(s, "outbox_published_total", context=c) or 0) > 0
                and sample(s, "outbox_backlog_messages", context=c) == 0
            ),
            f"the {context} relay to publish its backlog",
        )
        assert sample(relay, "outbox_oldest_unpublished_age_seconds", context=context) == 0
        assert sample(relay, "outbox_relay_failures_total", context=context) == 0


def test_no_secret_or_full_account_number_reaches_the_logs(traffic: Suite) -> None:
    logs = traffic.logs()
    everything = "\n".join(logs.values())
    # the scan looks at real logs: every process wrote, and the flow is in them
    for name, text in logs.items():
        assert text.count("\n") > 3, f"{name} logged almost nothing"
    for method in ("CreateCollection", "CreatePayout", "GetPayment"):
        assert f"/astra.payments.v1.PaymentsService/{method}" in logs["payments"]
    assert "/astra.identity.v1.IdentityService/IssueToken" in logs["identity"]
    for secret in traffic.secrets:
        assert secret not in everything
    for account in (PAYOUT_ACCOUNT, COLLECTION_ACCOUNT):
        assert account not in everything
        # nor the number without its country prefix or check digits
        assert account[4:-4] not in everything
    assert "Bearer ey" not in everything


def test_every_log_line_is_json_with_service_and_calls_carry_request_and_trace_ids(
    traffic: Suite,
) -> None:
    services = {"identity", "ledger", "payments", "relay-identity", "relay-payments"}
    in_calls = 0
    for name in services:
        for line in traffic.processes[name].logs().splitlines():
            record = json.loads(line)  # every line is one JSON object
            assert record["service"] == name, line
            assert {"level", "timestamp", "event"} <= record.keys(), line
            if "method" in record:
                in_calls += 1
                assert record["request_id"], line
                assert len(record["trace_id"]) == 32, line
    assert in_calls > 10
