"""Revocation lists (chassis.auth.revocation) on an injected clock: what is refused, when the
list is too old to trust, and that a verifier checks it on every call."""

from __future__ import annotations

import jwt
import pytest
from chassis.auth import CallableRevocationSource, RevocationList, Revocations
from chassis.auth.keys import JwksCache
from chassis.auth.testing import TokenMint
from chassis.auth.verifier import TokenVerifier
from chassis.kernel.errors import Unauthenticated, Unavailable


class Feed:
    """What identity would answer; can be made unreachable."""

    def __init__(self) -> None:
        self.tokens: list[tuple[str, float]] = []
        self.clients: list[str] = []
        self.up = True
        self.asked: list[float | None] = []
        self.now = 1_000.0

    def fetch(self, since: float | None) -> Revocations:
        self.asked.append(since)
        if not self.up:
            raise ConnectionError("identity is away")
        return Revocations(list(self.tokens), list(self.clients), as_of=self.now)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def feed() -> Feed:
    return Feed()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def revocation_list(feed: Feed, clock: Clock) -> RevocationList:
    return RevocationList(
        CallableRevocationSource(feed.fetch),
        refresh_interval=2.0,
        max_staleness=30.0,
        monotonic=clock,
        wall_clock=lambda: feed.now,
        background=False,
    )


def verifier(mint: TokenMint, revocations: RevocationList) -> TokenVerifier:
    cache = JwksCache(mint.key_source(), min_refresh_interval=0.0)
    return TokenVerifier(cache, issuer=mint.issuer, audience=mint.audience, revocations=revocations)


def jti(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


def test_a_revoked_token_and_a_disabled_clients_tokens_are_refused_after_a_refresh(
    feed: Feed, clock: Clock
) -> None:
    mint = TokenMint()
    revocations = revocation_list(feed, clock)
    check = verifier(mint, revocations)
    token, other = mint.token(subject="cli_a"), mint.token(subject="cli_b")
    assert check.verify(token).subject == "cli_a"  # cached from now on
    feed.tokens.append((jti(token), feed.now + 600))
    feed.clients.append("cli_b")
    assert check.verify(token).subject == "cli_a"  # not fetched again yet
    assert revocations.refresh()
    with pytest.raises(Unauthenticated) as revoked:
        check.verify(token)
    assert revoked.value.reason == "TOKEN_REVOKED"
    with pytest.raises(Unauthenticated) as disabled:
        check.verify(other)
    assert disabled.value.reason == "CLIENT_DISABLED"
    # A customer token minted by the disabled client is its token too.
    with pytest.raises(Unauthenticated):
        check.verify(mint.customer_token("cus_ann", [], client_id="cli_b"))
    # Asked again from a little before the last answer, not from the start.
    assert feed.asked[0] is None
    last = feed.asked[-1]
    assert last is not None
    assert last < feed.now


def test_past_the_max_staleness_every_token_is_refused_until_a_fetch_succeeds(
    feed: Feed, clock: Clock
) -> None:
    mint = TokenMint()
    revocations = revocation_list(feed, clock)
    check = verifier(mint, revocations)
    token = mint.token()
    check.verify(token)
    feed.up = False
    clock.t = 29.0
    assert not revocations.refresh()
    assert check.verify(token)  # the last list is still trusted
    clock.t = 31.0
    with pytest.raises(Unavailable) as stale:
        check.verify(token)
    assert stale.value.reason == "REVOCATIONS_STALE"
    feed.up = True
    clock.t = 34.0  # a refresh interval after the last attempt: the check fetches again
    assert check.verify(token)
    assert revocations.age() == 0


def test_a_list_never_fetched_refuses_and_expired_revocations_are_forgotten(
    feed: Feed, clock: Clock
) -> None:
    mint = TokenMint()
    feed.up = False
    revocations = revocation_list(feed, clock)
    with pytest.raises(Unavailable):
        verifier(mint, revocations).verify(mint.token())
    feed.up = True
    feed.tokens = [("old", feed.now - 1), ("live", feed.now + 60)]
    assert revocations.refresh()
    assert revocations.revoked_count == 1
