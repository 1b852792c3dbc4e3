"""``make run``: the whole suite on its embedded defaults, until Ctrl-C.

Starts, in order: the Pub/Sub emulator (when the Cloud SDK has it), identity,
the ledger, the sandbox bank, payments, and one outbox relay per context. Data
lives in SQLite files under .data/ (and survives restarts); each process logs
JSON lines to .data/logs/<name>.log. A development client is registered in
identity and its secret written to .data/dev-client.json (mode 0600); the
closing message says how to get a token and call the suite with grpcurl.

Ports are the services' defaults unless their own variables say otherwise
(IDENTITY_GRPC_PORT, LEDGER_GRPC_PORT, PAYMENTS_GRPC_PORT, SANDBOX_BANK_PORT);
ASTRA_PUBSUB_EMULATOR_PORT (8085) moves the emulator.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".data"
LOGS = DATA / "logs"
BIN = Path(sys.executable).parent


def _port(variable: str, default: int) -> int:
    return int(os.environ.get(variable, default))


IDENTITY_PORT = _port("IDENTITY_GRPC_PORT", 50051)
LEDGER_PORT = _port("LEDGER_GRPC_PORT", 50052)
PAYMENTS_PORT = _port("PAYMENTS_GRPC_PORT", 50053)
BANK_PORT = _port("SANDBOX_BANK_PORT", 8181)
EMULATOR_PORT = _port("ASTRA_PUBSUB_EMULATOR_PORT", 8085)

# The embedded defaults, written out so the relays read the same files.
DATABASES = {
    "identity": os.environ.get("IDENTITY_DATABASE_URL", f"sqlite:///{DATA / 'identity.db'}"),
    "ledger": os.environ.get("LEDGER_DATABASE_URL", f"sqlite:///{DATA / 'ledger.db'}"),
    "payments": os.environ.get("PAYMENTS_DATABASE_URL", f"sqlite:///{DATA / 'payments.db'}"),
}
KEK_FILE = DATA / "identity.kek"
DEV_CLIENT_FILE = DATA / "dev-client.json"
ACCOUNT_JSON = json.dumps(
    {"account": {"id": "acct_demo", "currency": "EUR", "normal_side": "NORMAL_SIDE_CREDIT"}}
)
PAYMENTS_SCOPES = [
    "ledger.accounts.read",
    "ledger.accounts.write",
    "ledger.transfers.read",
    "ledger.transfers.write",
    "identity.customers.read",
]


class Suite:
    def __init__(self) -> None:
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.env = {
            **os.environ,
            "IDENTITY_DATABASE_URL": DATABASES["identity"],
            "IDENTITY_KEY_ENCRYPTION_KEY_FILE": str(KEK_FILE),
            "LEDGER_DATABASE_URL": DATABASES["ledger"],
            "LEDGER_IDENTITY_TARGET": f"127.0.0.1:{IDENTITY_PORT}",
            "PAYMENTS_DATABASE_URL": DATABASES["payments"],
            "PAYMENTS_LEDGER_TARGET": f"127.0.0.1:{LEDGER_PORT}",
            "PAYMENTS_IDENTITY_TARGET": f"127.0.0.1:{IDENTITY_PORT}",
            "PAYMENTS_BANK_URL": f"http://127.0.0.1:{BANK_PORT}",
            "SANDBOX_BANK_DATABASE": os.environ.get(
                "SANDBOX_BANK_DATABASE", str(DATA / "sandbox_bank.db")
            ),
            "SANDBOX_BANK_SETTLEMENT_DELAY_SECONDS": os.environ.get(
                "SANDBOX_BANK_SETTLEMENT_DELAY_SECONDS", "2"
            ),
        }

    # --- processes -------------------------------------------------------------

    def start(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> None:
        log = (LOGS / f"{name}.log").open("ab")
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopping it stops its children too
        )
        self.processes.append((name, process))
        print(f"  started {name:<16} pid {process.pid:<7} log .data/logs/{name}.log")

    def run(self, argv: list[str], env: Mapping[str, str] | None = None) -> str:
        done = subprocess.run(
            argv, cwd=ROOT, env={**self.env, **(env or {})}, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv[:2])} failed:\n{done.stderr[-2000:]}")
        return done.stdout

    def wait_healthy(self, name: str, port: int, timeout: float = 60.0) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + timeout
        process = dict(self.processes)[name]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"{name} exited; see .data/logs/{name}.log")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name} not healthy after {timeout:.0f}s; see its log")
                time.sleep(0.2)

    def wait_http(self, name: str, port: int, timeout: float = 30.0) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name} not listening on {port}; see its log") from None
                time.sleep(0.2)

    def stop(self) -> None:
        for _name, process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for name, process in reversed(self.processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
            print(f"  stopped {name}")

    # --- the suite --------------------------------------------------------------

    def emulator_launcher(self) -> Path | None:
        sys.path.insert(0, str(ROOT / "libs" / "testkit" / "src"))
        from astra_testkit.pubsub_emulator import EmulatorUnavailable, find_launcher

        try:
            return find_launcher()
        except EmulatorUnavailable:
            return None

    def up(self) -> None:
        DATA.mkdir(exist_ok=True)
        LOGS.mkdir(exist_ok=True)
        print("Astra suite (embedded defaults: SQLite under .data/)")

        launcher = self.emulator_launcher()
        pubsub = launcher is not None
        if pubsub:
            emulator_data = DATA / "pubsub"
            emulator_data.mkdir(exist_ok=True)
            self.start(
                "pubsub-emulator",
                [str(launcher), "--host=127.0.0.1", f"--port={EMULATOR_PORT}"],
            )
            self.env["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{EMULATOR_PORT}"
            self.wait_http("pubsub-emulator", EMULATOR_PORT, timeout=60)
        else:
            print(
                "  (no Pub/Sub emulator found: events stay in the outbox tables; "
                "payments asks identity for KYC instead of following its events)"
            )
            self.env["PAYMENTS_KYC_SUBSCRIBER_ENABLED"] = "false"

        identity = str(BIN / "astra-identity")
        self.run([identity, "generate-kek", "--out", str(KEK_FILE), "--if-missing"])
        self.run([identity, "migrate"])
        dev = json.loads(
            self.run(
                [
                    identity,
                    "register-client",
                    "cli_dev",
                    "--name",
                    "Development client",
                    "--reset-secret",
                ]
            )
        )
        scopes = [arg for scope in PAYMENTS_SCOPES for arg in ("--scope", scope)]
        payments_client = json.loads(
            self.run(
                [
                    identity,
                    "register-client",
                    "cli_payments",
                    "--name",
                    "payments service",
                    *scopes,
                    "--reset-secret",
                ]
            )
        )
        DEV_CLIENT_FILE.write_text(json.dumps(dev, indent=2))
        DEV_CLIENT_FILE.chmod(0o600)

        self.start("identity", [identity, "serve"])
        self.wait_healthy("identity", IDENTITY_PORT)
        self.start("ledger", [str(BIN / "astra-ledger"), "serve"])
        self.wait_healthy("ledger", LEDGER_PORT)
        self.start("sandbox-bank", [str(BIN / "astra-sandbox-bank")])
        self.wait_http("sandbox-bank", BANK_PORT)
        self.start(
            "payments",
            [str(BIN / "astra-payments"), "serve"],
            {
                "PAYMENTS_CLIENT_ID": payments_client["client_id"],
                "PAYMENTS_CLIENT_SECRET": payments_client["client_secret"],
            },
        )
        self.wait_healthy("payments", PAYMENTS_PORT)
        if pubsub:
            for context in ("identity", "ledger", "payments"):
                self.start(
                    f"relay-{context}",
                    [str(BIN / "astra-relay"), "run"],
                    {"RELAY_CONTEXT": context, "RELAY_DATABASE_URL": DATABASES[context]},
                )
        self.banner(dev, pubsub)

    def banner(self, dev: Mapping[str, str], pubsub: bool) -> None:
        grpcurl = BIN / "grpcurl"
        print(f"""
Running. Endpoints (gRPC with server reflection; health: grpc.health.v1.Health):
  identity  127.0.0.1:{IDENTITY_PORT}   astra.identity.v1.IdentityService   metrics :9101/metrics
  ledger    127.0.0.1:{LEDGER_PORT}   astra.ledger.v1.LedgerService       metrics :9102/metrics
  payments  127.0.0.1:{PAYMENTS_PORT}   astra.payments.v1.PaymentsService   metrics :9103/metrics
  sandbox bank  http://127.0.0.1:{BANK_PORT}/v1   (faults: PUT /admin/faults)""")
        if pubsub:
            print(
                f"  Pub/Sub emulator 127.0.0.1:{EMULATOR_PORT}; relays publish to "
                "astra-<context>-events; `make events` tails the ledger's"
            )
        print(
            f"""
Development client: {dev["client_id"]} (secret in {DEV_CLIENT_FILE.relative_to(ROOT)}, mode 0600)

A first grpcurl session:
  {grpcurl} -plaintext 127.0.0.1:{LEDGER_PORT} list
  TOKEN=$({grpcurl} -plaintext -d "$(cat .data/dev-client.json)" \\
      127.0.0.1:{IDENTITY_PORT} astra.identity.v1.IdentityService/IssueToken \\
      | {sys.executable} -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  {grpcurl} -plaintext -H "authorization: Bearer $TOKEN" \\
      -d '{ACCOUNT_JSON}' \\
      127.0.0.1:{LEDGER_PORT} astra.ledger.v1.LedgerService/OpenAccount

Ctrl-C stops everything.""",
            flush=True,
        )


def main() -> None:
    suite = Suite()
    stop = {"requested": False}

    def request_stop(_signum: int, _frame: object) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        suite.up()
        while not stop["requested"]:
            for name, process in suite.processes:
                if process.poll() is not None:
                    print(f"{name} exited with {process.returncode}; see .data/logs/{name}.log")
                    stop["requested"] = True
            time.sleep(0.5)
    finally:
        print("\nstopping...")
        suite.stop()


if __name__ == "__main__":
    main()
