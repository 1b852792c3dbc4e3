"""Revoked tokens and disabled clients, as every verifier follows them from identity.

A ``RevocationList`` asks its source (identity's ``ListRevocations``, or
identity's own tables) every ``refresh_interval`` seconds for what changed
since its last answer, and refuses a token whose ``jti`` was revoked or whose
client (``azp``) is disabled. The bound: a revocation is refused everywhere
within ``refresh_interval`` (2 s by default) of its commit.

When the source cannot be reached, the list it last had keeps being used for
``max_staleness`` seconds (30 s by default); past that, every token is
refused with UNAVAILABLE (``REVOCATIONS_STALE``) rather than trusted blindly:
the caller's token may be good, so it should retry, not throw it away
(UNAUTHENTICATED would say the token is bad). Fail closed, but honestly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from chassis.auth.principal import Principal
from chassis.background import Periodic
from chassis.kernel.errors import Unauthenticated, Unavailable
from chassis.tls import TlsFiles

_log = structlog.get_logger("chassis.auth")

# Asked again from a little before the last answer: a revocation whose
# transaction committed late (stamped before that answer) is not missed.
OVERLAP_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Revocations:
    """What changed since a point in time (identity's clock, Unix seconds)."""

    # (jti, Unix time until which the token could be valid: kept until then)
    tokens: Sequence[tuple[str, float]] = ()
    disabled_clients: Sequence[str] = ()
    # The time of this answer: the next question asks from (a little before) it.
    as_of: float = 0.0


class RevocationSource(Protocol):
    def fetch(self, since: float | None) -> Revocations:
        """What changed at or after ``since`` (None: everything still in effect)."""
        ...


class CallableRevocationSource:
    def __init__(self, fetch: Callable[[float | None], Revocations]) -> None:
        self._fetch = fetch

    def fetch(self, since: float | None) -> Revocations:
        return self._fetch(since)


class IdentityRevocationSource:
    """Fetches ``IdentityService.ListRevocations`` over mutual TLS, from a server whose
    certificate names identity (as the public keys are)."""

    def __init__(self, target: str, *, tls: TlsFiles, timeout: float = 3.0) -> None:
        from astra.identity.v1 import identity_pb2, identity_pb2_grpc

        from chassis.auth.keys import IDENTITY_SERVER_NAME
        from chassis.grpc.client import open_channel

        self._pb = identity_pb2
        self._channel = open_channel(
            target, tls=tls, server_name=IDENTITY_SERVER_NAME, default_timeout=timeout
        )
        self._stub = identity_pb2_grpc.IdentityServiceStub(self._channel)

    def fetch(self, since: float | None) -> Revocations:
        request = self._pb.ListRevocationsRequest()
        if since is not None:
            request.since.FromNanoseconds(int(since * 1e9))
        reply = self._stub.ListRevocations(request)
        return Revocations(
            tokens=[
                (t.token_id, t.expire_time.ToNanoseconds() / 1e9) for t in reply.revoked_tokens
            ],
            disabled_clients=list(reply.disabled_client_ids),
            as_of=reply.as_of_time.ToNanoseconds() / 1e9,
        )

    def close(self) -> None:
        self._channel.close()


@dataclass
class _State:
    tokens: dict[str, float] = field(default_factory=dict)
    clients: set[str] = field(default_factory=set)
    as_of: float | None = None
    fresh_at: float | None = None  # monotonic time of the last successful fetch


class RevocationList:
    def __init__(
        self,
        source: RevocationSource,
        *,
        refresh_interval: float = 2.0,
        max_staleness: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        background: bool = True,
    ) -> None:
        if refresh_interval <= 0 or max_staleness <= 0:
            raise ValueError("refresh_interval and max_staleness must be positive")
        self._source = source
        self.refresh_interval = refresh_interval
        self.max_staleness = max_staleness
        self._now = monotonic
        self._wall = wall_clock
        self._background = background
        self._state = _State()
        self._lock = threading.Lock()
        self._last_attempt = float("-inf")
        self._failing = False
        self._refresher: Periodic | None = None
        self.fetch_count = 0

    # --- refreshing -------------------------------------------------------------------

    def refresh(self) -> bool:
        """Fetch what changed; True on success. A failure leaves the list as it was."""
        with self._lock:
            self._last_attempt = self._now()
            since = self._state.as_of
        try:
            answer = self._source.fetch(None if since is None else since - OVERLAP_SECONDS)
        except Exception as error:
            # Once when it starts failing (then quietly until it works again): identity away
            # must not flood the logs with a line every interval from every process.
            log = _log.debug if self._failing else _log.warning
            log("revocations fetch failed", error=type(error).__name__)
            self._failing = True
            return False
        if self._failing:
            _log.info("revocations fetched again")
            self._failing = False
        now, wall = self._now(), self._wall()
        with self._lock:
            state = self._state
            for token_id, until in answer.tokens:
                state.tokens[token_id] = max(until, state.tokens.get(token_id, until))
            state.clients.update(answer.disabled_clients)
            # A revoked token past its expiry is refused by its expiry: forget it.
            for token_id in [t for t, until in state.tokens.items() if until < wall]:
                del state.tokens[token_id]
            state.as_of = answer.as_of
            state.fresh_at = now
            self.fetch_count += 1
        return True

    def _claim_attempt(self) -> bool:
        with self._lock:
            now = self._now()
            if now - self._last_attempt < self.refresh_interval:
                return False
            self._last_attempt = now
            return True

    def start(self) -> None:
        """Refresh every ``refresh_interval`` seconds on a daemon thread (once)."""
        with self._lock:
            if self._refresher is not None:
                return
            refresher = Periodic("revocations", self._tick, self.refresh_interval)
            self._refresher = refresher
        refresher.start()

    def _tick(self) -> None:
        self.refresh()

    def close(self) -> None:
        refresher = self._refresher
        if refresher is not None:
            refresher.stop(1.0)

    # --- checking ---------------------------------------------------------------------

    def age(self) -> float | None:
        """Seconds since the last successful fetch (None: never)."""
        fresh_at = self._state.fresh_at
        return None if fresh_at is None else self._now() - fresh_at

    def check(self, principal: Principal) -> None:
        """Refuse a revoked token, a disabled client's token, or any token once stale."""
        if self._background and self._refresher is None:
            self.start()
        age = self.age()
        if age is None or age > self.max_staleness:
            # Never fetched (or long ago): try now, one caller at a time and at most once per
            # interval, so that a crowd of calls is not a crowd of fetches to identity.
            if self._claim_attempt():
                self.refresh()
            age = self.age()
        if age is None or age > self.max_staleness:
            raise Unavailable(
                "REVOCATIONS_STALE",
                "the list of revoked tokens cannot be fetched from identity; retry with backoff",
            )
        state = self._state
        if principal.token_id and principal.token_id in state.tokens:
            raise Unauthenticated("TOKEN_REVOKED", "a valid bearer token is required: revoked")
        if principal.client_id in state.clients:
            raise Unauthenticated(
                "CLIENT_DISABLED", "a valid bearer token is required: its client is disabled"
            )

    @property
    def revoked_count(self) -> int:
        return len(self._state.tokens)

    @property
    def disabled_count(self) -> int:
        return len(self._state.clients)
