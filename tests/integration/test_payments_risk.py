"""Transaction monitoring and the learned fraud score through the real service on PostgreSQL:
decisions and alerts persisted and shown over gRPC, reviewers resolving alerts, a model that
cannot be trusted stopping the start, and velocity limits holding under 100 concurrent payouts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from astra.payments.v1 import payments_pb2 as pb
from astra_testkit.tls import tls_env
from chassis.grpc.status import reason_of
from payments.adapters import tables
from sqlalchemy import func, select

from tests.identity_fixtures import IdentityServer
from tests.ledger_fixtures import LEDGER_AUTH
from tests.payments_fixtures import (
    REVIEWER,
    SandboxBank,
    Suite,
    make_suite,
    rpc_error,
)

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "services/payments/models/fraud-model.json"


@pytest.fixture
def risky(
    payments_db_url: str,
    sandbox_bank: SandboxBank,
    ledger_target: str,
    identity_server: IdentityServer,
) -> Iterator[Suite]:
    made, close = make_suite(
        payments_db_url,
        sandbox_bank,
        ledger_target,
        identity_server,
        fraud_model_file=str(MODEL),
        # Only the score's decline threshold is out of reach: this test shows what it records.
        fraud_score_review=0.999,
        fraud_score_decline=1.0,
    )
    yield made
    close()


def test_decisions_and_alerts_are_stored_shown_and_resolved(risky: Suite) -> None:
    customer = risky.customer()
    collected = risky.fund(customer, 10_000)
    payout = risky.payout(customer, 9_000)
    # The create call's answer and GetPayment show the same decision.
    shown = risky.get(payout.id)
    assert shown.risk_decision == payout.risk_decision
    decision = shown.risk_decision
    assert decision.rules_verdict == pb.RISK_VERDICT_APPROVE
    assert decision.score.model_version.startswith("fraud-2026.12+")
    assert 0.0 <= decision.score.score <= 1.0
    assert (decision.score.review_threshold, decision.score.decline_threshold) == (0.999, 1.0)
    assert len(decision.score.top_features) == 3
    assert all(f.feature for f in decision.score.top_features)
    (ref,) = decision.alerts
    assert ref.rule == pb.ALERT_RULE_RAPID_IN_OUT
    # The collection was scored too, and raised nothing.
    assert risky.get(collected.id).risk_decision.score.model_version == (
        decision.score.model_version
    )
    assert not risky.get(collected.id).risk_decision.alerts

    listed = risky.reviewer.ListAlerts(
        pb.ListAlertsRequest(customer_id=customer, state=pb.ALERT_STATE_OPEN)
    ).alerts
    (alert,) = listed
    assert (alert.id, alert.rule, alert.customer_id) == (ref.alert_id, ref.rule, customer)
    assert list(alert.payment_ids) == [collected.id, payout.id]
    assert (alert.evidence["collected"], alert.evidence["paid_out"]) == ("10000", "9000")
    assert alert.create_time.seconds > 0

    resolved = risky.reviewer.ResolveAlert(
        pb.ResolveAlertRequest(
            alert_id=alert.id, resolution=pb.ALERT_RESOLUTION_CONFIRMED, note="mule pattern"
        ),
        metadata=(("x-request-id", "req-resolve"),),
    ).alert
    assert (resolved.state, resolved.resolution, resolved.note) == (
        pb.ALERT_STATE_RESOLVED,
        pb.ALERT_RESOLUTION_CONFIRMED,
        "mule pattern",
    )
    assert (resolved.resolved_by.client_id, resolved.resolved_by.request_id) == (
        REVIEWER,
        "req-resolve",
    )
    # Stored: a fresh read from the table says the same.
    with risky.app.engine.connect() as connection:
        row = connection.execute(
            select(tables.risk_alerts).where(tables.risk_alerts.c.id == alert.id)
        ).one()
        decided = connection.execute(
            select(tables.payment_risk_decisions).where(
                tables.payment_risk_decisions.c.payment_id == payout.id
            )
        ).one()
    assert (row.state, row.resolution, row.resolved_by, row.note) == (
        2,
        1,
        REVIEWER,
        "mule pattern",
    )
    assert json.loads(row.payment_ids) == [collected.id, payout.id]
    assert decided.model_version == decision.score.model_version
    assert json.loads(decided.explanation)["alerts"] == [[alert.id, "RAPID_IN_OUT"]]

    # Asking again is idempotent; another resolution is refused.
    again = risky.reviewer.ResolveAlert(
        pb.ResolveAlertRequest(alert_id=alert.id, resolution=pb.ALERT_RESOLUTION_CONFIRMED)
    ).alert
    assert again.note == "mule pattern"
    other = rpc_error(
        lambda: risky.reviewer.ResolveAlert(
            pb.ResolveAlertRequest(alert_id=alert.id, resolution=pb.ALERT_RESOLUTION_DISMISSED)
        )
    )
    assert (other.code(), reason_of(other)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "ALERT_ALREADY_RESOLVED",
    )
    assert not risky.reviewer.ListAlerts(
        pb.ListAlertsRequest(customer_id=customer, state=pb.ALERT_STATE_OPEN)
    ).alerts


def test_alert_requests_are_refused_clearly(risky: Suite) -> None:
    token = LEDGER_AUTH.customer_token("cus_someone", ["payments.alerts.read"])
    denied = rpc_error(
        lambda: risky.reviewer.ListAlerts(
            pb.ListAlertsRequest(), metadata=(("authorization", f"Bearer {token}"),)
        )
    )
    assert (denied.code(), reason_of(denied)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "SERVICE_CALLER_REQUIRED",
    )
    unscoped = LEDGER_AUTH.token(["payments.payments.read"], subject="cli_other")
    no_scope = rpc_error(
        lambda: risky.reviewer.ListAlerts(
            pb.ListAlertsRequest(), metadata=(("authorization", f"Bearer {unscoped}"),)
        )
    )
    assert no_scope.code() == grpc.StatusCode.PERMISSION_DENIED
    for request in (
        pb.ListAlertsRequest(state=99),  # type: ignore[arg-type]
        pb.ListAlertsRequest(rule=7),  # type: ignore[arg-type]
        pb.ListAlertsRequest(page_size=-1),
        pb.ListAlertsRequest(customer_id="nobody"),
    ):
        error = rpc_error(lambda r=request: risky.reviewer.ListAlerts(r))  # type: ignore[misc]
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, request
    for resolve in (
        pb.ResolveAlertRequest(alert_id="pay_x", resolution=pb.ALERT_RESOLUTION_DISMISSED),
        pb.ResolveAlertRequest(alert_id="alr_" + "0" * 32),
        pb.ResolveAlertRequest(alert_id="alr_" + "0" * 32, resolution=9),  # type: ignore[arg-type]
        pb.ResolveAlertRequest(alert_id="alr_\x00", resolution=pb.ALERT_RESOLUTION_DISMISSED),
    ):
        error = rpc_error(lambda r=resolve: risky.reviewer.ResolveAlert(r))  # type: ignore[misc]
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, resolve
    missing = rpc_error(
        lambda: risky.reviewer.ResolveAlert(
            pb.ResolveAlertRequest(alert_id="alr_" + "0" * 32, resolution=1)  # type: ignore[arg-type]
        )
    )
    assert (missing.code(), reason_of(missing)) == (grpc.StatusCode.NOT_FOUND, "ALERT_NOT_FOUND")


def test_payments_does_not_start_on_a_corrupt_model(tmp_path: Path) -> None:
    for name in ("fraud-model.json", "fraud-model.lgb.txt"):
        shutil.copy(MODEL.parent / name, tmp_path / name)
    model = tmp_path / "fraud-model.lgb.txt"
    model.write_bytes(model.read_bytes().replace(b"leaf_value=", b"leaf_value=9", 1))
    env = (
        {key: value for key, value in os.environ.items() if not key.startswith("PAYMENTS_")}
        | tls_env("PAYMENTS", "payments")
        | {
            "PAYMENTS_FRAUD_MODEL_FILE": str(tmp_path / "fraud-model.json"),
            "PAYMENTS_ENVIRONMENT": "development",
            "PAYMENTS_METRICS_PORT": "0",
            "PAYMENTS_GRPC_PORT": "0",
            "PAYMENTS_DATABASE_URL": f"sqlite:///{tmp_path / 'never.db'}",
        }
    )
    started = subprocess.run(
        [sys.executable, "-m", "payments.entrypoints.server", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 1
    last = started.stderr.strip().splitlines()[-1]
    assert last.startswith("astra-payments: not started: fraud model ")
    assert "SHA-256" in last
    assert "differs from the manifest" in last
    assert not (tmp_path / "never.db").exists()


# --- concurrency: a velocity limit is not passed by payouts racing each other ------------------


@pytest.mark.parametrize(
    ("rules", "reason"),
    [
        # The funding collection is one of the eleven payments the window allows.
        ({"fraud_velocity_max_count": 11}, "VELOCITY_COUNT_EXCEEDED"),
        # It brings 50,000 of the 60,000 the window allows.
        ({"fraud_velocity_max_amount": {"EUR": 60_000}}, "VELOCITY_AMOUNT_EXCEEDED"),
    ],
)
def test_a_hundred_concurrent_payouts_cannot_pass_a_velocity_limit(
    payments_db_url: str,
    sandbox_bank: SandboxBank,
    ledger_target: str,
    identity_server: IdentityServer,
    rules: dict[str, object],
    reason: str,
) -> None:
    suite, close = make_suite(
        payments_db_url, sandbox_bank, ledger_target, identity_server, **rules
    )
    try:
        customer = suite.customer()
        suite.fund(customer, 50_000)

        def try_payout(_: int) -> tuple[str, str | None]:
            payment_id = suite.new_id("pay")
            try:
                suite.payout(customer, 1_000, payment_id=payment_id)
            except grpc.RpcError as error:
                return payment_id, reason_of(error)
            return payment_id, None

        with ThreadPoolExecutor(max_workers=100) as pool:
            outcomes = list(pool.map(try_payout, range(100)))
        accepted = [pid for pid, why in outcomes if why is None]
        assert len(accepted) == 10
        assert {why for _, why in outcomes if why is not None} == {reason}
        # The table agrees: ten payouts live, ninety declined, and only ten held in the ledger.
        payments = tables.payments
        with suite.app.engine.connect() as connection:
            states: dict[int, int] = dict(
                connection.execute(
                    select(payments.c.state, func.count())
                    .where(payments.c.customer_id == customer, payments.c.kind == 1)
                    .group_by(payments.c.state)
                ).all()
            )
        assert states.pop(pb.PAYMENT_STATE_DECLINED) == 90
        assert sum(states.values()) == 10
        finals = [suite.wait_for(pid) for pid in accepted]
        assert {p.state for p in finals} == {pb.PAYMENT_STATE_SETTLED}
        assert suite.customer_balance(customer) == 50_000 - 10 * 1_000
    finally:
        close()
