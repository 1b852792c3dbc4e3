"""Sanctions screening in payments, no I/O: what a hit does to a payment, on the fakes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from chassis.kernel.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from hypothesis import assume, given
from hypothesis import strategies as st
from payments.domain.creation import decide_payment
from payments.domain.customers import (
    CUSTOMER_UNDER_REVIEW,
    VERIFIED,
    CustomerKyc,
    CustomerStatus,
)
from payments.domain.fees import FeeSchedule
from payments.domain.fraud import FraudRules, Velocity
from payments.domain.model import BankAccount, Payment, PaymentRequest
from payments.domain.policy import Policy
from payments.domain.sanctions import (
    OPEN_STATES,
    SANCTIONS_MATCH,
    apply_screening,
    rescreen,
    screen_request,
)
from payments.domain.states import PaymentKind, PaymentState
from payments.service_layer import use_cases
from payments.service_layer.creation import Creation, create_payment, create_payments
from screening.matcher import Outcome, Screener
from screening.sdn import SanctionsList, SdnEntry

from tests.unit.test_payments_domain import make
from tests.unit.test_payments_use_cases import CREATOR, REVIEWER, Service, make_service

S = PaymentState
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LISTED = SdnEntry(
    "7001", "KORVANI, Dashel Miro", "individual", ("SDGT", "IRGC"), (), frozenset({"IR"})
)
OTHER = SdnEntry("7002", "TREMOLA SHIPPING LLC", "entity", ("IRAN",))


def screener(*entries: SdnEntry, version: str = "v1") -> Screener:
    return Screener(SanctionsList(version, entries), 90)


def with_holder(
    service: Service, payment_id: str, holder: str, kind: PaymentKind, country: str = ""
) -> Payment:
    request = dataclasses.replace(
        service.request(payment_id, "cus_ada", 1_000, kind),
        counterparty=BankAccount("DE89370400440532013000", holder, country),
    )
    field = "destination" if kind is PaymentKind.PAYOUT else "source"
    return create_payment(service.deps, request, field, CREATOR)


def screened_service(list_: Screener | None) -> Service:
    service = make_service(Policy(fees=FeeSchedule(fixed={"EUR": 100}), sanctions=list_))
    service.verified("cus_ada", funds=100_000)
    return service


# --- the decision ------------------------------------------------------------------------------


def request_to(
    holder: str, country: str = "", kind: PaymentKind = PaymentKind.PAYOUT
) -> PaymentRequest:
    return PaymentRequest("pay_1", kind, "cus_a", 1_000, "EUR", BankAccount("DE1", holder, country))


def test_a_listed_counterparty_asks_for_review_before_any_fraud_reason() -> None:
    screening = screen_request(request_to("Dashel Korvani", "IR"), screener(LISTED), NOW)
    payment = make()
    apply_screening(payment, screening)
    assert payment.review_required
    assert payment.review_reason == SANCTIONS_MATCH
    assert payment.sanctions is not None
    assert payment.sanctions.outcome is Outcome.HIT
    assert payment.sanctions.match is not None
    assert payment.sanctions.match.entry_uid == "7001"
    assert payment.sanctions.match.country_matched is True
    assert payment.sanctions.list_version == "v1"


def test_a_fraud_review_keeps_the_sanctions_reason_and_a_decline_wins() -> None:
    hit = screen_request(request_to("Dashel Korvani"), screener(LISTED), NOW)
    rules = Policy(fraud=FraudRules(review_amount={"EUR": 1}, max_amount={"EUR": 5_000}))
    status = CustomerStatus(VERIFIED, NOW - timedelta(days=400))
    held = decide_payment(request_to("Dashel Korvani"), status, Velocity(), rules, NOW, "", hit)
    assert (held.review_required, held.review_reason) == (True, SANCTIONS_MATCH)
    large = dataclasses.replace(request_to("Dashel Korvani"), amount=9_000)
    declined = decide_payment(large, status, Velocity(), rules, NOW, "", hit)
    assert (declined.state, declined.reason) == (S.DECLINED, "AMOUNT_OVER_LIMIT")
    collection = request_to("Dashel Korvani", kind=PaymentKind.COLLECTION)
    waiting = decide_payment(
        collection, status, Velocity(), Policy(sanctions=screener(LISTED)), NOW
    )
    assert (waiting.state, waiting.review_reason) == (S.IN_REVIEW, SANCTIONS_MATCH)


def test_screening_off_records_nothing_and_refunds_are_not_screened() -> None:
    assert screen_request(request_to("Dashel Korvani"), None, NOW) is None
    refund = request_to("Dashel Korvani", kind=PaymentKind.REFUND)
    assert screen_request(refund, screener(LISTED), NOW) is None
    payment = make()
    apply_screening(payment, None)
    assert payment.sanctions is None
    assert not payment.review_required


@given(
    st.sampled_from(list(PaymentState)),
    st.sampled_from(list(PaymentKind)),
    st.booleans(),
)
def test_a_new_version_holds_only_what_the_bank_does_not_have_yet(
    state: PaymentState, kind: PaymentKind, listed: bool
) -> None:
    # A collection never holds funds: that state is not one it can be in.
    assume(not (kind is PaymentKind.COLLECTION and state is S.FUNDS_HELD))
    payment = make(kind)
    holder = "Dashel Korvani" if listed else "Ada Lovelace"
    payment = dataclasses.replace(payment, counterparty=BankAccount("DE1", holder), state=state)
    before = payment.transition_count
    changed = rescreen(payment, screener(LISTED, version="v2"), NOW)
    open_ = state in OPEN_STATES and kind is not PaymentKind.REFUND
    assert changed == open_
    if not open_:
        assert payment.sanctions is None
        return
    assert payment.sanctions is not None
    assert payment.sanctions.list_version == "v2"
    assert payment.sanctions.hit == listed
    if not listed:
        assert (payment.state, payment.transition_count) == (state, before)
        return
    assert payment.review_reason == SANCTIONS_MATCH
    if state is S.CREATED and kind is PaymentKind.PAYOUT:
        assert payment.state is S.CREATED  # held for review once its funds are held
        assert payment.review_required
    else:
        assert payment.state is S.IN_REVIEW
    # The same version again changes nothing.
    assert not rescreen(payment, screener(LISTED, version="v2"), NOW)


# --- through the use cases, on the fakes ---------------------------------------------------------


def test_a_listed_payout_is_held_with_its_funds_and_the_reviewers_decision_recorded() -> None:
    service = screened_service(screener(LISTED))
    held = with_holder(service, "pay_hit", "Dashel Korvani", PaymentKind.PAYOUT, "IR")
    assert held.state is S.IN_REVIEW
    assert held.review_reason == SANCTIONS_MATCH
    assert service.held("cus_ada") == 1_100
    clean = with_holder(service, "pay_clean", "Ada Lovelace", PaymentKind.PAYOUT)
    assert clean.state is S.FUNDS_HELD
    assert clean.sanctions is not None
    assert clean.sanctions.outcome is Outcome.CLEAR
    stored = service.get("pay_hit")
    assert stored.sanctions == held.sanctions
    with pytest.raises(PermissionDenied) as refused:
        use_cases.approve_payment(service.deps, "pay_hit", "mine", CREATOR)
    assert refused.value.reason == "REVIEWER_IS_REQUESTER"
    approved = use_cases.approve_payment(service.deps, "pay_hit", "namesake, DOB differs", REVIEWER)
    assert approved.state is S.FUNDS_HELD
    assert approved.reviewed_by == REVIEWER.requester
    assert approved.review_note == "namesake, DOB differs"
    assert approved.sanctions == held.sanctions


def test_a_listed_collection_waits_for_review_at_once_and_a_rejection_is_recorded() -> None:
    service = screened_service(screener(OTHER))
    held = with_holder(service, "pay_in", "Tremola Shipping Ltd.", PaymentKind.COLLECTION)
    assert held.state is S.IN_REVIEW
    rejected = use_cases.reject_payment(service.deps, "pay_in", "confirmed match", REVIEWER)
    assert (rejected.state, rejected.reason) == (S.DECLINED, "REJECTED_IN_REVIEW")
    assert rejected.reviewed_by == REVIEWER.requester
    assert rejected.sanctions is not None
    assert rejected.sanctions.hit


def test_a_new_list_version_holds_open_payouts_once_and_respects_an_analysts_clearance() -> None:
    service = screened_service(screener(OTHER, version="v1"))
    first = with_holder(service, "pay_1", "Dashel Korvani", PaymentKind.PAYOUT)
    assert first.state is S.FUNDS_HELD
    service.deps.policy = dataclasses.replace(
        service.deps.policy, sanctions=screener(OTHER, LISTED, version="v2")
    )
    batch = use_cases.rescreen_open_payments(service.deps)
    assert (batch.changed, batch.next_after) == (1, "pay_1")
    assert use_cases.rescreen_open_payments(service.deps, "pay_1").next_after is None
    held = service.get("pay_1")
    assert held.state is S.IN_REVIEW
    assert held.history[-1].reason == SANCTIONS_MATCH
    assert S.IN_REVIEW in service.states("pay_1")
    use_cases.approve_payment(service.deps, "pay_1", "cleared", REVIEWER)
    # A later version still matching the same entry does not undo the analyst's decision.
    service.deps.policy = dataclasses.replace(
        service.deps.policy, sanctions=screener(OTHER, LISTED, version="v3")
    )
    assert use_cases.rescreen_open_payments(service.deps).changed == 1
    after = service.get("pay_1")
    assert after.state is S.FUNDS_HELD
    assert after.sanctions is not None
    assert after.sanctions.list_version == "v3"
    # Again with the same version: nothing left to do.
    assert use_cases.rescreen_open_payments(service.deps).changed == 0


def test_a_hit_stays_recorded_when_a_later_version_no_longer_matches() -> None:
    service = screened_service(screener(LISTED, version="v1"))
    with_holder(service, "pay_1", "Dashel Korvani", PaymentKind.PAYOUT)
    service.deps.policy = dataclasses.replace(
        service.deps.policy, sanctions=screener(OTHER, version="v2")
    )
    assert use_cases.rescreen_open_payments(service.deps).changed == 0
    kept = service.get("pay_1")
    assert kept.state is S.IN_REVIEW
    assert kept.sanctions is not None
    assert (kept.sanctions.list_version, kept.sanctions.hit) == ("v1", True)


def test_a_counterparty_country_must_be_an_iso_code() -> None:
    service = screened_service(screener(LISTED))
    request = dataclasses.replace(
        service.request("pay_x", "cus_ada", 1_000),
        counterparty=BankAccount("DE89370400440532013000", "Ada", "Germany"),
    )
    with pytest.raises(InvalidArgument) as refused:
        use_cases.check_creation(service.deps, request, "destination", CREATOR)
    assert "destination.country" in {v.field for v in refused.value.violations}


def test_open_payments_wait_when_identity_takes_a_customer_back_from_verified() -> None:
    service = screened_service(screener(LISTED))
    not_held_yet = service.request("pay_new", "cus_ada", 500)
    sent = with_holder(service, "pay_sent", "Ada Lovelace", PaymentKind.PAYOUT)
    service.drive(lambda: service.get("pay_sent").state is S.SUBMITTED, "pay_sent sent")
    waiting = with_holder(service, "pay_out2", "Ada Lovelace", PaymentKind.PAYOUT)
    assert waiting.state is S.FUNDS_HELD
    # Identity's sanctions screening takes the customer back to review (a newer version).
    demoted = CustomerKyc("cus_ada", "PENDING_REVIEW", 10, None)
    service.fakes.identity.add("cus_ada", "PENDING_REVIEW", version=10)
    assert use_cases.record_customer_kyc(service.deps.uow, service.deps.clock, demoted)
    held = service.get("pay_out2")
    assert (held.state, held.review_reason) == (S.IN_REVIEW, CUSTOMER_UNDER_REVIEW)
    assert held.next_action_at is None
    service.process_due()
    assert service.get("pay_out2").state is S.IN_REVIEW  # no worker takes it to the bank
    assert service.get("pay_sent").state is S.SUBMITTED  # the bank has it: out of reach
    refused = create_payments(service.deps, [Creation(not_held_yet, "destination")])
    assert isinstance(refused[0], FailedPrecondition)
    assert refused[0].reason == "CUSTOMER_NOT_VERIFIED"
    # The same word again changes nothing more.
    assert not use_cases.record_customer_kyc(service.deps.uow, service.deps.clock, demoted)
    assert service.get("pay_out2").transition_count == held.transition_count
    assert sent.sanctions is not None


def test_no_approval_pays_for_a_customer_identity_no_longer_verifies() -> None:
    service = screened_service(screener(LISTED))
    listed = with_holder(service, "pay_listed", "Dashel Korvani", PaymentKind.PAYOUT)
    held = with_holder(service, "pay_held", "Ada Lovelace", PaymentKind.PAYOUT)
    assert held.state is S.FUNDS_HELD
    service.drive(lambda: service.get("pay_listed").state is S.IN_REVIEW, "pay_listed in review")
    # Identity takes the customer back from VERIFIED while one payment already waits for a
    # reviewer for another reason (its payee's hit) and the other is held for it.
    demoted = CustomerKyc("cus_ada", "PENDING_REVIEW", 10, None)
    service.fakes.identity.add("cus_ada", "PENDING_REVIEW", version=10)
    assert use_cases.record_customer_kyc(service.deps.uow, service.deps.clock, demoted)
    for payment_id in ("pay_listed", "pay_held"):
        with pytest.raises(FailedPrecondition) as refused:
            use_cases.approve_payment(service.deps, payment_id, "looks fine", REVIEWER)
        assert refused.value.reason == "CUSTOMER_NOT_VERIFIED"
        assert service.get(payment_id).state is S.IN_REVIEW
    # A rejection is always possible; an approval once identity verifies the customer again.
    use_cases.reject_payment(service.deps, "pay_listed", "a true match", REVIEWER)
    assert service.get("pay_listed").state is S.DECLINED
    cleared = CustomerKyc("cus_ada", VERIFIED, 11, None)
    assert use_cases.record_customer_kyc(service.deps.uow, service.deps.clock, cleared)
    approved = use_cases.approve_payment(service.deps, "pay_held", "customer cleared", REVIEWER)
    assert approved.state is S.FUNDS_HELD
    assert listed.sanctions is not None


def test_a_payee_without_a_name_waits_for_an_analyst_and_a_new_version_holds_one_too() -> None:
    service = screened_service(screener(LISTED))
    unnamed = with_holder(service, "pay_unnamed", "", PaymentKind.PAYOUT)
    assert unnamed.sanctions is not None
    assert unnamed.review_reason == "SANCTIONS_NOT_SCREENED"
    service.drive(lambda: service.get("pay_unnamed").state is S.IN_REVIEW, "pay_unnamed held")
    # Made while screening was off, then a list is loaded: held the same way.
    off = screened_service(None)
    before = with_holder(off, "pay_before", "", PaymentKind.PAYOUT)
    assert before.state is S.FUNDS_HELD
    assert before.sanctions is None
    loaded = off.get("pay_before")
    assert rescreen(loaded, screener(LISTED), NOW)
    assert (loaded.state, loaded.review_reason) == (S.IN_REVIEW, "SANCTIONS_NOT_SCREENED")
    # The same version again changes nothing.
    assert not rescreen(loaded, screener(LISTED), NOW)
