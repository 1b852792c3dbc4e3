"""Payments' port to identity, over its gRPC contract: a customer's KYC status."""

from __future__ import annotations

import grpc
from astra.identity.v1 import identity_pb2, identity_pb2_grpc
from chassis.protos import from_timestamp

from payments.domain.customers import CustomerKyc
from payments.service_layer.ports import IdentityUnavailable


def kyc_status_name(value: int) -> str:
    """``KYC_STATUS_VERIFIED`` -> ``VERIFIED``."""
    return identity_pb2.KycStatus.Name(value).removeprefix("KYC_STATUS_")  # type: ignore[arg-type]


def customer_kyc(customer: identity_pb2.Customer) -> CustomerKyc:
    if customer.HasField("erase_time"):
        return CustomerKyc.erased(customer.id)
    return CustomerKyc(
        customer_id=customer.id,
        kyc_status=kyc_status_name(customer.kyc_status),
        kyc_version=customer.kyc_version,
        customer_since=(
            from_timestamp(customer.create_time, "customer.create_time")
            if customer.HasField("create_time")
            else None
        ),
    )


class GrpcIdentity:
    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = identity_pb2_grpc.IdentityServiceStub(channel)

    def get_customer(self, customer_id: str) -> CustomerKyc | None:
        try:
            reply = self._stub.GetCustomer(identity_pb2.GetCustomerRequest(customer_id=customer_id))
        except grpc.RpcError as error:
            if error.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise IdentityUnavailable(f"GetCustomer: {error.code().name}") from error
        return customer_kyc(reply.customer)
