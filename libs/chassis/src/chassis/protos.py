"""Exact conversions between protobuf well-known types and Python values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_timestamp(value: datetime) -> Timestamp:
    """Exact to the microsecond (no float round trip)."""
    delta = value - _EPOCH if value.tzinfo else value - _EPOCH.replace(tzinfo=None)
    seconds = delta.days * 86400 + delta.seconds
    return Timestamp(seconds=seconds, nanos=delta.microseconds * 1000)


_last: list[tuple[datetime, Timestamp]] = []


def set_timestamp(target: Timestamp, value: datetime | None) -> None:
    """Set ``target`` to ``value`` (None leaves it unset).

    A batch stamps thousands of messages with one instant: the last conversion
    is remembered so that repeats cost a copy, not a conversion.
    """
    if value is None:
        return
    last = _last[0] if _last else None
    if last is not None and last[0] is value:
        target.CopyFrom(last[1])
        return
    converted = to_timestamp(value)
    _last[:] = [(value, converted)]
    target.CopyFrom(converted)


def from_timestamp(value: Timestamp) -> datetime:
    return _EPOCH + timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


def from_duration(value: Duration) -> timedelta:
    return timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


def to_duration(value: timedelta) -> Duration:
    whole = value.days * 86400 + value.seconds
    return Duration(seconds=whole, nanos=value.microseconds * 1000)
