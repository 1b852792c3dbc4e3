"""Outgoing gRPC calls: every call carries a deadline, the caller's request id and auth.

``open_channel`` returns a channel whose calls
- get ``default_timeout`` when the caller set none, capped by the time the
  current incoming call has left (deadline propagation);
- carry ``x-request-id`` of the current call (or a new one), so one request can
  be followed across services in the logs;
- carry ``authorization: Bearer ...`` from ``token_source`` when given;
- go over mutual TLS with ``tls``'s certificate; ``server_name`` is the name the
  server's certificate must carry (``identity``, ``ledger``) when it matters who
  answers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import grpc

from chassis.grpc.bases import ClientCallDetails, UnaryStreamClientBase, UnaryUnaryClientBase
from chassis.grpc.context import current_call
from chassis.grpc.telemetry import client_interceptors
from chassis.tls import TlsFiles, secure_channel

TokenSource = Callable[[], str]


class PropagatingClientInterceptor(UnaryUnaryClientBase, UnaryStreamClientBase):
    def __init__(self, default_timeout: float, token_source: TokenSource | None = None) -> None:
        self._default_timeout = default_timeout
        self._token_source = token_source

    def _details(self, details: grpc.ClientCallDetails) -> ClientCallDetails:
        metadata = list(details.metadata or [])
        keys = {k for k, _ in metadata}
        call = current_call()
        if "x-request-id" not in keys:
            metadata.append(("x-request-id", call.request_id if call else uuid.uuid4().hex))
        if self._token_source is not None and "authorization" not in keys:
            metadata.append(("authorization", f"Bearer {self._token_source()}"))
        timeout = details.timeout if details.timeout is not None else self._default_timeout
        remaining = call.time_remaining() if call else None
        if remaining is not None:
            timeout = min(timeout, remaining)
        return ClientCallDetails(
            details.method,
            timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return continuation(self._details(client_call_details), request)


def open_channel(
    target: str,
    *,
    tls: TlsFiles,
    server_name: str | None = None,
    default_timeout: float = 5.0,
    token_source: TokenSource | None = None,
    options: list[tuple[str, Any]] | None = None,
) -> grpc.Channel:
    channel = secure_channel(
        target,
        tls,
        server_name=server_name,
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            *(options or []),
        ],
    )
    return grpc.intercept_channel(
        channel,
        *client_interceptors(),
        PropagatingClientInterceptor(default_timeout, token_source),
    )
