"""``make run``: the whole suite on its embedded defaults, until Ctrl-C (or SIGTERM).

Starts, in order: the Pub/Sub emulator (when the Cloud SDK has it), identity,
the ledger, the sandbox bank, payments, and one outbox relay per context. Data
lives in SQLite files under .data/ (``ASTRA_DATA_DIR`` moves it; the files
survive restarts); each process logs to <data>/logs/<name>.log. A development
client is registered in identity and its secret written to
<data>/dev-client.json (mode 0600); the closing message says how to get a token
and call the suite with grpcurl.

Every gRPC port speaks mutual TLS only: a development CA and one certificate per
part (``chassis.tls.devca``) are made under <data>/tls/ first (kept while still
valid), with ``client.pem``/``client-key.pem`` for the developer's grpcurl; the
``<PREFIX>_TLS_*`` variables point the processes at them unless the
environment names other files.

Every setting is the services' own: their environment variables override the
defaults (ports, metrics ports, database URLs: PostgreSQL works too), and the
banner prints what is in effect. ``ASTRA_PUBSUB_EMULATOR_PORT`` (8085) moves the
emulator.

Supervision: a process that exits on its own is logged and started again after
a pause that doubles with every quick death (1 s up to 30 s; back to 1 s once it
has stayed up 30 s), while the others keep serving. The emulator comes back
empty: the topics and the subscriptions consumers need are created again before
anything is published (here, and by the relays, which create them with their
topic). Each process runs in its own process group (the emulator's launcher
execs its JVM), and Ctrl-C or SIGTERM stops every group, the emulator's too.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from chassis.tls.devca import DevCa, ensure_dev_ca
from screening.samples import sample_list, write_sdn

if TYPE_CHECKING:
    from chassis.config import ServiceSettings

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CONTEXTS = ("identity", "ledger", "payments")
# Whose certificate each settings prefix gets from the development CA.
TLS_PARTS = {"IDENTITY": "identity", "LEDGER": "ledger", "PAYMENTS": "payments", "RELAY": "relay"}
ACCOUNT_JSON = json.dumps(
    {"account": {"id": "acct_demo", "currency": "EUR", "normal_side": "NORMAL_SIDE_CREDIT"}}
)
# The seed of the sample sanctions list `make run` screens against (screening.samples).
SANCTIONS_SEED = 20
PAYMENTS_SCOPES = [
    "ledger.accounts.read",
    "ledger.accounts.write",
    "ledger.transfers.read",
    "ledger.transfers.write",
    "identity.customers.read",
]

# Restarts: the first after 1 s, doubling up to 30 s while a process keeps dying
# young; a process that stayed up 30 s starts again from 1 s.
RESTART_FIRST_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
STABLE_AFTER_SECONDS = 30.0
STOP_GRACE_SECONDS = 20.0
# Addresses that mean "every interface" when a server binds them.
WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")  # noqa: S104 (compared against, never bound)


class StopRequested(Exception):
    """Ctrl-C or SIGTERM arrived while the suite was starting."""


def next_restart(quick_deaths: int, lived_seconds: float) -> tuple[float, int]:
    """The pause before starting a process again, and its quick deaths counting this one."""
    if lived_seconds >= STABLE_AFTER_SECONDS:
        quick_deaths = 0
    delay = min(RESTART_FIRST_SECONDS * 2**quick_deaths, RESTART_MAX_SECONDS)
    return delay, quick_deaths + 1


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def exit_description(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


def readable(line: str) -> str:
    """A JSON log line as its message and traceback (an uncaught exception is one too)."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict) or "event" not in record:
        return line
    return "\n".join(str(record[key]) for key in ("event", "exception") if key in record)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def local(host: str) -> str:
    """Where to reach a server bound to ``host`` from this machine."""
    return "127.0.0.1" if host in WILDCARD_HOSTS else host


def without_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@dataclass
class Child:
    """One supervised process: how to start it, and its restart bookkeeping."""

    name: str
    argv: list[str]
    env: Mapping[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_deaths: int = 0
    restart_at: float | None = None
    on_start: Callable[[], None] | None = None
    restarts: int = 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=dict(self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group: stopping the group stops its children too,
                # and the terminal's Ctrl-C reaches only this supervisor.
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        self.restart_at = None

    def signal_group(self, signum: int) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)


class Suite:
    def __init__(self) -> None:
        self.data = Path(os.environ.get("ASTRA_DATA_DIR", str(ROOT / ".data"))).resolve()
        self.logs = self.data / "logs"
        self.sanctions = self.data / "sanctions"
        self.kek_file = self.data / "identity.kek"
        self.payments_kek_file = self.data / "payments.kek"
        self.dev_client_file = self.data / "dev-client.json"
        self.tls_dir = self.data / "tls"
        self.emulator_port = int(os.environ.get("ASTRA_PUBSUB_EMULATOR_PORT", "8085"))
        self.children: list[Child] = []
        self.stopping = False
        self.pubsub = False
        # Set when the emulator (re)started: its topics and subscriptions are due.
        self.provision_due = False
        self._configure_environment()

    # --- configuration: the services' own settings, from one environment ---------

    def _configure_environment(self) -> None:
        """The embedded defaults where the environment says nothing; then what is in effect.

        The environment is this process's and every child's, so the settings read
        here are the ones the services will read.
        """
        defaults = {
            "IDENTITY_DATABASE_URL": f"sqlite:///{self.data / 'identity.db'}",
            "LEDGER_DATABASE_URL": f"sqlite:///{self.data / 'ledger.db'}",
            "PAYMENTS_DATABASE_URL": f"sqlite:///{self.data / 'payments.db'}",
            "SANDBOX_BANK_DATABASE": str(self.data / "sandbox_bank.db"),
            "SANDBOX_BANK_SETTLEMENT_DELAY_SECONDS": "2",
            "IDENTITY_KEY_ENCRYPTION_KEY_FILE": str(self.kek_file),
            # `make run` is development: the dev client may be given every scope.
            "IDENTITY_ENVIRONMENT": "development",
            "PAYMENTS_KEY_ENCRYPTION_KEY_FILE": str(self.payments_kek_file),
            # Payments are scored by the committed fraud model (trained from seed 7).
            "PAYMENTS_FRAUD_MODEL_FILE": str(ROOT / "services/payments/models/fraud-model.json"),
        }
        if not os.environ.get("PAYMENTS_SANCTIONS_LIST_FILE") or not os.environ.get(
            "IDENTITY_SANCTIONS_LIST_FILE"
        ):
            # A generated sample list (the same for the same seed), never OFAC's own.
            sample = str(write_sdn(sample_list(SANCTIONS_SEED, 10_000).entries, self.sanctions))
            defaults["PAYMENTS_SANCTIONS_LIST_FILE"] = sample
            defaults["IDENTITY_SANCTIONS_LIST_FILE"] = sample
        for prefix, part in TLS_PARTS.items():
            defaults |= DevCa(self.tls_dir).env(prefix, part)
        for name, value in defaults.items():
            os.environ.setdefault(name, value)
        from identity.config import IdentitySettings
        from ledger.config import LedgerSettings
        from payments.config import PaymentsSettings
        from sandbox_bank.config import BankSettings

        self.identity = IdentitySettings()
        self.ledger = LedgerSettings()
        self.bank = BankSettings()
        identity_target = f"{local(self.identity.grpc_host)}:{self.identity.grpc_port}"
        ledger_target = f"{local(self.ledger.grpc_host)}:{self.ledger.grpc_port}"
        os.environ.setdefault("LEDGER_IDENTITY_TARGET", identity_target)
        os.environ.setdefault("PAYMENTS_IDENTITY_TARGET", identity_target)
        os.environ.setdefault("PAYMENTS_LEDGER_TARGET", ledger_target)
        os.environ.setdefault(
            "PAYMENTS_BANK_URL", f"http://{local(self.bank.host)}:{self.bank.port}"
        )
        os.environ.setdefault("PAYMENTS_ENVIRONMENT", "development")
        self._share_bank_key()
        self.payments = PaymentsSettings()
        for name, settings in (
            ("identity", self.identity),
            ("ledger", self.ledger),
            ("payments", self.payments),
        ):
            if settings.grpc_port == 0:
                raise SystemExit(f"{name.upper()}_GRPC_PORT=0: make run needs fixed ports")

    @staticmethod
    def _share_bank_key() -> None:
        """Payments and the sandbox bank sign with one key: a fresh one unless one is set."""
        names = ("PAYMENTS_BANK_SIGNING_KEY", "SANDBOX_BANK_SIGNING_KEY")
        if any(os.environ.get(n) or os.environ.get(f"{n}_FILE") for n in names):
            return
        key = secrets.token_urlsafe(32)
        for name in names:
            os.environ[name] = key

    def database_url(self, context: str) -> str:
        settings = {"identity": self.identity, "ledger": self.ledger, "payments": self.payments}
        return settings[context].database_url

    # --- processes -------------------------------------------------------------

    def add(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> Child:
        child = Child(name, argv, {**os.environ, **(env or {})}, self.logs / f"{name}.log")
        self.children.append(child)
        child.spawn()
        assert child.process is not None
        say(f"started {name:<16} pid {child.process.pid:<7} log {child.log}")
        return child

    def run(self, argv: list[str]) -> str:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            output = "\n".join(readable(line) for line in (done.stdout + done.stderr).splitlines())
            raise SystemExit(f"{' '.join(argv[:2])} failed:\n{output[-3000:]}")
        return done.stdout

    def wait_until(
        self, child: Child, ready: Callable[[], bool], what: str, timeout: float = 60.0
    ) -> None:
        """Wait for ``ready`` during start-up; a process that dies now stops the suite."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.stopping:
                raise StopRequested
            if not child.alive:
                raise SystemExit(f"{child.name} exited while starting; see {child.log}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{child.name} not {what} after {timeout:.0f}s; see {child.log}")
            time.sleep(0.2)

    def grpc_serving(self, name: str, settings: ServiceSettings) -> Callable[[], bool]:
        """Whether the service answers SERVING, asked over mutual TLS with its own certificate
        (as ``astra-<name> health`` does): the server must be the one of that name."""
        from chassis.grpc.server import is_serving

        target = f"{local(settings.grpc_host)}:{settings.grpc_port}"
        return partial(is_serving, target, settings.tls, server_name=name, timeout=1)

    # --- supervision -------------------------------------------------------------

    def supervise(self) -> None:
        """One look at every process: note the dead, start those whose pause is over."""
        now = time.monotonic()
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                self._schedule_restart(child, now)
            elif child.process is None and child.restart_at is not None and now >= child.restart_at:
                try:
                    child.spawn()
                except OSError as error:  # e.g. its program gone: try again later
                    delay, child.quick_deaths = next_restart(child.quick_deaths, 0.0)
                    child.restart_at = now + delay
                    say(f"cannot start {child.name} ({error}); trying again in {delay:.0f}s")
                    continue
                child.restarts += 1
                assert child.process is not None
                say(f"restarted {child.name:<14} pid {child.process.pid:<7} #{child.restarts}")
                if child.on_start is not None:
                    child.on_start()
        if self.provision_due and port_open("127.0.0.1", self.emulator_port):
            try:
                self.provision()
            except Exception as error:  # the emulator may still be warming up: next round
                say(f"provisioning Pub/Sub failed ({type(error).__name__}); trying again")
            else:
                self.provision_due = False

    def _schedule_restart(self, child: Child, now: float) -> None:
        assert child.process is not None
        code = child.process.returncode
        lived = now - child.started_at
        # A crashed leader may leave children behind in its group (e.g. the server
        # copies of <SERVICE>_PROCESSES): they would hold the port against the restart.
        child.signal_group(signal.SIGKILL)
        delay, child.quick_deaths = next_restart(child.quick_deaths, lived)
        child.process = None
        child.restart_at = now + delay
        say(
            f"{child.name} exited with {exit_description(code)} after {lived:.1f}s; "
            f"restarting in {delay:.0f}s (see {child.log})"
        )

    def stop(self) -> None:
        self.stopping = True
        started = [c for c in reversed(self.children) if c.process is not None]
        for child in started:
            if child.alive:
                child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in started:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{child.name} did not stop in time; killing it")
            # Whatever is left of its group (the leader gone or not) goes now.
            child.signal_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=5)
            say(f"stopped {child.name}")

    # --- Pub/Sub ------------------------------------------------------------------

    def subscriptions_by_context(self) -> dict[str, list[str]]:
        """The subscriptions consumers in the suite need, by the producing context's topic."""
        needed: dict[str, list[str]] = {context: [] for context in CONTEXTS}
        if self.payments.kyc_subscriber_enabled:
            needed["identity"].append(self.payments.kyc_subscription)
        return needed

    def provision(self) -> None:
        from chassis.config import PubSubSettings
        from chassis.events.clients import (
            context_topic,
            provision,
            publisher_api,
            subscription_path,
            topic_path,
        )

        project = PubSubSettings().project
        publisher = publisher_api()
        for context, subscriptions in self.subscriptions_by_context().items():
            topic = topic_path(project, context_topic(context))
            paths = [subscription_path(project, s) for s in subscriptions]
            for created in provision(publisher, topic, paths):
                say(f"created {created}")

    def emulator_launcher(self) -> Path | None:
        sys.path.insert(0, str(ROOT / "libs" / "testkit" / "src"))
        from astra_testkit.pubsub_emulator import EmulatorUnavailable, find_launcher

        try:
            return find_launcher()
        except EmulatorUnavailable:
            return None

    def start_emulator(self, launcher: Path) -> Child:
        emulator_data = self.data / "pubsub"
        emulator_data.mkdir(exist_ok=True)
        os.environ["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{self.emulator_port}"
        # The launcher execs its JVM: the pid (and group) is the emulator's own.
        child = self.add(
            "pubsub-emulator",
            [str(launcher), "--host=127.0.0.1", f"--port={self.emulator_port}"],
        )
        child.on_start = self._emulator_restarted
        return child

    def _emulator_restarted(self) -> None:
        # It comes back empty; the relays also recreate what they need before publishing.
        self.provision_due = True

    # --- the suite --------------------------------------------------------------

    def up(self) -> None:
        """Start everything, each part as soon as what it needs is there.

        The ledger and the bank need nothing at start (the ledger fetches
        identity's keys at its first call), so they start while identity's
        database and clients are prepared; payments needs its client and starts
        last among the servers; the relays start once their topics exist.
        """
        self.data.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        say(f"Astra suite, data in {self.data}")
        ensure_dev_ca(self.tls_dir)
        say(f"development CA and certificates in {self.tls_dir}")

        launcher = self.emulator_launcher()
        self.pubsub = launcher is not None
        emulator = self.start_emulator(launcher) if launcher is not None else None
        if emulator is None:
            say(
                "no Pub/Sub emulator found: events stay in the outbox tables; "
                "payments asks identity for KYC instead of following its events"
            )
            os.environ["PAYMENTS_KYC_SUBSCRIBER_ENABLED"] = "false"
        ledger = self.add("ledger", [str(BIN / "astra-ledger"), "serve"])
        bank = self.add("sandbox-bank", [str(BIN / "astra-sandbox-bank")])

        identity_cli = str(BIN / "astra-identity")
        self.run([identity_cli, "generate-kek", "--out", str(self.kek_file), "--if-missing"])
        payments_cli = str(BIN / "astra-payments")
        self.run(
            [payments_cli, "generate-kek", "--out", str(self.payments_kek_file), "--if-missing"]
        )
        self.run([identity_cli, "migrate"])
        dev = json.loads(
            self.run(
                [
                    identity_cli,
                    "register-client",
                    "cli_dev",
                    "--name",
                    "Development client",
                    "--all-scopes",
                    "--reset-secret",
                ]
            )
        )
        scopes = [arg for scope in PAYMENTS_SCOPES for arg in ("--scope", scope)]
        payments_client = json.loads(
            self.run(
                [
                    identity_cli,
                    "register-client",
                    "cli_payments",
                    "--name",
                    "payments service",
                    *scopes,
                    "--reset-secret",
                ]
            )
        )
        # Ready to send as an IssueToken request: a token for the ledger (a token is for one
        # service; change "audience" to call identity or payments).
        self.dev_client_file.write_text(json.dumps({**dev, "audience": "ledger"}, indent=2))
        self.dev_client_file.chmod(0o600)
        identity = self.add("identity", [identity_cli, "serve"])

        if emulator is not None:
            emulator_up = partial(port_open, "127.0.0.1", self.emulator_port)
            self.wait_until(emulator, emulator_up, "listening")
            self.provision()
        bank_address = (local(self.bank.host), self.bank.port)
        self.wait_until(bank, partial(port_open, *bank_address), "listening")
        for child, settings in ((identity, self.identity), (ledger, self.ledger)):
            self.wait_until(child, self.grpc_serving(child.name, settings), "up")
        payments = self.add(
            "payments",
            [str(BIN / "astra-payments"), "serve"],
            {
                "PAYMENTS_CLIENT_ID": payments_client["client_id"],
                "PAYMENTS_CLIENT_SECRET": payments_client["client_secret"],
            },
        )
        payments_up = self.grpc_serving("payments", self.payments)
        self.wait_until(payments, payments_up, "up")
        if emulator is not None:
            needed = self.subscriptions_by_context()
            for context in CONTEXTS:
                self.add(
                    f"relay-{context}",
                    [str(BIN / "astra-relay"), "run"],
                    {
                        "RELAY_CONTEXT": context,
                        "RELAY_DATABASE_URL": self.database_url(context),
                        "RELAY_SUBSCRIPTIONS": ",".join(needed[context]),
                    },
                )
        self.banner(dev)

    def banner(self, dev: Mapping[str, str]) -> None:
        grpcurl = BIN / "grpcurl"

        def metrics(port: int, host: str) -> str:
            return f"http://{local(host)}:{port}/metrics" if port else "off"

        lines = ["", "Running. Endpoints (gRPC with reflection; health: grpc.health.v1.Health):"]
        for name, settings, service in (
            ("identity", self.identity, "astra.identity.v1.IdentityService"),
            ("ledger", self.ledger, "astra.ledger.v1.LedgerService"),
            ("payments", self.payments, "astra.payments.v1.PaymentsService"),
        ):
            lines += [
                f"  {name:<9} {settings.grpc_host}:{settings.grpc_port}  {service}",
                f"            metrics {metrics(settings.metrics_port, settings.grpc_host)}",
                f"            database {without_password(settings.database_url)}",
            ]
        lines.append(
            f"  sandbox bank  http://{self.bank.host}:{self.bank.port}/v1  "
            f"(faults: PUT /admin/faults), database {self.bank.database}"
        )
        if self.pubsub:
            lines.append(
                f"  Pub/Sub emulator 127.0.0.1:{self.emulator_port}; relays publish to "
                "astra-<context>-events; `make events` tails the ledger's"
            )
        lines.append(f"  logs in {self.logs}")
        lines.append(
            f"  sanctions list {self.payments.sanctions_list_file or 'off'} "
            "(generated sample; PAYMENTS_/IDENTITY_SANCTIONS_LIST_FILE)"
        )
        identity_target = f"{local(self.identity.grpc_host)}:{self.identity.grpc_port}"
        ledger_target = f"{local(self.ledger.grpc_host)}:{self.ledger.grpc_port}"
        tls = DevCa(self.tls_dir).client
        print(
            "\n".join(lines)
            + f"""

Development client: {dev["client_id"]} (secret in {self.dev_client_file}, mode 0600)

A first grpcurl session (mutual TLS, the developer's certificate):
  TLS="-cacert {tls.ca_file} -cert {tls.cert_file} -key {tls.key_file}"
  {grpcurl} $TLS {ledger_target} list
  TOKEN=$({grpcurl} $TLS -d "$(cat {self.dev_client_file})" \\
      {identity_target} astra.identity.v1.IdentityService/IssueToken \\
      | {sys.executable} -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  {grpcurl} $TLS -H "authorization: Bearer $TOKEN" \\
      -d '{ACCOUNT_JSON}' \\
      {ledger_target} astra.ledger.v1.LedgerService/OpenAccount

A process that exits is started again; Ctrl-C stops everything.""",
            flush=True,
        )


def main() -> None:
    suite = Suite()

    def request_stop(_signum: int, _frame: object) -> None:
        suite.stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        suite.up()
        while not suite.stopping:
            suite.supervise()
            time.sleep(0.2)
    except StopRequested:
        pass
    finally:
        say("stopping...")
        suite.stop()


if __name__ == "__main__":
    main()
