"""Sanctions screening of a payment's counterparty: what a hit does to the payment. Pure.

A payout's or collection's counterparty (holder name, and country where given)
is screened when the request arrives, before it joins a group (``screen_request``;
no lock waits for it), against the list the process loaded (``screening.Screener``),
and recorded when the payment is decided (``apply_screening``). A hit holds the
payment for review (review reason ``SANCTIONS_MATCH``): an outgoing one once its
funds are held, a collection at once; so does a counterparty without a holder name,
which cannot be screened (``SANCTIONS_NOT_SCREENED``). The screening, hit or clear,
is recorded with the payment with the list's version; an analyst approves or rejects it
(ApprovePayment / RejectPayment, recorded as ``reviewed_by`` and ``review_note``).

A new list version re-screens the payments not yet given to the bank
(``rescreen``): a new hit holds one that is not held (FUNDS_HELD goes back to
IN_REVIEW; a CREATED one will be held when its hold is placed), unless an
analyst already approved a hit on the same entry. A hit stays recorded when a
later version no longer matches: it is what the analyst decided on.
Refunds are not screened: they go back to an account screened when it paid us.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from screening.matcher import Match, Outcome, Screener

from payments.domain.model import BankAccount, Payment, PaymentRequest
from payments.domain.states import PaymentKind, PaymentState

SANCTIONS_MATCH = "SANCTIONS_MATCH"
# A counterparty without a holder name cannot be screened: an analyst looks at it, as a
# payee named nowhere must not be the way around the list.
SANCTIONS_NOT_SCREENED = "SANCTIONS_NOT_SCREENED"
SCREENED_KINDS = frozenset({PaymentKind.PAYOUT, PaymentKind.COLLECTION})
# Not yet given to the bank: a new list version re-screens these.
OPEN_STATES = frozenset({PaymentState.CREATED, PaymentState.IN_REVIEW, PaymentState.FUNDS_HELD})


@dataclass(frozen=True, slots=True)
class SanctionsScreening:
    """One screening of a payment's counterparty, as recorded with the payment."""

    outcome: Outcome
    list_version: str
    score: int
    screened_at: datetime
    match: Match | None = None

    @property
    def hit(self) -> bool:
        return self.outcome is Outcome.HIT


def screen(party: BankAccount, screener: Screener, now: datetime) -> SanctionsScreening:
    found = screener.screen(party.holder_name, party.country)
    return SanctionsScreening(found.outcome, found.list_version, found.score, now, found.match)


def screen_request(
    request: PaymentRequest, screener: Screener | None, now: datetime
) -> SanctionsScreening | None:
    """A new payment's counterparty screened (None: screening is off, or a refund). Done
    before the creation joins a group: it reads nothing, and no lock waits for it."""
    if screener is None or request.kind not in SCREENED_KINDS:
        return None
    return screen(request.counterparty, screener, now)


def review_reason(screening: SanctionsScreening) -> str | None:
    """Why a screening asks for an analyst: a hit, or a name it could not screen."""
    if screening.hit:
        return SANCTIONS_MATCH
    if screening.outcome is Outcome.NOT_SCREENED:
        return SANCTIONS_NOT_SCREENED
    return None


def apply_screening(payment: Payment, screening: SanctionsScreening | None) -> None:
    """Record a new payment's screening; a hit, or a counterparty without a name, asks for
    a review (before any fraud reason)."""
    if screening is None:
        return
    payment.sanctions = screening
    reason = review_reason(screening)
    if reason is not None:
        payment.review_required = True
        payment.review_reason = reason


def needs_rescreen(payment: Payment, screener: Screener) -> bool:
    return (
        payment.kind in SCREENED_KINDS
        and payment.state in OPEN_STATES
        and (payment.sanctions is None or payment.sanctions.list_version != screener.version)
    )


def rescreen(payment: Payment, screener: Screener, now: datetime) -> bool:
    """Screen an open payment again with a new list version; True when it changed."""
    if not needs_rescreen(payment, screener):
        return False
    found = screen(payment.counterparty, screener, now)
    earlier = payment.sanctions
    if not found.hit:
        if earlier is not None and earlier.hit:
            return False  # the hit an analyst decides on stays recorded
        payment.sanctions = found
        if found.outcome is Outcome.NOT_SCREENED and payment.review_outcome != "APPROVED":
            payment.require_review(SANCTIONS_NOT_SCREENED, now)
        return True
    assert found.match is not None
    cleared = (
        earlier is not None
        and earlier.match is not None
        and earlier.match.entry_uid == found.match.entry_uid
        and payment.review_outcome == "APPROVED"
    )
    payment.sanctions = found
    if cleared:
        return True
    payment.require_review(SANCTIONS_MATCH, now)
    return True
