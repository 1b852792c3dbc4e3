"""Payments as a real process, stopped with SIGTERM: one drain path, every worker stopped.

The suite (identity with its relay, the ledger, the bank) runs once; each test
starts a payments process of its own and stops it. How long stopping took
is printed, not asserted: speed is for the bench.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from astra.identity.v1.identity_pb2_grpc import IdentityServiceStub
from astra_testkit.customers import create_customer
from astra_testkit.ports import free_port
from astra_testkit.postgres import PostgresServer
from astra_testkit.processes import ServiceProcess
from astra_testkit.pubsub_emulator import PubSubEmulator
from astra_testkit.suite import RunningSuite, running_suite
from astra_testkit.tls import tls_files
from astra_testkit.waiting import wait_until
from chassis.db.engine import create_db_engine
from chassis.grpc.client import open_channel
from sqlalchemy import text

# What payments runs beside its server, in start order (one process: it samples the gauges).
WORKERS = [
    "sampler-payments-house-accounts",
    "sampler-payments-by-state",
    "payment-rounds",
    "kyc-subscriber",
]


@pytest.fixture(scope="module")
def suite(
    postgres: PostgresServer,
    pubsub_emulator: PubSubEmulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningSuite]:
    pubsub = {
        "PUBSUB_EMULATOR_HOST": pubsub_emulator.host,
        "ASTRA_PUBSUB_PROJECT": f"astra-stop-{uuid.uuid4().hex[:8]}",
        "ASTRA_PUBSUB_CREATE_TOPICS": "true",
    }
    folder = tmp_path_factory.mktemp("payments-stop")
    with running_suite(
        postgres, folder, name="stop", common_env=pubsub, relays=("identity",)
    ) as running:
        # Each test runs a payments process of its own.
        assert running.processes["payments"].terminate() == 0
        yield running


@contextmanager
def payments_process(
    suite: RunningSuite, folder: Path, **overrides: str
) -> Iterator[ServiceProcess]:
    """Payments on a port and a KYC subscription of its own, ready; killed if still running."""
    template = suite.processes["payments"]
    port = free_port()
    settings = {
        "PAYMENTS_GRPC_PORT": str(port),
        "PAYMENTS_KYC_SUBSCRIPTION": f"astra-payments-kyc-{uuid.uuid4().hex[:8]}",
        **overrides,
    }
    process = ServiceProcess(
        "payments", template.argv, {**template.env, **settings}, log_dir=folder
    )
    process.start()
    try:
        process.wait_healthy(f"127.0.0.1:{port}")
        # Its subscription exists from here on: identity's events from now reach it.
        wait_until(lambda: "KYC subscriber started" in process.logs(), 60, "the KYC subscriber")
        yield process
    finally:
        process.kill()


def feed_a_customer(suite: RunningSuite) -> str:
    """A customer created at identity: its events reach payments through Pub/Sub."""
    token = suite.admin_token("identity")
    customer = f"cus_stop_{uuid.uuid4().hex[:8]}"
    with open_channel(
        suite.identity, tls=tls_files(), default_timeout=30, token_source=lambda: token
    ) as channel:
        create_customer(IdentityServiceStub(channel), customer)
    return customer


def projected(database_url: str, customer_id: str) -> bool:
    engine = create_db_engine(database_url, pool_size=1)
    try:
        with engine.connect() as connection:
            found = connection.execute(
                text("SELECT 1 FROM customer_kyc WHERE customer_id = :c"), {"c": customer_id}
            ).first()
    finally:
        engine.dispose()
    return found is not None


def log_lines(process: ServiceProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in process.logs().splitlines() if line.startswith("{")]


def workers_by_event(lines: list[dict[str, Any]], event: str) -> list[str]:
    return [line["worker"] for line in lines if line["event"] == event]


def terminate_timed(process: ServiceProcess, label: str) -> int | None:
    started = time.monotonic()
    code = process.terminate(timeout=60)
    print(f"payments stopped in {time.monotonic() - started:.1f}s ({label})")
    return code


def test_sigterm_stops_every_worker_in_reverse_order_and_exits_cleanly(
    suite: RunningSuite, tmp_path: Path
) -> None:
    with payments_process(suite, tmp_path) as payments:  # the default grace (10 s)
        customer = feed_a_customer(suite)
        wait_until(
            lambda: projected(suite.database_urls["payments"], customer), 90, "the KYC projection"
        )
        code = terminate_timed(payments, "Pub/Sub up, grace 10 s")

    assert code == 0
    lines = log_lines(payments)
    assert workers_by_event(lines, "worker started") == WORKERS
    # Asked newest first; one that overruns its share of the time is reported once done, so
    # the "stopped" lines may come in another order.
    assert workers_by_event(lines, "stopping worker") == WORKERS[::-1]
    assert sorted(workers_by_event(lines, "worker stopped")) == sorted(WORKERS)
    assert workers_by_event(lines, "worker did not stop in time; left behind") == []
    events = [line["event"] for line in lines]
    assert events.index("signal received") < events.index("draining")
    assert events.index("grpc server stopped") < events.index("worker stopped")
    assert events[-1] == "stopped"


def test_sigterm_after_pubsub_went_away_still_drains_every_worker_and_exits_cleanly(
    suite: RunningSuite, tmp_path: Path
) -> None:
    """Pub/Sub gone first (``make run`` signals the emulator with everything else): the
    subscriber's client library is reconnecting, throttled, when the drain reaches it."""
    with (
        PubSubEmulator() as own,  # payments' alone: this test stops it
        payments_process(
            suite, tmp_path, PUBSUB_EMULATOR_HOST=own.host, PAYMENTS_GRACE_SECONDS="1"
        ) as payments,
    ):
        own.stop()
        time.sleep(1)  # not a check: the library's reconnecting gets under way meanwhile
        code = terminate_timed(payments, "Pub/Sub gone, grace 1 s")

    assert code == 0
    lines = log_lines(payments)
    # Each worker was stopped, or (the client library holds its channel's close while it
    # waits to reconnect, for up to ten seconds) left behind and said so.
    stopped = workers_by_event(lines, "worker stopped")
    late = workers_by_event(lines, "worker did not stop in time; left behind")
    assert sorted(stopped + late) == sorted(WORKERS)
    assert set(stopped) >= set(WORKERS[:3])  # the workers that do not need Pub/Sub
    assert [line["event"] for line in lines][-1] == "stopped"
