"""Public keys that verify tokens, cached by verifiers.

``JwksCache`` keeps the last key set a ``KeySource`` returned and fetches again
when it is older than its max age, or when a token names a key it does not
know (a rotation happened). That second kind of fetch is rate-limited, so a
flood of tokens with made-up ``kid`` values cannot hammer identity. When a
fetch fails the keys already known stay in use; only a verifier that has never
had keys reports them unavailable.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt
import structlog
from google.protobuf.json_format import MessageToDict

from chassis.kernel.errors import Unavailable
from chassis.tls import TlsFiles

_log = structlog.get_logger("chassis.auth")
# The DNS name identity's certificate carries; only it may serve the signing keys.
IDENTITY_SERVER_NAME = "identity"


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


class FileKeySource:
    """Reads a JWKS document (``{"keys": [...]}``) from a file, e.g. a mounted secret.

    Read again on every fetch, so replacing the file rotates keys without a restart.
    """

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)

    def fetch(self) -> KeyDocument:
        document = json.loads(self._path.read_text())
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list):
            raise ValueError(f"{self._path} is not a JWKS document")
        return KeyDocument(keys=keys)


class IdentityKeySource:
    """Fetches ``IdentityService.GetPublicKeys`` over gRPC, from identity and no one else.

    Whoever supplies the keys can mint tokens every service accepts, so the
    server's certificate must name ``identity`` (``IDENTITY_SERVER_NAME``), not
    merely come from the CA: another part of the suite, or anything holding one
    of its certificates, answering on identity's address fails the handshake.
    """

    def __init__(self, target: str, *, tls: TlsFiles, timeout: float = 3.0) -> None:
        # Imported here so that services that never fetch keys need not load the stubs.
        from astra.identity.v1 import identity_pb2, identity_pb2_grpc

        from chassis.grpc.client import open_channel

        self._request = identity_pb2.GetPublicKeysRequest()
        self._channel = open_channel(
            target, tls=tls, server_name=IDENTITY_SERVER_NAME, default_timeout=timeout
        )
        self._stub = identity_pb2_grpc.IdentityServiceStub(self._channel)

    def fetch(self) -> KeyDocument:
        reply = self._stub.GetPublicKeys(self._request)
        keys = [MessageToDict(k, preserving_proto_field_name=True) for k in reply.keys]
        max_age = reply.max_age.seconds + reply.max_age.nanos / 1e9 if reply.max_age else 0
        return KeyDocument(keys=keys, max_age=max_age or None)

    def close(self) -> None:
        self._channel.close()


class JwksCache:
    """Keys by kid, fetched on first use, when stale, and when a token names an unknown kid.

    Only a fetch that was useless starts a cooldown of ``min_refresh_interval``:
    one that failed, or one made for a kid that it did not bring. So a token
    signed by a key rotated in a moment ago is verified at once, while a flood
    of made-up kids costs identity at most one fetch per interval.
    """

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
        self._cooldown_from = float("-inf")
        self._max_age = default_max_age
        self.fetch_count = 0

    def key_for(self, kid: str) -> jwt.PyJWK | None:
        """The key named ``kid``, fetching again if it is unknown or the set is stale."""
        now = self._now()
        if not self._loaded or now - self._fetched_at >= self._max_age:
            with self._lock:
                if not self._loaded or self._now() - self._fetched_at >= self._max_age:
                    self._fetch_unless_cooling(wanted=None)
        key = self._keys.get(kid)
        if key is None:
            with self._lock:
                key = self._keys.get(kid)  # another thread may have fetched it meanwhile
                if key is None:
                    self._fetch_unless_cooling(wanted=kid)
                    key = self._keys.get(kid)
        return key

    def refresh(self) -> None:
        """Fetch now, whatever the cooldown (e.g. at start, to warm the cache)."""
        with self._lock:
            self._cooldown_from = float("-inf")
            self._fetch_unless_cooling(wanted=None)

    def _fetch_unless_cooling(self, wanted: str | None) -> None:
        now = self._now()
        if now - self._cooldown_from < self._min_interval:
            if not self._loaded:
                raise _keys_unavailable()
            return
        try:
            document = self._source.fetch()
        except Exception as error:
            self._cooldown_from = now
            _log.warning("public keys fetch failed", error=type(error).__name__)
            if not self._loaded:
                raise _keys_unavailable() from error
            return
        self.fetch_count += 1
        self._keys = _parse(document.keys)
        self._loaded = True
        self._fetched_at = now
        self._max_age = document.max_age or self._default_max_age
        if wanted is not None and wanted not in self._keys:
            self._cooldown_from = now
        _log.debug("public keys fetched", kids=sorted(self._keys))


def _keys_unavailable() -> Unavailable:
    return Unavailable(
        "KEYS_UNAVAILABLE", "the keys that verify tokens cannot be fetched; retry with backoff"
    )


def _parse(keys: Sequence[Mapping[str, Any]]) -> dict[str, jwt.PyJWK]:
    parsed: dict[str, jwt.PyJWK] = {}
    for data in keys:
        kid = data.get("kid")
        if not isinstance(kid, str) or not kid:
            continue
        try:
            parsed[kid] = jwt.PyJWK(dict(data))
        except jwt.PyJWTError as error:
            # One bad key must not take the others down with it.
            _log.warning("unusable public key skipped", kid=kid, error=str(error))
    return parsed
