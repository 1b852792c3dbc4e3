"""``make run`` (scripts/run_suite.py) as a supervisor, with real processes on free ports.

The suite starts in a data folder of its own; a service killed with SIGKILL is
started again while the others keep serving; the emulator killed the same way
comes back with the subscription payments needs; SIGTERM then stops every
process group, the emulator's JVM included.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from astra_testkit.ports import free_port
from astra_testkit.waiting import wait_until
from chassis.events.clients import subscriber_client
from chassis.tls import secure_channel
from chassis.tls.devca import DevCa
from grpc_health.v1 import health_pb2, health_pb2_grpc

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# The suite's own variables, which must not leak in from the test's environment.
_OWN_PREFIXES = ("IDENTITY_", "LEDGER_", "PAYMENTS_", "SANDBOX_BANK_", "RELAY_", "ASTRA_PUBSUB_")


class RunningSuite:
    def __init__(
        self, process: subprocess.Popen[bytes], output: Path, ports: dict[str, int], data: Path
    ):
        self.process = process
        self.output = output
        self.ports = ports
        # make run's own development CA: its developer certificate is what a user dials with.
        self.tls = DevCa(data / "tls").client

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def pids(self, name: str) -> list[int]:
        """Every pid ``name`` had, first start first."""
        pattern = rf"(?:started|restarted) {re.escape(name)}\s+pid (\d+)"
        return [int(pid) for pid in re.findall(pattern, self.text())]

    def serving(self, name: str) -> bool:
        with secure_channel(f"127.0.0.1:{self.ports[name]}", self.tls) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=2
                )
            except grpc.RpcError:
                return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[RunningSuite]:
    ports = {
        name: free_port()
        for name in (
            "identity",
            "ledger",
            "payments",
            "identity-metrics",
            "ledger-metrics",
            "payments-metrics",
            "bank",
            "emulator",
        )
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    env.pop("PUBSUB_EMULATOR_HOST", None)
    env.update(
        {
            "ASTRA_DATA_DIR": str(tmp_path / "data"),
            "IDENTITY_GRPC_PORT": str(ports["identity"]),
            "LEDGER_GRPC_PORT": str(ports["ledger"]),
            "PAYMENTS_GRPC_PORT": str(ports["payments"]),
            "IDENTITY_METRICS_PORT": str(ports["identity-metrics"]),
            "LEDGER_METRICS_PORT": str(ports["ledger-metrics"]),
            "PAYMENTS_METRICS_PORT": str(ports["payments-metrics"]),
            "SANDBOX_BANK_PORT": str(ports["bank"]),
            "ASTRA_PUBSUB_EMULATOR_PORT": str(ports["emulator"]),
            # Quick to stop: nothing is in flight to drain.
            "IDENTITY_GRACE_SECONDS": "1",
            "LEDGER_GRACE_SECONDS": "1",
            "PAYMENTS_GRACE_SECONDS": "1",
            "PAYMENTS_BANK_FEED_WAIT_SECONDS": "1",
        }
    )
    output = tmp_path / "make-run.out"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "run_suite.py")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = RunningSuite(process, output, ports, tmp_path / "data")
    try:
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def process_groups() -> set[int]:
    groups = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after it.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        groups.add(int(fields[2]))
    return groups


def test_a_killed_process_comes_back_while_the_rest_serves_and_sigterm_stops_all(
    suite: RunningSuite, monkeypatch: pytest.MonkeyPatch
) -> None:
    wait_until(
        lambda: "Ctrl-C stops everything" in suite.text() or suite.process.poll() is not None,
        240,
        "the suite to start",
    )
    assert suite.process.poll() is None, suite.text()[-3000:]
    banner = suite.text()
    # The banner shows what is in effect, not the defaults.
    for name in ("identity", "ledger", "payments"):
        assert f"127.0.0.1:{suite.ports[name]}" in banner
        assert f"127.0.0.1:{suite.ports[f'{name}-metrics']}/metrics" in banner
    assert f"http://127.0.0.1:{suite.ports['bank']}/v1" in banner
    assert f"Pub/Sub emulator 127.0.0.1:{suite.ports['emulator']}" in banner
    assert ":9102" not in banner
    assert "50052" not in banner
    assert all(suite.serving(name) for name in ("identity", "ledger", "payments"))
    [identity], [payments], [ledger] = (suite.pids(n) for n in ("identity", "payments", "ledger"))

    os.kill(ledger, signal.SIGKILL)
    wait_until(lambda: len(suite.pids("ledger")) == 2, 30, "the ledger restarted")
    wait_until(lambda: suite.serving("ledger"), 60, "the restarted ledger serving")
    assert "ledger exited with signal SIGKILL" in suite.text()
    # The others kept serving in the same processes.
    assert suite.serving("identity")
    assert suite.serving("payments")
    assert suite.pids("identity") == [identity]
    assert suite.pids("payments") == [payments]

    # The emulator comes back empty; payments' subscription to identity's topic is
    # recreated before anything is published to it again.
    [emulator] = suite.pids("pubsub-emulator")
    os.kill(emulator, signal.SIGKILL)
    wait_until(lambda: len(suite.pids("pubsub-emulator")) == 2, 30, "the emulator restarted")
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{suite.ports['emulator']}")
    client = subscriber_client()
    kyc = "projects/astra-local/subscriptions/astra-payments-kyc"

    def kyc_subscription_exists() -> bool:
        try:
            client.get_subscription(subscription=kyc)
        except Exception:  # the emulator still starting, or the subscription not yet there
            return False
        return True

    try:
        wait_until(kyc_subscription_exists, 60, "the KYC subscription recreated")
    finally:
        client.close()

    groups = {pid for name in _NAMES for pid in suite.pids(name)}
    assert len(groups) == len(_NAMES) + 2  # every part, and two restarts
    suite.process.send_signal(signal.SIGTERM)
    assert suite.process.wait(timeout=60) == 0
    # Each part ran as the leader of its own process group: none is left, JVM included.
    assert not groups & process_groups(), suite.text()[-2000:]
    assert "stopped pubsub-emulator" in suite.text()


_NAMES = (
    "pubsub-emulator",
    "identity",
    "ledger",
    "sandbox-bank",
    "payments",
    "relay-identity",
    "relay-ledger",
    "relay-payments",
)
