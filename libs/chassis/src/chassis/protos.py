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


def set_timestamp(target: Timestamp, value: datetime | None) -> None:
    if value is not None:
        target.CopyFrom(to_timestamp(value))


def from_timestamp(value: Timestamp) -> datetime:
    return _EPOCH + timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


def from_duration(value: Duration) -> timedelta:
    return timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


def to_duration(value: timedelta) -> Duration:
    whole = value.days * 86400 + value.seconds
    return Duration(seconds=whole, nanos=value.microseconds * 1000)
