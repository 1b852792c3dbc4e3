"""Sanctions screening in payments on PostgreSQL, through gRPC with the real ledger, identity
and the sandbox bank: a listed counterparty's payout is held IN_REVIEW with the match shown,
the analyst's decision is recorded, and a new list version re-screens open payouts."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from astra.payments.v1 import payments_pb2 as pb
from chassis.grpc.status import bad_request, reason_of
from payments.domain.customers import CustomerKyc
from payments.entrypoints.workers import rescreen_all
from payments.service_layer.use_cases import record_customer_kyc
from screening.matcher import Screener
from screening.samples import sample_list, write_sdn
from screening.sdn import SdnEntry, load_sdn

from tests.identity_fixtures import IdentityServer
from tests.payments_fixtures import SandboxBank, Suite, make_suite, rpc_error

LISTED = SdnEntry(
    "91001", "KORVANI, Dashel Miro", "individual", ("SDGT", "IRGC"), ("QORVANI, Dashil",),
    frozenset({"IR"}),
)  # fmt: skip
LATER = SdnEntry("91002", "PELLATRO, Marin", "individual", ("CYBER2",))
HELD: set[int] = {pb.PAYMENT_STATE_IN_REVIEW}
SENT: set[int] = {pb.PAYMENT_STATE_SUBMITTED, pb.PAYMENT_STATE_SETTLED}
ON_ITS_WAY: set[int] = {
    pb.PAYMENT_STATE_FUNDS_HELD,
    pb.PAYMENT_STATE_SUBMITTING,
    pb.PAYMENT_STATE_SUBMITTED,
}
WAITING: set[int] = {pb.PAYMENT_STATE_FUNDS_HELD}


def sanctions_file(folder: Path, *extra: SdnEntry) -> Path:
    return write_sdn([*sample_list(11, 300).entries, LISTED, *extra], folder)


@pytest.fixture
def screened(
    tmp_path: Path,
    payments_db_url: str,
    sandbox_bank: SandboxBank,
    ledger_target: str,
    identity_server: IdentityServer,
) -> Iterator[Suite]:
    made, close = make_suite(
        payments_db_url,
        sandbox_bank,
        ledger_target,
        identity_server,
        sanctions_list_file=str(sanctions_file(tmp_path / "v1")),
        sanctions_threshold=90,
    )
    yield made
    close()


def payout_to(suite: Suite, customer: str, holder: str, country: str = "") -> pb.Payment:
    return suite.payments.CreatePayout(
        pb.CreatePayoutRequest(
            payment_id=suite.new_id("pay"),
            customer_id=customer,
            amount=1_000,
            currency="EUR",
            destination=pb.BankAccount(
                account_number="DE89370400440532013000", holder_name=holder, country=country
            ),
        )
    ).payment


def test_a_listed_payout_is_held_with_the_match_and_the_analysts_decisions_are_recorded(
    screened: Suite,
) -> None:
    customer = screened.customer()
    screened.fund(customer, 10_000)
    held = screened.wait_for(payout_to(screened, customer, "Dashil Qorvany", "IR").id, HELD)
    assert held.review_reason == "SANCTIONS_MATCH"
    screening = held.sanctions_screening
    assert screening.outcome == pb.SANCTIONS_SCREENING_OUTCOME_HIT
    assert (screening.entry_uid, screening.entry_name, screening.matched_name) == (
        "91001",
        "KORVANI, Dashel Miro",
        "QORVANI, Dashil",
    )
    assert list(screening.programs) == ["SDGT", "IRGC"]
    assert screening.score >= 90
    assert screening.HasField("country_matched")
    assert screening.country_matched
    assert screening.list_version == screened.app.deps.policy.sanctions.version  # type: ignore[union-attr]
    assert screening.screen_time.seconds > 0
    # The funds stay held meanwhile: 10,000 collected, 1,000 held.
    assert screened.customer_balance(customer) == 9_000
    assert pb.PAYMENT_STATE_SUBMITTING not in {t.to_state for t in held.history}

    refused = rpc_error(
        lambda: screened.payments.ApprovePayment(pb.ApprovePaymentRequest(payment_id=held.id))
    )
    assert reason_of(refused) == "REVIEWER_IS_REQUESTER"
    screened.reviewer.ApprovePayment(
        pb.ApprovePaymentRequest(payment_id=held.id, note="namesake: other date of birth")
    )
    approved = screened.wait_for(held.id, SENT)
    assert approved.reviewed_by.client_id == "cli_reviewer"
    assert approved.review_note == "namesake: other date of birth"
    assert approved.sanctions_screening == screening

    second = screened.wait_for(payout_to(screened, customer, "korvani dashel miro").id, HELD)
    screened.reviewer.RejectPayment(
        pb.RejectPaymentRequest(payment_id=second.id, note="confirmed match")
    )
    rejected = screened.wait_for(second.id)
    assert (rejected.state, rejected.reason) == (pb.PAYMENT_STATE_DECLINED, "REJECTED_IN_REVIEW")
    assert rejected.review_note == "confirmed match"
    assert rejected.sanctions_screening.entry_uid == "91001"
    # Listing shows the screening too (the holder's name is left out of a list).
    listed = screened.payments.ListPayments(pb.ListPaymentsRequest(customer_id=customer))
    shown = {p.id: p.sanctions_screening for p in listed.payments}
    assert shown[second.id].outcome == pb.SANCTIONS_SCREENING_OUTCOME_HIT
    assert (shown[second.id].entry_uid, shown[second.id].matched_name) == ("91001", "")


def test_a_clean_payout_is_recorded_clear_and_a_bad_country_is_refused(screened: Suite) -> None:
    customer = screened.customer()
    screened.fund(customer, 5_000)
    clean = screened.wait_for(payout_to(screened, customer, "Ada Lovelace", "GB").id, ON_ITS_WAY)
    assert clean.counterparty.country == "GB"
    assert clean.sanctions_screening.outcome == pb.SANCTIONS_SCREENING_OUTCOME_CLEAR
    assert clean.sanctions_screening.entry_uid == ""
    assert clean.review_reason == ""
    unnamed = payout_to(screened, customer, "")
    assert unnamed.sanctions_screening.outcome == pb.SANCTIONS_SCREENING_OUTCOME_NOT_SCREENED
    # A payee named nowhere is no way around the list: an analyst looks at it first.
    waiting = screened.wait_for(unnamed.id, HELD)
    assert waiting.review_reason == "SANCTIONS_NOT_SCREENED"
    for country in ("gb", "GBR", "ZZ", "\x00\x00"):
        error = rpc_error(lambda c=country: payout_to(screened, customer, "Ada", c))  # type: ignore[misc]
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        details = bad_request(error)
        assert details is not None
        assert "destination.country" in {v.field for v in details.field_violations}


def test_a_new_list_version_holds_an_open_payout_and_leaves_sent_ones(
    screened: Suite, tmp_path: Path
) -> None:
    customer = screened.customer()
    screened.fund(customer, 10_000)
    screened.stop_rounds()
    waiting = screened.wait_for(payout_to(screened, customer, "Marin Pellatro").id, WAITING)
    assert waiting.sanctions_screening.outcome == pb.SANCTIONS_SCREENING_OUTCOME_CLEAR
    first_version = waiting.sanctions_screening.list_version
    sent = payout_to(screened, customer, "Marin Pellatro")
    screened.process_due()  # both go to the bank but a second one is created after
    assert screened.get(sent.id).state in {pb.PAYMENT_STATE_SUBMITTING, pb.PAYMENT_STATE_SUBMITTED}
    open_ = payout_to(screened, customer, "Marin Pellatro")
    assert open_.state == pb.PAYMENT_STATE_FUNDS_HELD

    second = load_sdn(sanctions_file(tmp_path / "v2", LATER))
    assert second.version != first_version
    deps = screened.app.deps
    deps.policy = dataclasses.replace(deps.policy, sanctions=Screener(second, 90))
    assert rescreen_all(deps) >= 1
    held = screened.get(open_.id)
    assert held.state == pb.PAYMENT_STATE_IN_REVIEW
    assert held.history[-1].reason == "SANCTIONS_MATCH"
    assert held.sanctions_screening.entry_uid == "91002"
    assert held.sanctions_screening.list_version == second.version
    # Given to the bank already: out of reach, its screening is left as it was.
    assert screened.get(sent.id).sanctions_screening.list_version == first_version
    # Again: nothing left to screen with this version.
    assert rescreen_all(deps) == 0

    # Identity takes the customer back from VERIFIED (its own screening matched it): what
    # it has not given to the bank waits, on PostgreSQL's locks as on the fakes.
    kept = payout_to(screened, customer, "Ada Lovelace")
    assert kept.state == pb.PAYMENT_STATE_FUNDS_HELD
    demoted = CustomerKyc(customer, "PENDING_REVIEW", 2**40, None)
    assert record_customer_kyc(deps.uow, deps.clock, demoted)
    waiting_for_customer = screened.get(kept.id)
    assert waiting_for_customer.state == pb.PAYMENT_STATE_IN_REVIEW
    assert waiting_for_customer.review_reason == "CUSTOMER_UNDER_REVIEW"
    assert screened.get(sent.id).state != pb.PAYMENT_STATE_IN_REVIEW
