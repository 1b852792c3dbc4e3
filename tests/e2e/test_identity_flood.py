"""A flood of IssueToken calls with unknown client ids against identity as a real process:
its memory stays bounded, every flood call is refused cleanly (never INTERNAL), and a known
client keeps getting tokens meanwhile (retrying when told to, as RetryInfo says)."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil
import pytest
from astra.identity.v1 import identity_pb2 as ipb
from astra.identity.v1.identity_pb2_grpc import IdentityServiceStub
from astra_testkit.ports import free_port
from astra_testkit.postgres import PostgresServer
from astra_testkit.processes import ServiceProcess
from astra_testkit.tls import tls_channel, tls_env
from chassis.grpc.status import retry_delay
from identity.bootstrap import bootstrap
from identity.domain.model import ClientSpec
from identity.service_layer import use_cases

from tests.identity_fixtures import TEST_KEK, identity_settings

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
FLOOD_CALLS = 2_000
FLOOD_CLIENTS = 64
LEGITIMATE_CALLS = 10
RSS_LIMIT = 200 * 1024 * 1024
REFUSALS = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED}


@dataclass
class Identity:
    target: str
    process: ServiceProcess
    client_id: str
    secret: str


@pytest.fixture(scope="module")
def identity(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Identity]:
    folder = tmp_path_factory.mktemp("flood")
    database = postgres.create_database(prefix="astra_flood_identity")
    port = free_port()
    env = {
        "IDENTITY_DATABASE_URL": postgres.url_for(database),
        "IDENTITY_GRPC_PORT": str(port),
        "IDENTITY_KEY_ENCRYPTION_KEY": TEST_KEK,
        "IDENTITY_GRACE_SECONDS": "2",
        "IDENTITY_METRICS_PORT": "0",
        **tls_env("IDENTITY", "identity"),
    }
    # The known client, registered in this process (the flood is what needs the process).
    settings = identity_settings(env["IDENTITY_DATABASE_URL"], migrate_on_start=True)
    app = bootstrap(settings)
    try:
        _, secret = use_cases.register_client(
            app.deps, ClientSpec("cli_flood_known", "known", ("identity.customers.read",))
        )
    finally:
        app.close()
    process = ServiceProcess(
        "identity", [str(BIN / "astra-identity"), "serve"], env, log_dir=folder
    ).start()
    try:
        process.wait_healthy(f"127.0.0.1:{port}")
        yield Identity(f"127.0.0.1:{port}", process, "cli_flood_known", secret)
    finally:
        process.terminate()
        postgres.drop_database(database)


def test_a_flood_of_unknown_client_ids_is_refused_within_bounded_memory(
    identity: Identity,
) -> None:
    server = psutil.Process(identity.process.pid)
    rss_before = server.memory_info().rss
    peak = [rss_before]
    flooding = threading.Event()
    flooding.set()

    def sample() -> None:
        while flooding.is_set():
            peak[0] = max(peak[0], server.memory_info().rss)
            time.sleep(0.02)

    channels = [tls_channel(identity.target) for _ in range(FLOOD_CLIENTS)]

    def flood(index: int) -> grpc.StatusCode:
        stub = IdentityServiceStub(channels[index % FLOOD_CLIENTS])
        request = ipb.IssueTokenRequest(
            client_id=f"cli_flood_{index}", client_secret="astra_cs_guess", audience="ledger"
        )
        try:
            stub.IssueToken(request, timeout=30)
        except grpc.RpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    legitimate: list[tuple[bool, int]] = []  # (got a token, attempts)

    def legitimate_calls() -> None:
        with tls_channel(identity.target) as channel:
            stub = IdentityServiceStub(channel)
            request = ipb.IssueTokenRequest(
                client_id=identity.client_id, client_secret=identity.secret, audience="identity"
            )
            for _ in range(LEGITIMATE_CALLS):
                deadline, attempts, got = time.monotonic() + 30, 0, False
                while not got and time.monotonic() < deadline:
                    attempts += 1
                    try:
                        got = bool(stub.IssueToken(request, timeout=10).access_token)
                    except grpc.RpcError as error:
                        if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                            raise
                        # As told by RetryInfo; gRPC's own concurrency refusal carries none.
                        time.sleep(retry_delay(error) or 0.05)
                legitimate.append((got, attempts))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    with ThreadPoolExecutor(FLOOD_CLIENTS + 1) as pool:
        honest = pool.submit(legitimate_calls)
        codes = Counter(pool.map(flood, range(FLOOD_CALLS)))
        honest.result()
    wall = time.monotonic() - started
    flooding.clear()
    sampler.join()
    for channel in channels:
        channel.close()
    rss_after = server.memory_info().rss
    figures = {
        "flood_calls": FLOOD_CALLS,
        "clients": FLOOD_CLIENTS,
        "wall_seconds": round(wall, 2),
        "by_status": {code.name: count for code, count in codes.items()},
        "rss_before_mb": round(rss_before / 2**20, 1),
        "rss_peak_mb": round(peak[0] / 2**20, 1),
        "rss_after_mb": round(rss_after / 2**20, 1),
        "legitimate_attempts": [attempts for _, attempts in legitimate],
    }
    print("identity flood:", json.dumps(figures))
    assert set(codes) <= REFUSALS, figures
    assert sum(codes.values()) == FLOOD_CALLS
    assert peak[0] < RSS_LIMIT, figures
    assert rss_after < RSS_LIMIT, figures
    assert [got for got, _ in legitimate] == [True] * LEGITIMATE_CALLS, figures
    assert identity.process.alive()
