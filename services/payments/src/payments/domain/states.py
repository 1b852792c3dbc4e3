"""The payment state machine: every allowed transition, in one table.

A transition not in ``TRANSITIONS`` for the payment's kind is illegal, and
``check_transition`` refuses it with FAILED_PRECONDITION (ILLEGAL_TRANSITION).
"""

from __future__ import annotations

import enum

from chassis.kernel.errors import FailedPrecondition


class PaymentKind(enum.IntEnum):
    PAYOUT = 1
    COLLECTION = 2
    REFUND = 3


class PaymentState(enum.IntEnum):
    CREATED = 1
    IN_REVIEW = 2
    FUNDS_HELD = 3
    SUBMITTING = 4
    SUBMITTED = 5
    SETTLED = 6
    FAILED = 7
    CANCELED = 8
    DECLINED = 9
    RETURNED = 10


PAYOUT, COLLECTION, REFUND = PaymentKind.PAYOUT, PaymentKind.COLLECTION, PaymentKind.REFUND
# Kinds that send money out of a customer's ledger account, holding it first.
OUTGOING = frozenset({PAYOUT, REFUND})
ALL_KINDS = frozenset(PaymentKind)

S = PaymentState
TRANSITIONS: dict[tuple[PaymentState, PaymentState], frozenset[PaymentKind]] = {
    (S.CREATED, S.FUNDS_HELD): OUTGOING,  # the ledger hold was placed
    (S.CREATED, S.IN_REVIEW): ALL_KINDS,  # fraud rules asked for a review
    (S.CREATED, S.SUBMITTING): frozenset({COLLECTION}),  # picked up for the bank
    (S.CREATED, S.DECLINED): ALL_KINDS,  # KYC, fraud rules or insufficient funds
    (S.CREATED, S.CANCELED): ALL_KINDS,
    (S.IN_REVIEW, S.FUNDS_HELD): OUTGOING,  # approved
    (S.IN_REVIEW, S.SUBMITTING): frozenset({COLLECTION}),  # approved
    (S.IN_REVIEW, S.DECLINED): ALL_KINDS,  # rejected by the reviewer
    (S.IN_REVIEW, S.CANCELED): ALL_KINDS,
    (S.FUNDS_HELD, S.SUBMITTING): OUTGOING,  # picked up for the bank
    (S.FUNDS_HELD, S.CANCELED): OUTGOING,
    (S.FUNDS_HELD, S.IN_REVIEW): OUTGOING,  # a new sanctions list or a customer taken back
    (S.SUBMITTING, S.SUBMITTED): ALL_KINDS,  # the bank accepted it
    (S.SUBMITTING, S.FAILED): ALL_KINDS,  # the bank refused it
    (S.SUBMITTED, S.SETTLED): ALL_KINDS,
    (S.SUBMITTED, S.FAILED): ALL_KINDS,
    (S.SETTLED, S.RETURNED): ALL_KINDS,
}

TERMINAL = frozenset({S.FAILED, S.CANCELED, S.DECLINED, S.RETURNED})
# Not yet given to the bank: a client may still cancel.
BEFORE_SUBMISSION = frozenset({S.CREATED, S.IN_REVIEW, S.FUNDS_HELD})
# States after which no money moved, and the money held (if any) is released.
UNSUCCESSFUL = frozenset({S.FAILED, S.CANCELED, S.DECLINED})


def is_allowed(kind: PaymentKind, source: PaymentState, target: PaymentState) -> bool:
    return kind in TRANSITIONS.get((source, target), frozenset())


def check_transition(
    payment_id: str, kind: PaymentKind, source: PaymentState, target: PaymentState
) -> None:
    if not is_allowed(kind, source, target):
        raise FailedPrecondition(
            "ILLEGAL_TRANSITION",
            f"a {kind.name.lower()} in state {source.name} cannot become {target.name}",
            metadata={"payment_id": payment_id, "state": source.name, "requested": target.name},
        )
