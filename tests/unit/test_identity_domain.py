"""Identity's domain without I/O: the KYC lifecycle, scope grants, key retirement, validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from chassis.kernel.errors import DomainError, ErrorCategory, InvalidArgument
from identity.domain import validation
from identity.domain.events import CustomerCreated, CustomerErased, CustomerKycChanged
from identity.domain.model import (
    ClientSpec,
    Customer,
    CustomerSpec,
    KycDecision,
    KycStatus,
    ServiceClient,
    SigningKey,
    grant,
)

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def new_customer() -> Customer:
    return Customer.create(CustomerSpec("cus_ann", "Ann", "ann@example.com"), NOW)


def test_a_new_customer_is_unverified_and_recorded() -> None:
    customer = new_customer()
    assert customer.kyc_status is KycStatus.UNVERIFIED
    assert customer.kyc_version == 0
    assert customer.events == [CustomerCreated("cus_ann", NOW)]


def test_the_kyc_lifecycle_versions_every_change_and_keeps_reasons() -> None:
    customer = new_customer()
    customer.submit_for_review("cli_app", NOW + timedelta(minutes=1))
    customer.review(KycDecision.REJECT, "document unreadable", "cli_ops", NOW + timedelta(2))
    customer.submit_for_review("cli_app", NOW + timedelta(3))
    customer.review(KycDecision.APPROVE, "", "cli_ops", NOW + timedelta(4))
    assert customer.kyc_status is KycStatus.VERIFIED
    assert customer.kyc_version == 4
    view = customer.view()
    assert [(c.previous_status, c.status, c.reason) for c in view.history] == [
        (KycStatus.UNVERIFIED, KycStatus.PENDING_REVIEW, ""),
        (KycStatus.PENDING_REVIEW, KycStatus.REJECTED, "document unreadable"),
        (KycStatus.REJECTED, KycStatus.PENDING_REVIEW, ""),
        (KycStatus.PENDING_REVIEW, KycStatus.VERIFIED, ""),
    ]
    changes = [e for e in customer.events if isinstance(e, CustomerKycChanged)]
    assert [e.kyc_version for e in changes] == [1, 2, 3, 4]
    assert changes[1].reason == "document unreadable"
    assert changes[1].actor == "cli_ops"
    as_of_rejection = customer.view(as_of_version=2)
    assert as_of_rejection.kyc_status is KycStatus.REJECTED
    assert as_of_rejection.kyc_reason == "document unreadable"
    assert len(as_of_rejection.history) == 2


@pytest.mark.parametrize(
    "steps",
    [
        ["approve"],  # not submitted yet
        ["submit", "submit"],  # already pending
        ["submit", "approve", "submit"],  # verified is final
        ["submit", "approve", "reject"],
    ],
)
def test_invalid_transitions_are_refused_and_change_nothing(steps: list[str]) -> None:
    customer = new_customer()
    *before, last = steps
    actions = {
        "submit": lambda: customer.submit_for_review("cli_app", NOW),
        "approve": lambda: customer.review(KycDecision.APPROVE, "", "cli_ops", NOW),
        "reject": lambda: customer.review(KycDecision.REJECT, "no", "cli_ops", NOW),
    }
    for step in before:
        actions[step]()
    version, events = customer.kyc_version, len(customer.events)
    with pytest.raises(DomainError) as caught:
        actions[last]()
    assert caught.value.reason == "INVALID_KYC_TRANSITION"
    assert caught.value.category is ErrorCategory.FAILED_PRECONDITION
    assert (customer.kyc_version, len(customer.events)) == (version, events)


def test_kyc_time_never_runs_backwards() -> None:
    customer = new_customer()
    change = customer.submit_for_review("cli_app", NOW - timedelta(hours=1))
    assert change.changed_at == NOW


def test_a_client_gets_the_scopes_it_asks_for_if_allowed() -> None:
    client = ServiceClient("cli_pay", "Payments", ("b.c.d", "a.b.c"), "hash", NOW)
    assert client.allowed_scopes == ("a.b.c", "b.c.d")
    assert client.grant([]) == ("a.b.c", "b.c.d")
    assert client.grant(["b.c.d"]) == ("b.c.d",)
    with pytest.raises(DomainError) as caught:
        client.grant(["b.c.d", "identity.keys.admin"])
    assert caught.value.reason == "SCOPE_NOT_ALLOWED"
    assert caught.value.category is ErrorCategory.PERMISSION_DENIED
    assert "hash" not in repr(client)


def test_customer_token_scopes_are_limited_to_the_customer_set() -> None:
    allowed = ("ledger.accounts.read",)
    assert grant([], allowed, "a customer token") == allowed
    with pytest.raises(DomainError):
        grant(["ledger.transfers.write"], allowed, "a customer token")


def test_a_disabled_client_stays_disabled_from_the_first_time() -> None:
    client = ServiceClient("cli_pay", "Payments", ("a.b.c",), "hash", NOW)
    client.disable(NOW)
    client.disable(NOW + timedelta(hours=1))
    assert client.disabled
    assert client.disabled_at == NOW


def test_a_retired_key_is_published_until_its_last_token_expired() -> None:
    key = SigningKey("key_1", {"kid": "key_1"}, b"sealed", NOW)
    assert key.published(NOW + timedelta(days=365))
    key.retire(NOW, token_ttl=timedelta(minutes=15), margin=timedelta(minutes=2))
    assert not key.active
    assert key.published(NOW + timedelta(minutes=16))
    assert not key.published(NOW + timedelta(minutes=17))
    assert "sealed" not in repr(key)


def test_fingerprints_tell_replays_from_reused_ids() -> None:
    spec = ClientSpec("cli_a", "A", ("x.y", "a.b"))
    assert spec.fingerprint() == ClientSpec("cli_a", "A", ("a.b", "x.y")).fingerprint()
    assert spec.fingerprint() != ClientSpec("cli_a", "A", ("a.b",)).fingerprint()
    customer = Customer.create(CustomerSpec("cus_a", "A", "a@example.com"), NOW)
    assert customer.matches(CustomerSpec("cus_a", "A", "a@example.com"))
    assert not customer.matches(CustomerSpec("cus_a", "A", "b@example.com"))


def test_erasing_forgets_the_personal_data_once() -> None:
    customer = Customer.create(CustomerSpec("cus_a", "Ada", "ada@example.com"), NOW)
    customer.take_events()
    assert customer.erase("cli_admin", NOW)
    assert not customer.erase("cli_admin", NOW + timedelta(minutes=1))
    view = customer.view()
    assert (view.display_name, view.email, view.erased_at) == ("", "", NOW)
    assert customer.take_events() == [CustomerErased("cus_a", "cli_admin", NOW)]


def test_validation_reports_every_bad_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validation.validate_customer_spec(CustomerSpec("acct_1", " ", "not-an-email"))
    fields = {v.field for v in caught.value.violations}
    assert fields == {"customer.id", "customer.display_name", "customer.email"}
    with pytest.raises(InvalidArgument) as caught:
        validation.validate_client_spec(ClientSpec("cli_ok", "Ok", ("Ledger.Read", "x")), {"x"})
    assert {v.field for v in caught.value.violations} == {
        "client.allowed_scopes[0]",
        "client.allowed_scopes[1]",
    }
    with pytest.raises(InvalidArgument) as caught:
        validation.validate_kyc_request("req_1", "cus_a", KycDecision.REJECT, "")
    assert {v.field for v in caught.value.violations} == {"request_id", "reason"}
