"""The server side of auth: every call's token verified, its scopes checked, its principal bound.

Sits inside ``CallInterceptor``, so a refusal is an ordinary domain error
(UNAUTHENTICATED or PERMISSION_DENIED with a stable reason) mapped and logged
like any other, and the servicer never runs: nothing is read or written for a
refused call. Health and reflection stay open; every other method must declare
its rule in the contract (``AccessPolicy``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import structlog

from chassis.auth.policy import AccessPolicy, MethodRule
from chassis.auth.principal import Principal
from chassis.auth.verifier import TokenVerifier
from chassis.grpc.context import CallContext, current_call, reset_current_call, set_current_call
from chassis.grpc.interceptors import (
    Behaviour,
    MethodInterceptor,
    metadata_value,
    wrap_handler,
)
from chassis.kernel.errors import PermissionDenied, Unauthenticated

_BEARER = "bearer "


def bearer_token(context: grpc.ServicerContext) -> str:
    """The token of the call's ``authorization: Bearer ...`` header."""
    header = metadata_value(context, "authorization")
    if not header:
        raise Unauthenticated(
            "MISSING_TOKEN", 'a bearer token is required ("authorization: Bearer <token>")'
        )
    if not header[: len(_BEARER)].lower() == _BEARER or not header[len(_BEARER) :].strip():
        raise Unauthenticated(
            "MALFORMED_AUTHORIZATION", 'the authorization header must be "Bearer <token>"'
        )
    return header[len(_BEARER) :].strip()


class AuthInterceptor(MethodInterceptor):
    def __init__(self, verifier: TokenVerifier, policy: AccessPolicy) -> None:
        super().__init__()
        self._verifier = verifier
        self._policy = policy

    def wrap(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        rule = self._policy.rule_for(method)
        if rule is not None and rule.allow_unauthenticated:
            return handler

        def unary(behaviour: Behaviour, request: Any, context: grpc.ServicerContext) -> Any:
            call = self._authorized_call(method, rule, context)
            with _bound(call):
                return behaviour(request, context)

        def streaming(
            behaviour: Behaviour, request: Any, context: grpc.ServicerContext
        ) -> Iterator[Any]:
            call = self._authorized_call(method, rule, context)

            def run() -> Iterator[Any]:
                with _bound(call):
                    yield from behaviour(request, context)

            return run()

        return wrap_handler(handler, unary, streaming)

    def authenticate(self, method: str, rule: MethodRule | None, context: Any) -> Principal:
        if rule is None:
            # Served but not in the policy: refuse rather than guess (deny by default).
            raise PermissionDenied("METHOD_NOT_DECLARED", f"{method} declares no access rule")
        principal = self._verifier.verify(bearer_token(context))
        _name_caller(principal)
        missing = principal.missing_scopes(rule.required_scopes)
        if missing:
            raise PermissionDenied(
                "MISSING_SCOPE",
                f"the token lacks the scope this method requires: {' '.join(missing)}",
                metadata={"required_scopes": " ".join(sorted(rule.required_scopes))},
            )
        return principal

    def _authorized_call(self, method: str, rule: MethodRule | None, context: Any) -> CallContext:
        principal = self.authenticate(method, rule, context)
        call = current_call() or CallContext(request_id=uuid.uuid4().hex, method=method)
        return dataclasses.replace(call, principal=principal)


def _name_caller(principal: Principal) -> None:
    """Name the verified caller on the call's access log line (refused or not).

    The line is written by the outer CallInterceptor after this layer's context is
    gone, so the names go into the fields it logs.
    """
    call = current_call()
    if call is None:
        return
    call.log_fields["client_id"] = principal.client_id
    if principal.customer_id:
        call.log_fields["customer_id"] = principal.customer_id


@contextlib.contextmanager
def _bound(call: CallContext) -> Iterator[None]:
    """The call context (with its principal) and the principal's log fields, for one call."""
    token = set_current_call(call)
    try:
        with structlog.contextvars.bound_contextvars(
            principal=call.principal.subject, client_id=call.principal.client_id
        ):
            yield
    finally:
        reset_current_call(token)
