"""Transaction monitoring's rules and the score's thresholds: pure decisions, checked with
builders and Hypothesis (``payments.domain.monitoring``, ``payments.domain.risk_score``)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from chassis.kernel.errors import FailedPrecondition
from hypothesis import given
from hypothesis import strategies as st
from payments.domain.fraud import Verdict
from payments.domain.monitoring import (
    Activities,
    Activity,
    Alert,
    AlertResolution,
    AlertRule,
    AlertState,
    Finding,
    MonitoringRules,
    RecentPayment,
    alert_id,
    monitor,
)
from payments.domain.risk_score import (
    FEATURES,
    Contribution,
    RiskScore,
    ScoreThresholds,
    combine,
    risk_features,
    stricter,
    top_contributions,
)
from payments.domain.states import PaymentKind

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
PAYOUT, COLLECTION = PaymentKind.PAYOUT, PaymentKind.COLLECTION
# Only the rule under test is on.
STRUCTURING_ONLY = MonitoringRules(
    structuring_amount={"EUR": 10_000},
    structuring_margin_bp=1_000,
    structuring_min_count=3,
    in_out_window=timedelta(0),
    new_counterparties=0,
)
IN_OUT_ONLY = MonitoringRules(in_out_window=timedelta(hours=1), new_counterparties=0)
NEW_COUNTERPARTIES_ONLY = MonitoringRules(in_out_window=timedelta(0), new_counterparties=3)


def paid(
    number: int,
    amount: int,
    *,
    kind: PaymentKind = PAYOUT,
    ago: timedelta = timedelta(minutes=5),
    currency: str = "EUR",
    counterparty: str = "",
) -> RecentPayment:
    return RecentPayment(f"pay_{number}", kind, amount, currency, NOW - ago, counterparty)


def this(amount: int, kind: PaymentKind = PAYOUT, counterparty: str = "") -> RecentPayment:
    return RecentPayment("pay_now", kind, amount, "EUR", NOW, counterparty)


def rules_of(findings: list[Finding]) -> set[AlertRule]:
    return {f.rule for f in findings}


# --- structuring ---------------------------------------------------------------------------------

in_band = st.integers(9_000, 9_999)
out_of_band = st.one_of(st.integers(1, 8_999), st.integers(10_000, 1_000_000))


@given(earlier=st.lists(in_band, max_size=6), current=in_band)
def test_structuring_counts_payments_just_under_the_threshold(
    earlier: list[int], current: int
) -> None:
    recent = tuple(paid(i, amount) for i, amount in enumerate(earlier))
    findings = monitor(STRUCTURING_ONLY, Activity(recent), this(current), NOW)
    raised = AlertRule.STRUCTURING in rules_of(findings)
    assert raised == (len(earlier) + 1 >= 3)
    if raised:
        (finding,) = findings
        assert finding.payment_ids[-1] == "pay_now"
        assert finding.evidence["count"] == len(earlier) + 1
        assert finding.evidence["total"] == sum(earlier) + current
        assert finding.evidence["band_low"] == 9_000


@given(earlier=st.lists(in_band, min_size=2, max_size=6), current=out_of_band)
def test_a_payment_outside_the_band_raises_no_structuring(earlier: list[int], current: int) -> None:
    recent = tuple(paid(i, amount) for i, amount in enumerate(earlier))
    assert monitor(STRUCTURING_ONLY, Activity(recent), this(current), NOW) == []


@given(
    earlier=st.lists(in_band, min_size=2, max_size=6),
    noise=st.lists(
        st.tuples(in_band, st.sampled_from(["old", "other_kind", "other_currency", "big"])),
        max_size=8,
    ),
)
def test_structuring_ignores_old_other_kind_other_currency_and_large_payments(
    earlier: list[int], noise: list[tuple[int, str]]
) -> None:
    recent = [paid(i, amount) for i, amount in enumerate(earlier)]
    before = monitor(STRUCTURING_ONLY, Activity(tuple(recent)), this(9_500), NOW)
    for j, (amount, how) in enumerate(noise, start=100):
        if how == "old":
            recent.append(paid(j, amount, ago=timedelta(hours=25)))
        elif how == "other_kind":
            recent.append(paid(j, amount, kind=COLLECTION))
        elif how == "other_currency":
            recent.append(paid(j, amount, currency="USD"))
        else:
            recent.append(paid(j, amount + 1_000))
    after = monitor(STRUCTURING_ONLY, Activity(tuple(recent)), this(9_500), NOW)
    assert after == before
    assert rules_of(after) == {AlertRule.STRUCTURING}


def test_a_currency_without_a_threshold_has_no_structuring_rule() -> None:
    recent = tuple(paid(i, 9_500, currency="USD") for i in range(5))
    payment = RecentPayment("pay_now", PAYOUT, 9_500, "USD", NOW)
    assert monitor(STRUCTURING_ONLY, Activity(recent), payment, NOW) == []


# --- rapid in-and-out ------------------------------------------------------------------------


@given(
    collected=st.lists(st.integers(1, 100_000), min_size=1, max_size=4),
    share_bp=st.integers(0, 15_000),
)
def test_a_payout_taking_most_of_recent_collections_out_raises_in_and_out(
    collected: list[int], share_bp: int
) -> None:
    recent = tuple(
        paid(i, amount, kind=COLLECTION, ago=timedelta(minutes=10 + i))
        for i, amount in enumerate(collected)
    )
    total = sum(collected)
    amount = max(1, total * share_bp // 10_000)
    findings = monitor(IN_OUT_ONLY, Activity(recent), this(amount), NOW)
    expected = amount * 10_000 >= total * 8_000
    assert (AlertRule.RAPID_IN_OUT in rules_of(findings)) == expected
    if expected:
        (finding,) = findings
        assert finding.evidence["collected"] == total
        assert finding.evidence["paid_out"] == amount
        assert set(finding.payment_ids) == {p.payment_id for p in recent} | {"pay_now"}


@given(amount=st.integers(1, 1_000_000))
def test_in_and_out_looks_only_at_recent_collections_in_the_currency(amount: int) -> None:
    recent = (
        paid(1, amount, kind=COLLECTION, ago=timedelta(hours=1, seconds=1)),
        paid(2, amount, kind=COLLECTION, currency="USD"),
        paid(3, amount, kind=PAYOUT),
    )
    assert monitor(IN_OUT_ONLY, Activity(recent), this(amount), NOW) == []
    # A collection after collections is no in-and-out.
    fresh = (paid(4, amount, kind=COLLECTION),)
    assert monitor(IN_OUT_ONLY, Activity(fresh), this(amount, COLLECTION), NOW) == []


# --- new counterparties ----------------------------------------------------------------------


@given(
    tags=st.lists(st.sampled_from([f"cp{i}" for i in range(8)]), max_size=10),
    known=st.sets(st.sampled_from([f"cp{i}" for i in range(8)])),
    current=st.sampled_from([f"cp{i}" for i in range(10)]),
)
def test_new_counterparties_counts_distinct_counterparties_not_paid_before(
    tags: list[str], known: set[str], current: str
) -> None:
    recent = tuple(paid(i, 100, counterparty=tag) for i, tag in enumerate(tags))
    activity = Activity(recent, frozenset(known))
    findings = monitor(NEW_COUNTERPARTIES_ONLY, activity, this(100, counterparty=current), NOW)
    new = ({*tags} | {current}) - known
    expected = current not in known and len(new) >= 3
    assert (AlertRule.NEW_COUNTERPARTIES in rules_of(findings)) == expected
    if expected:
        (finding,) = findings
        assert finding.evidence["new_counterparties"] == len(new)
        assert len(finding.payment_ids) == len(new)


def test_an_open_alert_of_a_rule_suppresses_another_of_that_rule_only() -> None:
    rules = MonitoringRules(
        structuring_amount={"EUR": 10_000}, in_out_window=timedelta(hours=1), new_counterparties=0
    )
    recent = (
        paid(1, 9_500),
        paid(2, 9_500),
        paid(3, 10_000, kind=COLLECTION),
    )
    both = monitor(rules, Activity(recent), this(9_500), NOW)
    assert rules_of(both) == {AlertRule.STRUCTURING, AlertRule.RAPID_IN_OUT}
    one_open = Activity(recent, open_rules=frozenset({AlertRule.STRUCTURING}))
    assert rules_of(monitor(rules, one_open, this(9_500), NOW)) == {AlertRule.RAPID_IN_OUT}


def test_activities_count_a_group_s_accepted_payments_and_its_alerts() -> None:
    activities = Activities({"cus_a": Activity((paid(1, 9_500),))})
    activities.count("cus_a", paid(2, 9_600), [AlertRule.STRUCTURING])
    activities.count("cus_b", paid(3, 100), [])
    seen = activities.of("cus_a")
    assert [p.payment_id for p in seen.recent] == ["pay_1", "pay_2"]
    assert seen.open_rules == {AlertRule.STRUCTURING}
    assert [p.payment_id for p in activities.of("cus_b").recent] == ["pay_3"]
    assert activities.of("cus_nobody") == Activity()


def test_an_alert_is_resolved_once_and_its_id_is_stable() -> None:
    finding = Finding(AlertRule.RAPID_IN_OUT, ("pay_1", "pay_now"), {"collected": 5})

    alert = Alert.raised("cus_a", "pay_now", finding, NOW)
    assert alert.id == alert_id("pay_now", AlertRule.RAPID_IN_OUT)
    assert alert.id.startswith("alr_")
    assert len(alert.id) == 36
    assert alert.id != alert_id("pay_now", AlertRule.STRUCTURING)
    assert alert.resolve(AlertResolution.DISMISSED, NOW, note="known employer")
    assert (alert.state, alert.resolution, alert.note) == (
        AlertState.RESOLVED,
        AlertResolution.DISMISSED,
        "known employer",
    )
    assert not alert.resolve(AlertResolution.DISMISSED, NOW)
    with pytest.raises(FailedPrecondition) as refused:
        alert.resolve(AlertResolution.CONFIRMED, NOW)
    assert refused.value.reason == "ALERT_ALREADY_RESOLVED"
    assert alert.resolution is AlertResolution.DISMISSED


# --- the score's thresholds and the combined decision --------------------------------------------

scores = st.floats(0.0, 1.0, allow_nan=False)
verdicts = st.sampled_from(list(Verdict))
STRICTNESS = {Verdict.APPROVE: 0, Verdict.REVIEW: 1, Verdict.DECLINE: 2}


@st.composite
def thresholds(draw: st.DrawFn) -> ScoreThresholds:
    review = draw(st.floats(0.01, 1.0, allow_nan=False))
    decline = draw(st.floats(review, 1.0, allow_nan=False))
    return ScoreThresholds(review, decline)


@given(limits=thresholds(), first=scores, second=scores)
def test_a_higher_score_is_never_treated_more_leniently(
    limits: ScoreThresholds, first: float, second: float
) -> None:
    low, high = sorted((first, second))
    assert STRICTNESS[limits.verdict(low)] <= STRICTNESS[limits.verdict(high)]


@given(limits=thresholds())
def test_the_thresholds_are_inclusive(limits: ScoreThresholds) -> None:
    assert limits.verdict(limits.decline) is Verdict.DECLINE
    if limits.review < limits.decline:
        assert limits.verdict(limits.review) is Verdict.REVIEW
    assert limits.verdict(0.0) is Verdict.APPROVE


@pytest.mark.parametrize(("review", "decline"), [(0.0, 0.5), (0.6, 0.5), (0.5, 1.5), (-1, 0.5)])
def test_thresholds_out_of_order_are_refused(review: float, decline: float) -> None:
    with pytest.raises(ValueError, match="review"):
        ScoreThresholds(review, decline)


@given(
    rules_verdict=verdicts,
    score=st.one_of(st.none(), scores),
    limits=thresholds(),
    alerted=st.booleans(),
    hold=st.booleans(),
)
def test_the_decision_is_the_strictest_part_and_keeps_every_part(
    rules_verdict: Verdict,
    score: float | None,
    limits: ScoreThresholds,
    alerted: bool,
    hold: bool,
) -> None:
    scored = RiskScore("m+1", score) if score is not None else None
    alerts = (("alr_x", "STRUCTURING"),) if alerted else ()
    reason = "" if rules_verdict is Verdict.APPROVE else "SOME_RULE"
    decision = combine(rules_verdict, reason, scored, limits, alerts, hold)
    expected = rules_verdict
    if score is not None:
        expected = stricter(expected, limits.verdict(score))
    if alerted and hold and expected is Verdict.APPROVE:
        expected = Verdict.REVIEW
    assert decision.verdict is expected
    assert (decision.rules_verdict, decision.rules_reason) == (rules_verdict, reason)
    assert decision.score_verdict == (limits.verdict(score) if score is not None else None)
    # The rules' reason wins a tie; a declined payment raises no alert.
    if decision.verdict is rules_verdict:
        assert decision.reason == reason
    assert decision.alerts == (alerts if decision.verdict is not Verdict.DECLINE else ())


def test_the_score_s_reasons_name_what_decided() -> None:
    limits = ScoreThresholds(0.5, 0.9)
    assert combine(Verdict.APPROVE, "", RiskScore("m", 0.95), limits).reason == "RISK_SCORE_DECLINE"
    assert combine(Verdict.APPROVE, "", RiskScore("m", 0.6), limits).reason == "RISK_SCORE_REVIEW"
    assert combine(Verdict.REVIEW, "LARGE_AMOUNT", RiskScore("m", 0.6), limits).reason == (
        "LARGE_AMOUNT"
    )
    held = combine(Verdict.APPROVE, "", None, limits, (("alr_x", "RAPID_IN_OUT"),), True)
    assert (held.verdict, held.reason) == (Verdict.REVIEW, "MONITORING_ALERT")


# --- features ---------------------------------------------------------------------------------


def test_features_describe_the_payment_and_its_activity() -> None:
    recent = (
        paid(1, 5_000, kind=COLLECTION, ago=timedelta(minutes=30)),
        paid(2, 100, counterparty="cp_new"),
        paid(3, 100, counterparty="cp_old"),
        paid(4, 100, ago=timedelta(hours=30), counterparty="cp_ancient"),
    )
    activity = Activity(recent, frozenset({"cp_old"}))
    values = dict(
        zip(
            FEATURES,
            risk_features(
                this(4_500, counterparty="cp_fresh"),
                NOW - timedelta(days=10),
                activity,
                timedelta(hours=24),
                NOW,
            ),
            strict=True,
        )
    )
    assert values["is_payout"] == 1.0
    assert values["customer_age_days"] == pytest.approx(10.0)
    assert values["recent_count"] == 3.0
    assert values["hour_of_day"] == 12.0
    assert values["new_counterparty"] == 1.0
    assert values["new_counterparties"] == 2.0
    assert values["collected_share"] == pytest.approx(0.9)
    # 45.00 EUR: log10(1 + 45).
    assert values["amount_log10"] == pytest.approx(math.log10(46))


@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=len(FEATURES), max_size=len(FEATURES)))
def test_top_contributions_are_the_largest_by_magnitude(contributions: list[float]) -> None:
    top = top_contributions([1.0] * len(FEATURES), contributions)
    assert len(top) == 3
    assert all(isinstance(c, Contribution) for c in top)
    magnitudes = sorted((abs(c) for c in contributions), reverse=True)
    assert [abs(c.contribution) for c in top] == magnitudes[:3]
