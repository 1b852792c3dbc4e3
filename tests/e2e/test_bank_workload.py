"""A bank workload against the ledger as a real process, crashed with kill -9 mid-load.

Concurrent clients (``astra_testkit.ledger_workload.driver``) work a few hot
accounts in three currencies, some of which cannot be overdrawn and one of which
cannot be credited past its debits: transfers, linked batches, holds posted or
voided while they are still being created, holds left to expire, reversals of
transfers still committing, replays of every id, first attempts under deadlines
of milliseconds, balances as of an instant just past. Midway the ledger is
killed with SIGKILL and started again on the same database; clients retry what
had no definite answer with the same id. The outbox relay publishes to a Pub/Sub
emulator of this test's own (an ordered subscription keeps a thread per key).

Afterwards every guarantee is checked through the API, in the ledger's tables and
in the events received (``astra_testkit.ledger_workload.checks``), and the report
lists each invariant with its violations and examples. The seed and size come
from ASTRA_WORKLOAD_SEED, _CLIENTS, _SECONDS, _KILLS and _TIGHT_SHARE (README,
Tests); the seed is printed, so a failing run can be replayed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from astra_testkit.ledger_workload.chart import bank_chart
from astra_testkit.ledger_workload.checks import (
    Delivered,
    check_everything,
    count_events,
    open_timed_holds,
    summarize,
    unpublished_events,
)
from astra_testkit.ledger_workload.driver import (
    CachedToken,
    Connection,
    WorkloadConfig,
    open_accounts,
    run_workload,
)
from astra_testkit.ledger_workload.model import Outage
from astra_testkit.ports import free_port
from astra_testkit.postgres import PostgresServer
from astra_testkit.processes import ServiceProcess
from astra_testkit.pubsub_emulator import PubSubEmulator
from astra_testkit.waiting import eventually
from ledger.bootstrap import migrate

from tests.ledger_fixtures import ledger_auth_env, service_token
from tests.outbox_fixtures import Collector, Topic, collecting, relay_process

pytestmark = pytest.mark.e2e

LEDGER_BIN = str(Path(sys.executable).parent / "astra-ledger")
# Down this long between the kill and the restart: clients find nobody there.
DOWNTIME_SECONDS = 0.5


def distinct_received(collector: Collector) -> int:
    return len({m.attributes.get("ce-id") for m in collector.snapshot()})


def test_a_bank_workload_through_a_crash_keeps_every_guarantee(
    postgres: PostgresServer, own_emulator: PubSubEmulator, tmp_path: Path
) -> None:
    config = WorkloadConfig.from_env()
    print(config.describe())
    chart = bank_chart()
    # A copy of the migrated template: the relay can start beside the ledger, and a
    # restart need not look at migrations.
    database_url = postgres.fresh_database_url("ledger", migrate)
    target = f"127.0.0.1:{free_port()}"
    ledger = ServiceProcess(
        "ledger",
        [LEDGER_BIN, "serve"],
        {
            "LEDGER_DATABASE_URL": database_url,
            "LEDGER_GRPC_PORT": target.rsplit(":", 1)[1],
            "LEDGER_MIGRATE_ON_START": "false",
            "LEDGER_GRACE_SECONDS": "2",
            "LEDGER_METRICS_PORT": "0",
            # Errors and warnings only: an access line per call would cost the load CPU.
            "LEDGER_LOG_LEVEL": "WARNING",
            "LEDGER_EXPIRY_INTERVAL_SECONDS": "0.2",
            **ledger_auth_env(),
        },
        log_dir=tmp_path,
    ).start()
    started = time.monotonic()
    token = CachedToken(service_token)

    def crash() -> Outage:
        killed_at = time.time()
        ledger.kill()
        time.sleep(DOWNTIME_SECONDS)
        ledger.start()
        ledger.wait_healthy(target)
        return Outage(killed_at, time.time())

    relay: ServiceProcess | None = None
    try:
        topic = Topic.create()
        relay = relay_process(database_url, own_emulator.host, topic.id)
        ledger.wait_healthy(target)
        with collecting(topic.subscription) as collector:
            open_accounts(target, token, chart)
            loaded = time.monotonic()
            log = run_workload(target, token, chart, config, crash)
            print(summarize(log))
            drained = time.monotonic()
            # Holds with a timeout all end (posted, voided or expired); events all arrive.
            # A wait that runs out is not a failure of its own: the checks say what is missing.
            eventually(lambda: open_timed_holds(database_url) == 0, 60)
            eventually(lambda: unpublished_events(database_url) == 0, 120)
            written = count_events(database_url)
            eventually(lambda: distinct_received(collector) >= written, 120)
            delivered = [
                Delivered(m.attributes, m.data, m.ordering_key) for m in collector.snapshot()
            ]
        checked = time.monotonic()
        connection = Connection(target, token)
        try:
            findings = check_everything(
                connection=connection,
                database_url=database_url,
                log=log,
                chart=chart,
                delivered=delivered,
                server_log=ledger.logs(),
            )
        finally:
            connection.close()
        print(
            f"setup {loaded - started:.1f}s, load {drained - loaded:.1f}s, "
            f"settling {checked - drained:.1f}s, checks {time.monotonic() - checked:.1f}s"
        )
    finally:
        if relay is not None:
            relay.terminate()
        ledger.terminate()
        postgres.drop_url(database_url)
    print(findings.report())
    assert findings.ok, f"{config.describe()}\n{findings.report()}"
