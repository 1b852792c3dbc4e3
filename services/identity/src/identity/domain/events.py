"""Domain events identity records; an adapter maps them to ``astra.identity.v1`` event protos."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# Events carry ids, never a customer's name or e-mail: they leave the context.


@dataclass(frozen=True, slots=True)
class CustomerCreated:
    customer_id: str
    occurred_at: datetime

    @property
    def aggregate_id(self) -> str:
        return self.customer_id


@dataclass(frozen=True, slots=True)
class CustomerKycChanged:
    customer_id: str
    # KycStatus names (the domain's enum lives in model.py, which imports this module).
    previous_status: str
    status: str
    reason: str
    kyc_version: int
    actor: str
    occurred_at: datetime

    @property
    def aggregate_id(self) -> str:
        return self.customer_id


@dataclass(frozen=True, slots=True)
class CustomerErased:
    customer_id: str
    actor: str
    occurred_at: datetime

    @property
    def aggregate_id(self) -> str:
        return self.customer_id


IdentityEvent = CustomerCreated | CustomerKycChanged | CustomerErased
