"""Short builders for ledger domain objects in tests."""

from __future__ import annotations

from datetime import timedelta

from ledger.domain.model import (
    Account,
    Direction,
    Leg,
    MovementOp,
    NormalSide,
    PendingOp,
    PostPendingOp,
    ReversalOp,
    TransferRequest,
    VoidPendingOp,
)


def debit(account_id: str, amount: int, currency: str = "EUR") -> Leg:
    return Leg(account_id, Direction.DEBIT, amount, currency)


def credit(account_id: str, amount: int, currency: str = "EUR") -> Leg:
    return Leg(account_id, Direction.CREDIT, amount, currency)


def move(transfer_id: str, *legs: Leg, linked: bool = False) -> TransferRequest:
    return TransferRequest(transfer_id, MovementOp(tuple(legs)), linked)


def hold(
    transfer_id: str, *legs: Leg, timeout: timedelta | None = None, linked: bool = False
) -> TransferRequest:
    return TransferRequest(transfer_id, PendingOp(tuple(legs), timeout), linked)


def post(transfer_id: str, pending_id: str, *legs: Leg) -> TransferRequest:
    return TransferRequest(transfer_id, PostPendingOp(pending_id, tuple(legs)))


def void(transfer_id: str, pending_id: str) -> TransferRequest:
    return TransferRequest(transfer_id, VoidPendingOp(pending_id))


def reverse(
    transfer_id: str, original_id: str, shortfall: str = "", *, linked: bool = False
) -> TransferRequest:
    return TransferRequest(transfer_id, ReversalOp(original_id, shortfall), linked)


def account(
    account_id: str,
    currency: str = "EUR",
    side: NormalSide = NormalSide.CREDIT,
    *,
    no_overdraft: bool = False,
    no_credit_above_debits: bool = False,
) -> Account:
    return Account(
        id=account_id,
        currency=currency,
        normal_side=side,
        debits_must_not_exceed_credits=no_overdraft,
        credits_must_not_exceed_debits=no_credit_above_debits,
    )
