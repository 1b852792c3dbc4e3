"""Exact conversions between protobuf well-known types and Python values.

A Timestamp or Duration from a client can hold any int64 seconds and int32
nanos; only part of that is a valid value (google/protobuf/timestamp.proto and
duration.proto), and Python's datetime covers exactly the valid Timestamps.
Reading one checks its range first and refuses the rest as INVALID_ARGUMENT
naming the request's field, never an OverflowError of ours.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from chassis.kernel.audit import Requester
from chassis.kernel.errors import FieldViolation, InvalidArgument

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The valid range of a Timestamp: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
TIMESTAMP_MIN_SECONDS = -62_135_596_800
TIMESTAMP_MAX_SECONDS = 253_402_300_799
# The valid range of a Duration: about +-10,000 years.
DURATION_MAX_SECONDS = 315_576_000_000
MAX_NANOS = 999_999_999


def timestamp_problem(value: Timestamp) -> str | None:
    """Why ``value`` is not a valid Timestamp, or None."""
    if not TIMESTAMP_MIN_SECONDS <= value.seconds <= TIMESTAMP_MAX_SECONDS:
        return "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z"
    if not 0 <= value.nanos <= MAX_NANOS:
        return f"nanos must be between 0 and {MAX_NANOS}"
    return None


def duration_problem(value: Duration) -> str | None:
    """Why ``value`` is not a valid Duration, or None."""
    if not -DURATION_MAX_SECONDS <= value.seconds <= DURATION_MAX_SECONDS:
        return f"seconds must be between -{DURATION_MAX_SECONDS} and {DURATION_MAX_SECONDS}"
    if not -MAX_NANOS <= value.nanos <= MAX_NANOS:
        return f"nanos must be between -{MAX_NANOS} and {MAX_NANOS}"
    if (value.seconds > 0 and value.nanos < 0) or (value.seconds < 0 and value.nanos > 0):
        return "seconds and nanos must not have opposite signs"
    return None


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


def set_requester(target: Any, requester: Requester | None) -> None:
    """Fill a context's ``Requester`` message (client_id, customer_id, request_id); None
    leaves it unset. Each context declares its own message of those three fields."""
    if requester is not None:
        target.client_id = requester.client_id
        target.customer_id = requester.customer_id or ""
        target.request_id = requester.request_id


def from_timestamp(value: Timestamp, field: str) -> datetime:
    """The instant ``value`` names (UTC); INVALID_ARGUMENT on ``field`` when it is no valid one."""
    problem = timestamp_problem(value)
    if problem is not None:
        raise InvalidArgument([FieldViolation(field, problem)])
    return _EPOCH + timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


def from_duration(value: Duration, field: str) -> timedelta:
    """The span ``value`` names; INVALID_ARGUMENT on ``field`` when it is no valid one."""
    problem = duration_problem(value)
    if problem is not None:
        raise InvalidArgument([FieldViolation(field, problem)])
    # Nanos share the seconds' sign: whole microseconds toward zero, as for a Timestamp.
    micros = abs(value.nanos) // 1000
    return timedelta(seconds=value.seconds, microseconds=-micros if value.nanos < 0 else micros)


def to_duration(value: timedelta) -> Duration:
    """Exact to the microsecond; a negative span has negative seconds and nanos alike."""
    micros = (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
    seconds, rest = divmod(abs(micros), 1_000_000)
    sign = -1 if micros < 0 else 1
    return Duration(seconds=sign * seconds, nanos=sign * rest * 1000)


T = TypeVar("T")


def enum_filter(
    value: int, known: Mapping[int, T], name_of: Callable[[Any], str], field: str
) -> T | None:
    """A list filter on an enum: unset (0) filters nothing, a number of ``known`` selects its
    value, and any other number is refused naming ``field`` (``name_of``: the generated
    enum's ``Name``, for the message)."""
    if value == 0:
        return None
    found = known.get(value)
    if found is None:
        names = ", ".join(name_of(number) for number in sorted(known))
        raise InvalidArgument([FieldViolation(field, f"must be unset or one of {names}")])
    return found
