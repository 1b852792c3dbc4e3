"""Risk decisions and alerts as rows; counterparty tags. Used by the repository."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from chassis.kernel.audit import Requester, flat, requester_from
from chassis.kernel.clock import utc
from sqlalchemy import Row

from payments.domain.fraud import Verdict
from payments.domain.monitoring import Alert, AlertResolution, AlertRule, AlertState
from payments.domain.risk_score import Contribution, RiskDecision, RiskScore, ScoreThresholds

TAG_LENGTH = 32


def counterparty_tag(data_key: bytes, account_number: str) -> str:
    """The counterparty's tag: HMAC-SHA256 of the account number (case and punctuation
    ignored) under the customer's data key; without the key it cannot be guessed back."""
    normalized = "".join(c for c in account_number.upper() if c.isalnum())
    if not normalized:
        return ""
    digest = hmac.new(data_key, b"counterparty|" + normalized.encode(), hashlib.sha256)
    return digest.hexdigest()[:TAG_LENGTH]


def decision_row(payment_id: str, decision: RiskDecision, created_at: Any) -> dict[str, Any]:
    score = decision.score
    explanation: dict[str, Any] = {
        "rules": {"verdict": decision.rules_verdict.value, "reason": decision.rules_reason},
        "alerts": [list(a) for a in decision.alerts],
    }
    if score is not None:
        explanation["score"] = {
            "value": score.score,
            "verdict": decision.score_verdict.value if decision.score_verdict else "",
            "review": decision.thresholds.review if decision.thresholds else None,
            "decline": decision.thresholds.decline if decision.thresholds else None,
            "top": [[c.feature, c.value, c.contribution] for c in score.top],
        }
    return {
        "payment_id": payment_id,
        "verdict": decision.verdict.value,
        "reason": decision.reason[:64],
        "model_version": score.model_version if score is not None else "",
        "explanation": json.dumps(explanation, separators=(",", ":")),
        "created_at": created_at,
    }


def decision_from_row(row: Row[Any]) -> RiskDecision:
    m = row._mapping
    body = json.loads(m["explanation"])
    rules = body["rules"]
    score: RiskScore | None = None
    score_verdict: Verdict | None = None
    thresholds: ScoreThresholds | None = None
    scored = body.get("score")
    if scored is not None:
        score = RiskScore(
            m["model_version"],
            float(scored["value"]),
            tuple(Contribution(f, float(v), float(c)) for f, v, c in scored["top"]),
        )
        score_verdict = Verdict(scored["verdict"]) if scored["verdict"] else None
        if scored.get("review") is not None:
            thresholds = ScoreThresholds(float(scored["review"]), float(scored["decline"]))
    return RiskDecision(
        verdict=Verdict(m["verdict"]),
        reason=m["reason"],
        rules_verdict=Verdict(rules["verdict"]),
        rules_reason=rules["reason"],
        score=score,
        score_verdict=score_verdict,
        thresholds=thresholds,
        alerts=tuple((a[0], a[1]) for a in body["alerts"]),
    )


def _resolver_columns(requester: Requester | None) -> dict[str, str]:
    client_id, customer_id, request_id = flat(requester)
    return {
        "resolved_by": client_id,
        "resolved_by_customer": customer_id,
        "resolved_request_id": request_id,
    }


def alert_row(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "customer_id": alert.customer_id,
        "rule": int(alert.rule),
        "state": int(alert.state),
        "payment_ids": json.dumps(list(alert.payment_ids)),
        "evidence": json.dumps(dict(alert.evidence), sort_keys=True),
        "created_at": alert.created_at,
        **alert_changes(alert),
        "version": alert.version,
    }


def alert_changes(alert: Alert) -> dict[str, Any]:
    """The columns a resolution writes."""
    return {
        "state": int(alert.state),
        "resolution": int(alert.resolution) if alert.resolution is not None else None,
        **_resolver_columns(alert.resolved_by),
        "resolved_at": alert.resolved_at,
        "note": alert.note,
    }


def alert_from_row(row: Row[Any]) -> Alert:
    m = row._mapping
    return Alert(
        id=m["id"],
        customer_id=m["customer_id"],
        rule=AlertRule(m["rule"]),
        payment_ids=tuple(json.loads(m["payment_ids"])),
        evidence=json.loads(m["evidence"]),
        created_at=utc(m["created_at"]),
        state=AlertState(m["state"]),
        resolution=AlertResolution(m["resolution"]) if m["resolution"] is not None else None,
        resolved_by=requester_from(
            m["resolved_by"], m["resolved_by_customer"], m["resolved_request_id"]
        ),
        resolved_at=utc(m["resolved_at"]) if m["resolved_at"] is not None else None,
        note=m["note"],
        version=m["version"],
    )
