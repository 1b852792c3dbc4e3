"""Who is calling: the verified token's subject, as the service layer sees it."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from chassis.grpc.context import current_call
from chassis.kernel.audit import Requester


class PrincipalKind(enum.Enum):
    """What a token's subject is: a service client, or a customer a service acts for."""

    CLIENT = "client"
    CUSTOMER = "customer"


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    kind: PrincipalKind
    # The service client the token was issued to (for a customer token, the
    # trusted service acting for the customer).
    client_id: str
    scopes: frozenset[str]
    token_id: str
    expires_at: datetime

    @property
    def customer_id(self) -> str:
        """The customer this principal is limited to; empty for a service client."""
        return self.subject if self.kind is PrincipalKind.CUSTOMER else ""

    def missing_scopes(self, required: Iterable[str]) -> list[str]:
        return sorted(set(required) - self.scopes)


def current_principal() -> Principal | None:
    """The principal of the call being served, set by ``AuthInterceptor``."""
    call = current_call()
    principal = call.principal if call is not None else None
    return principal if isinstance(principal, Principal) else None


def current_requester() -> Requester | None:
    """Who asks for the call being served, as writes record it; None without a principal."""
    call = current_call()
    if call is None or not isinstance(call.principal, Principal):
        return None
    principal = call.principal
    return Requester(principal.client_id, principal.customer_id or None, call.request_id)
