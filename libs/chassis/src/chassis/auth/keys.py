"""Public keys that verify tokens, cached by verifiers.

``JwksCache`` keeps the last key set a ``KeySource`` returned and fetches again
when it is older than its max age, or when a token names a key it does not
know (a rotation happened). That second kind of fetch is rate-limited, so a
flood of tokens with made-up ``kid`` values cannot hammer identity. When a
fetch fails the keys already known stay in use; only a verifier that has never
had keys reports them unavailable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
import structlog
from google.protobuf.json_format import MessageToDict

from chassis.kernel.errors import Unavailable

_log = structlog.get_logger("chassis.auth")


@dataclass(frozen=True, slots=True)
class KeyDocument:
    """A JWKS: JWK dicts (RFC 7517) and how long they may be cached (None: the cache's default)."""

    keys: Sequence[Mapping[str, Any]]
    max_age: float | None = None


class KeySource(Protocol):
    def fetch(self) -> KeyDocument: ...


class CallableKeySource:
    """A key source backed by a function (identity's own keys, tests)."""

    def __init__(self, fetch: Callable[[], KeyDocument]) -> None:
        self._fetch = fetch

    def fetch(self) -> KeyDocument:
        return self._fetch()


class IdentityKeySource:
    """Fetches ``IdentityService.GetPublicKeys`` over gRPC."""

    def __init__(self, target: str, *, timeout: float = 3.0) -> None:
        # Imported here so that services that never fetch keys need not load the stubs.
        from astra.identity.v1 import identity_pb2, identity_pb2_grpc

        from chassis.grpc.client import open_channel

        self._request = identity_pb2.GetPublicKeysRequest()
        self._channel = open_channel(target, default_timeout=timeout)
        self._stub = identity_pb2_grpc.IdentityServiceStub(self._channel)

    def fetch(self) -> KeyDocument:
        reply = self._stub.GetPublicKeys(self._request)
        keys = [MessageToDict(k, preserving_proto_field_name=True) for k in reply.keys]
        max_age = reply.max_age.seconds + reply.max_age.nanos / 1e9 if reply.max_age else 0
        return KeyDocument(keys=keys, max_age=max_age or None)

    def close(self) -> None:
        self._channel.close()


class JwksCache:
    def __init__(
        self,
        source: KeySource,
        *,
        default_max_age: float = 300.0,
        min_refresh_interval: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._default_max_age = default_max_age
        self._min_interval = min_refresh_interval
        self._now = monotonic
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded = False
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._max_age = default_max_age
        self.fetch_count = 0

    def key_for(self, kid: str) -> jwt.PyJWK | None:
        """The key named ``kid``, fetching again if it is unknown or the set is stale."""
        now = self._now()
        if not self._loaded or now - self._fetched_at >= self._max_age:
            self._refresh(force=not self._loaded)
        key = self._keys.get(kid)
        if key is None:
            self._refresh(force=False)
            key = self._keys.get(kid)
        return key

    def refresh(self) -> None:
        """Fetch now, whatever the rate limit (used at start to warm the cache)."""
        self._refresh(force=True)

    def _refresh(self, *, force: bool) -> None:
        with self._lock:
            now = self._now()
            if not force and now - self._attempted_at < self._min_interval:
                return
            self._attempted_at = now
            try:
                document = self._source.fetch()
            except Exception as error:
                _log.warning("public keys fetch failed", error=type(error).__name__)
                if not self._loaded:
                    raise Unavailable(
                        "KEYS_UNAVAILABLE",
                        "the keys that verify tokens cannot be fetched; retry with backoff",
                    ) from error
                return
            self.fetch_count += 1
            self._keys = _parse(document.keys)
            self._loaded = True
            self._fetched_at = now
            self._max_age = document.max_age or self._default_max_age
            _log.debug("public keys fetched", kids=sorted(self._keys))


def _parse(keys: Sequence[Mapping[str, Any]]) -> dict[str, jwt.PyJWK]:
    parsed: dict[str, jwt.PyJWK] = {}
    for data in keys:
        kid = data.get("kid")
        if not isinstance(kid, str) or not kid:
            continue
        try:
            parsed[kid] = jwt.PyJWK(dict(data))
        except jwt.PyJWKError as error:
            # One bad key must not take the others down with it.
            _log.warning("unusable public key skipped", kid=kid, error=str(error))
    return parsed
