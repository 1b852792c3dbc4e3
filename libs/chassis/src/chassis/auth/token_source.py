"""Client side of auth: a cached client-credentials token for outgoing calls.

``ClientCredentialsTokenSource`` is a ``chassis.grpc.client.TokenSource``: pass
it to ``open_channel(target, token_source=...)`` and every call carries a
current token. It asks identity for a token for one audience (the service the
channel calls: a token is accepted by that service only) once, reuses it, and
asks again shortly before it expires (never on every call: identity limits how
often a client may ask).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import grpc

from chassis.tls import TlsFiles


class ClientCredentialsTokenSource:
    def __init__(
        self,
        identity: str | grpc.Channel,
        client_id: str,
        client_secret: str,
        *,
        audience: str,
        tls: TlsFiles | None = None,
        scopes: Sequence[str] = (),
        refresh_margin: float = 60.0,
        timeout: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        from astra.identity.v1 import identity_pb2, identity_pb2_grpc

        from chassis.auth.keys import IDENTITY_SERVER_NAME
        from chassis.grpc.client import open_channel

        self._owns_channel = isinstance(identity, str)
        if isinstance(identity, str):
            if tls is None:
                raise ValueError("a token source dialling identity needs TLS files")
            # The secret goes only to a server whose certificate names identity.
            self._channel = open_channel(
                identity, tls=tls, server_name=IDENTITY_SERVER_NAME, default_timeout=timeout
            )
        else:
            self._channel = identity
        self._stub = identity_pb2_grpc.IdentityServiceStub(self._channel)
        self._request = identity_pb2.IssueTokenRequest(
            client_id=client_id, client_secret=client_secret, scopes=list(scopes), audience=audience
        )
        self.audience = audience
        self._margin = refresh_margin
        self._timeout = timeout
        self._now = monotonic
        self._lock = threading.Lock()
        self._token = ""
        self._refresh_at = float("-inf")
        self.client_id = client_id
        self.issued_count = 0

    def __repr__(self) -> str:  # never the secret
        return (
            f"ClientCredentialsTokenSource(client_id={self.client_id!r}, "
            f"audience={self.audience!r})"
        )

    def __call__(self) -> str:
        if self._now() < self._refresh_at:
            return self._token
        with self._lock:
            now = self._now()
            if now >= self._refresh_at:
                reply = self._stub.IssueToken(self._request, timeout=self._timeout)
                lifetime = reply.expires_in.seconds + reply.expires_in.nanos / 1e9
                # Renew ahead of expiry; a short-lived token is renewed at half its life.
                self._refresh_at = now + max(0.0, lifetime - min(self._margin, lifetime / 2))
                self._token = reply.access_token
                self.issued_count += 1
            return self._token

    def invalidate(self) -> None:
        """Forget the cached token (e.g. after the server refused it)."""
        with self._lock:
            self._refresh_at = float("-inf")

    def close(self) -> None:
        if self._owns_channel:
            self._channel.close()
