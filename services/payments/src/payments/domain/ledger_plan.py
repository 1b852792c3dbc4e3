"""Which ledger bookings a payment makes, on which accounts, under which ids. Pure.

Accounts:
- the customer's account per currency, ``acct_<customer id>_<CCY>``: credit-normal
  (what the suite owes the customer) and never overdrawn
  (``debits_must_not_exceed_credits``), so concurrent payouts cannot overspend;
- the bank clearing account per currency, ``acct_bank_clearing_<CCY>``:
  debit-normal, the money the suite holds at the bank;
- the fee revenue account per currency, ``acct_fee_revenue_<CCY>``: credit-normal;
- the returns receivable per currency, ``acct_returns_receivable_<CCY>``:
  debit-normal, what customers owe because a collection came back after they
  had spent its money.

Bookings (ids from ``model.transfer_id``):
- payout / refund HOLD: pending; debit customer amount + fee, credit clearing
  amount, credit fee revenue fee (its own leg of the same transfer);
  POST on settlement, VOID when nothing was paid, REVERSE (of POST) on a return;
- collection CREDIT on settlement: debit clearing, credit customer;
  REVERSE (of CREDIT) on a return, with the returns receivable as its
  shortfall account: the customer gives back what is available, the
  receivable is debited with the rest, and clearing is always credited the
  full amount the bank took back. A return is never refused for lack of funds.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass

from chassis.kernel.ids import MAX_ID_BODY

from payments.domain.model import LedgerStep, Payment, transfer_id


class OpKind(enum.Enum):
    PENDING = "pending"
    POST = "post"
    VOID = "void"
    MOVEMENT = "movement"
    REVERSE = "reverse"


@dataclass(frozen=True, slots=True)
class LedgerLeg:
    account_id: str
    debit: bool
    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class LedgerOperation:
    payment_id: str
    step: LedgerStep
    transfer_id: str
    kind: OpKind
    legs: tuple[LedgerLeg, ...] = ()
    # For post, void and reverse: the transfer acted on.
    target_transfer_id: str = ""
    # For reverse: the account that takes what the customer's account cannot give back.
    shortfall_account_id: str = ""


@dataclass(frozen=True, slots=True)
class LedgerResult:
    """The ledger's answer to one operation: booked, or refused for good with a reason (the
    ledger records a refusal under the transfer id, so asking again gives the same)."""

    transfer_id: str
    ok: bool
    reason: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """An account payments opens (idempotently) before it books on it."""

    id: str
    currency: str
    debit_normal: bool
    no_overdraft: bool = False
    customer_id: str = ""


# Customer account ids stay within 64 characters ("acct_" and 59), one less than the
# ledger's contract allows: every ledger database ever deployed stores them.
MAX_CUSTOMER_ACCOUNT_BODY = MAX_ID_BODY - 1
# The account of a customer whose id is too long to spell out keeps a digest of the id instead.
_DIGEST_FORM = re.compile(r"cus_h[0-9a-f]{40}")


def customer_account_id(customer_id: str, currency: str) -> str:
    """``acct_<customer id>_<CCY>``, a valid ledger account id for every valid customer id.

    A customer id too long for that ("cus_" + 52 to 60) is replaced by
    ``cus_h`` and 40 hex digits of its SHA-256. So is a customer id that
    already has exactly that form: spelled out, its account would be another
    customer's digest account, which a customer could otherwise claim by
    choosing its id.
    """
    body = f"{customer_id}_{currency}"
    if len(body) > MAX_CUSTOMER_ACCOUNT_BODY or _DIGEST_FORM.fullmatch(customer_id):
        digest = hashlib.sha256(customer_id.encode()).hexdigest()[:40]
        body = f"cus_h{digest}_{currency}"
    return f"acct_{body}"


def house_account_ids(currency: str) -> tuple[str, ...]:
    """The accounts every customer's payments in ``currency`` share."""
    return (
        clearing_account_id(currency),
        fee_account_id(currency),
        returns_receivable_account_id(currency),
    )


def clearing_account_id(currency: str) -> str:
    return f"acct_bank_clearing_{currency}"


def fee_account_id(currency: str) -> str:
    return f"acct_fee_revenue_{currency}"


def returns_receivable_account_id(currency: str) -> str:
    return f"acct_returns_receivable_{currency}"


def accounts_for(payment: Payment) -> tuple[AccountSpec, ...]:
    currency = payment.currency
    receivable = (
        ()
        if payment.outgoing
        else (AccountSpec(returns_receivable_account_id(currency), currency, debit_normal=True),)
    )
    return (
        AccountSpec(
            payment.ledger_account_id,
            currency,
            debit_normal=False,
            no_overdraft=True,
            customer_id=payment.customer_id,
        ),
        AccountSpec(clearing_account_id(currency), currency, debit_normal=True),
        AccountSpec(fee_account_id(currency), currency, debit_normal=False),
        *receivable,
    )


def operation_for(payment: Payment, step: LedgerStep) -> LedgerOperation:
    tid = transfer_id(payment.id, step)
    currency = payment.currency
    customer = payment.ledger_account_id
    clearing = clearing_account_id(currency)
    if step is LedgerStep.HOLD:
        legs = [
            LedgerLeg(customer, True, payment.amount + payment.fee, currency),
            LedgerLeg(clearing, False, payment.amount, currency),
        ]
        if payment.fee:
            legs.append(LedgerLeg(fee_account_id(currency), False, payment.fee, currency))
        return LedgerOperation(payment.id, step, tid, OpKind.PENDING, tuple(legs))
    if step is LedgerStep.POST:
        hold = transfer_id(payment.id, LedgerStep.HOLD)
        return LedgerOperation(payment.id, step, tid, OpKind.POST, target_transfer_id=hold)
    if step is LedgerStep.VOID:
        hold = transfer_id(payment.id, LedgerStep.HOLD)
        return LedgerOperation(payment.id, step, tid, OpKind.VOID, target_transfer_id=hold)
    if step is LedgerStep.CREDIT:
        legs = [
            LedgerLeg(clearing, True, payment.amount, currency),
            LedgerLeg(customer, False, payment.amount, currency),
        ]
        return LedgerOperation(payment.id, step, tid, OpKind.MOVEMENT, tuple(legs))
    # A returned payout gives the customer money back: no limit can refuse it. A
    # returned collection takes money back that may have been spent since.
    booked = LedgerStep.POST if payment.outgoing else LedgerStep.CREDIT
    return LedgerOperation(
        payment.id,
        step,
        tid,
        OpKind.REVERSE,
        target_transfer_id=transfer_id(payment.id, booked),
        shortfall_account_id="" if payment.outgoing else returns_receivable_account_id(currency),
    )


def clearing_amount(payment: Payment, step: LedgerStep) -> int:
    """The signed change (debit positive) a step posts to the clearing account."""
    if step is LedgerStep.POST:
        return -payment.amount
    if step is LedgerStep.CREDIT:
        return payment.amount
    if step is LedgerStep.REVERSE:
        return payment.amount if payment.outgoing else -payment.amount
    return 0
