"""The whole suite as real processes on fresh PostgreSQL databases (end-to-end tests, benchmarks).

identity, ledger, the sandbox bank, payments and (optionally) outbox relays
start in dependency order, each waited for, all over mutual TLS with
certificates of the suite CA (``astra_testkit.tls``); an admin client and payments'
service client are registered the operator's way (``astra-identity
register-client``). Everything is stopped and the databases dropped on exit.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from astra.identity.v1 import identity_pb2 as ipb
from astra.identity.v1.identity_pb2_grpc import IdentityServiceStub
from chassis.grpc.client import open_channel
from chassis.pii import write_key_encryption_key_file

from astra_testkit.identity_cli import all_scopes, client_secret, identity_cli
from astra_testkit.ports import free_port
from astra_testkit.postgres import PostgresServer
from astra_testkit.processes import ServiceProcess, python_module
from astra_testkit.tls import tls_env, tls_files
from astra_testkit.waiting import wait_until

BIN = Path(sys.executable).parent
CONTEXTS = ("identity", "ledger", "payments")
# Settings each process may be given on top of what the launcher sets: keys of `env`.
PARTS = ("identity", "ledger", "bank", "payments", "relay")


@dataclass
class RunningSuite:
    identity: str
    ledger: str
    payments: str
    bank_url: str
    database_urls: dict[str, str]
    admin_client_id: str
    admin_secret: str
    payments_secret: str
    kek: Path
    # Prometheus ports by process name (empty unless asked for).
    metrics_ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def admin_token(self, audience: str) -> str:
        """A token of the admin client for one service ("identity", "ledger", "payments")."""
        with open_channel(self.identity, tls=tls_files(), default_timeout=30) as channel:
            request = ipb.IssueTokenRequest(
                client_id=self.admin_client_id, client_secret=self.admin_secret, audience=audience
            )
            return str(IdentityServiceStub(channel).IssueToken(request).access_token)

    def admin_tokens(self) -> dict[str, str]:
        """The admin's tokens by service name: a token is for one service."""
        return {service: self.admin_token(service) for service in CONTEXTS}

    def target_of(self, service: str) -> str:
        return {"identity": self.identity, "ledger": self.ledger, "payments": self.payments}[
            service
        ]


def _bank_up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def running_suite(
    postgres: PostgresServer,
    folder: Path,
    *,
    name: str,
    env: Mapping[str, Mapping[str, str]] | None = None,
    common_env: Mapping[str, str] | None = None,
    relays: Sequence[str] = (),
    metrics: bool = False,
    log_level: str | None = None,
) -> Iterator[RunningSuite]:
    """Start the suite; ``name`` tags its databases and client ids (``cli_<name>_admin``).

    ``env`` adds settings per part (keys in PARTS); ``common_env`` goes to every
    process but the bank (Pub/Sub settings, say); ``relays`` names the contexts
    whose outbox relay runs.
    """
    extra = {part: dict((env or {}).get(part, {})) for part in PARTS}
    unknown = set(env or {}) - set(PARTS)
    if unknown:
        raise ValueError(f"no such part of the suite: {sorted(unknown)}")
    common = dict(common_env or {})
    databases = {c: postgres.create_database(prefix=f"astra_{name}_{c}") for c in CONTEXTS}
    url = {c: postgres.url_for(db) for c, db in databases.items()}
    port = {part: free_port() for part in ("identity", "ledger", "payments", "bank")}
    metrics_ports = (
        {p: free_port() for p in (*CONTEXTS, *(f"relay-{c}" for c in relays))} if metrics else {}
    )

    def service_env(prefix: str, part: str) -> dict[str, str]:
        settings = {
            **common,
            f"{prefix}_DATABASE_URL": url[part],
            f"{prefix}_GRPC_PORT": str(port[part]),
            f"{prefix}_METRICS_PORT": str(metrics_ports.get(part, 0)),
            f"{prefix}_GRACE_SECONDS": "2",
            **tls_env(prefix, part),
        }
        if log_level:
            settings[f"{prefix}_LOG_LEVEL"] = log_level
        return settings

    target = {part: f"127.0.0.1:{port[part]}" for part in ("identity", "ledger", "payments")}
    bank_url = f"http://127.0.0.1:{port['bank']}"
    bank_key = secrets.token_urlsafe(32)  # shared by payments and the bank: signed requests
    kek = folder / "kek"
    payments_kek = folder / "payments-kek"
    processes: dict[str, ServiceProcess] = {}
    relay_health: dict[str, int] = {}

    def start(process_name: str, argv: list[str], process_env: Mapping[str, str]) -> None:
        processes[process_name] = ServiceProcess(
            process_name, argv, process_env, log_dir=folder
        ).start()

    try:
        identity_cli({}, "generate-kek", "--out", str(kek))
        write_key_encryption_key_file(payments_kek)
        identity_env = {
            **service_env("IDENTITY", "identity"),
            "IDENTITY_KEY_ENCRYPTION_KEY_FILE": str(kek),
            **extra["identity"],
        }
        admin_client_id = f"cli_{name}_admin"
        # Registered with every scope named one by one (no "all" outside development).
        admin_secret = client_secret(identity_env, admin_client_id, *all_scopes())
        payments_secret = client_secret(identity_env, f"cli_{name}_payments", *all_scopes())

        start("identity", [str(BIN / "astra-identity"), "serve"], identity_env)
        processes["identity"].wait_healthy(target["identity"])
        start(
            "ledger",
            [str(BIN / "astra-ledger"), "serve"],
            {
                **service_env("LEDGER", "ledger"),
                "LEDGER_IDENTITY_TARGET": target["identity"],
                "LEDGER_DB_POOL_SIZE": "4",
                **extra["ledger"],
            },
        )
        bank_env = {
            "SANDBOX_BANK_HOST": "127.0.0.1",
            "SANDBOX_BANK_PORT": str(port["bank"]),
            "SANDBOX_BANK_DATABASE": str(folder / "bank.db"),
            "SANDBOX_BANK_SETTLEMENT_DELAY_SECONDS": "0",
            "SANDBOX_BANK_SIGNING_KEY": bank_key,
        }
        if log_level:
            bank_env["SANDBOX_BANK_LOG_LEVEL"] = log_level
        start("sandbox-bank", python_module("sandbox_bank.main"), {**bank_env, **extra["bank"]})
        processes["ledger"].wait_healthy(target["ledger"])
        start(
            "payments",
            [str(BIN / "astra-payments"), "serve"],
            {
                **service_env("PAYMENTS", "payments"),
                "PAYMENTS_LEDGER_TARGET": target["ledger"],
                "PAYMENTS_IDENTITY_TARGET": target["identity"],
                "PAYMENTS_CLIENT_ID": f"cli_{name}_payments",
                "PAYMENTS_CLIENT_SECRET": payments_secret,
                "PAYMENTS_ENVIRONMENT": "development",  # the sandbox bank speaks http://
                "PAYMENTS_BANK_URL": bank_url,
                "PAYMENTS_BANK_SIGNING_KEY": bank_key,
                "PAYMENTS_WORKER_POLL_SECONDS": "0.1",
                "PAYMENTS_BANK_FEED_WAIT_SECONDS": "1",
                "PAYMENTS_DB_POOL_SIZE": "4",
                "PAYMENTS_KEY_ENCRYPTION_KEY_FILE": str(payments_kek),
                **extra["payments"],
            },
        )
        # Relays start once their databases are migrated (by the services, at start).
        processes["payments"].wait_healthy(target["payments"])
        for context in relays:
            relay_health[context] = free_port()
            relay_env = {
                **common,
                "RELAY_HEALTH_PORT": str(relay_health[context]),
                "RELAY_CONTEXT": context,
                "RELAY_DATABASE_URL": url[context],
                "RELAY_METRICS_PORT": str(metrics_ports.get(f"relay-{context}", 0)),
                **tls_env("RELAY", "relay"),
            }
            if log_level:
                relay_env["RELAY_LOG_LEVEL"] = log_level
            start(
                f"relay-{context}",
                [str(BIN / "astra-relay"), "run"],
                {**relay_env, **extra["relay"]},
            )
        # Ready means every part answers, relays included (tests scrape their metrics).
        for context, health_port in relay_health.items():
            processes[f"relay-{context}"].wait_healthy(f"127.0.0.1:{health_port}")
        wait_until(lambda: _bank_up(bank_url), 60, "the sandbox bank")
        yield RunningSuite(
            identity=target["identity"],
            ledger=target["ledger"],
            payments=target["payments"],
            bank_url=bank_url,
            database_urls=url,
            admin_client_id=admin_client_id,
            admin_secret=admin_secret,
            payments_secret=payments_secret,
            kek=kek,
            metrics_ports=metrics_ports,
            processes=processes,
        )
    finally:
        for process in reversed(processes.values()):
            process.terminate()
        for database in databases.values():
            postgres.drop_database(database)
