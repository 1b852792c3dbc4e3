"""Payments end to end with real processes: identity, the ledger, payments, the sandbox bank,
the identity and payments outbox relays, the Pub/Sub emulator and PostgreSQL.

A customer is created and verified at identity (payments learns it from
identity's events), funded by a collection, pays out, and gets a partial refund
of the collection. Then the ledger's balances, the payments' states and
histories, the events payments published, the bank's books and a
reconciliation all agree; and the same payment is read through grpcurl. Last,
every event the relays published and every process log is scanned: no e-mail,
name, account number or secret of this module's traffic is in any of them.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
import httpx
import pytest
from astra.identity.v1 import identity_pb2 as ipb
from astra.identity.v1.identity_pb2_grpc import IdentityServiceStub
from astra.ledger.v1 import ledger_pb2 as lpb
from astra.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from astra.payments.v1 import events_pb2 as pev
from astra.payments.v1 import payments_pb2 as pb
from astra.payments.v1.payments_pb2_grpc import PaymentsServiceStub
from astra_testkit.customers import create_customer
from astra_testkit.postgres import PostgresServer
from astra_testkit.processes import ServiceProcess
from astra_testkit.pubsub_emulator import PubSubEmulator
from astra_testkit.suite import running_suite
from astra_testkit.tls import grpcurl_tls, tls_channel, tls_files
from astra_testkit.waiting import wait_until
from chassis.events.clients import (
    ensure_subscription,
    ensure_topic,
    publisher_api,
    subscriber_client,
    subscription_path,
    topic_path,
)
from chassis.grpc.client import open_channel
from chassis.tls.devca import CLIENT, ensure_dev_ca
from payments.domain.ledger_plan import clearing_account_id, customer_account_id, fee_account_id
from screening.samples import sample_list, write_sdn
from screening.sdn import SdnEntry
from sqlalchemy import create_engine, text

from tests.payments_fixtures import TERMINAL

BIN = Path(sys.executable).parent
FEE = 150
# The personal data this module's traffic carries (distinctive, so a scan cannot miss them).
SOURCE_IBAN = "FR7630006000011234567890189"
SOURCE_HOLDER = "Ada Sourceholder"
PAYEE_IBAN = "DE89370400440532013000"
PAYEE_HOLDER = "Bob Payeeholder"
# On the sanctions list payments screens against (beside generated names).
LISTED = SdnEntry("95001", "KORVANI, Dashel Miro", "individual", ("SDGT",), ("QORVANI, Dashil",))
# Subscriptions made before any traffic, read only by the final scan.
SCANNED_TOPICS = ("astra-identity-events", "astra-payments-events")


@dataclass
class Running:
    identity: str
    ledger: str
    payments: str
    bank: str
    payments_db: str
    project: str
    events_subscription: str
    # The admin's tokens by service name (a token is for one service).
    admin_tokens: dict[str, str]
    # A new admin token for a service (the module's own were issued at start).
    new_token: Callable[[str], str]
    # Where every process writes its log.
    folder: Path
    # What must never leave a process in an event or a log line.
    secrets: list[str]
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    customers: list[str] = field(default_factory=list)

    def channel(self, target: str) -> grpc.Channel:
        service = {self.identity: "identity", self.ledger: "ledger", self.payments: "payments"}
        token = self.admin_tokens[service[target]]
        return open_channel(target, tls=tls_files(), default_timeout=30, token_source=lambda: token)


@pytest.fixture(scope="module")
def running(
    postgres: PostgresServer,
    pubsub_emulator: PubSubEmulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Running]:
    project = f"astra-pay-{uuid.uuid4().hex[:8]}"
    pubsub = {
        "PUBSUB_EMULATOR_HOST": pubsub_emulator.host,
        "ASTRA_PUBSUB_PROJECT": project,
        "ASTRA_PUBSUB_CREATE_TOPICS": "true",
    }
    # The test reads payments' events from a subscription made before any traffic.
    saved = {k: os.environ.get(k) for k in pubsub}
    os.environ.update(pubsub)
    topic = topic_path(project, "astra-payments-events")
    ensure_topic(publisher_api(), topic)
    events_subscription = subscription_path(project, "e2e-payments-events")
    ensure_subscription(subscriber_client(), events_subscription, topic)
    for scanned in SCANNED_TOPICS:
        ensure_topic(publisher_api(), topic_path(project, scanned))
        ensure_subscription(
            subscriber_client(),
            subscription_path(project, f"e2e-scan-{scanned}"),
            topic_path(project, scanned),
        )
    folder = tmp_path_factory.mktemp("payments-e2e")
    try:
        with running_suite(
            postgres,
            folder,
            name="e2e",
            common_env=pubsub,
            relays=("identity", "payments"),
            env={
                "bank": {"SANDBOX_BANK_SETTLEMENT_DELAY_SECONDS": "0.2"},
                "payments": {
                    "PAYMENTS_PAYOUT_FEE_FIXED": json.dumps({"EUR": FEE}),
                    "PAYMENTS_SANCTIONS_LIST_FILE": str(sanctions_list(folder)),
                },
            },
        ) as suite:
            yield Running(
                identity=suite.identity,
                ledger=suite.ledger,
                payments=suite.payments,
                bank=suite.bank_url,
                payments_db=suite.database_urls["payments"],
                project=project,
                events_subscription=events_subscription,
                admin_tokens=suite.admin_tokens(),
                new_token=suite.admin_token,
                folder=folder,
                secrets=[
                    suite.admin_secret,
                    suite.payments_secret,
                    *(
                        line.strip()
                        for kek in folder.glob("*kek")
                        for line in kek.read_text().splitlines()
                    ),
                ],
                processes=suite.processes,
            )
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def sanctions_list(folder: Path) -> Path:
    return write_sdn([*sample_list(95, 200).entries, LISTED], folder / "sanctions")


def projected_status(running: Running, customer_id: str) -> str | None:
    engine = create_engine(running.payments_db.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            value = connection.execute(
                text("SELECT kyc_status FROM customer_kyc WHERE customer_id = :c"),
                {"c": customer_id},
            ).scalar()
    finally:
        engine.dispose()
    return str(value) if value is not None else None


def pull_events(running: Running, wanted: int) -> list[pev.PaymentStateChanged]:
    client = subscriber_client()
    found: list[pev.PaymentStateChanged] = []
    deadline = time.monotonic() + 90
    try:
        while len(found) < wanted:
            assert time.monotonic() < deadline, f"only {len(found)} of {wanted} events arrived"
            reply = client.pull(
                subscription=running.events_subscription, max_messages=100, timeout=10
            )
            if not reply.received_messages:
                continue
            for received in reply.received_messages:
                message = received.message
                if message.attributes["ce-type"] == pev.PaymentStateChanged.DESCRIPTOR.full_name:
                    found.append(pev.PaymentStateChanged.FromString(message.data))
            client.acknowledge(
                subscription=running.events_subscription,
                ack_ids=[r.ack_id for r in reply.received_messages],
            )
    finally:
        client.close()
    return found


def test_a_customer_is_funded_pays_out_and_is_refunded_and_everything_agrees(
    running: Running,
) -> None:
    identity = IdentityServiceStub(running.channel(running.identity))
    payments = PaymentsServiceStub(running.channel(running.payments))
    ledger = LedgerServiceStub(running.channel(running.ledger))
    customer = f"cus_e2e_{uuid.uuid4().hex[:10]}"
    running.customers.append(customer)
    create_customer(identity, customer)
    # Identity's events reach payments' projection through its relay and Pub/Sub.
    wait_until(lambda: projected_status(running, customer) == "VERIFIED", 90, "the KYC projection")

    def finished(payment_id: str) -> pb.Payment:
        result: list[pb.Payment] = []

        def done() -> bool:
            payment = payments.GetPayment(pb.GetPaymentRequest(payment_id=payment_id)).payment
            result[:] = [payment]
            return payment.state in TERMINAL and not payment.ledger_pending

        wait_until(done, 90, f"payment {payment_id}")
        return result[0]

    collection_id = f"pay_e2e_col_{uuid.uuid4().hex[:8]}"
    payments.CreateCollection(
        pb.CreateCollectionRequest(
            payment_id=collection_id,
            customer_id=customer,
            amount=50_000,
            currency="EUR",
            source=pb.BankAccount(account_number=SOURCE_IBAN, holder_name=SOURCE_HOLDER),
        )
    )
    collection = finished(collection_id)
    payout_id = f"pay_e2e_out_{uuid.uuid4().hex[:8]}"
    held = payments.CreatePayout(
        pb.CreatePayoutRequest(
            payment_id=payout_id,
            customer_id=customer,
            amount=20_000,
            currency="EUR",
            destination=pb.BankAccount(account_number=PAYEE_IBAN, holder_name=PAYEE_HOLDER),
        )
    ).payment
    assert (held.state, held.fee) == (pb.PAYMENT_STATE_FUNDS_HELD, FEE)
    payout = finished(payout_id)
    refund_id = f"pay_e2e_ref_{uuid.uuid4().hex[:8]}"
    payments.RefundPayment(
        pb.RefundPaymentRequest(refund_id=refund_id, payment_id=collection_id, amount=10_000)
    )
    refund = finished(refund_id)
    finals = {p.id: p for p in (collection, payout, refund)}
    assert {p.state for p in finals.values()} == {pb.PAYMENT_STATE_SETTLED}

    # The ledger.
    def balance(account: str) -> lpb.Balance:
        return ledger.GetBalance(lpb.GetBalanceRequest(account_id=account)).balance

    customer_balance = balance(customer_account_id(customer, "EUR"))
    assert (customer_balance.posted, customer_balance.pending) == (50_000 - 20_150 - 10_000, 0)
    assert balance(clearing_account_id("EUR")).posted == 50_000 - 20_000 - 10_000
    assert balance(fee_account_id("EUR")).posted == FEE
    assert (
        payments.GetPayment(pb.GetPaymentRequest(payment_id=collection_id)).payment.refunded_amount
        == 10_000
    )

    # The bank: each payment once, settled, for its amount.
    bank = httpx.get(f"{running.bank}/admin/payments", timeout=10).json()["payments"]
    by_reference = {p["reference"]: p for p in bank}
    assert len(bank) == len(by_reference) == 3
    assert {(r, p["status"], p["amount"]) for r, p in by_reference.items()} == {
        (collection_id, "settled", 50_000),
        (payout_id, "settled", 20_000),
        (refund_id, "settled", 10_000),
    }

    # The events: one per transition, in each payment's order, matching its history.
    expected = sum(len(p.history) for p in finals.values())
    events = pull_events(running, expected)
    for payment in finals.values():
        seen = [(e.previous_state, e.state) for e in events if e.payment.id == payment.id]
        history = [(t.from_state, t.to_state) for t in payment.history]
        assert seen == history

    # Reconciliation.
    run = payments.RunReconciliation(
        pb.RunReconciliationRequest(
            run_id=f"rec_e2e_{uuid.uuid4().hex[:8]}",
            statement_date=datetime.now(UTC).date().isoformat(),
        )
    ).run
    assert list(run.breaks) == []
    assert run.matched_count == run.statement_line_count == 3

    # The same payment through grpcurl (server reflection, JSON out).
    result = subprocess.run(
        [
            str(BIN / "grpcurl"),
            *grpcurl_tls(),
            "-H",
            f"authorization: Bearer {running.admin_tokens['payments']}",
            "-d",
            json.dumps({"payment_id": payout_id}),
            running.payments,
            "astra.payments.v1.PaymentsService/GetPayment",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    through_grpcurl = json.loads(result.stdout)["payment"]
    assert through_grpcurl["state"] == "PAYMENT_STATE_SETTLED"
    assert through_grpcurl["fee"] == str(FEE)
    assert [t["to_state"] for t in through_grpcurl["history"]][-1] == "PAYMENT_STATE_SETTLED"
    unauthenticated = subprocess.run(
        [
            str(BIN / "grpcurl"),
            *grpcurl_tls(),
            "-d",
            json.dumps({"payment_id": payout_id}),
            running.payments,
            "astra.payments.v1.PaymentsService/GetPayment",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unauthenticated.returncode != 0
    assert "Unauthenticated" in unauthenticated.stderr


def drain(running: Running, topic: str) -> list[tuple[dict[str, str], bytes]]:
    """Every message on the scan's subscription to ``topic`` (attributes, data)."""
    client = subscriber_client()
    subscription = subscription_path(running.project, f"e2e-scan-{topic}")
    found: list[tuple[dict[str, str], bytes]] = []
    empty_replies = 0
    try:
        while empty_replies < 3:
            with warnings.catch_warnings():
                # Deprecated for production pulls; what a drain of the emulator wants.
                warnings.simplefilter("ignore", DeprecationWarning)
                reply = client.pull(
                    subscription=subscription,
                    max_messages=1000,
                    return_immediately=True,
                    timeout=10,
                )
            if not reply.received_messages:
                empty_replies += 1
                time.sleep(0.2)
                continue
            empty_replies = 0
            found.extend(
                (dict(r.message.attributes), bytes(r.message.data)) for r in reply.received_messages
            )
            client.acknowledge(
                subscription=subscription, ack_ids=[r.ack_id for r in reply.received_messages]
            )
    finally:
        client.close()
    return found


def _jwt_claims(token: str) -> dict[str, object]:
    """A token's claims, read without checking (the test asks identity about its own token)."""
    payload = token.split(".")[1]
    claims: dict[str, object] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def _refused(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()
    raise AssertionError("the call was let through")


def test_the_trust_boundary_holds_between_the_real_processes(
    running: Running, tmp_path: Path
) -> None:
    """Each attack on the running processes is refused with its status, and writes nothing."""
    admin = IdentityServiceStub(running.channel(running.identity))
    ledger = LedgerServiceStub(running.channel(running.ledger))
    account = f"acct_tb_{uuid.uuid4().hex[:10]}"
    opening = lpb.OpenAccountRequest(
        account=lpb.Account(
            id=account, currency="EUR", currency_exponent=2, normal_side=lpb.NORMAL_SIDE_CREDIT
        )
    )
    auth = (("authorization", f"Bearer {running.admin_tokens['ledger']}"),)
    ca = tls_files().ca_file
    stranger = ensure_dev_ca(tmp_path / "another-ca").files(CLIENT)

    # The transport: no plaintext, no anonymous client, no client of another CA.
    wrong_channels: dict[str, Callable[[str], grpc.Channel]] = {
        "plaintext": lambda target: grpc.insecure_channel(target),
        "no client certificate": lambda target: grpc.secure_channel(
            target, grpc.ssl_channel_credentials(Path(ca).read_bytes())
        ),
        "another CA's client": lambda target: grpc.secure_channel(
            target,
            grpc.ssl_channel_credentials(
                Path(ca).read_bytes(),
                Path(stranger.key_file).read_bytes(),
                Path(stranger.cert_file).read_bytes(),
            ),
        ),
    }
    for name, dial in wrong_channels.items():
        for target in (running.identity, running.ledger, running.payments):
            with dial(target) as channel:
                code = _refused(
                    lambda: LedgerServiceStub(channel).OpenAccount(
                        opening, metadata=auth, timeout=10
                    )
                )
            assert code == grpc.StatusCode.UNAVAILABLE, (name, target, code)

    # A token is for one service: the ledger's is refused by payments and identity.
    with tls_channel(running.payments) as channel:
        code = _refused(
            lambda: PaymentsServiceStub(channel).GetPayment(
                pb.GetPaymentRequest(payment_id="pay_tb_none"), metadata=auth, timeout=10
            )
        )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    with tls_channel(running.identity) as channel:
        code = _refused(
            lambda: IdentityServiceStub(channel).RegisterClient(
                ipb.RegisterClientRequest(
                    client=ipb.Client(id="cli_tb_sneaky", display_name="x", allowed_scopes=[])
                ),
                metadata=auth,
                timeout=10,
            )
        )
    assert code == grpc.StatusCode.UNAUTHENTICATED

    # No escalation through a customer token: a client allowed one customer scope
    # cannot obtain the other, and gets only its own when it asks for "all".
    narrow = admin.RegisterClient(
        ipb.RegisterClientRequest(
            client=ipb.Client(
                id=f"cli_tb_{uuid.uuid4().hex[:8]}",
                display_name="narrow",
                allowed_scopes=["identity.tokens.issue_customer", "ledger.accounts.read"],
            )
        )
    )
    assert running.customers, "the flow above made a customer"
    with tls_channel(running.identity) as channel:
        stub = IdentityServiceStub(channel)
        narrow_token = stub.IssueToken(
            ipb.IssueTokenRequest(
                client_id=narrow.client.id,
                client_secret=narrow.client_secret,
                audience="identity",
            ),
            timeout=10,
        ).access_token
        narrow_auth = (("authorization", f"Bearer {narrow_token}"),)
        escalation = ipb.IssueCustomerTokenRequest(
            customer_id=running.customers[0], scopes=["ledger.transfers.read"], audience="ledger"
        )
        code = _refused(lambda: stub.IssueCustomerToken(escalation, metadata=narrow_auth))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        granted = stub.IssueCustomerToken(
            ipb.IssueCustomerTokenRequest(customer_id=running.customers[0], audience="ledger"),
            metadata=narrow_auth,
            timeout=10,
        ).access_token
    assert _jwt_claims(granted)["scope"] == "ledger.accounts.read"

    # A revoked token is refused by the ledger within the documented bound.
    revoked = running.admin_tokens["ledger"]
    admin.RevokeToken(ipb.RevokeTokenRequest(token_id=str(_jwt_claims(revoked)["jti"])))

    probe = lpb.GetAccountRequest(account_id=account)  # a read: NOT_FOUND while accepted

    def refused_by_the_ledger() -> bool:
        with tls_channel(running.ledger) as channel:
            try:
                LedgerServiceStub(channel).GetAccount(probe, metadata=auth, timeout=10)
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.NOT_FOUND:
                    return False
                if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                    return True
                raise
        raise AssertionError(f"{account} exists")

    wait_until(refused_by_the_ledger, 30, "the ledger to refuse the revoked token")
    running.admin_tokens["ledger"] = running.new_token("ledger")

    # None of the refused calls wrote anything.
    ledger = LedgerServiceStub(running.channel(running.ledger))
    code = _refused(lambda: ledger.GetAccount(lpb.GetAccountRequest(account_id=account)))
    assert code == grpc.StatusCode.NOT_FOUND
    code = _refused(lambda: admin.GetClient(ipb.GetClientRequest(client_id="cli_tb_sneaky")))
    assert code == grpc.StatusCode.NOT_FOUND


def test_no_personal_data_or_secret_in_any_event_or_log(running: Running) -> None:
    """Runs last: scans what the module's traffic left on Pub/Sub and in the process logs."""
    assert running.customers, "the flow above ran first"
    customer = running.customers[0]
    forbidden = {
        "e-mail": f"{customer}@example.com",
        "customer name": "Ada Test",
        "source IBAN": SOURCE_IBAN,
        "source holder": SOURCE_HOLDER,
        "payee IBAN": PAYEE_IBAN,
        "payee holder": PAYEE_HOLDER,
        **{f"secret {i}": secret for i, secret in enumerate(running.secrets)},
    }
    assert len(running.secrets) >= 4  # two client secrets, two key-encryption keys

    events = {topic: drain(running, topic) for topic in SCANNED_TOPICS}
    for topic, messages in events.items():
        # The scan saw this customer's events (so it is not vacuous).
        assert any(customer.encode() in data for _, data in messages), topic
        for attributes, data in messages:
            text = data + json.dumps(attributes).encode()
            for what, value in forbidden.items():
                assert value.encode() not in text, f"{what} in a {attributes['ce-type']} event"

    # Every process's log: the services, the relays and the sandbox bank.
    logs = {path.name: path.read_text(errors="replace") for path in running.folder.glob("*.log")}
    assert {"identity.log", "ledger.log", "payments.log", "sandbox-bank.log"} <= set(logs)
    assert {"relay-identity.log", "relay-payments.log"} <= set(logs)
    for name, log in logs.items():
        for what, value in forbidden.items():
            assert value not in log, f"{what} in {name}"


def test_a_listed_payee_is_held_for_review_and_the_analysts_decisions_are_recorded(
    running: Running,
) -> None:
    """Sanctions screening between the real processes: a payout to a listed name waits
    IN_REVIEW with the match shown; another service client approves one and rejects one."""
    identity = IdentityServiceStub(running.channel(running.identity))
    payments = PaymentsServiceStub(running.channel(running.payments))
    customer = create_customer(identity, f"cus_e2e_{uuid.uuid4().hex[:10]}")
    wait_until(lambda: projected_status(running, customer) == "VERIFIED", 90, "the KYC projection")
    reviewer = identity.RegisterClient(
        ipb.RegisterClientRequest(
            client=ipb.Client(
                id=f"cli_e2e_analyst_{uuid.uuid4().hex[:6]}",
                display_name="sanctions analyst",
                allowed_scopes=["payments.payments.review", "payments.payments.read"],
            )
        )
    )
    with tls_channel(running.identity) as channel:
        analyst_token = (
            IdentityServiceStub(channel)
            .IssueToken(
                ipb.IssueTokenRequest(
                    client_id=reviewer.client.id,
                    client_secret=reviewer.client_secret,
                    audience="payments",
                ),
                timeout=10,
            )
            .access_token
        )
    analyst = PaymentsServiceStub(
        open_channel(
            running.payments,
            tls=tls_files(),
            default_timeout=30,
            token_source=lambda: analyst_token,
        )
    )

    def payment(payment_id: str) -> pb.Payment:
        return payments.GetPayment(pb.GetPaymentRequest(payment_id=payment_id)).payment

    funding = f"pay_e2e_sfund_{uuid.uuid4().hex[:8]}"
    payments.CreateCollection(
        pb.CreateCollectionRequest(
            payment_id=funding,
            customer_id=customer,
            amount=10_000,
            currency="EUR",
            source=pb.BankAccount(account_number=SOURCE_IBAN, holder_name=SOURCE_HOLDER),
        )
    )
    wait_until(lambda: payment(funding).state == pb.PAYMENT_STATE_SETTLED, 90, "the funding")
    decided = {}
    for decision in ("approve", "reject"):
        payout_id = f"pay_e2e_sdn_{decision}_{uuid.uuid4().hex[:8]}"
        payments.CreatePayout(
            pb.CreatePayoutRequest(
                payment_id=payout_id,
                customer_id=customer,
                amount=1_000,
                currency="EUR",
                destination=pb.BankAccount(
                    account_number=PAYEE_IBAN, holder_name="Dashil Qorvany", country="IR"
                ),
            )
        )
        wait_until(
            lambda p=payout_id: payment(p).state == pb.PAYMENT_STATE_IN_REVIEW,  # type: ignore[misc]
            60,
            "the review",
        )
        held = payment(payout_id)
        assert held.review_reason == "SANCTIONS_MATCH"
        found = held.sanctions_screening
        assert found.outcome == pb.SANCTIONS_SCREENING_OUTCOME_HIT
        assert (found.entry_uid, found.matched_name, list(found.programs)) == (
            "95001",
            "QORVANI, Dashil",
            ["SDGT"],
        )
        assert found.score >= 90
        assert found.list_version.startswith("sdn-")
        if decision == "approve":
            analyst.ApprovePayment(pb.ApprovePaymentRequest(payment_id=payout_id, note="namesake"))
            wanted = pb.PAYMENT_STATE_SETTLED
        else:
            analyst.RejectPayment(pb.RejectPaymentRequest(payment_id=payout_id, note="true match"))
            wanted = pb.PAYMENT_STATE_DECLINED
        wait_until(
            lambda p=payout_id, w=wanted: payment(p).state == w,  # type: ignore[misc]
            90,
            f"the {decision}",
        )
        decided[decision] = payment(payout_id)
    for decision, note in (("approve", "namesake"), ("reject", "true match")):
        final = decided[decision]
        assert final.reviewed_by.client_id == reviewer.client.id
        assert final.review_note == note
        assert final.sanctions_screening.entry_uid == "95001"
    assert decided["reject"].reason == "REJECTED_IN_REVIEW"
