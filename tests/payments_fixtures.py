"""Payments fixtures: the sandbox bank as a real process, payments in-process on PostgreSQL,
wired to a real ledger and a real identity service, and helpers to drive a customer's money.

Nothing is mocked: the bank is the ``astra-sandbox-bank`` process (its faults set
through its admin API), the ledger and identity are the real services on their
own fresh PostgreSQL databases, and every call crosses gRPC or HTTP.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import os
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from astra.identity.v1.identity_pb2_grpc import IdentityServiceStub
from astra.ledger.v1 import ledger_pb2 as lpb
from astra.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from astra.payments.v1 import payments_pb2 as pb
from astra.payments.v1.payments_pb2_grpc import PaymentsServiceStub
from astra_testkit.customers import create_customer
from astra_testkit.ports import free_port
from astra_testkit.postgres import PostgresServer
from astra_testkit.processes import ServiceProcess, python_module
from astra_testkit.tls import tls_files, tls_settings
from chassis.grpc.client import open_channel
from chassis.http_signatures import SigningAuth, SigningKey
from chassis.pii import generate_key_encryption_key
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from ledger.bootstrap import Ledger
from ledger.entrypoints.server import build_server as build_ledger_server
from payments.adapters.identity_client import GrpcIdentity
from payments.adapters.ledger_client import GrpcLedger
from payments.bootstrap import Payments, bootstrap, migrate
from payments.config import PaymentsSettings
from payments.domain.ledger_plan import clearing_account_id, customer_account_id, fee_account_id
from payments.entrypoints.server import build_server
from payments.entrypoints.workers import PaymentRounds
from payments.service_layer import rounds

from tests.identity_fixtures import IdentityServer
from tests.ledger_fixtures import LEDGER_AUTH, LEDGER_JWKS_FILE, authorized_channel

# Payments' own key-encryption key (the customers' data keys), not identity's.
PAYMENTS_TEST_KEK = generate_key_encryption_key()

TERMINAL = {
    pb.PAYMENT_STATE_SETTLED,
    pb.PAYMENT_STATE_FAILED,
    pb.PAYMENT_STATE_CANCELED,
    pb.PAYMENT_STATE_DECLINED,
    pb.PAYMENT_STATE_RETURNED,
}


# --- the sandbox bank, a real process ----------------------------------------------------

# The key payments and the sandbox bank share in tests (development only).
BANK_KEY = SigningKey("payments", b"sandbox-bank-test-key-0123456789abcdef")


def bank_certificate(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and the bank's certificate for 127.0.0.1 signed by it: (cert, key, CA) files."""
    now = dt.datetime.now(dt.UTC)

    def build(
        subject: str, issuer: str, key: ec.EllipticCurvePrivateKey
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )

    ca_key, bank_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = (
        build("test bank CA", "test bank CA", ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    bank = (
        build("sandbox-bank", "test bank CA", bank_key)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = folder / "bank.pem", folder / "bank-key.pem", folder / "bank-ca.pem"
    files[0].write_bytes(bank.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(
        bank_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files[2].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return files


@dataclass
class SandboxBank:
    """The ``astra-sandbox-bank`` process on a free port, with its books in a temp file
    (over https with a certificate of its own test CA, ``ca_file``, when ``https``)."""

    folder: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: ServiceProcess | None = None
    https: bool = False
    ca_file: Path | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.https else 'http'}://127.0.0.1:{self.port}"

    def _verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else True

    def start(self) -> SandboxBank:
        tls: dict[str, str] = {}
        if self.https:
            if self.ca_file is None:
                cert, key, self.ca_file = bank_certificate(self.folder)
            else:
                cert, key = self.folder / "bank.pem", self.folder / "bank-key.pem"
            tls = {"SANDBOX_BANK_TLS_CERT_FILE": str(cert), "SANDBOX_BANK_TLS_KEY_FILE": str(key)}
        env = {
            "SANDBOX_BANK_HOST": "127.0.0.1",
            "SANDBOX_BANK_PORT": str(self.port),
            "SANDBOX_BANK_DATABASE": str(self.folder / "bank.db"),
            "SANDBOX_BANK_SETTLEMENT_DELAY_SECONDS": "0",
            "SANDBOX_BANK_RETURN_DELAY_SECONDS": "0.2",
            "SANDBOX_BANK_HANG_SECONDS": "5",
            "SANDBOX_BANK_LOG_LEVEL": "WARNING",
            "SANDBOX_BANK_SIGNING_KEY": BANK_KEY.secret.decode(),
            "SANDBOX_BANK_SIGNING_KEY_ID": BANK_KEY.key_id,
            **tls,
            **self.env,
        }
        self.process = ServiceProcess(
            "sandbox-bank", python_module("sandbox_bank.main"), env, log_dir=self.folder
        ).start()
        deadline = time.monotonic() + 30
        while True:
            if not self.process.alive():
                raise RuntimeError(f"the sandbox bank exited:\n{self.process.logs()[-3000:]}")
            try:
                health = httpx.get(f"{self.url}/health", timeout=0.5, verify=self._verify())
                if health.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the sandbox bank did not start:\n{self.process.logs()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate(timeout=10)

    def kill(self) -> None:
        """SIGKILL: the bank vanishes mid-flight, as far as clients can tell."""
        if self.process is not None:
            self.process.kill()

    @staticmethod
    def auth(key: SigningKey = BANK_KEY) -> SigningAuth:
        """What a client of the /v1 API signs with (and checks the bank's answers with)."""
        return SigningAuth(key, {BANK_KEY.key_id: BANK_KEY.secret})

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        if path.startswith("/v1/"):  # the client API wants signed requests
            kwargs.setdefault("auth", self.auth())
        response = httpx.request(
            method, f"{self.url}{path}", timeout=10, verify=self._verify(), **kwargs
        )
        response.raise_for_status()
        return response.json()

    def set_faults(self, **faults: float) -> None:
        self.admin("PUT", "/admin/faults", json=faults)

    def clear_faults(self) -> None:
        self.set_faults(
            error_rate=0,
            timeout_rate=0,
            lost_response_rate=0,
            rate_limit_rate=0,
            slow_rate=0,
        )

    def stats(self) -> dict[str, Any]:
        return dict(self.admin("GET", "/admin/stats"))

    def payments(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after = ""
        while True:
            page = self.admin("GET", "/admin/payments", params={"after": after, "limit": 1000})
            found.extend(page["payments"])
            if not page["next_after"]:
                return found
            after = page["next_after"]

    def return_payment(self, bank_payment_id: str) -> dict[str, Any]:
        return dict(self.admin("POST", f"/admin/payments/{bank_payment_id}/return"))


class ForgingProxy:
    """A man in the middle on the bank's wire: forwards every request as it came and every
    answer as the bank gave it, except that while ``forging`` it rewrites the answers with
    ``forge`` (counting, per path, the answers it changed)."""

    def __init__(self, upstream: str, forge: Callable[[bytes], bytes]) -> None:
        self.upstream = upstream
        self.forge = forge
        self.forging = True
        self.forged: Counter[str] = Counter()
        self._client = httpx.Client(base_url=upstream, timeout=30)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                skip = {"host", "content-length", "connection"}
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                answer = proxy._client.request(
                    self.command, self.path, content=body, headers=headers
                )
                content = answer.content
                if proxy.forging and (forged := proxy.forge(content)) != content:
                    proxy.forged[self.path.split("?")[0]] += 1
                    content = forged
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = forward  # noqa: N815 - http.server's names

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ForgingProxy:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()


@pytest.fixture
def sandbox_bank(tmp_path: Path) -> Iterator[SandboxBank]:
    bank = SandboxBank(tmp_path, {}).start()
    yield bank
    bank.stop()


# --- payments in-process, on the real ledger and identity -------------------------------


@pytest.fixture
def payments_db_url(postgres: PostgresServer) -> Iterator[str]:
    url = postgres.fresh_database_url("payments", migrate)
    yield url
    postgres.drop_url(url)


def payments_settings(database_url: str, bank_url: str, **overrides: object) -> PaymentsSettings:
    values: dict[str, object] = {
        "database_url": database_url,
        "grpc_port": 0,
        "metrics_port": 0,
        "migrate_on_start": False,
        "db_pool_size": 8,
        "auth_issuer": LEDGER_AUTH.issuer,
        "auth_audience": LEDGER_AUTH.audience,
        "auth_jwks_file": str(LEDGER_JWKS_FILE),
        "environment": "development",
        "bank_url": bank_url,
        "bank_signing_key": BANK_KEY.secret.decode(),
        "bank_key_id": BANK_KEY.key_id,
        "bank_timeout_seconds": 1.0,
        "bank_retry_attempts": 4,
        "bank_retry_initial_seconds": 0.02,
        "bank_retry_max_seconds": 0.2,
        "bank_retry_budget_seconds": 3.0,
        "bank_breaker_reset_seconds": 1.0,
        "bank_feed_wait_seconds": 1.0,
        "worker_poll_seconds": 0.1,
        "worker_lease_seconds": 10.0,
        "status_poll_seconds": 2.0,
        "retry_max_seconds": 1.0,
        "kyc_subscriber_enabled": False,
        "key_encryption_key": PAYMENTS_TEST_KEK,
        **tls_settings("payments"),
        **overrides,
    }
    return PaymentsSettings(**values)  # type: ignore[arg-type]


# Time the worker loops get to stop (a round in flight finishes).
ROUNDS_STOP_SECONDS = 15.0

# The service client that reviews payments: another client than the one creating them.
REVIEWER = "cli_reviewer"


def client_channel(target: str, client_id: str) -> grpc.Channel:
    """A channel whose calls carry a token of service client ``client_id``, every scope."""
    return open_channel(
        target,
        tls=tls_files(),
        default_timeout=300.0,
        token_source=lambda: LEDGER_AUTH.token(subject=client_id),
    )


@pytest.fixture
def ledger_target(ledger: Ledger) -> Iterator[str]:
    server = build_ledger_server(ledger, ledger.settings)
    port = server.start()
    yield f"127.0.0.1:{port}"
    server.server.stop(0)


@dataclass
class Suite:
    """Payments with everything it talks to, and the calls a test makes on them."""

    app: Payments
    payments: PaymentsServiceStub
    ledger: LedgerServiceStub
    identity: IdentityServiceStub
    bank: SandboxBank
    # PaymentsService as REVIEWER calls it (approve, reject).
    reviewer: PaymentsServiceStub
    # Payments' worker loops, started with the suite.
    rounds: PaymentRounds
    _ids: Iterator[int] = field(default_factory=itertools.count)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{uuid.uuid4().hex[:12]}{next(self._ids)}"

    # --- identity ---

    def customer(self, *, verified: bool = True) -> str:
        customer_id = self.new_id("cus")
        create_customer(self.identity, customer_id, verified=verified)
        return customer_id

    # --- payments ---

    def payout(
        self, customer_id: str, amount: int, account: str = "DE89370400440532013000", **kw: Any
    ) -> pb.Payment:
        return self.payments.CreatePayout(
            pb.CreatePayoutRequest(
                payment_id=kw.get("payment_id") or self.new_id("pay"),
                customer_id=customer_id,
                amount=amount,
                currency=kw.get("currency", "EUR"),
                destination=pb.BankAccount(account_number=account, holder_name="Bob"),
                description=kw.get("description", ""),
            )
        ).payment

    def collection(
        self, customer_id: str, amount: int, account: str = "FR7630006000011234567890189", **kw: Any
    ) -> pb.Payment:
        return self.payments.CreateCollection(
            pb.CreateCollectionRequest(
                payment_id=kw.get("payment_id") or self.new_id("pay"),
                customer_id=customer_id,
                amount=amount,
                currency=kw.get("currency", "EUR"),
                source=pb.BankAccount(account_number=account, holder_name="Carol"),
            )
        ).payment

    def get(self, payment_id: str) -> pb.Payment:
        return self.payments.GetPayment(pb.GetPaymentRequest(payment_id=payment_id)).payment

    def wait_for(
        self,
        payment_id: str,
        states: set[int] | None = None,
        *,
        settled_ledger: bool = True,
        timeout: float = 60.0,
    ) -> pb.Payment:
        """Wait until the payment reaches one of ``states`` (terminal ones by default)."""
        wanted = states or TERMINAL
        deadline = time.monotonic() + timeout
        while True:
            payment = self.get(payment_id)
            if payment.state in wanted and not (settled_ledger and payment.ledger_pending):
                return payment
            if time.monotonic() > deadline:
                raise AssertionError(f"payment stuck: {payment}")
            time.sleep(0.05)

    def fund(self, customer_id: str, amount: int, currency: str = "EUR") -> pb.Payment:
        collected = self.collection(customer_id, amount, currency=currency)
        done = self.wait_for(collected.id)
        assert done.state == pb.PAYMENT_STATE_SETTLED, done
        return done

    # --- payments' rounds, by hand ---

    def stop_rounds(self) -> None:
        """Stop the worker loops: the test runs the rounds by hand from here on."""
        self.rounds.stop(ROUNDS_STOP_SECONDS)

    def process_due(self) -> int:
        return rounds.process_due(self.app.deps, batch_size=self.app.settings.worker_batch_size)

    def follow_bank_feed(self) -> int:
        wait = self.app.settings.bank_feed_wait_seconds
        return rounds.follow_bank_feed(self.app.deps, wait_seconds=wait)

    def reconcile_yesterday(self) -> str:
        return rounds.reconcile_yesterday(self.app.deps)

    # --- ledger ---

    def balance(self, account_id: str) -> lpb.Balance:
        return self.ledger.GetBalance(lpb.GetBalanceRequest(account_id=account_id)).balance

    def customer_balance(self, customer_id: str, currency: str = "EUR") -> int:
        return int(self.balance(customer_account_id(customer_id, currency)).available)

    def clearing(self, currency: str = "EUR") -> lpb.Balance:
        return self.balance(clearing_account_id(currency))

    def fees(self, currency: str = "EUR") -> lpb.Balance:
        return self.balance(fee_account_id(currency))

    def reconcile(self) -> pb.ReconciliationRun:
        return self.payments.RunReconciliation(
            pb.RunReconciliationRequest(
                run_id=self.new_id("rec"), statement_date=datetime.now(UTC).date().isoformat()
            )
        ).run


def make_suite(
    database_url: str,
    bank: SandboxBank,
    ledger_target: str,
    identity_server: IdentityServer,
    **overrides: object,
) -> tuple[Suite, Callable[[], None]]:
    # A test may put something between payments and the bank (bank_url).
    bank_url = str(overrides.pop("bank_url", bank.url))
    settings = payments_settings(database_url, bank_url, **overrides)
    ledger_channel = authorized_channel(ledger_target)
    identity_channel = identity_server.channel()
    app = bootstrap(
        settings,
        ledger=GrpcLedger(ledger_channel),
        identity=GrpcIdentity(identity_channel),
    )
    payment_rounds = PaymentRounds.of(app)
    payment_rounds.start()
    server = build_server(app, settings)
    port = server.start()
    payments_channel = authorized_channel(f"127.0.0.1:{port}")
    reviewer_channel = client_channel(f"127.0.0.1:{port}", REVIEWER)
    suite = Suite(
        app=app,
        payments=PaymentsServiceStub(payments_channel),
        ledger=LedgerServiceStub(ledger_channel),
        identity=IdentityServiceStub(identity_channel),
        bank=bank,
        reviewer=PaymentsServiceStub(reviewer_channel),
        rounds=payment_rounds,
    )

    def close() -> None:
        payment_rounds.stop(ROUNDS_STOP_SECONDS)
        payments_channel.close()
        reviewer_channel.close()
        server.stop(0)
        ledger_channel.close()
        identity_channel.close()

    return suite, close


@pytest.fixture
def suite(
    payments_db_url: str,
    sandbox_bank: SandboxBank,
    ledger_target: str,
    identity_server: IdentityServer,
) -> Iterator[Suite]:
    made, close = make_suite(payments_db_url, sandbox_bank, ledger_target, identity_server)
    yield made
    close()


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    try:
        call()
    except grpc.RpcError as error:
        return error
    raise AssertionError("the call succeeded; an error was expected")


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")
