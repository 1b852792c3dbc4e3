"""The verifier's key cache: fresh keys after a rotation, no hammering on made-up kids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chassis.auth.keys import FileKeySource, JwksCache, KeyDocument
from chassis.auth.testing import TokenMint
from chassis.kernel.errors import DomainError, ErrorCategory


class CountingSource:
    def __init__(self, mint: TokenMint) -> None:
        self.mint = mint
        self.fetches = 0
        self.failing = False
        self.max_age: float | None = None

    def fetch(self) -> KeyDocument:
        self.fetches += 1
        if self.failing:
            raise ConnectionError("identity is down")
        return KeyDocument(self.mint.key_document().keys, max_age=self.max_age)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def mint() -> TokenMint:
    return TokenMint()


def test_keys_are_fetched_once_and_reused(mint: TokenMint) -> None:
    source = CountingSource(mint)
    cache = JwksCache(source)
    for _ in range(50):
        assert cache.key_for(mint.kid) is not None
    assert source.fetches == 1


def test_a_rotated_key_is_found_at_once(mint: TokenMint) -> None:
    source = CountingSource(mint)
    clock = Clock()
    cache = JwksCache(source, min_refresh_interval=60, monotonic=clock)
    old = mint.kid
    assert cache.key_for(old) is not None
    new = mint.rotate()
    clock.now += 0.01  # well inside the refresh interval
    assert cache.key_for(new) is not None
    assert cache.key_for(old) is not None
    assert source.fetches == 2


def test_a_flood_of_made_up_kids_costs_one_fetch_per_interval(mint: TokenMint) -> None:
    source = CountingSource(mint)
    clock = Clock()
    cache = JwksCache(source, min_refresh_interval=1.0, monotonic=clock)
    cache.key_for(mint.kid)
    for i in range(500):
        assert cache.key_for(f"bogus-{i}") is None
    assert source.fetches == 2  # the first load, then one useless fetch
    clock.now += 1.5
    for i in range(500):
        assert cache.key_for(f"bogus-again-{i}") is None
    assert source.fetches == 3


def test_stale_keys_are_fetched_again_after_their_max_age(mint: TokenMint) -> None:
    source = CountingSource(mint)
    source.max_age = 10
    clock = Clock()
    cache = JwksCache(source, monotonic=clock)
    cache.key_for(mint.kid)
    clock.now += 9
    cache.key_for(mint.kid)
    assert source.fetches == 1
    clock.now += 2
    cache.key_for(mint.kid)
    assert source.fetches == 2


def test_a_retired_key_is_forgotten_once_the_cache_is_stale(mint: TokenMint) -> None:
    source = CountingSource(mint)
    source.max_age = 10
    clock = Clock()
    cache = JwksCache(source, monotonic=clock)
    old = mint.kid
    mint.rotate()
    assert cache.key_for(old) is not None
    mint.retire(old)
    clock.now += 11
    assert cache.key_for(old) is None
    assert cache.key_for(mint.kid) is not None


def test_known_keys_survive_an_identity_outage(mint: TokenMint) -> None:
    source = CountingSource(mint)
    source.max_age = 10
    clock = Clock()
    cache = JwksCache(source, min_refresh_interval=1, monotonic=clock)
    cache.key_for(mint.kid)
    source.failing = True
    clock.now += 60
    assert cache.key_for(mint.kid) is not None  # stale, but better than refusing everyone
    fetches = source.fetches
    for _ in range(100):
        cache.key_for(mint.kid)
    assert source.fetches == fetches  # the failure started a cooldown


def test_no_keys_at_all_is_unavailable_not_unauthenticated(mint: TokenMint) -> None:
    source = CountingSource(mint)
    source.failing = True
    cache = JwksCache(source)
    with pytest.raises(DomainError) as caught:
        cache.key_for(mint.kid)
    assert caught.value.category is ErrorCategory.UNAVAILABLE
    assert caught.value.reason == "KEYS_UNAVAILABLE"


def test_an_unusable_key_does_not_hide_the_others(mint: TokenMint) -> None:
    good = mint.key_document().keys
    document = KeyDocument([{"kid": "broken", "kty": "EC", "crv": "P-256", "x": "AA"}, *good])
    cache = JwksCache(type("S", (), {"fetch": lambda self: document})())
    assert cache.key_for(mint.kid) is not None
    assert cache.key_for("broken") is None


def test_a_jwks_file_is_read_again_on_rotation(mint: TokenMint, tmp_path: Path) -> None:
    path = mint.write_jwks(tmp_path / "jwks.json")
    cache = JwksCache(FileKeySource(path), min_refresh_interval=0)
    assert cache.key_for(mint.kid) is not None
    new = mint.rotate()
    mint.write_jwks(path)
    assert cache.key_for(new) is not None
    assert json.loads(path.read_text())["keys"][0]["alg"] == "ES256"


def test_a_file_that_is_no_jwks_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text('{"not": "keys"}')
    with pytest.raises(ValueError, match="not a JWKS"):
        FileKeySource(path).fetch()
