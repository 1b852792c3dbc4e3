"""What payments knows of a customer: its KYC status, from identity's events or answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

VERIFIED = "VERIFIED"


@dataclass(frozen=True, slots=True)
class CustomerKyc:
    customer_id: str
    # As identity names it: UNVERIFIED, PENDING_REVIEW, VERIFIED, REJECTED.
    kyc_status: str
    # Identity's version of the status: a newer version wins, whatever order events arrive in.
    kyc_version: int
    customer_since: datetime | None

    @property
    def verified(self) -> bool:
        return self.kyc_status == VERIFIED


@dataclass(frozen=True, slots=True)
class CustomerStatus:
    """What a decision needs of a customer: its KYC status and since when it is one."""

    kyc_status: str
    customer_since: datetime | None

    @classmethod
    def of(cls, kyc: CustomerKyc) -> CustomerStatus:
        return cls(kyc.kyc_status, kyc.customer_since)
