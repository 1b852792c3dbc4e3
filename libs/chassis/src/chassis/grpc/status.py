"""Domain errors as gRPC statuses with rich details (AIP-193).

``google.rpc.ErrorInfo`` carries the stable reason and the error domain (the
service's DNS-like name, e.g. ``ledger.astra``); ``google.rpc.BadRequest``
carries one violation per offending field. The details travel in the
``grpc-status-details-bin`` trailer, read by ``grpc_status.rpc_status``.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from chassis.kernel.errors import DomainError, ErrorCategory, ResourceExhausted

GRPC_CODE: Mapping[ErrorCategory, grpc.StatusCode] = {
    ErrorCategory.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCategory.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCategory.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCategory.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCategory.ABORTED: grpc.StatusCode.ABORTED,
    ErrorCategory.OUT_OF_RANGE: grpc.StatusCode.OUT_OF_RANGE,
    ErrorCategory.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCategory.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCategory.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCategory.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCategory.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def build_status(
    code: grpc.StatusCode,
    message: str,
    *,
    reason: str,
    domain: str,
    metadata: Mapping[str, str] | None = None,
    violations: list[tuple[str, str, str]] | None = None,
    retry_after: float | None = None,
) -> grpc.Status:
    details = [
        _pack(
            error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=dict(metadata or {}))
        )
    ]
    if violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=f, description=d, reason=r
                        )
                        for f, d, r in violations
                    ]
                )
            )
        )
    if retry_after is not None:
        delay = error_details_pb2.RetryInfo()
        delay.retry_delay.FromNanoseconds(int(retry_after * 1e9))
        details.append(_pack(delay))
    status = status_pb2.Status(code=code.value[0], message=message, details=details)
    return rpc_status.to_status(status)


def domain_error_status(error: DomainError, domain: str, request_id: str | None) -> grpc.Status:
    metadata = dict(error.metadata)
    if request_id:
        metadata.setdefault("request_id", request_id)
    return build_status(
        GRPC_CODE[error.category],
        error.message,
        reason=error.reason,
        domain=domain,
        metadata=metadata,
        violations=[(v.field, v.description, v.reason) for v in error.violations],
        retry_after=error.retry_after if isinstance(error, ResourceExhausted) else None,
    )


def internal_error_status(domain: str, correlation_id: str) -> grpc.Status:
    return build_status(
        grpc.StatusCode.INTERNAL,
        f"internal error; quote correlation id {correlation_id} to support",
        reason="INTERNAL",
        domain=domain,
        metadata={"correlation_id": correlation_id},
    )


def unavailable_status(domain: str, what: str, request_id: str) -> grpc.Status:
    return build_status(
        grpc.StatusCode.UNAVAILABLE,
        f"{what} is unavailable; retry with backoff",
        reason=f"{what.upper().replace(' ', '_')}_UNAVAILABLE",
        domain=domain,
        metadata={"request_id": request_id},
    )


# --- reading statuses (clients and tests) -----------------------------------


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo detail of a failed call, if it carries one."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def bad_request(error: grpc.RpcError) -> error_details_pb2.BadRequest | None:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            return br
    return None


def retry_delay(error: grpc.RpcError) -> float | None:
    """The seconds a RetryInfo detail asks the caller to wait, if the call failed with one."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return float(info.retry_delay.ToNanoseconds()) / 1e9
    return None


def reason_of(error: grpc.RpcError) -> str | None:
    info = error_info(error)
    return info.reason if info is not None else None


__all__ = [
    "GRPC_CODE",
    "bad_request",
    "build_status",
    "code_pb2",
    "domain_error_status",
    "error_info",
    "internal_error_status",
    "reason_of",
    "retry_delay",
    "unavailable_status",
]
