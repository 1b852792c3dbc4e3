"""End to end: a transfer posted over gRPC reaches a subscriber as a decoded event.

The ledger serves gRPC in this process on its own PostgreSQL database; the relay
and the ``astra-events`` tail tool run as real processes against the real Pub/Sub
emulator.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from astra.ledger.v1 import events_pb2 as ev
from astra.ledger.v1 import ledger_pb2 as pb
from astra.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from astra_testkit.processes import ServiceProcess
from astra_testkit.pubsub_emulator import PubSubEmulator
from astra_testkit.waiting import wait_until
from chassis.events import cloudevents as ce
from chassis.events.schema import lane_of, ordering_key_of_lane

from tests.outbox_fixtures import (
    PROJECT,
    Topic,
    collecting,
    relay_process,
)

pytestmark = pytest.mark.e2e

EVENTS_BIN = str(Path(sys.executable).with_name("astra-events"))


def open_account(stub: LedgerServiceStub, account_id: str) -> None:
    stub.OpenAccount(
        pb.OpenAccountRequest(
            account=pb.Account(id=account_id, currency="EUR", normal_side=pb.NORMAL_SIDE_CREDIT)
        )
    )


def test_a_transfer_posted_over_grpc_arrives_as_a_decoded_event(
    emulator_env: PubSubEmulator,
    ledger_stub: LedgerServiceStub,
    ledger_db_url: str,
    tmp_path: Path,
) -> None:
    topic = Topic.create()
    relay = relay_process(ledger_db_url, emulator_env.host, topic.id)
    tail = ServiceProcess(
        "events",
        [EVENTS_BIN, "--count", "3", "--project", PROJECT, topic.id],
        {"PUBSUB_EMULATOR_HOST": emulator_env.host},
        log_dir=tmp_path,
    ).start()
    try:
        wait_until(lambda: "astra-events: tailing" in tail.logs(), 60, "the tail to subscribe")
        with collecting(topic.subscription) as collector:
            open_account(ledger_stub, "acct_payer")
            open_account(ledger_stub, "acct_payee")
            transfer = ledger_stub.CreateTransfer(
                pb.CreateTransferRequest(
                    transfer=pb.TransferSpec(
                        id="tr_e2e_1",
                        metadata={"invoice": "inv-42"},
                        movement=pb.Movement(
                            legs=[
                                pb.Leg(
                                    account_id="acct_payer",
                                    direction=pb.DIRECTION_DEBIT,
                                    amount=1250,
                                    currency="EUR",
                                ),
                                pb.Leg(
                                    account_id="acct_payee",
                                    direction=pb.DIRECTION_CREDIT,
                                    amount=1250,
                                    currency="EUR",
                                ),
                            ]
                        ),
                    )
                )
            ).transfer
            received = collector.wait_for(3)
        assert tail.process is not None
        assert tail.process.wait(timeout=60) == 0, tail.logs()
    finally:
        tail.terminate()
        relay.terminate()

    by_type = {m.attributes[ce.TYPE]: m for m in received}
    assert set(by_type) == {"astra.ledger.v1.AccountOpened", "astra.ledger.v1.TransferPosted"}
    message = by_type["astra.ledger.v1.TransferPosted"]
    assert message.attributes[ce.SUBJECT] == "tr_e2e_1"
    assert message.ordering_key == ordering_key_of_lane(lane_of("tr_e2e_1"))
    attributes = message.attributes
    assert attributes[ce.SOURCE] == "//astra.ledger"
    assert attributes[ce.SPECVERSION] == "1.0"
    assert attributes[ce.CONTENT_TYPE] == "application/protobuf"
    assert attributes[ce.ID]
    event = ev.TransferPosted.FromString(message.data)
    assert event.transfer_id == transfer.id
    assert [(leg.account_id, leg.direction, leg.amount) for leg in event.legs] == [
        ("acct_payer", pb.DIRECTION_DEBIT, 1250),
        ("acct_payee", pb.DIRECTION_CREDIT, 1250),
    ]
    balances = {b.account_id: b.posted for b in event.balances}
    assert balances == {"acct_payer": -1250, "acct_payee": 1250}
    assert dict(event.metadata) == {"invoice": "inv-42"}
    assert attributes[ce.TIME] == ce.format_time(event.occur_time.ToDatetime())
    openings = [m for m in received if m.attributes[ce.TYPE].endswith("AccountOpened")]
    assert sorted(m.attributes[ce.SUBJECT] for m in openings) == ["acct_payee", "acct_payer"]

    # The tail tool printed the same three events, decoded, one JSON object per line.
    lines = [json.loads(line) for line in tail.logs().splitlines() if line.startswith("{")]
    printed = {line["type"]: line for line in lines}
    assert len(lines) == 3
    posted = printed["astra.ledger.v1.TransferPosted"]
    assert posted["event"]["transfer_id"] == "tr_e2e_1"
    assert posted["event"]["metadata"] == {"invoice": "inv-42"}
    assert posted["subject"] == "tr_e2e_1"
    assert posted["ordering_key"] == message.ordering_key
    assert posted["attributes"][ce.ID] == attributes[ce.ID]
    assert posted["id"] == attributes[ce.ID]
