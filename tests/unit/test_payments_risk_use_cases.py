"""Monitoring and the fraud score in payments' use cases, on the in-memory fakes: what a
payment's decision records, which alerts are raised (once), and how reviewers resolve them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from chassis.kernel.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from payments.adapters.fraud_model import LightGbmFraudModel
from payments.domain.fees import FeeSchedule
from payments.domain.fraud import FraudRules, Verdict
from payments.domain.model import BankAccount
from payments.domain.monitoring import (
    Alert,
    AlertResolution,
    AlertRule,
    AlertState,
    MonitoringRules,
)
from payments.domain.policy import Policy
from payments.domain.risk_score import FEATURES, RiskScore, ScoreThresholds, top_contributions
from payments.domain.states import PaymentKind, PaymentState
from payments.service_layer import alerts
from payments.service_layer.creation import Creation, create_payments
from payments.service_layer.use_cases import Caller

from tests.unit.test_payments_use_cases import (
    CREATOR,
    REVIEWER,
    Service,
    error_of,
    make_service,
    payment_of,
)

S = PaymentState
MODEL = Path(__file__).resolve().parents[2] / "services/payments/models/fraud-model.json"


@dataclasses.dataclass
class FixedModel:
    """A fraud model that gives every payment the same score (and remembers what it saw)."""

    value: float
    version: str = "fixed+000000000000"
    seen: list[Sequence[float]] = dataclasses.field(default_factory=list)

    def score(self, features: Sequence[float]) -> RiskScore:
        self.seen.append(list(features))
        return RiskScore(
            self.version, self.value, top_contributions(features, [0.1] * len(FEATURES))
        )


def scored(model: object, **monitoring: object) -> Service:
    policy = Policy(
        fees=FeeSchedule(fixed={"EUR": 100}),
        fraud=FraudRules(review_amount={"EUR": 50_000}),
        monitoring=MonitoringRules(**monitoring),  # type: ignore[arg-type]
        score_thresholds=ScoreThresholds(0.5, 0.9),
    )
    service = make_service(policy)
    service.deps.fraud_model = model  # type: ignore[assignment]
    return service


def test_a_payment_records_the_rules_and_the_learned_score_with_its_top_features() -> None:
    model = LightGbmFraudModel.load(MODEL)
    service = scored(model)
    customer = service.verified("cus_ada", funds=100_000)
    payout = service.payout("pay_1", customer, 2_000)
    decision = payout.risk_decision
    assert decision is not None
    assert decision.score is not None
    assert decision.score.model_version == model.version
    assert 0.0 <= decision.score.score <= 1.0
    assert len(decision.score.top) == 3
    assert decision.rules_verdict is Verdict.APPROVE
    assert decision.verdict is decision.score_verdict
    assert decision.thresholds == ScoreThresholds(0.5, 0.9)
    # GetPayment shows the same decision.
    assert service.get("pay_1").risk_decision == decision


@pytest.mark.parametrize(
    ("value", "state", "reason"),
    [(0.2, S.FUNDS_HELD, ""), (0.6, S.IN_REVIEW, "RISK_SCORE_REVIEW")],
)
def test_the_score_lets_a_payout_go_on_or_holds_it_for_review(
    value: float, state: PaymentState, reason: str
) -> None:
    service = scored(FixedModel(value))
    customer = service.verified("cus_ada", funds=100_000)
    payout = service.payout("pay_1", customer, 2_000)
    assert (payout.state, payout.review_reason) == (state, reason)
    assert payout.risk_decision is not None
    assert payout.risk_decision.reason == reason


def test_a_score_above_the_decline_threshold_declines_and_holds_nothing() -> None:
    model = FixedModel(0.95)
    service = scored(model)
    customer = service.verified("cus_ada", funds=100_000)
    refused = error_of(service.group(service.request("pay_1", customer, 2_000))[0])
    assert refused.reason == "RISK_SCORE_DECLINE"
    payment = service.get("pay_1")
    assert (payment.state, payment.reason) == (S.DECLINED, "RISK_SCORE_DECLINE")
    assert service.held(customer) == 0
    assert len(model.seen) == 1
    assert len(model.seen[0]) == len(FEATURES)


def test_a_rule_s_decline_wins_and_the_score_is_still_recorded() -> None:
    service = scored(FixedModel(0.1))
    customer = service.verified("cus_ada", funds=100_000)
    service.deps.policy = dataclasses.replace(
        service.deps.policy, fraud=FraudRules(max_amount={"EUR": 1_000})
    )
    assert error_of(service.group(service.request("pay_1", customer, 2_000))[0]).reason == (
        "AMOUNT_OVER_LIMIT"
    )
    decision = service.get("pay_1").risk_decision
    assert decision is not None
    assert (decision.verdict, decision.rules_verdict, decision.score_verdict) == (
        Verdict.DECLINE,
        Verdict.DECLINE,
        Verdict.APPROVE,
    )


def open_alerts(service: Service, rule: AlertRule | None = None) -> list[Alert]:
    return alerts.list_alerts(service.deps, 100, "", state=AlertState.OPEN, rule=rule).items


def test_rapid_in_and_out_raises_one_alert_until_it_is_resolved() -> None:
    service = scored(None)
    customer = service.verified("cus_ada", funds=20_000)
    collection = service.collection("pay_in", customer, 10_000)
    service.settle(collection.id)
    first = service.payout("pay_out1", customer, 9_000)
    (alert,) = open_alerts(service)
    assert (alert.rule, alert.customer_id) == (AlertRule.RAPID_IN_OUT, customer)
    assert alert.payment_ids == ("pay_in", "pay_out1")
    assert alert.evidence["collected"] == 10_000
    assert first.risk_decision is not None
    assert first.risk_decision.alerts == ((alert.id, "RAPID_IN_OUT"),)
    # Not held: monitoring reports, the rules and the score stop.
    assert first.state is S.FUNDS_HELD
    # While it is open, the same pattern raises no second alert.
    service.payout("pay_out2", customer, 9_000)
    assert len(open_alerts(service)) == 1
    resolved = alerts.resolve_alert(
        service.deps, alert.id, AlertResolution.DISMISSED, "salary", REVIEWER
    )
    assert (resolved.state, resolved.resolution, resolved.note) == (
        AlertState.RESOLVED,
        AlertResolution.DISMISSED,
        "salary",
    )
    assert resolved.resolved_by is not None
    assert resolved.resolved_by.client_id == REVIEWER.client_id
    # The same resolution again changes nothing; another one is refused.
    again = alerts.resolve_alert(service.deps, alert.id, AlertResolution.DISMISSED, "", REVIEWER)
    assert again.note == "salary"
    with pytest.raises(FailedPrecondition) as refused:
        alerts.resolve_alert(service.deps, alert.id, AlertResolution.CONFIRMED, "", REVIEWER)
    assert refused.value.reason == "ALERT_ALREADY_RESOLVED"
    # Once resolved, the pattern is looked for again.
    third = service.payout("pay_out3", customer, 8_500)
    (new,) = open_alerts(service)
    assert new.id != alert.id
    assert new.payment_ids == ("pay_in", "pay_out3")
    assert third.risk_decision is not None
    assert third.risk_decision.alerts == ((new.id, "RAPID_IN_OUT"),)


def test_structuring_within_one_group_raises_one_alert() -> None:
    service = scored(None, structuring_amount={"EUR": 10_000}, in_out_window=timedelta(0))
    customer = service.verified("cus_ada", funds=100_000)
    outcomes = service.group(*(service.request(f"pay_{i}", customer, 9_500 + i) for i in range(5)))
    assert all(payment_of(o).state is S.FUNDS_HELD for o in outcomes)
    (alert,) = open_alerts(service, AlertRule.STRUCTURING)
    assert alert.payment_ids == ("pay_0", "pay_1", "pay_2")
    assert alert.evidence["count"] == 3


def test_new_counterparties_raise_an_alert_and_may_hold_the_payment() -> None:
    service = scored(None, in_out_window=timedelta(0), new_counterparties=3, hold_for_review=True)
    customer = service.verified("cus_ada", funds=100_000)
    requests = [
        dataclasses.replace(
            service.request(f"pay_{i}", customer, 1_000),
            counterparty=BankAccount(f"DE0000000000000000000{i}", "Someone"),
        )
        for i in range(3)
    ]
    outcomes = create_payments(service.deps, [Creation(r, "destination") for r in requests])
    states = [payment_of(o).state for o in outcomes]
    assert states == [S.FUNDS_HELD, S.FUNDS_HELD, S.IN_REVIEW]
    held = payment_of(outcomes[2])
    assert held.review_reason == "MONITORING_ALERT"
    (alert,) = open_alerts(service, AlertRule.NEW_COUNTERPARTIES)
    assert alert.payment_ids == ("pay_0", "pay_1", "pay_2")
    # Paying a counterparty already paid raises nothing new.
    assert service.payout("pay_again", customer, 500).state is S.FUNDS_HELD


def test_alerts_are_for_service_callers_and_malformed_requests_are_refused() -> None:
    service = scored(None)
    customer_token = Caller(client_id="cli_app", customer_id="cus_ada")
    with pytest.raises(PermissionDenied) as denied:
        alerts.list_alerts(service.deps, 10, "", caller=customer_token)
    assert denied.value.reason == "SERVICE_CALLER_REQUIRED"
    with pytest.raises(PermissionDenied):
        alerts.resolve_alert(
            service.deps, "alr_" + "0" * 32, AlertResolution.DISMISSED, "", customer_token
        )
    with pytest.raises(InvalidArgument):
        alerts.resolve_alert(service.deps, "pay_1", AlertResolution.DISMISSED, "", CREATOR)
    with pytest.raises(InvalidArgument):
        alerts.resolve_alert(service.deps, "alr_" + "0" * 32, None, "", CREATOR)
    with pytest.raises(InvalidArgument):
        alerts.resolve_alert(
            service.deps, "alr_" + "0" * 32, AlertResolution.DISMISSED, "x" * 141, CREATOR
        )
    with pytest.raises(NotFound) as missing:
        alerts.resolve_alert(service.deps, "alr_" + "0" * 32, AlertResolution.DISMISSED)
    assert missing.value.reason == "ALERT_NOT_FOUND"
    with pytest.raises(InvalidArgument):
        alerts.list_alerts(service.deps, 10, "garbage")


def test_unverified_customers_are_not_scored() -> None:
    model = FixedModel(0.1)
    service = scored(model)
    service.fakes.identity.add("cus_new", "PENDING")
    refused = error_of(
        service.group(service.request("pay_1", "cus_new", 1_000, PaymentKind.COLLECTION))[0]
    )
    assert refused.reason == "CUSTOMER_NOT_VERIFIED"
    assert service.get("pay_1").risk_decision is None
    assert model.seen == []
