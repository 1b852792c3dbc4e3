"""How a payment moves forward: what a worker does for it next, what the answers of the ledger
and the bank do to it, and when it is looked at again. Pure.

Every payment with something left to do has ``next_action_at`` set
(``schedule``). A worker claims it when that time comes (``claim``), leasing it
so nobody else acts on it meanwhile, asks the ledger or the bank outside any
transaction, and applies the answer to the payment as it is by then
(``apply_answer``). An action that could not finish counts a retry and waits
longer each time (``backoff``). What operators must see is handed back as an
``Anomaly`` for the caller to log.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from payments.domain.bank import (
    BankPaymentView,
    LookupOutcome,
    LookupResult,
    SubmitOutcome,
    SubmitResult,
)
from payments.domain.ledger_plan import LedgerResult
from payments.domain.model import Action, BankStatus, LedgerStep, Payment
from payments.domain.policy import Policy
from payments.domain.states import PaymentState

# A void that finds nothing to release has nothing left to do.
VOID_DONE = frozenset({"PENDING_TRANSFER_NOT_FOUND", "ALREADY_VOIDED", "PENDING_TRANSFER_EXPIRED"})


@dataclass(frozen=True, slots=True)
class Anomaly:
    """Something about a payment that operators must see (logged as an error)."""

    event: str
    fields: Mapping[str, object] = field(default_factory=dict)


# --- when to look again ------------------------------------------------------------------------


def backoff(retries: int, cap: float, jitter: random.Random | None = None) -> timedelta:
    """Full-jitter exponential wait before trying an unfinished action again."""
    ceiling = min(cap, 0.25 * 2 ** min(retries, 20))
    draw = jitter.uniform if jitter is not None else random.uniform
    return timedelta(seconds=draw(ceiling / 2, ceiling))


def schedule(payment: Payment, now: datetime, policy: Policy) -> Anomaly | None:
    """Set when a worker should look at the payment next, from what it needs next.

    Returns an anomaly once per payment, when its retries reach ``policy.stuck_after``
    (the log line and ``payments_stuck`` are what an alert fires on).
    """
    action = payment.next_action()
    if action is Action.NONE:
        payment.next_action_at = None
        payment.retries = 0
    elif action is Action.POLL:
        payment.next_action_at = now + policy.status_poll
    elif payment.retries:
        payment.next_action_at = now + backoff(
            payment.retries, policy.retry_max_seconds, policy.jitter
        )
        if payment.retries == policy.stuck_after:
            return Anomaly(
                "payment cannot progress",
                {
                    "payment_id": payment.id,
                    "state": payment.state.name,
                    "action": action.value,
                    "retries": payment.retries,
                    "ledger_error": payment.ledger_error,
                },
            )
    else:
        payment.next_action_at = now
    return None


def lease(payment: Payment, now: datetime, policy: Policy) -> None:
    """Someone works on the payment now: nobody else takes it before the lease ends, and a
    worker does if that someone never reports back."""
    payment.leased_until = now + policy.lease
    payment.next_action_at = payment.leased_until


def lease_for_hold(payment: Payment, now: datetime, policy: Policy) -> None:
    """A new payment: leased to its creator when it places the hold itself, else scheduled."""
    if payment.state is PaymentState.CREATED and payment.outgoing:
        # The creator places the hold now; if it dies, a worker does after the lease.
        lease(payment, now, policy)
    else:
        # Nothing has failed yet for a new payment: there is nothing to report.
        schedule(payment, now, policy)


# --- claiming work ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Work:
    """A payment claimed for one action: a ledger step, or a call to the bank (step None)."""

    payment: Payment
    action: Action
    step: LedgerStep | None = None


def claim(payment: Payment, now: datetime, policy: Policy) -> Work | None:
    """Take a due payment for a round and lease it; None when it has nothing left to do.

    One ready for the bank moves to SUBMITTING here: from then on it can no longer be
    canceled, and the submission counts as made.
    """
    action = payment.next_action()
    step = None
    if action is Action.LEDGER:
        step = payment.pending_ledger_step()
    elif action is Action.PLACE_HOLD:
        step = LedgerStep.HOLD
    elif action is Action.SUBMIT:
        payment.start_submission(now)
        payment.bank_attempts += 1
    elif action is Action.NONE:
        payment.next_action_at = None
        return None
    lease(payment, now, policy)
    return Work(payment, action, step)


def book_now(payment: Payment, now: datetime, policy: Policy) -> Work | None:
    """After the bank's report: a ledger booking the payment now needs, leased to whoever
    makes it at once; None when there is none, or someone else is working on the payment."""
    step = payment.pending_ledger_step()
    free = payment.leased_until is None or payment.leased_until <= now
    if step is None or not free:
        return None
    lease(payment, now, policy)
    return Work(payment, Action.LEDGER, step)


# --- answers -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Answer:
    """What came back for one claimed payment (all None: no answer)."""

    ledger: LedgerResult | None = None
    submit: SubmitOutcome | None = None
    lookup: LookupOutcome | None = None
    # The bank had never seen the payment, and it was sent again (same key).
    resent: bool = False


def apply_hold_result(payment: Payment, result: LedgerResult | None, now: datetime) -> None:
    """The ledger's answer to the payment's hold (None: no answer came)."""
    if payment.state is not PaymentState.CREATED:
        return  # decided meanwhile (a worker after an expired lease); the ledger replays
    if result is None:
        payment.hold_unanswered()
        payment.retries += 1
    elif result.ok:
        payment.retries = 0
        payment.hold_placed(now)
    else:
        # The ledger records a refusal under the transfer id: asking again gives the same.
        payment.retries = 0
        payment.hold_refused(result.reason, now)


def apply_answer(payment: Payment, work: Work, answer: Answer, now: datetime) -> Anomaly | None:
    """Apply what the ledger or the bank answered for ``work`` to the payment as it is now."""
    if work.action is Action.PLACE_HOLD:
        apply_hold_result(payment, answer.ledger, now)
        return None
    if work.action is Action.LEDGER:
        assert work.step is not None
        return _apply_booking(payment, work.step, answer.ledger)
    if answer.resent:
        payment.bank_attempts += 1
    if answer.submit is not None:
        outcome = answer.submit
        if outcome.result is SubmitResult.ACCEPTED and outcome.payment is not None:
            return bank_reported(payment, outcome.payment.status, outcome.payment, now)
        if outcome.result is SubmitResult.REFUSED:
            payment.retries = 0
            payment.bank_refused(outcome.code, now)
        else:
            payment.retries += 1
        return None
    lookup = answer.lookup
    if lookup is not None and lookup.result is LookupResult.FOUND and lookup.payment is not None:
        return bank_reported(payment, lookup.payment.status, lookup.payment, now)
    payment.retries += 1
    return None


def bank_reported(
    payment: Payment, status: BankStatus, view: BankPaymentView, now: datetime
) -> Anomaly | None:
    """What the bank says of the payment (an answer or its feed), in any order."""
    before = payment.transition_count
    consistent = payment.bank_reported(
        status,
        now,
        bank_payment_id=view.bank_payment_id,
        failure_code=view.failure_code,
        settled_at=view.settled_at,
        returned_at=view.returned_at,
    )
    if payment.transition_count != before or status is BankStatus.PENDING:
        payment.retries = 0
    if consistent:
        return None
    return Anomaly(
        "bank report contradicts the payment",
        {"payment_id": payment.id, "state": payment.state.name, "bank_status": status.value},
    )


def _apply_booking(
    payment: Payment, step: LedgerStep, result: LedgerResult | None
) -> Anomaly | None:
    if payment.pending_ledger_step() is not step:
        return None  # already booked (or no longer needed)
    if result is None:
        payment.retries += 1
        return None
    if result.ok or (step is LedgerStep.VOID and result.reason in VOID_DONE):
        payment.retries = 0
        payment.ledger_step_done(step)
        return None
    payment.retries += 1
    payment.ledger_error = f"{step.suffix}: {result.reason}"
    return Anomaly(
        "ledger refused a booking; it will be retried",
        {
            "payment_id": payment.id,
            "step": step.suffix,
            "reason": result.reason,
            "message": result.message,
        },
    )
