"""Column types that store domain values: enums by name, scope lists, JSON objects."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from chassis.kernel.audit import flat, requester_from
from chassis.kernel.clock import utc
from screening.matcher import Outcome, match_from_record, match_record
from sqlalchemy import DateTime, Enum, Text
from sqlalchemy.types import TypeDecorator

from identity.domain.model import KycStatus
from identity.domain.screening import CustomerScreening, Decision


def kyc_status_type() -> Enum:
    # VARCHAR holding the enum's name: no database enum type to migrate when a status is added.
    return Enum(KycStatus, native_enum=False, length=20, validate_strings=True)


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> datetime | None:
        return None if value is None else utc(value)

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        return None if value is None else utc(value)


class ScopeList(TypeDecorator[tuple[str, ...]]):
    """A tuple of scopes stored as one space-separated string."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else " ".join(value)

    def process_result_value(self, value: Any, dialect: Any) -> tuple[str, ...] | None:
        return None if value is None else tuple(value.split())


class JsonObject(TypeDecorator[dict[str, Any]]):
    """A JSON object stored as text (the same on PostgreSQL and SQLite)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=True)

    def process_result_value(self, value: Any, dialect: Any) -> dict[str, Any] | None:
        return None if value is None else json.loads(value)


class ScreeningColumn(TypeDecorator[CustomerScreening]):
    """A customer's sanctions screening stored as JSON text (NULL: never screened)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        screening: CustomerScreening = value
        match = screening.match
        client, customer, request_id = flat(screening.decided_by)
        return json.dumps(
            {
                "outcome": screening.outcome.value,
                "list_version": screening.list_version,
                "score": screening.score,
                "screened_at": screening.screened_at.isoformat(),
                "match": match_record(match),
                "decision": screening.decision.value if screening.decision else None,
                "decided_by": [client, customer, request_id],
                "decision_reason": screening.decision_reason,
            },
            sort_keys=True,
        )

    def process_result_value(self, value: Any, dialect: Any) -> CustomerScreening | None:
        if value is None:
            return None
        data = json.loads(value)
        found = data["match"]
        return CustomerScreening(
            outcome=Outcome(data["outcome"]),
            list_version=data["list_version"],
            score=data["score"],
            screened_at=utc(datetime.fromisoformat(data["screened_at"])),
            match=match_from_record(found),
            decision=Decision(data["decision"]) if data["decision"] else None,
            decided_by=requester_from(*data["decided_by"]),
            decision_reason=data["decision_reason"],
        )
