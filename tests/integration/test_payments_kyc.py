"""The KYC gate: payments' projection fed by identity's events (real Pub/Sub emulator), with
identity asked over gRPC when the projection knows nothing yet."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import grpc
import pytest
from astra.identity.v1 import events_pb2 as idev
from astra.identity.v1 import identity_pb2 as idpb
from astra.payments.v1 import events_pb2 as pev
from astra.payments.v1 import payments_pb2 as pb
from astra_testkit.pubsub_emulator import PubSubEmulator
from chassis.events import cloudevents as ce
from chassis.events.clients import publisher_api, topic_path
from chassis.events.subscriber import EventSubscriber
from chassis.grpc.status import reason_of
from google.protobuf.message import Message
from google.pubsub_v1 import PubsubMessage
from identity.bootstrap import Identity
from payments.adapters import tables
from payments.domain.customers import CustomerKyc
from payments.entrypoints.kyc_subscriber import start_kyc_subscriber
from sqlalchemy import Engine, func, select, text

from tests.identity_fixtures import (
    IdentityServer,
)
from tests.payments_fixtures import (
    SandboxBank,
    Suite,
    make_suite,
)

PROJECT = "astra-local"


@pytest.fixture
def topic() -> str:
    return f"identity-events-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def subscribed(
    pubsub_emulator: PubSubEmulator,
    monkeypatch: pytest.MonkeyPatch,
    topic: str,
    payments_db_url: str,
    sandbox_bank: SandboxBank,
    ledger_target: str,
    identity_server: IdentityServer,
) -> Iterator[tuple[Suite, EventSubscriber]]:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    monkeypatch.setenv("ASTRA_PUBSUB_PROJECT", PROJECT)
    made, close = make_suite(
        payments_db_url,
        sandbox_bank,
        ledger_target,
        identity_server,
        kyc_subscriber_enabled=True,
        kyc_topic=topic,
        kyc_subscription=f"payments-kyc-{uuid.uuid4().hex[:8]}",
    )
    subscriber = start_kyc_subscriber(made.app, made.app.settings)
    assert subscriber is not None
    yield made, subscriber
    subscriber.stop()
    close()


def publish(topic: str, message: Message, event_id: str, key: str) -> None:
    attributes = ce.binary_attributes(
        event_id=event_id,
        event_type=message.DESCRIPTOR.full_name,
        source="//astra.identity",
        time=datetime.now(UTC),
    )
    publisher_api().publish(
        topic=topic_path(PROJECT, topic),
        messages=[
            PubsubMessage(data=message.SerializeToString(), attributes=attributes, ordering_key=key)
        ],
        timeout=30,
    )


def projected(suite: Suite, customer_id: str) -> CustomerKyc | None:
    with suite.app.deps.uow() as uow:
        return uow.payments.customer(customer_id)


def wait_projection(suite: Suite, customer_id: str, version: int) -> CustomerKyc:
    deadline = time.monotonic() + 60
    while True:
        kyc = projected(suite, customer_id)
        if kyc is not None and kyc.kyc_version >= version:
            return kyc
        assert time.monotonic() < deadline, f"projection never reached version {version}: {kyc}"
        time.sleep(0.05)


def changed(
    customer_id: str, status: idpb.KycStatus.ValueType, version: int
) -> idev.CustomerKycChanged:
    return idev.CustomerKycChanged(
        customer_id=customer_id,
        previous_status=idpb.KYC_STATUS_UNVERIFIED,
        status=status,
        kyc_version=version,
    )


def test_identity_events_feed_the_projection_once_and_in_version_order(
    subscribed: tuple[Suite, EventSubscriber], topic: str
) -> None:
    suite, _ = subscribed
    customer = suite.customer(verified=False)
    created = suite.identity.GetCustomer(idpb.GetCustomerRequest(customer_id=customer)).customer
    event = idev.CustomerCreated(
        customer_id=created.id, kyc_status=created.kyc_status, kyc_version=created.kyc_version
    )
    event.create_time.CopyFrom(created.create_time)
    publish(topic, event, "evt-created", customer)
    first = wait_projection(suite, customer, 0)
    assert first.kyc_status == "UNVERIFIED"
    assert first.customer_since is not None
    publish(topic, changed(customer, idpb.KYC_STATUS_VERIFIED, 3), "evt-v3", customer)
    assert wait_projection(suite, customer, 3).kyc_status == "VERIFIED"
    # A redelivered event id has no second effect; an older version never wins.
    publish(topic, changed(customer, idpb.KYC_STATUS_VERIFIED, 3), "evt-v3", customer)
    publish(topic, changed(customer, idpb.KYC_STATUS_REJECTED, 2), "evt-v2", customer)
    publish(topic, changed(customer, idpb.KYC_STATUS_REJECTED, 4), "evt-v4", customer)
    latest = wait_projection(suite, customer, 4)
    assert latest.kyc_status == "REJECTED"
    assert latest.customer_since == first.customer_since
    with suite.app.engine.connect() as connection:
        applied = connection.execute(
            select(func.count())
            .select_from(tables.inbox)
            .where(tables.inbox.c.event_id == "evt-v3")
        ).scalar_one()
    assert applied == 1


def test_the_gate_reads_the_projection_and_asks_identity_only_when_it_must(
    subscribed: tuple[Suite, EventSubscriber], topic: str
) -> None:
    suite, _ = subscribed
    # Unknown to the projection: identity is asked (UNVERIFIED), and the payment declined.
    customer = suite.customer(verified=False)
    declined_id = suite.new_id("pay")
    with pytest.raises(grpc.RpcError) as refused:
        suite.collection(customer, 500, payment_id=declined_id)
    assert reason_of(refused.value) == "CUSTOMER_NOT_VERIFIED"
    stored = projected(suite, customer)
    assert stored is not None
    assert stored.kyc_status == "UNVERIFIED"
    # The projection saying VERIFIED is enough on its own: identity (which still says
    # UNVERIFIED here) is not asked, so this collection goes through.
    publish(topic, changed(customer, idpb.KYC_STATUS_VERIFIED, 7), "evt-verified", customer)
    wait_projection(suite, customer, 7)
    accepted = suite.collection(customer, 500)
    assert suite.wait_for(accepted.id).state == pb.PAYMENT_STATE_SETTLED
    # A projection that is not VERIFIED is checked against identity before declining:
    # a customer verified a moment ago is not refused because an event is late.
    late = suite.customer(verified=False)
    suite.identity.SubmitKyc(
        idpb.SubmitKycRequest(request_id=suite.new_id("kyc"), customer_id=late)
    )
    publish(topic, changed(late, idpb.KYC_STATUS_PENDING_REVIEW, 1), "evt-late", late)
    wait_projection(suite, late, 1)
    suite.identity.ReviewKyc(
        idpb.ReviewKycRequest(
            request_id=suite.new_id("kyc"), customer_id=late, decision=idpb.KYC_DECISION_APPROVE
        )
    )
    fresh = suite.collection(late, 500)
    assert fresh.state != pb.PAYMENT_STATE_DECLINED
    refreshed = projected(suite, late)
    assert refreshed is not None
    assert refreshed.kyc_status == "VERIFIED"


def raw_bytes(engine: Engine, *tables_: str) -> bytes:
    """Every value stored in the tables, as one blob (what a stolen backup would show)."""
    blob = b""
    with engine.connect() as connection:
        for table in tables_:
            for row in connection.execute(text(f"SELECT * FROM {table}")):
                blob += b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row)
    return blob


def test_erasing_a_customer_destroys_its_personal_data_and_keeps_its_history(
    subscribed: tuple[Suite, EventSubscriber], topic: str, identity: Identity
) -> None:
    suite, _ = subscribed
    customer = suite.customer()
    email = f"{customer}@example.com"
    iban = "DE02120300000000202051"
    collected = suite.collection(customer, 5_000, account=iban)
    settled = suite.wait_for(collected.id)
    assert settled.state == pb.PAYMENT_STATE_SETTLED
    paid = suite.wait_for(suite.payout(customer, 1_000, account=iban).id)
    before = {p.id: suite.get(p.id) for p in (settled, paid)}
    assert before[paid.id].counterparty.account_number == iban
    # At rest, before any erasure: sealed, not in clear.
    payments_rows = raw_bytes(suite.app.engine, "payments", "outbox")
    assert settled.id.encode() in payments_rows
    assert iban.encode() not in payments_rows
    assert b"Bob" not in payments_rows
    identity_rows = raw_bytes(identity.engine, "customers", "outbox")
    assert customer.encode() in identity_rows
    assert email.encode() not in identity_rows
    assert b"Ada Test" not in identity_rows

    erase = idpb.EraseCustomerRequest(customer_id=customer)
    erased = suite.identity.EraseCustomer(erase).customer
    again = suite.identity.EraseCustomer(erase).customer
    assert (erased.display_name, erased.email) == ("", "")
    assert erased.HasField("erase_time")
    assert again == erased
    assert erased.kyc_status == idpb.KYC_STATUS_VERIFIED
    # Identity's CustomerErased reaches payments (twice: redelivery has no second effect).
    for _ in range(2):
        publish(topic, idev.CustomerErased(customer_id=customer), "evt-erased", customer)
    deadline = time.monotonic() + 60
    while suite.get(paid.id).counterparty.account_number:
        assert time.monotonic() < deadline, "payments never erased the customer's data"
        time.sleep(0.05)

    for payment_id, was in before.items():
        now = suite.get(payment_id)
        assert (now.counterparty.account_number, now.counterparty.holder_name) == ("", "")
        was.ClearField("counterparty")
        now.ClearField("counterparty")
        assert now == was  # amounts, states, history, ledger account: untouched
    assert suite.customer_balance(customer) == 5_000 - 1_000 - before[paid.id].fee
    assert iban.encode() not in raw_bytes(suite.app.engine, "payments", "outbox", "data_keys")
    with suite.app.engine.connect() as connection:
        audits = connection.execute(
            select(tables.outbox.c.payload).where(
                tables.outbox.c.event_type == pev.CustomerDataErased.DESCRIPTOR.full_name
            )
        ).all()
    assert [pev.CustomerDataErased.FromString(p).payment_count for (p,) in audits] == [2]
    with pytest.raises(grpc.RpcError) as refused:
        suite.identity.CreateCustomer(
            idpb.CreateCustomerRequest(
                customer=idpb.Customer(id=customer, display_name="Ada Test", email=email)
            )
        )
    assert reason_of(refused.value) == "CUSTOMER_ERASED"
    # Payments moves no more money for it (its data would come back with a new payment).
    with pytest.raises(grpc.RpcError) as declined:
        suite.payout(customer, 100, account=iban)
    assert reason_of(declined.value) == "CUSTOMER_NOT_VERIFIED"
