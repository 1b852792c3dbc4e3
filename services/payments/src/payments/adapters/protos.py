"""Domain objects -> ``astra.payments.v1`` messages."""

from __future__ import annotations

from astra.payments.v1 import payments_pb2 as pb
from chassis.logging import mask_account_number
from chassis.protos import enum_filter, set_requester, set_timestamp
from screening.matcher import Outcome

from payments.domain.fraud import Verdict
from payments.domain.model import Payment, Transition
from payments.domain.monitoring import Alert, AlertResolution, AlertRule, AlertState
from payments.domain.reconciliation import ReconciliationReport
from payments.domain.risk_score import RiskDecision
from payments.domain.sanctions import SanctionsScreening
from payments.domain.states import PaymentState

_STATES: dict[int, PaymentState] = {int(state): state for state in PaymentState}


def state_filter_from_pb(value: int, field: str = "state") -> PaymentState | None:
    """A state to filter by: None for unset; an undefined number is refused."""
    return enum_filter(value, _STATES, pb.PaymentState.Name, field)


def state_to_pb(state: PaymentState | None) -> int:
    return int(state) if state is not None else pb.PAYMENT_STATE_UNSPECIFIED


def transition_to_pb(transition: Transition) -> pb.StateTransition:
    message = pb.StateTransition(
        from_state=state_to_pb(transition.from_state),  # type: ignore[arg-type]
        to_state=state_to_pb(transition.to_state),  # type: ignore[arg-type]
        reason=transition.reason,
    )
    set_timestamp(message.occur_time, transition.occurred_at)
    return message


def payment_to_pb(payment: Payment, *, history: bool = True, summary: bool = False) -> pb.Payment:
    """The message; a ``summary`` (a list's) without the holder's name and with the account
    number masked to its last 4 characters."""
    account = payment.counterparty.account_number
    message = pb.Payment(
        id=payment.id,
        kind=int(payment.kind),  # type: ignore[arg-type]
        state=int(payment.state),  # type: ignore[arg-type]
        customer_id=payment.customer_id,
        amount=payment.amount,
        currency=payment.currency,
        fee=payment.fee,
        counterparty=pb.BankAccount(
            account_number=mask_account_number(account) if summary else account,
            holder_name="" if summary else payment.counterparty.holder_name,
            country=payment.counterparty.country,
        ),
        description=payment.description,
        original_payment_id=payment.original_payment_id,
        refunded_amount=payment.refunded_amount,
        reason=payment.reason,
        review_reason=payment.review_reason,
        bank_payment_id=payment.bank_payment_id,
        ledger_account_id=payment.ledger_account_id,
        ledger_pending=payment.pending_ledger_step() is not None,
        review_note=payment.review_note,
    )
    set_requester(message.created_by, payment.created_by)
    set_requester(message.reviewed_by, payment.reviewed_by)
    if payment.sanctions is not None:
        screening_to_pb(message.sanctions_screening, payment.sanctions, summary=summary)
    if payment.risk_decision is not None:
        message.risk_decision.CopyFrom(risk_decision_to_pb(payment.risk_decision))
    if history:
        message.history.extend(transition_to_pb(t) for t in payment.history)
    set_timestamp(message.create_time, payment.created_at)
    set_timestamp(message.update_time, payment.updated_at)
    return message


_OUTCOMES = {
    Outcome.CLEAR: pb.SANCTIONS_SCREENING_OUTCOME_CLEAR,
    Outcome.HIT: pb.SANCTIONS_SCREENING_OUTCOME_HIT,
    Outcome.NOT_SCREENED: pb.SANCTIONS_SCREENING_OUTCOME_NOT_SCREENED,
}


def screening_to_pb(
    message: pb.SanctionsScreening, screening: SanctionsScreening, *, summary: bool = False
) -> None:
    """The screening; a ``summary`` (a list's) without the listed names, which would tell
    what the holder's name looks like (the list leaves that name out)."""
    message.outcome = _OUTCOMES[screening.outcome]
    message.list_version = screening.list_version
    message.score = screening.score
    set_timestamp(message.screen_time, screening.screened_at)
    match = screening.match
    if match is not None:
        message.entry_uid = match.entry_uid
        if not summary:
            message.entry_name = match.entry_name
            message.matched_name = match.matched_name
        message.programs.extend(match.programs)
        if match.country_matched is not None:
            message.country_matched = match.country_matched


def report_to_pb(report: ReconciliationReport) -> pb.ReconciliationRun:
    message = pb.ReconciliationRun(
        id=report.run_id,
        statement_date=report.statement_date.isoformat(),
        statement_line_count=report.line_count,
        matched_count=report.matched,
        breaks=[
            pb.ReconciliationBreak(
                kind=int(b.kind),  # type: ignore[arg-type]
                payment_id=b.payment_id,
                bank_payment_id=b.bank_payment_id,
                expected_amount=b.expected_amount,
                actual_amount=b.actual_amount,
                currency=b.currency,
                detail=b.detail,
            )
            for b in report.breaks
        ],
    )
    set_timestamp(message.create_time, report.created_at)
    return message


_VERDICTS = {
    Verdict.APPROVE: pb.RISK_VERDICT_APPROVE,
    Verdict.REVIEW: pb.RISK_VERDICT_REVIEW,
    Verdict.DECLINE: pb.RISK_VERDICT_DECLINE,
}
_RULES_BY_NAME = {rule.name: rule for rule in AlertRule}


def _verdict(verdict: Verdict | None) -> pb.RiskVerdict.ValueType:
    return _VERDICTS[verdict] if verdict is not None else pb.RISK_VERDICT_UNSPECIFIED


def risk_decision_to_pb(decision: RiskDecision) -> pb.RiskDecision:
    message = pb.RiskDecision(
        verdict=_verdict(decision.verdict),
        reason=decision.reason,
        rules_verdict=_verdict(decision.rules_verdict),
        rules_reason=decision.rules_reason,
        alerts=[
            pb.RiskAlertRef(alert_id=alert_id, rule=int(_RULES_BY_NAME[rule]))  # type: ignore[arg-type]
            for alert_id, rule in decision.alerts
        ],
    )
    score = decision.score
    if score is not None:
        thresholds = decision.thresholds
        message.score.CopyFrom(
            pb.RiskScore(
                model_version=score.model_version,
                score=score.score,
                verdict=_verdict(decision.score_verdict),
                review_threshold=thresholds.review if thresholds else 0.0,
                decline_threshold=thresholds.decline if thresholds else 0.0,
                top_features=[
                    pb.ScoreContribution(
                        feature=c.feature, value=c.value, contribution=c.contribution
                    )
                    for c in score.top
                ],
            )
        )
    return message


_ALERT_STATES: dict[int, AlertState] = {int(s): s for s in AlertState}
_ALERT_RULES: dict[int, AlertRule] = {int(r): r for r in AlertRule}
_RESOLUTIONS: dict[int, AlertResolution] = {int(r): r for r in AlertResolution}


def alert_state_filter_from_pb(value: int) -> AlertState | None:
    return enum_filter(value, _ALERT_STATES, pb.AlertState.Name, "state")


def alert_rule_filter_from_pb(value: int) -> AlertRule | None:
    return enum_filter(value, _ALERT_RULES, pb.AlertRule.Name, "rule")


def resolution_from_pb(value: int) -> AlertResolution | None:
    """None for unset; an undefined number is refused (INVALID_ARGUMENT on resolution)."""
    return enum_filter(value, _RESOLUTIONS, pb.AlertResolution.Name, "resolution")


def alert_to_pb(alert: Alert) -> pb.Alert:
    message = pb.Alert(
        id=alert.id,
        customer_id=alert.customer_id,
        rule=int(alert.rule),  # type: ignore[arg-type]
        state=int(alert.state),  # type: ignore[arg-type]
        payment_ids=list(alert.payment_ids),
        evidence={key: str(value) for key, value in alert.evidence.items()},
        resolution=int(alert.resolution) if alert.resolution else 0,  # type: ignore[arg-type]
        note=alert.note,
    )
    set_timestamp(message.create_time, alert.created_at)
    set_requester(message.resolved_by, alert.resolved_by)
    set_timestamp(message.resolve_time, alert.resolved_at)
    return message
