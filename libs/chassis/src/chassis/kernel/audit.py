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
