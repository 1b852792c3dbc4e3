"""Payments' port to the ledger, over its gRPC contract.

Every call carries a deadline (the channel's default timeout, capped by the
incoming call's) and the transfer ids derived from the payment, so a retry of
any booking is a replay at the ledger, never a second booking. A call that
fails without an answer (unavailable, deadline exceeded...) raises
``LedgerUnavailable``: the caller retries later with the same ids.

One operation never costs another its answer here: an operation that cannot
even be expressed in the contract (an amount past int64) is refused alone
without being sent, and a request the ledger refuses as a whole (one malformed
item fails a batch) raises ``LedgerRequestRefused`` so the caller asks again
in parts (``use_cases.book``).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence

import grpc
import structlog
from astra.ledger.v1 import ledger_pb2 as pb
from astra.ledger.v1 import ledger_pb2_grpc
from chassis.grpc.status import reason_of

from payments.domain.ledger_plan import (
    AccountSpec,
    LedgerLeg,
    LedgerOperation,
    LedgerResult,
    OpKind,
    clearing_account_id,
)
from payments.domain.limits import RunningTotals
from payments.service_layer.ports import LedgerRequestRefused, LedgerUnavailable

_log = structlog.get_logger("payments.ledger")

# The most transfer ids one LookupTransfers call takes.
LOOKUP_LIMIT = 1000
# Transfers whose legs are postings (a partial post's legs are the amounts posted).
_POSTING_KINDS = frozenset(
    {pb.TRANSFER_KIND_MOVEMENT, pb.TRANSFER_KIND_POST_PENDING, pb.TRANSFER_KIND_REVERSAL}
)


def _leg(leg: LedgerLeg) -> pb.Leg:
    return pb.Leg(
        account_id=leg.account_id,
        direction=pb.DIRECTION_DEBIT if leg.debit else pb.DIRECTION_CREDIT,
        amount=leg.amount,
        currency=leg.currency,
    )


def transfer_spec(operation: LedgerOperation) -> pb.TransferSpec:
    spec = pb.TransferSpec(
        id=operation.transfer_id,
        metadata={"payment_id": operation.payment_id, "step": operation.step.suffix},
    )
    legs = [_leg(leg) for leg in operation.legs]
    if operation.kind is OpKind.PENDING:
        spec.pending.legs.extend(legs)
    elif operation.kind is OpKind.MOVEMENT:
        spec.movement.legs.extend(legs)
    elif operation.kind is OpKind.POST:
        spec.post_pending.pending_transfer_id = operation.target_transfer_id
    elif operation.kind is OpKind.VOID:
        spec.void_pending.pending_transfer_id = operation.target_transfer_id
    else:
        spec.reversal.transfer_id = operation.target_transfer_id
        spec.reversal.shortfall_account_id = operation.shortfall_account_id
    return spec


def _expressible(operation: LedgerOperation) -> pb.TransferSpec | LedgerResult:
    """The operation as the contract's message, or its refusal when it cannot be one."""
    try:
        return transfer_spec(operation)
    except (ValueError, TypeError) as error:
        _log.error(
            "a ledger operation cannot be expressed; refused without sending it",
            transfer_id=operation.transfer_id,
            error=str(error),
        )
        return LedgerResult(operation.transfer_id, False, "INVALID_LEDGER_OPERATION", str(error))


def _refusal(operation: LedgerOperation, error: grpc.RpcError) -> LedgerResult:
    return LedgerResult(
        operation.transfer_id, False, reason_of(error) or error.code().name, error.details() or ""
    )


def _unavailable(error: grpc.RpcError, what: str) -> LedgerUnavailable:
    code = error.code()
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        _log.error("the ledger refused payments' credentials", code=code.name, call=what)
    return LedgerUnavailable(f"{what}: {code.name} {error.details()}")


class GrpcLedger:
    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        self._opened: set[str] = set()
        self._lock = threading.Lock()

    def ensure_accounts(self, specs: Sequence[AccountSpec]) -> None:
        with self._lock:
            missing = [s for s in specs if s.id not in self._opened]
        for spec in missing:
            account = pb.Account(
                id=spec.id,
                currency=spec.currency,
                normal_side=pb.NORMAL_SIDE_DEBIT if spec.debit_normal else pb.NORMAL_SIDE_CREDIT,
                debits_must_not_exceed_credits=spec.no_overdraft,
                customer_id=spec.customer_id,
            )
            try:
                self._stub.OpenAccount(pb.OpenAccountRequest(account=account))
            except grpc.RpcError as error:
                if error.code() is grpc.StatusCode.INVALID_ARGUMENT:
                    # This account alone: bookings on it are refused (ACCOUNT_NOT_FOUND), no others.
                    _log.error(
                        "the ledger refused to open an account",
                        account_id=spec.id,
                        reason=reason_of(error),
                        message=error.details(),
                    )
                    continue
                if error.code() is not grpc.StatusCode.ALREADY_EXISTS:
                    raise _unavailable(error, "OpenAccount") from error
                # Opened before with other settings (by an operator): it exists, use it.
                _log.warning("ledger account exists with other settings", account_id=spec.id)
            with self._lock:
                self._opened.add(spec.id)

    def apply(self, operations: Sequence[LedgerOperation]) -> list[LedgerResult]:
        results: list[LedgerResult | None] = []
        sent: list[tuple[int, pb.TransferSpec]] = []
        for operation in operations:
            spec = _expressible(operation)
            if isinstance(spec, LedgerResult):
                results.append(spec)
            else:
                sent.append((len(results), spec))
                results.append(None)
        if sent:
            request = pb.CreateTransfersRequest(transfers=[spec for _, spec in sent])
            try:
                reply = self._stub.CreateTransfers(request)
            except grpc.RpcError as error:
                if error.code() is grpc.StatusCode.INVALID_ARGUMENT:
                    if len(sent) > 1:
                        raise LedgerRequestRefused(error.details() or "") from error
                    results[sent[0][0]] = _refusal(operations[sent[0][0]], error)
                    return [r for r in results if r is not None]
                raise _unavailable(error, "CreateTransfers") from error
            for (index, _), answer in zip(sent, reply.results, strict=True):
                results[index] = LedgerResult(answer.id, answer.ok, answer.reason, answer.message)
        return [r for r in results if r is not None]

    def running_totals(self, account_ids: Collection[str]) -> dict[str, RunningTotals]:
        totals: dict[str, RunningTotals] = {}
        for account_id in sorted(set(account_ids)):
            try:
                reply = self._stub.GetBalance(pb.GetBalanceRequest(account_id=account_id))
            except grpc.RpcError as error:
                if error.code() is grpc.StatusCode.NOT_FOUND:
                    continue
                raise _unavailable(error, "GetBalance") from error
            balance = reply.balance
            totals[account_id] = RunningTotals(
                balance.debits_posted,
                balance.credits_posted,
                balance.debits_pending,
                balance.credits_pending,
            )
        return totals

    def clearing_bookings(self, transfer_ids: Collection[str]) -> dict[str, int]:
        bookings: dict[str, int] = {}
        ids = sorted(set(transfer_ids))
        for start in range(0, len(ids), LOOKUP_LIMIT):
            request = pb.LookupTransfersRequest(transfer_ids=ids[start : start + LOOKUP_LIMIT])
            try:
                reply = self._stub.LookupTransfers(request)
            except grpc.RpcError as error:
                raise _unavailable(error, "LookupTransfers") from error
            for transfer in reply.transfers:
                if transfer.kind not in _POSTING_KINDS:
                    continue  # a hold, or its voiding: nothing posted
                legs = [
                    leg
                    for leg in transfer.legs
                    if leg.account_id == clearing_account_id(leg.currency)
                ]
                if legs:
                    bookings[transfer.id] = sum(
                        leg.amount if leg.direction == pb.DIRECTION_DEBIT else -leg.amount
                        for leg in legs
                    )
        return bookings
