"""Token buckets (chassis.ratelimit): the rate and the burst hold whatever the call pattern."""

from __future__ import annotations

import pytest
from chassis.ratelimit import KeyedBuckets, Rate, RateLimit, TokenBucket
from hypothesis import given
from hypothesis import strategies as st

rates = st.builds(
    Rate,
    per_second=st.floats(min_value=0.5, max_value=1000, allow_nan=False),
    burst=st.integers(min_value=1, max_value=50).map(float),
)
# Increasing call times over at most a minute.
steps = st.lists(st.floats(min_value=0, max_value=2, allow_nan=False), min_size=1, max_size=300)


@given(rate=rates, gaps=steps)
def test_a_bucket_never_lets_more_through_than_its_burst_plus_its_rate(
    rate: Rate, gaps: list[float]
) -> None:
    bucket = TokenBucket(rate, 0.0)
    now, allowed = 0.0, 0
    for gap in gaps:
        now += gap
        wait = bucket.take(now)
        assert wait >= 0
        if wait == 0:
            allowed += 1
        else:
            # The wait it names is enough: a call then succeeds.
            probe = TokenBucket(rate, 0.0)
            probe._tokens, probe._updated = bucket._tokens, bucket._updated
            assert probe.wait_time(now + wait + 1e-9) == 0
    assert allowed <= rate.burst + now * rate.per_second + 1e-6


def test_a_bucket_starts_full_and_refills_at_its_rate() -> None:
    bucket = TokenBucket(Rate(per_second=2, burst=3), 10.0)
    assert [bucket.take(10.0) for _ in range(3)] == [0, 0, 0]
    assert bucket.take(10.0) == pytest.approx(0.5)
    assert bucket.take(10.5) == 0
    assert bucket.take(10.5) == pytest.approx(0.5)


def test_keys_are_limited_apart_and_all_together() -> None:
    limit = RateLimit(Rate(1, 2), Rate(10, 3), monotonic=lambda: 0.0)
    assert [limit.take("a"), limit.take("a")] == [0, 0]
    assert limit.take("a") == pytest.approx(1.0)  # a's own bucket is empty
    assert limit.take("b") == 0  # b has its own
    assert limit.take("c") == pytest.approx(0.1)  # but the overall bucket is empty now
    # A refused call spends nothing: after the overall refill, c goes ahead at once.
    assert limit.take("c", now=0.1) == 0


@given(keys=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=500))
def test_a_flood_of_distinct_keys_keeps_a_bounded_map(keys: list[str]) -> None:
    buckets = KeyedBuckets(Rate(1, 1), max_keys=16)
    for key in keys:
        buckets.bucket(key, 0.0)
    assert len(buckets) <= 16


def test_a_rate_needs_a_positive_rate_and_a_burst_of_one() -> None:
    with pytest.raises(ValueError, match="per_second > 0"):
        Rate(0, 1)
    with pytest.raises(ValueError, match="burst >= 1"):
        Rate(1, 0.5)
