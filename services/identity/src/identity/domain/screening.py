"""Sanctions screening of a customer at KYC. Pure.

A customer's name is screened when it submits KYC and again whenever a new version
of the list is loaded, while it is PENDING_REVIEW or VERIFIED (``Customer.screen``,
``Customer.rescreen``). A hit waits for an analyst: ReviewKyc approves (clears) it
only with a reason, or rejects (confirms) it; the decision, who made it and why are
recorded with the screening. A new hit on a VERIFIED customer takes it back to
PENDING_REVIEW (reason ``SANCTIONS_MATCH``): payments moves money only for VERIFIED
customers, so the customer moves none until an analyst decides. A hit an analyst
cleared is not raised again by later versions that match the same entry.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime

from chassis.kernel.audit import Requester
from chassis.kernel.errors import FailedPrecondition
from screening.matcher import Match, Outcome, Screener

SANCTIONS_MATCH = "SANCTIONS_MATCH"
SCREENING_ACTOR = "sanctions-screening"


class Decision(enum.Enum):
    CLEARED = "CLEARED"
    CONFIRMED = "CONFIRMED"


@dataclass(frozen=True, slots=True)
class CustomerScreening:
    outcome: Outcome
    list_version: str
    score: int
    screened_at: datetime
    match: Match | None = None
    decision: Decision | None = None
    decided_by: Requester | None = None
    decision_reason: str = ""

    @property
    def open_hit(self) -> bool:
        """A hit no analyst has decided on yet."""
        return self.outcome is Outcome.HIT and self.decision is None

    def decided(
        self, decision: Decision, requester: Requester | None, reason: str
    ) -> CustomerScreening:
        return replace(self, decision=decision, decided_by=requester, decision_reason=reason)


def screened(name: str, screener: Screener, now: datetime) -> CustomerScreening:
    found = screener.screen(name)
    return CustomerScreening(found.outcome, found.list_version, found.score, now, found.match)


def successor(earlier: CustomerScreening | None, found: CustomerScreening) -> CustomerScreening:
    """What is recorded after ``found``: a hit stays unless the new one is a hit too (a clear
    result does not erase what an analyst decides or decided on); a hit an analyst cleared
    stays cleared when the new one is on the same entry. A confirmed hit is not carried: the
    customer resubmitting after a rejection is a new case for an analyst."""
    if earlier is None or earlier.outcome is not Outcome.HIT:
        return found
    if found.outcome is not Outcome.HIT or found.match is None or earlier.match is None:
        return earlier
    if found.match.entry_uid == earlier.match.entry_uid:
        if earlier.decision is not Decision.CLEARED:
            return found
        return replace(
            found,
            decision=earlier.decision,
            decided_by=earlier.decided_by,
            decision_reason=earlier.decision_reason,
        )
    return found


def clearance_needs_reason(customer_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        "SANCTIONS_CLEARANCE_REASON_REQUIRED",
        f"customer {customer_id} has a sanctions hit: approving clears it, and needs a reason",
        metadata={"id": customer_id},
    )
