"""Column types that store domain values: enums by name, scope lists, JSON objects."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from chassis.kernel.clock import utc
from sqlalchemy import DateTime, Enum, Text
from sqlalchemy.types import TypeDecorator

from identity.domain.model import KycStatus


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
