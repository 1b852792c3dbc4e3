"""The payment aggregate: its state, its history, the ledger bookings it needs, its next step.

Pure Python. Every change of state goes through ``Payment.transition`` (which
checks ``states.TRANSITIONS``), is appended to the payment's history and
recorded as a ``PaymentStateChanged`` event for the outbox.
"""

from __future__ import annotations

import copy
import enum
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from chassis.kernel.audit import Requester
from chassis.kernel.errors import DomainError, ErrorCategory, FailedPrecondition

from payments.domain.events import PaymentStateChanged
from payments.domain.states import (
    OUTGOING,
    UNSUCCESSFUL,
    PaymentKind,
    PaymentState,
    check_transition,
)

if TYPE_CHECKING:
    from payments.domain.monitoring import Alert
    from payments.domain.risk_score import RiskDecision
    from payments.domain.sanctions import SanctionsScreening

S = PaymentState


class LedgerStep(enum.IntFlag):
    """Bookings a payment makes in the ledger, each under an id derived from the payment."""

    HOLD = 1  # payout, refund: pending transfer of amount + fee out of the customer's account
    POST = 2  # payout, refund: post that hold when the bank settled
    VOID = 4  # payout, refund: release the hold when nothing was paid
    CREDIT = 8  # collection: credit the customer when the bank settled
    REVERSE = 16  # after a return: the reversal of POST or CREDIT

    @property
    def suffix(self) -> str:
        return {1: "hold", 2: "post", 4: "void", 8: "credit", 16: "rev"}[int(self)]


def transfer_id(payment_id: str, step: LedgerStep) -> str:
    """The ledger transfer id of a payment's step: the same on every retry (never booked twice)."""
    return f"tr_{payment_id}_{step.suffix}"


class Action(enum.Enum):
    """What a worker does next for a payment."""

    NONE = "none"
    PLACE_HOLD = "place_hold"  # outgoing payment in CREATED: hold the funds
    SUBMIT = "submit"  # ready: send to the bank (first time)
    RESOLVE = "resolve"  # sent, outcome unknown: ask the bank, send again only if it has none
    POLL = "poll"  # submitted: ask the bank whether it settled (safety net for the feed)
    LEDGER = "ledger"  # a ledger booking of the current state is still to be made


class BankStatus(enum.Enum):
    PENDING = "pending"
    SETTLED = "settled"
    FAILED = "failed"
    RETURNED = "returned"


@dataclass(frozen=True, slots=True)
class BankAccount:
    account_number: str
    holder_name: str = ""
    # ISO 3166-1 alpha-2, or empty when not given.
    country: str = ""


@dataclass(frozen=True, slots=True)
class Transition:
    from_state: PaymentState | None
    to_state: PaymentState
    reason: str
    occurred_at: datetime


def fingerprint(*parts: object) -> str:
    """A stable digest of a request's content, for idempotent replays (AIP-155)."""
    return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    """What a client asked for; the idempotency key is ``payment_id``."""

    payment_id: str
    kind: PaymentKind
    customer_id: str
    amount: int
    currency: str
    counterparty: BankAccount
    description: str = ""
    original_payment_id: str = ""
    # Who asked (not part of the content a replay compares).
    requested_by: Requester | None = None

    def fingerprint(self) -> str:
        # Without the counterparty: an unkeyed digest of an account number would let anyone
        # holding the table guess it back; a replay compares the (opened) counterparty instead.
        return fingerprint(
            self.payment_id,
            int(self.kind),
            self.customer_id,
            self.amount,
            self.currency,
            self.description,
            self.original_payment_id,
        )


@dataclass(eq=False)
class Payment:
    id: str
    kind: PaymentKind
    customer_id: str
    amount: int
    currency: str
    fee: int
    counterparty: BankAccount
    description: str
    original_payment_id: str
    fingerprint: str
    ledger_account_id: str
    state: PaymentState
    created_at: datetime
    updated_at: datetime
    reason: str = ""
    review_required: bool = False
    review_reason: str = ""
    review_outcome: str = ""
    bank_payment_id: str = ""
    bank_attempts: int = 0
    bank_settled_at: datetime | None = None
    bank_returned_at: datetime | None = None
    ledger_done: LedgerStep = field(default_factory=lambda: LedgerStep(0))
    # A hold was asked for without a known answer: it may exist.
    hold_uncertain: bool = False
    ledger_error: str = ""
    # When a worker should look at the payment next (None: nothing to do).
    next_action_at: datetime | None = None
    # Until then someone is working on it (a hold or a bank call in flight).
    leased_until: datetime | None = None
    # Consecutive attempts of the current action that could not finish (for backoff).
    retries: int = 0
    version: int = 0
    transition_count: int = 0
    # W3C traceparent of the call that created it: the work done later joins that trace.
    trace_context: str = ""
    # Who created it, and who approved or rejected it with what note (None: unknown,
    # e.g. made before payments recorded it).
    created_by: Requester | None = None
    reviewed_by: Requester | None = None
    review_note: str = ""
    # The counterparty's sanctions screening (``domain.sanctions``); None when not screened.
    sanctions: SanctionsScreening | None = None
    # Loaded on demand (repository) and appended to by transitions.
    history: list[Transition] = field(default_factory=list)
    new_transitions: list[Transition] = field(default_factory=list)
    events: list[PaymentStateChanged] = field(default_factory=list)
    # Computed when read: for a collection, its live refunds.
    refunded_amount: int = 0
    # Why the fraud rules, the score and monitoring let it go on, held or declined it
    # (payouts and collections decided since they were recorded; None before).
    risk_decision: RiskDecision | None = None
    # Alerts its decision raised, to be stored with it (not kept once stored).
    alerts: list[Alert] = field(default_factory=list)

    # --- creation and transitions --------------------------------------------------------

    @classmethod
    def create(
        cls,
        request: PaymentRequest,
        *,
        fee: int,
        ledger_account_id: str,
        now: datetime,
    ) -> Payment:
        payment = cls(
            id=request.payment_id,
            kind=request.kind,
            customer_id=request.customer_id,
            amount=request.amount,
            currency=request.currency,
            fee=fee,
            counterparty=request.counterparty,
            description=request.description,
            original_payment_id=request.original_payment_id,
            fingerprint=request.fingerprint(),
            ledger_account_id=ledger_account_id,
            state=S.CREATED,
            created_at=now,
            updated_at=now,
            created_by=request.requested_by,
        )
        payment._record(None, S.CREATED, "CREATED", now)
        return payment

    def transition(self, target: PaymentState, reason: str, now: datetime) -> None:
        check_transition(self.id, self.kind, self.state, target)
        source = self.state
        self.state = target
        self.updated_at = now
        if target in UNSUCCESSFUL or target is S.RETURNED:
            self.reason = reason
        self._record(source, target, reason, now)

    def _record(
        self, source: PaymentState | None, target: PaymentState, reason: str, now: datetime
    ) -> None:
        entry = Transition(source, target, reason, now)
        self.history.append(entry)
        self.new_transitions.append(entry)
        self.transition_count += 1
        snapshot = copy.copy(self)
        snapshot.history = []
        snapshot.new_transitions = []
        snapshot.events = []
        self.events.append(PaymentStateChanged(snapshot, source, target, reason, now))

    @property
    def outgoing(self) -> bool:
        return self.kind in OUTGOING

    # --- decisions before the bank ---------------------------------------------------------

    def decline(self, reason: str, now: datetime) -> None:
        self.transition(S.DECLINED, reason, now)

    def hold_placed(self, now: datetime) -> None:
        """The ledger holds the funds: wait for a reviewer, or go to the bank."""
        self.ledger_done |= LedgerStep.HOLD
        self.hold_uncertain = False
        if self.review_required:
            self.transition(S.IN_REVIEW, self.review_reason, now)
        else:
            self.transition(S.FUNDS_HELD, "FUNDS_HELD", now)

    def hold_refused(self, reason: str, now: datetime) -> None:
        """The ledger refused the hold for good (e.g. INSUFFICIENT_FUNDS): nothing is held."""
        self.hold_uncertain = False
        self.decline(reason, now)

    def hold_unanswered(self) -> None:
        """The hold was asked for but no answer came: it may exist; the worker asks again."""
        self.hold_uncertain = True

    def require_review(self, reason: str, now: datetime) -> None:
        """A reviewer decides before the bank has it: held now where nothing more must
        happen first (FUNDS_HELD, a collection still CREATED); an outgoing payment still
        CREATED is held once its funds are."""
        self.review_required = True
        self.review_reason = reason
        if self.state is S.FUNDS_HELD or (self.state is S.CREATED and not self.outgoing):
            self.hold_for_review(reason, now)

    def hold_for_review(self, reason: str, now: datetime) -> None:
        """Back to a reviewer before the bank has it (a new sanctions hit, or the customer no
        longer verified); an earlier review, if any, is in the history and is decided again."""
        self.review_outcome = ""
        self.transition(S.IN_REVIEW, reason, now)

    def approve(self, now: datetime, reviewer: Requester | None = None, note: str = "") -> None:
        if self.review_outcome == "APPROVED":
            return
        target = S.FUNDS_HELD if self.outgoing else S.SUBMITTING
        check_transition(self.id, self.kind, self.state, target)
        self.review_outcome = "APPROVED"
        self.reviewed_by = reviewer
        self.review_note = note
        if target is S.SUBMITTING:
            self.start_submission(now, "APPROVED_IN_REVIEW")
        else:
            self.transition(target, "APPROVED_IN_REVIEW", now)

    def reject(self, now: datetime, reviewer: Requester | None = None, note: str = "") -> None:
        if self.review_outcome == "REJECTED":
            return
        check_transition(self.id, self.kind, self.state, S.DECLINED)
        self.review_outcome = "REJECTED"
        self.reviewed_by = reviewer
        self.review_note = note
        self.decline("REJECTED_IN_REVIEW", now)

    def cancel(self, now: datetime, reason: str = "") -> None:
        if self.state is S.CANCELED:
            return
        check_transition(self.id, self.kind, self.state, S.CANCELED)
        if self.state is S.CREATED and self.leased_until is not None and self.leased_until > now:
            # The hold is being placed right now; cancelling now could strand it.
            raise DomainError(
                "PAYMENT_BUSY",
                f"payment {self.id} is being processed; retry the cancel shortly",
                metadata={"payment_id": self.id},
                category=ErrorCategory.ABORTED,
            )
        self.transition(S.CANCELED, reason or "CANCELED_BY_CLIENT", now)

    # --- the bank -------------------------------------------------------------------------

    def start_submission(self, now: datetime, reason: str = "SUBMITTING") -> None:
        """Committed to send: from here on the only way forward is through the bank."""
        self.transition(S.SUBMITTING, reason, now)

    def bank_refused(self, code: str, now: datetime) -> None:
        """The bank said no at submission: nothing was paid."""
        if self.state is S.SUBMITTING:
            self.transition(S.FAILED, bank_reason(code), now)

    def bank_reported(
        self,
        status: BankStatus,
        now: datetime,
        *,
        bank_payment_id: str = "",
        failure_code: str = "",
        settled_at: datetime | None = None,
        returned_at: datetime | None = None,
    ) -> bool:
        """Apply what the bank says; reports in any order and repeated are fine.

        Returns False when the report contradicts the payment (e.g. the bank
        has a payment we canceled): the caller logs it, reconciliation shows it.
        """
        if bank_payment_id:
            self.bank_payment_id = bank_payment_id
        if self.state in (S.CREATED, S.IN_REVIEW, S.FUNDS_HELD, S.CANCELED, S.DECLINED):
            return False
        if status is BankStatus.FAILED:
            if self.state in (S.SUBMITTING, S.SUBMITTED):
                self.transition(S.FAILED, bank_reason(failure_code or "failed"), now)
                return True
            return self.state is S.FAILED
        if self.state is S.FAILED:
            return False
        if self.state is S.SUBMITTING:
            self.transition(S.SUBMITTED, "BANK_ACCEPTED", now)
        if status is BankStatus.PENDING:
            return True
        if self.state is S.SUBMITTED:
            self.bank_settled_at = settled_at or now
            self.transition(S.SETTLED, "BANK_SETTLED", now)
        if status is BankStatus.RETURNED and self.state is S.SETTLED:
            self.bank_returned_at = returned_at or now
            self.transition(S.RETURNED, "BANK_RETURNED", now)
        return True

    # --- the ledger -------------------------------------------------------------------------

    def required_ledger_steps(self) -> tuple[LedgerStep, ...]:
        """The bookings the current state needs, in order."""
        if self.outgoing:
            if self.state is S.CREATED:
                return ()  # the hold decides where the payment goes: an action, not a follow-up
            if self.state in UNSUCCESSFUL:
                held = LedgerStep.HOLD in self.ledger_done or self.hold_uncertain
                return (LedgerStep.VOID,) if held else ()
            if self.state is S.SETTLED:
                return (LedgerStep.HOLD, LedgerStep.POST)
            if self.state is S.RETURNED:
                return (LedgerStep.HOLD, LedgerStep.POST, LedgerStep.REVERSE)
            return (LedgerStep.HOLD,)
        if self.state is S.SETTLED:
            return (LedgerStep.CREDIT,)
        if self.state is S.RETURNED:
            return (LedgerStep.CREDIT, LedgerStep.REVERSE)
        return ()

    def pending_ledger_step(self) -> LedgerStep | None:
        for step in self.required_ledger_steps():
            if step not in self.ledger_done:
                return step
        return None

    def ledger_step_done(self, step: LedgerStep) -> None:
        self.ledger_done |= step
        self.ledger_error = ""
        if step is LedgerStep.VOID:
            self.hold_uncertain = False

    # --- what next --------------------------------------------------------------------------

    def next_action(self) -> Action:
        if self.pending_ledger_step() is not None:
            return Action.LEDGER
        state = self.state
        if state is S.CREATED:
            return Action.PLACE_HOLD if self.outgoing else Action.SUBMIT
        if state is S.FUNDS_HELD:
            return Action.SUBMIT
        if state is S.SUBMITTING:
            return Action.RESOLVE
        if state is S.SUBMITTED:
            return Action.POLL
        return Action.NONE

    def take_events(self) -> list[PaymentStateChanged]:
        events, self.events = self.events, []
        return events


def bank_reason(code: str) -> str:
    """A bank's error code as a stable reason: ``account_closed`` -> ``BANK_ACCOUNT_CLOSED``."""
    cleaned = "".join(c if c.isalnum() else "_" for c in code.upper()).strip("_")[:40]
    return f"BANK_{cleaned or 'FAILED'}"


def not_refundable(payment: Payment, why: str) -> FailedPrecondition:
    return FailedPrecondition(
        "PAYMENT_NOT_REFUNDABLE",
        f"payment {payment.id} cannot be refunded: {why}",
        metadata={"payment_id": payment.id},
    )
