"""Well-known types from a client: every Timestamp and Duration proto can carry is either
converted exactly or refused as INVALID_ARGUMENT naming the field, never an OverflowError."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from chassis.kernel.errors import InvalidArgument
from chassis.protos import (
    DURATION_MAX_SECONDS,
    TIMESTAMP_MAX_SECONDS,
    TIMESTAMP_MIN_SECONDS,
    from_duration,
    from_timestamp,
    to_duration,
    to_timestamp,
)
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

INT64 = st.integers(-(2**63), 2**63 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)


def test_the_edges_of_the_timestamp_range_convert_exactly() -> None:
    assert from_timestamp(Timestamp(seconds=TIMESTAMP_MIN_SECONDS), "t") == datetime(
        1, 1, 1, tzinfo=UTC
    )
    assert from_timestamp(
        Timestamp(seconds=TIMESTAMP_MAX_SECONDS, nanos=999_999_999), "t"
    ) == datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    moment = datetime(2024, 2, 29, 12, 30, 1, 123_456, tzinfo=UTC)
    assert from_timestamp(to_timestamp(moment), "t") == moment


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (TIMESTAMP_MIN_SECONDS - 1, 0),
        (TIMESTAMP_MAX_SECONDS + 1, 0),
        (2**63 - 1, 0),
        (-(2**63), 0),
        (0, -1),
        (0, 1_000_000_000),
        (0, 2**31 - 1),
        (0, -(2**31)),
    ],
)
def test_a_timestamp_outside_the_valid_range_is_refused_naming_its_field(
    seconds: int, nanos: int
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        from_timestamp(Timestamp(seconds=seconds, nanos=nanos), "as_of")
    assert [v.field for v in refused.value.violations] == ["as_of"]


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (DURATION_MAX_SECONDS + 1, 0),
        (-DURATION_MAX_SECONDS - 1, 0),
        (2**63 - 1, 0),
        (-(2**63), 0),
        (0, 1_000_000_000),
        (0, -1_000_000_000),
        (5, -1),
        (-5, 1),
    ],
)
def test_a_duration_outside_the_valid_range_or_with_mixed_signs_is_refused(
    seconds: int, nanos: int
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        from_duration(Duration(seconds=seconds, nanos=nanos), "pending.timeout")
    assert [v.field for v in refused.value.violations] == ["pending.timeout"]


@given(INT64, INT32)
def test_any_timestamp_a_client_can_send_converts_or_is_refused(seconds: int, nanos: int) -> None:
    try:
        value = from_timestamp(Timestamp(seconds=seconds, nanos=nanos), "t")
    except InvalidArgument:
        return
    assert to_timestamp(value) == Timestamp(seconds=seconds, nanos=nanos // 1000 * 1000)


@given(INT64, INT32)
def test_any_duration_a_client_can_send_converts_or_is_refused(seconds: int, nanos: int) -> None:
    try:
        value = from_duration(Duration(seconds=seconds, nanos=nanos), "d")
    except InvalidArgument:
        return
    sign = -1 if nanos < 0 else 1
    assert to_duration(value) == Duration(seconds=seconds, nanos=sign * (abs(nanos) // 1000 * 1000))


def test_negative_spans_keep_one_sign() -> None:
    assert to_duration(timedelta(microseconds=-1)) == Duration(seconds=0, nanos=-1000)
    assert to_duration(timedelta(seconds=-3, microseconds=-5)) == Duration(seconds=-3, nanos=-5000)
    assert from_duration(Duration(seconds=-3, nanos=-5000), "d") == timedelta(
        seconds=-3, microseconds=-5
    )
