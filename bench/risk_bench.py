"""What screening and scoring add to a payout's creation: CreatePayout p50/p99 on vs off.

Two whole suites (identity, ledger, payments, the sandbox bank as real processes,
each on fresh PostgreSQL databases) run side by side in this one run:
- "on": the learned fraud score (``PAYMENTS_FRAUD_MODEL_FILE``, the committed
  model), transaction monitoring (its default rules) and sanctions screening
  (``PAYMENTS_SANCTIONS_LIST_FILE``) against the generated sample list of
  ``bench.sanctions_cost`` (10,000 entries), or the list
  ``BENCH_RISK_SANCTIONS_LIST_FILE`` names;
- "off": no model, monitoring's rules off, no sanctions list.
Customers are verified and funded first in both. Then rounds alternate, off then
on, each creating the same kind of payouts (one customer per call, round robin,
one counterparty), so drift of the machine falls on both alike. Latency is each
CreatePayout call as the client saw it (its answer comes after the ledger's
hold), ``BENCH_RISK_CONCURRENCY`` calls in flight (1 by default: the added time
is not hidden in queueing). The target: on adds at most 5 ms to the p99.

On a machine shared with other work, call latencies on two suites are noisy (a
commit waits for the disk); the section therefore also times the added work
itself, in this process on the "on" suite's database: deciding one payout with
the customer's activity read, monitored and scored, and recording it, against
deciding and recording it without, each in a transaction rolled back
(``risk.decide_added_*``).

Run alone: ``python -m bench.risk_bench``.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from astra.identity.v1.identity_pb2_grpc import IdentityServiceStub
from astra.payments.v1 import payments_pb2 as pb
from astra.payments.v1.payments_pb2_grpc import PaymentsServiceStub
from astra_testkit.customers import create_customer
from astra_testkit.suite import running_suite
from astra_testkit.tls import tls_env, tls_files
from chassis.grpc.client import open_channel
from screening.samples import sample_list, write_sdn

from bench.common import BenchEnv, Section, percentile, print_figures
from bench.load import LoadResult, run_closed_loop
from bench.sanctions_cost import ENTRIES as SAMPLE_ENTRIES
from bench.sanctions_cost import SEED as SAMPLE_SEED

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "services/payments/models/fraud-model.json"
CUSTOMERS = int(os.environ.get("BENCH_RISK_CUSTOMERS", "16"))
ROUNDS = int(os.environ.get("BENCH_RISK_ROUNDS", "4"))
PER_ROUND = int(os.environ.get("BENCH_RISK_PAYOUTS_PER_ROUND", "250"))
CONCURRENCY = int(os.environ.get("BENCH_RISK_CONCURRENCY", "1"))
SANCTIONS_LIST = os.environ.get("BENCH_RISK_SANCTIONS_LIST_FILE", "")
METHOD = "/astra.payments.v1.PaymentsService/CreatePayout"
FUNDING = 10**9
ADDED_P99_TARGET_MS = 5.0
DECIDE_SAMPLES = int(os.environ.get("BENCH_RISK_DECIDE_SAMPLES", "1000"))

COMMON = {
    "PAYMENTS_KYC_SUBSCRIBER_ENABLED": "false",
    "PAYMENTS_PROCESSES": "1",
    "PAYMENTS_WORKER_POLL_SECONDS": "0.5",
    "PAYMENTS_BANK_FEED_WAIT_SECONDS": "5",
}
ON = {
    **COMMON,
    "PAYMENTS_FRAUD_MODEL_FILE": str(MODEL),
    # Out of reach, so every payout goes on and the two runs do the same work after the
    # decision; the score is computed and recorded all the same.
    "PAYMENTS_FRAUD_SCORE_REVIEW": "1.0",
    "PAYMENTS_FRAUD_SCORE_DECLINE": "1.0",
    "PAYMENTS_SANCTIONS_LIST_FILE": SANCTIONS_LIST,
}
OFF = {
    **COMMON,
    "PAYMENTS_FRAUD_MODEL_FILE": "",
    "PAYMENTS_MONITOR_IN_OUT_SECONDS": "0",
    "PAYMENTS_MONITOR_NEW_COUNTERPARTIES": "0",
    "PAYMENTS_SANCTIONS_LIST_FILE": "",
}
FUNDED = f"state = {pb.PAYMENT_STATE_SETTLED} AND ledger_done & 8 = 8"


class Side:
    """One suite and what the rounds need of it."""

    def __init__(
        self,
        name: str,
        identity: str,
        payments: str,
        db: str,
        tokens: dict[str, str],
        folder: Path,
        tls: dict[str, str],
    ) -> None:
        self.name = name
        self.folder = folder
        # The TLS settings of payments (unused by the in-process timing, required by settings).
        self.tls = tls
        self.identity = identity
        self.payments = payments
        self.db = db
        self.tokens = tokens
        self.customers: list[str] = []
        self.calls = LoadResult()

    def prepare(self, tag: str) -> None:
        channel = open_channel(
            self.identity,
            tls=tls_files(),
            default_timeout=30,
            token_source=lambda: self.tokens["identity"],
        )
        payments_channel = open_channel(
            self.payments,
            tls=tls_files(),
            default_timeout=30,
            token_source=lambda: self.tokens["payments"],
        )
        identity = IdentityServiceStub(channel)
        payments = PaymentsServiceStub(payments_channel)
        for i in range(CUSTOMERS):
            customer = f"cus_{tag}_{self.name}_{i}"
            create_customer(identity, customer)
            payments.CreateCollection(
                pb.CreateCollectionRequest(
                    payment_id=f"pay_{tag}_{self.name}_fund_{i}",
                    customer_id=customer,
                    amount=FUNDING,
                    currency="EUR",
                    source=pb.BankAccount(
                        account_number="FR7630006000011234567890189", holder_name="Max Mustermann"
                    ),
                )
            )
            self.customers.append(customer)
        channel.close()
        payments_channel.close()
        deadline = time.monotonic() + 120
        while self._count(f"pay_{tag}_{self.name}_fund_", FUNDED) < CUSTOMERS:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: customers not funded in 120 s")
            time.sleep(0.2)

    def _count(self, prefix: str, condition: str) -> int:
        with psycopg.connect(self.db) as connection:
            row = connection.execute(
                f"SELECT count(*) FROM payments WHERE id LIKE %s AND {condition}",
                (prefix + "%",),
            ).fetchone()
        return int(row[0]) if row else 0

    def round(self, prefix: str, count: int, *, measured: bool = True) -> None:
        payloads = [
            pb.CreatePayoutRequest(
                payment_id=f"{prefix}{i}",
                customer_id=self.customers[i % len(self.customers)],
                amount=1_000 + i % 100,
                currency="EUR",
                destination=pb.BankAccount(
                    account_number="DE89370400440532013000", holder_name="Erika Mustermann"
                ),
            ).SerializeToString()
            for i in range(count)
        ]
        token = [("authorization", f"Bearer {self.tokens['payments']}")]
        result = run_closed_loop(
            self.payments, METHOD, payloads, concurrency=CONCURRENCY, metadata=token
        )
        if measured:
            self.calls.calls += result.calls
            self.calls.errors += result.errors
            self.calls.seconds += result.seconds
            self.calls.latencies_ms += result.latencies_ms

    def scored(self, prefix: str) -> tuple[int, int]:
        """(payouts of ``prefix`` with a recorded score, alerts raised)."""
        with psycopg.connect(self.db) as connection:
            row = connection.execute(
                "SELECT count(*) FROM payment_risk_decisions WHERE payment_id LIKE %s "
                "AND model_version <> ''",
                (prefix + "%",),
            ).fetchone()
            alerts = connection.execute("SELECT count(*) FROM risk_alerts").fetchone()
        return (int(row[0]) if row else 0), (int(alerts[0]) if alerts else 0)


@contextmanager
def side(env: BenchEnv, name: str, settings: dict[str, str]) -> Iterator[Side]:
    folder = Path(tempfile.mkdtemp(prefix=f"astra-bench-risk-{name}-"))
    with running_suite(
        env.postgres,
        folder,
        name=f"bench_risk_{name}",
        log_level="WARNING",
        env={"payments": settings},
    ) as suite:
        yield Side(
            name,
            suite.identity,
            suite.payments,
            suite.database_urls["payments"],
            suite.admin_tokens(),
            folder,
            {
                k.removeprefix("PAYMENTS_").lower(): v
                for k, v in tls_env("PAYMENTS", "payments").items()
            },
        )


class _RolledBack(Exception):
    pass


def _decide_once(deps: Any, request: Any, checked: bool) -> float:
    """Decide and record ``request`` (ms) in a transaction that is then rolled back: the
    customer's lock, velocity, the risk checks when ``checked``, the insert."""
    from chassis.kernel.uow import run_in_transaction
    from payments.domain.creation import decide_payment
    from payments.domain.customers import CustomerStatus
    from payments.domain.fraud import Velocities
    from payments.service_layer.creation import Watch

    customer = request.customer_id
    elapsed: list[float] = []

    def work(uow: Any) -> None:
        repo = uow.payments
        started = time.perf_counter()
        known = repo.customers([customer], lock=True)[customer]
        now = datetime.now(UTC)
        window = deps.policy.fraud.velocity_window
        velocities = Velocities(repo.velocities({(customer, "EUR")}, now - window))
        inputs = Watch.read(deps, repo, [request], now).inputs(request) if checked else {}
        payment = decide_payment(
            request,
            CustomerStatus.of(known),
            velocities.of(customer, "EUR"),
            deps.policy,
            now,
            **inputs,
        )
        # Recorded as creation records it (rolled back below).
        repo.add_all([payment])
        if payment.alerts:
            repo.add_alerts(payment.alerts)
        elapsed.append((time.perf_counter() - started) * 1000)
        raise _RolledBack

    with suppress(_RolledBack):
        run_in_transaction(deps.uow, work)
    return elapsed[0]


def decide_times(on: Side, count: int) -> tuple[list[float], list[float]]:
    """Deciding one payout (ms) with the risk checks and without, alternately, on the "on"
    suite's database and customers."""
    from payments.adapters.memory import MemoryBank, MemoryIdentity, MemoryLedger
    from payments.bootstrap import bootstrap
    from payments.config import PaymentsSettings
    from payments.domain.model import BankAccount, PaymentRequest
    from payments.domain.states import PaymentKind

    settings = PaymentsSettings.model_validate(
        {
            "database_url": on.db,
            "environment": "development",
            "migrate_on_start": False,
            "key_encryption_key_file": str(on.folder / "payments-kek"),
            "fraud_model_file": str(MODEL),
            "fraud_score_review": 1.0,
            "fraud_score_decline": 1.0,
            **on.tls,
        }
    )
    # The fakes stand in for the calls deciding makes none of.
    app = bootstrap(
        settings, ledger=MemoryLedger(), identity=MemoryIdentity(), bank=MemoryBank(_Clock())
    )
    with_checks: list[float] = []
    without: list[float] = []
    try:
        for i in range(count):
            request = PaymentRequest(
                f"pay_bench_decide_{i}",
                PaymentKind.PAYOUT,
                on.customers[i % len(on.customers)],
                1_000,
                "EUR",
                BankAccount("DE89370400440532013000", "Erika Mustermann"),
            )
            # Alternating which goes first, so neither always finds the cache warm.
            for checked in (False, True) if i % 2 else (True, False):
                (with_checks if checked else without).append(
                    _decide_once(app.deps, request, checked)
                )
    finally:
        app.close()
    return with_checks, without


class _Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def measure(env: BenchEnv) -> Section:
    section = Section("Risk: what screening and scoring add to CreatePayout (on vs off)")
    tag = uuid.uuid4().hex[:6]
    with ExitStack() as stack:
        sanctions = SANCTIONS_LIST or str(
            write_sdn(
                sample_list(SAMPLE_SEED, SAMPLE_ENTRIES).entries,
                Path(stack.enter_context(tempfile.TemporaryDirectory())) / "list",
            )
        )
        off = stack.enter_context(side(env, "off", OFF))
        on = stack.enter_context(side(env, "on", {**ON, "PAYMENTS_SANCTIONS_LIST_FILE": sanctions}))
        for each in (off, on):
            each.prepare(tag)
            # Warm up (pools, prepared statements, the model's first call): not counted.
            each.round(f"pay_{tag}_{each.name}_warm_", 50, measured=False)
        for number in range(ROUNDS):
            for each in (off, on):
                each.round(f"pay_{tag}_{each.name}_r{number}_", PER_ROUND)
        scored, alerts = on.scored(f"pay_{tag}_on_r")
        unscored, _ = off.scored(f"pay_{tag}_off_r")
        checked, unchecked = decide_times(on, DECIDE_SAMPLES)
    for each in (off, on):
        section.add(f"CreatePayout p50, {each.name}", percentile(each.calls.latencies_ms, 50), "ms")
        section.add(f"CreatePayout p99, {each.name}", percentile(each.calls.latencies_ms, 99), "ms")
        section.latencies_ms[f"CreatePayout, screening and scoring {each.name}"] = (
            each.calls.latencies_ms
        )
    section.add(
        "risk.added_p50_ms",
        percentile(on.calls.latencies_ms, 50) - percentile(off.calls.latencies_ms, 50),
        "ms",
    )
    section.add(
        "risk.added_p99_ms",
        percentile(on.calls.latencies_ms, 99) - percentile(off.calls.latencies_ms, 99),
        "ms",
        f"<= {ADDED_P99_TARGET_MS:g}",
        note=f"{ROUNDS} alternating rounds of {PER_ROUND} payouts per side, "
        f"{CONCURRENCY} in flight, {CUSTOMERS} customers",
    )
    section.add("deciding a payout p50, checks off", percentile(unchecked, 50), "ms")
    section.add("deciding a payout p99, checks off", percentile(unchecked, 99), "ms")
    section.add("deciding a payout p50, checks on", percentile(checked, 50), "ms")
    section.add("deciding a payout p99, checks on", percentile(checked, 99), "ms")
    section.add(
        "risk.decide_added_p50_ms", percentile(checked, 50) - percentile(unchecked, 50), "ms"
    )
    section.add(
        "risk.decide_added_p99_ms",
        percentile(checked, 99) - percentile(unchecked, 99),
        "ms",
        f"<= {ADDED_P99_TARGET_MS:g}",
        note=f"{DECIDE_SAMPLES} payouts decided each way, alternately, in this process on the "
        "on suite's database (transactions rolled back)",
    )
    section.latencies_ms["deciding a payout, checks off"] = unchecked
    section.latencies_ms["deciding a payout, checks on"] = checked
    measured = ROUNDS * PER_ROUND
    section.notes.append(
        f"on: {scored}/{measured} measured payouts carry a recorded model score "
        f"({alerts} monitoring alerts raised); off: {unscored} do."
    )
    for each in (off, on):
        if each.calls.errors:
            section.notes.append(f"{each.name}: {each.calls.errors} CreatePayout calls failed")
    section.notes.append(
        "sanctions screening in the on suite: "
        + (
            f"the list {SANCTIONS_LIST} (BENCH_RISK_SANCTIONS_LIST_FILE)"
            if SANCTIONS_LIST
            else f"the generated sample list (seed {SAMPLE_SEED}, {SAMPLE_ENTRIES:,} entries)"
        )
    )
    section.notes.append(
        "Both suites run side by side for the whole section and rounds alternate, off then "
        "on: a change of the machine's pace falls on both. The 'on' work per payout: the "
        "counterparty's tag, the customer's activity in the monitoring window (one query per "
        "group), the rules over it and the model's score with its contributions (LightGBM, "
        "one thread), recorded with the payment."
    )
    return section


def main() -> None:
    from astra_testkit.postgres import PostgresServer

    env = BenchEnv(postgres=PostgresServer())
    try:
        section = measure(env)
        print(f"## {section.title}")
        print_figures(section)
        for note in section.notes:
            print(note)
    finally:
        env.close()


if __name__ == "__main__":
    main()
