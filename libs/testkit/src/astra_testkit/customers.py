"""Customers as tests and benchmarks need them, created through identity's API."""

from __future__ import annotations

from astra.identity.v1 import identity_pb2 as ipb
from astra.identity.v1.identity_pb2_grpc import IdentityServiceStub


def create_customer(
    identity: IdentityServiceStub, customer_id: str, *, verified: bool = True
) -> str:
    """Create ``customer_id``; unless told otherwise, take it through KYC to VERIFIED."""
    identity.CreateCustomer(
        ipb.CreateCustomerRequest(
            customer=ipb.Customer(
                id=customer_id, display_name="Ada Test", email=f"{customer_id}@example.com"
            )
        )
    )
    if verified:
        identity.SubmitKyc(
            ipb.SubmitKycRequest(request_id=f"kyc_{customer_id}_submit", customer_id=customer_id)
        )
        identity.ReviewKyc(
            ipb.ReviewKycRequest(
                request_id=f"kyc_{customer_id}_approve",
                customer_id=customer_id,
                decision=ipb.KYC_DECISION_APPROVE,
            )
        )
    return customer_id
