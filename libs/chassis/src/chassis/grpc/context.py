"""What a call knows about itself while it runs: request id, deadline, principal.

Held in contextvars so that logs, outgoing calls (which propagate the request id
and the remaining deadline) and the service layer see it without threading it
through every signature.
"""

from __future__ import annotations

import contextvars
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from chassis.kernel.errors import DomainError, ErrorCategory


@dataclass(frozen=True, slots=True)
class CallContext:
    request_id: str
    method: str
    # time.monotonic() instant after which the caller no longer waits; None: no deadline.
    deadline: float | None = None
    # Set by the auth interceptor: who is calling (chassis.auth.Principal).
    principal: Any = None
    # The SPIFFE id of the client's certificate (``spiffe://astra/payments``): which part called.
    peer: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    # Fields of the call's access log line added while it runs (e.g. who is calling):
    # shared by the copies of this context that inner layers make.
    log_fields: dict[str, str] = field(default_factory=dict)
    # Set when the server starts draining: a streaming call ends rather than hold the drain.
    draining: threading.Event | None = None

    def time_remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())


# gRPC reports "no deadline" as a time remaining of centuries.
_NO_DEADLINE = 1e8


def time_remaining(context: Any) -> float | None:
    """Seconds the caller still waits, or None when it set no deadline."""
    remaining = context.time_remaining()
    if remaining is None or remaining > _NO_DEADLINE:
        return None
    return float(max(0.0, remaining))


_current: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "astra_call_context", default=None
)


def current_call() -> CallContext | None:
    return _current.get()


def set_current_call(ctx: CallContext | None) -> contextvars.Token[CallContext | None]:
    return _current.set(ctx)


class ServerDraining(DomainError):
    """The server is shutting down: a streaming call ends so the drain need not wait for it."""

    category = ErrorCategory.UNAVAILABLE

    def __init__(self) -> None:
        super().__init__(
            "SERVER_DRAINING", "the server is shutting down; call again (resume where you stopped)"
        )


def stream_may_go_on(context: Any, seconds: float = 0.0) -> bool:
    """For a streaming call between messages: wait up to ``seconds`` (woken early when the
    server starts draining), then whether to go on: False once the client cancelled or its
    deadline passed; ``ServerDraining`` once the server drains."""
    call = current_call()
    draining = call.draining if call is not None else None
    if seconds > 0:
        if draining is not None:
            draining.wait(seconds)
        else:
            time.sleep(seconds)
    if draining is not None and draining.is_set():
        raise ServerDraining()
    return bool(context.is_active())


def reset_current_call(token: contextvars.Token[CallContext | None]) -> None:
    _current.reset(token)
