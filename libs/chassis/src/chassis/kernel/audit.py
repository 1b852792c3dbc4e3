"""Who asked for a write: the value every write records beside the data it changes.

Built at the edge from the verified token and the call's request id
(``chassis.auth.current_requester``) and handed to use cases as a plain value,
so domains record it without knowing of gRPC or tokens.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Requester:
    # The service client the token was issued to (for a customer token, the
    # service acting for the customer).
    client_id: str
    # The customer a customer token is limited to; None for a service client.
    customer_id: str | None = None
    # The call's request id (the caller's x-request-id or one the server gave it).
    request_id: str = ""

    def flat(self) -> tuple[str, str, str]:
        """client id, customer id ("" for none) and request id: how narrow columns store it."""
        return self.client_id, self.customer_id or "", self.request_id


NOBODY = ("", "", "")


def flat(requester: Requester | None) -> tuple[str, str, str]:
    """``requester.flat()``, or three empty strings when nobody was recorded."""
    return requester.flat() if requester is not None else NOBODY


def requester_from(
    client_id: str | None, customer_id: str | None, request_id: str | None
) -> Requester | None:
    """The requester stored as ``flat`` (or as NULLs) left it; None when none was recorded."""
    if not client_id:
        return None
    return Requester(client_id, customer_id or None, request_id or "")
