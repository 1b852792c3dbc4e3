"""Sanctions screening of customers at KYC in identity, on the in-memory fakes."""

from __future__ import annotations

import dataclasses

import pytest
from chassis.kernel.audit import Requester
from chassis.kernel.errors import FailedPrecondition
from hypothesis import given, settings
from hypothesis import strategies as st
from identity.domain.events import CustomerKycChanged
from identity.domain.model import CustomerSpec, CustomerView, KycDecision, KycStatus
from identity.domain.screening import SANCTIONS_MATCH, Decision
from identity.entrypoints.admin import rescreen_all
from identity.service_layer import use_cases
from screening.matcher import Outcome, Screener
from screening.sdn import SanctionsList, SdnEntry

from tests.unit.test_identity_use_cases import Identity

LISTED = SdnEntry("8001", "KORVANI, Dashel Miro", "individual", ("SDGT",))
LATER = SdnEntry("8002", "PELLATRO, Marin", "individual", ("CYBER2",))
ANALYST = Requester("cli_analyst", None, "req-review")


def screener(*entries: SdnEntry, version: str = "v1") -> Screener:
    return Screener(SanctionsList(version, entries), 90)


def screened_identity(list_: Screener) -> Identity:
    made = Identity()
    made.deps = dataclasses.replace(made.deps, screener=list_)
    return made


def submitted(identity: Identity, customer_id: str, name: str) -> None:
    spec = CustomerSpec(customer_id, name, f"{customer_id}@example.com")
    use_cases.create_customer(identity.deps, spec)
    use_cases.submit_kyc(identity.deps, f"kyc_{customer_id}_s", customer_id, "tester")


def review(
    identity: Identity, customer_id: str, decision: KycDecision, reason: str, n: int = 0
) -> CustomerView:
    return use_cases.review_kyc(
        identity.deps, f"kyc_{customer_id}_r{n}", customer_id, decision, reason, "analyst", ANALYST
    )


def test_a_listed_customer_is_approved_only_with_a_reason_and_the_clearance_is_recorded() -> None:
    identity = screened_identity(screener(LISTED))
    submitted(identity, "cus_hit", "Dashel Korvani")
    view = use_cases.get_customer(identity.deps, "cus_hit")
    assert view.sanctions is not None
    assert view.sanctions.outcome is Outcome.HIT
    assert view.sanctions.open_hit
    assert view.sanctions.match is not None
    assert view.sanctions.match.entry_uid == "8001"
    with pytest.raises(FailedPrecondition) as refused:
        review(identity, "cus_hit", KycDecision.APPROVE, " ")
    assert refused.value.reason == "SANCTIONS_CLEARANCE_REASON_REQUIRED"
    assert use_cases.get_customer(identity.deps, "cus_hit").kyc_status is KycStatus.PENDING_REVIEW
    approved = review(identity, "cus_hit", KycDecision.APPROVE, "namesake: other DOB", 1)
    assert approved.kyc_status is KycStatus.VERIFIED
    assert approved.sanctions is not None
    assert (approved.sanctions.decision, approved.sanctions.decided_by) == (
        Decision.CLEARED,
        ANALYST,
    )
    assert approved.sanctions.decision_reason == "namesake: other DOB"


def test_a_rejection_confirms_the_hit_and_a_clean_customer_needs_no_reason() -> None:
    identity = screened_identity(screener(LISTED))
    submitted(identity, "cus_hit", "korvani, dashel")
    rejected = review(identity, "cus_hit", KycDecision.REJECT, "confirmed match")
    assert rejected.kyc_status is KycStatus.REJECTED
    assert rejected.sanctions is not None
    assert rejected.sanctions.decision is Decision.CONFIRMED
    assert rejected.sanctions.decision_reason == "confirmed match"
    # Resubmitted after the rejection: a new case, held for an analyst again.
    use_cases.submit_kyc(identity.deps, "kyc_cus_hit_s2", "cus_hit", "tester")
    again = use_cases.get_customer(identity.deps, "cus_hit")
    assert again.sanctions is not None
    assert again.sanctions.open_hit
    with pytest.raises(FailedPrecondition):
        review(identity, "cus_hit", KycDecision.APPROVE, "", 2)
    submitted(identity, "cus_clean", "Ada Lovelace")
    clean = review(identity, "cus_clean", KycDecision.APPROVE, "")
    assert clean.kyc_status is KycStatus.VERIFIED
    assert clean.sanctions is not None
    assert clean.sanctions.outcome is Outcome.CLEAR


def test_screening_off_records_nothing() -> None:
    identity = Identity()
    submitted(identity, "cus_a", "Dashel Korvani")
    assert use_cases.get_customer(identity.deps, "cus_a").sanctions is None


def test_a_new_version_holds_a_verified_customer_until_an_analyst_clears_it_once() -> None:
    identity = screened_identity(screener(version="v1"))
    submitted(identity, "cus_m", "Marin Pellatro")
    review(identity, "cus_m", KycDecision.APPROVE, "")
    identity.deps = dataclasses.replace(identity.deps, screener=screener(LATER, version="v2"))
    events = len(identity.db.events)
    assert rescreen_all(identity.deps) == 1
    held = use_cases.get_customer(identity.deps, "cus_m")
    assert (held.kyc_status, held.kyc_reason) == (KycStatus.PENDING_REVIEW, SANCTIONS_MATCH)
    [change] = identity.db.events[events:]
    assert isinstance(change, CustomerKycChanged)
    assert (change.status, change.reason) == ("PENDING_REVIEW", SANCTIONS_MATCH)
    assert rescreen_all(identity.deps) == 0  # the same version: nothing to do
    review(identity, "cus_m", KycDecision.APPROVE, "cleared after the list update", 1)
    identity.deps = dataclasses.replace(identity.deps, screener=screener(LATER, version="v3"))
    assert rescreen_all(identity.deps) == 1  # screened again, still cleared
    after = use_cases.get_customer(identity.deps, "cus_m")
    assert after.kyc_status is KycStatus.VERIFIED
    assert after.sanctions is not None
    assert (after.sanctions.list_version, after.sanctions.decision) == ("v3", Decision.CLEARED)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(list(KycStatus)), st.booleans())
def test_rescreening_touches_only_customers_under_review_or_verified(
    status: KycStatus, listed: bool
) -> None:
    identity = screened_identity(screener(version="v1"))
    spec = CustomerSpec("cus_x", "Marin Pellatro" if listed else "Ada Lovelace", "x@example.com")
    use_cases.create_customer(identity.deps, spec)
    if status is not KycStatus.UNVERIFIED:
        use_cases.submit_kyc(identity.deps, "kyc_s", "cus_x", "tester")
    if status in (KycStatus.VERIFIED, KycStatus.REJECTED):
        decision = KycDecision.APPROVE if status is KycStatus.VERIFIED else KycDecision.REJECT
        review(identity, "cus_x", decision, "reviewed")
    identity.deps = dataclasses.replace(identity.deps, screener=screener(LATER, version="v2"))
    changed = rescreen_all(identity.deps)
    view = use_cases.get_customer(identity.deps, "cus_x")
    if status in (KycStatus.PENDING_REVIEW, KycStatus.VERIFIED):
        assert changed == 1
        assert view.sanctions is not None
        assert view.sanctions.list_version == "v2"
        assert view.sanctions.open_hit == listed
        expected = KycStatus.PENDING_REVIEW if listed else status
        assert view.kyc_status is expected
    else:
        assert changed == 0
        assert view.kyc_status is status
