"""Identity's refusals with stable reasons. Credentials are never part of a message."""

from __future__ import annotations

from chassis.kernel.errors import FailedPrecondition, NotFound, Unauthenticated


def customer_not_found(customer_id: str) -> NotFound:
    return NotFound(
        "CUSTOMER_NOT_FOUND", f"customer {customer_id} does not exist", metadata={"id": customer_id}
    )


def client_not_found(client_id: str) -> NotFound:
    return NotFound(
        "CLIENT_NOT_FOUND", f"client {client_id} does not exist", metadata={"id": client_id}
    )


def invalid_client() -> Unauthenticated:
    # The same answer for an unknown client and a wrong secret: no probing for client ids.
    return Unauthenticated("INVALID_CLIENT", "the client id or secret is wrong")


def client_disabled() -> Unauthenticated:
    return Unauthenticated("CLIENT_DISABLED", "the client is disabled and cannot obtain tokens")


def customer_erased(customer_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        "CUSTOMER_ERASED",
        f"customer {customer_id} was erased; its id cannot be used again",
        metadata={"id": customer_id},
    )
