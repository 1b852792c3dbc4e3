"""KYC events leave identity through its outbox and arrive on Pub/Sub, in order per customer,
as CloudEvents (binary mode) that a projection can apply by version."""

from __future__ import annotations

from astra.identity.v1 import events_pb2 as ev
from astra.identity.v1 import identity_pb2 as pb
from astra.identity.v1.identity_pb2_grpc import IdentityServiceStub
from astra_testkit.pubsub_emulator import PubSubEmulator
from chassis.events import cloudevents as ce
from chassis.events.decoding import decode
from chassis.events.schema import lane_of, ordering_key_of_lane

from tests.outbox_fixtures import Topic, collecting, relay_settings, running_relay


def test_kyc_events_arrive_on_pubsub_in_order_per_customer(
    emulator_env: PubSubEmulator, identity_stub: IdentityServiceStub, identity_db_url: str
) -> None:
    topic = Topic.create()
    with collecting(topic.subscription) as collector:
        settings = relay_settings(identity_db_url, topic.id, context="identity")
        with running_relay(settings):
            for customer_id in ("cus_ev_a", "cus_ev_b"):
                identity_stub.CreateCustomer(
                    pb.CreateCustomerRequest(
                        customer=pb.Customer(
                            id=customer_id, display_name="E", email="e@example.com"
                        )
                    )
                )
                identity_stub.SubmitKyc(
                    pb.SubmitKycRequest(request_id=f"kyc_{customer_id}_1", customer_id=customer_id)
                )
            identity_stub.ReviewKyc(
                pb.ReviewKycRequest(
                    request_id="kyc_a_review",
                    customer_id="cus_ev_a",
                    decision=pb.KYC_DECISION_REJECT,
                    reason="selfie does not match",
                )
            )
            identity_stub.ReviewKyc(
                pb.ReviewKycRequest(
                    request_id="kyc_b_review",
                    customer_id="cus_ev_b",
                    decision=pb.KYC_DECISION_APPROVE,
                )
            )
            received = collector.wait_for(6)
    assert len(received) == 6
    by_customer: dict[str, list[tuple[str, object]]] = {}
    for message in received:
        assert message.attributes["ce-source"] == "//astra.identity"
        assert message.attributes["ce-specversion"] == "1.0"
        assert message.attributes["content-type"] == "application/protobuf"
        event = decode(message.attributes["ce-type"], message.data)
        assert message.ordering_key == ordering_key_of_lane(lane_of(message.attributes[ce.SUBJECT]))
        by_customer.setdefault(message.attributes[ce.SUBJECT], []).append(
            (message.attributes["ce-type"], event)
        )
    assert set(by_customer) == {"cus_ev_a", "cus_ev_b"}
    for customer_id, events in by_customer.items():
        types = [t for t, _ in events]
        assert types == [
            "astra.identity.v1.CustomerCreated",
            "astra.identity.v1.CustomerKycChanged",
            "astra.identity.v1.CustomerKycChanged",
        ]
        created = events[0][1]
        assert isinstance(created, ev.CustomerCreated)
        assert created.customer_id == customer_id
        changes = [e for _, e in events[1:]]
        assert all(isinstance(c, ev.CustomerKycChanged) for c in changes)
        assert [c.kyc_version for c in changes] == [1, 2]  # type: ignore[attr-defined]
    final_a = by_customer["cus_ev_a"][-1][1]
    assert final_a.status == pb.KYC_STATUS_REJECTED  # type: ignore[attr-defined]
    assert final_a.reason == "selfie does not match"  # type: ignore[attr-defined]
    final_b = by_customer["cus_ev_b"][-1][1]
    assert final_b.status == pb.KYC_STATUS_VERIFIED  # type: ignore[attr-defined]
