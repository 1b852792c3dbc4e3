"""What each context's validation refuses of hostile input, before anything is read or written:
text that storage cannot hold (NUL) or should not (control characters), ids that cannot exist,
undefined enum numbers in filters, dates that are not ISO days or not yet begun, and scopes no
contract declares. Each case was found by the contract fuzzer (tests/e2e/test_contract_fuzz.py)."""

from __future__ import annotations

from datetime import date

import pytest
from astra.identity.v1 import identity_pb2 as ipb
from astra.payments.v1 import payments_pb2 as ppb
from chassis.auth.policy import declared_scopes
from chassis.kernel.errors import InvalidArgument
from identity.adapters.protos import status_filter_from_pb
from identity.domain import validation as identity_validation
from identity.domain.model import ClientSpec, CustomerSpec, KycDecision, KycStatus
from ledger.domain import validation as ledger_validation
from ledger.domain.model import AccountSpec, MovementOp, NormalSide, TransferRequest
from payments.adapters.protos import state_filter_from_pb
from payments.domain import validation as payments_validation
from payments.domain.model import BankAccount, PaymentRequest
from payments.domain.states import PaymentKind, PaymentState

from tests.ledger_builders import credit, debit

# Every kind of text storage or a reader cannot take, spliced into otherwise good values.
BAD_FRAGMENTS = ["\x00", "\x07", "\x1b[31m", "\x7f", "\x85"]


def fields(refused: pytest.ExceptionInfo[InvalidArgument]) -> set[str]:
    return {v.field for v in refused.value.violations}


# --- identity -----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_FRAGMENTS)
def test_identity_refuses_control_characters_in_every_stored_text(bad: str) -> None:
    with pytest.raises(InvalidArgument) as customer:
        identity_validation.validate_customer_spec(
            CustomerSpec("cus_a", f"Ada{bad}", f"ada{bad}@example.com")
        )
    assert fields(customer) == {"customer.display_name", "customer.email"}
    with pytest.raises(InvalidArgument) as client:
        identity_validation.validate_client_spec(
            ClientSpec("cli_a", f"App{bad}", ("ledger.accounts.read",)), declared_scopes()
        )
    assert fields(client) == {"client.display_name"}
    with pytest.raises(InvalidArgument) as review:
        identity_validation.validate_kyc_request(
            "kyc_1", "cus_a", KycDecision.REJECT, f"blurry{bad}"
        )
    assert fields(review) == {"reason"}


def test_a_client_may_be_allowed_only_scopes_some_contract_declares() -> None:
    declared = declared_scopes()
    identity_validation.validate_client_spec(
        ClientSpec("cli_a", "App", ("ledger.accounts.read", "payments.payments.write")), declared
    )
    with pytest.raises(InvalidArgument) as refused:
        identity_validation.validate_client_spec(
            ClientSpec("cli_a", "App", ("ledger.accounts.read", "no.such.scope", "ledger.root")),
            declared,
        )
    assert [(v.field, v.reason) for v in refused.value.violations] == [
        ("client.allowed_scopes[1]", "UNKNOWN_SCOPE"),
        ("client.allowed_scopes[2]", "UNKNOWN_SCOPE"),
    ]


@pytest.mark.parametrize("bad", ["cus_\x00", "a\x00b", "", "cus_" + "a" * 61, "cli_a"])
def test_identity_refuses_an_id_that_cannot_exist_before_looking_it_up(bad: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        identity_validation.validate_id("customer_id", bad, identity_validation.CUSTOMER_PREFIX)
    assert fields(refused) == {"customer_id"}


def test_the_kyc_status_filter_refuses_undefined_numbers_and_takes_unset_as_none() -> None:
    assert status_filter_from_pb(0) is None
    assert status_filter_from_pb(ipb.KYC_STATUS_VERIFIED) is KycStatus.VERIFIED
    for undefined in (5, 99, -1, 2**31 - 1):
        with pytest.raises(InvalidArgument) as refused:
            status_filter_from_pb(undefined)
        assert fields(refused) == {"kyc_status"}


# --- the ledger ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_FRAGMENTS)
def test_the_ledger_refuses_control_characters_in_metadata_and_references(bad: str) -> None:
    legs = MovementOp((debit("acct_a", 5), credit("acct_b", 5)))
    for metadata, field in (
        ((("k", f"v{bad}"),), "transfer.metadata['k']"),
        (((f"k{bad}", "v"),), f"transfer.metadata[{f'k{bad}'!r}]"),
    ):
        with pytest.raises(InvalidArgument) as refused:
            ledger_validation.validate_transfer(TransferRequest("tr_1", legs, metadata=metadata))
        assert fields(refused) == {field}
    with pytest.raises(InvalidArgument) as account:
        ledger_validation.validate_account_spec(
            AccountSpec(
                "acct_1",
                "EUR",
                NormalSide.DEBIT,
                external_reference=f"ref{bad}",
                metadata=(("k", f"v{bad}"),),
            )
        )
    assert fields(account) == {"account.external_reference", "account.metadata['k']"}


def test_the_ledger_refuses_ids_that_cannot_exist_but_finds_an_expiry_by_its_id() -> None:
    ledger_validation.validate_transfer_id("tr_a")
    ledger_validation.validate_transfer_id("exp_tr_a")  # the expiry worker's transfer of tr_a
    ledger_validation.validate_lookup(["tr_a", "exp_tr_a"])
    for bad in ("tr_\x00", "\x00", "exp_\x00", "acct_a", "exp_exp_tr_a", "tr_" + "a" * 61):
        with pytest.raises(InvalidArgument):
            ledger_validation.validate_transfer_id(bad)
    for bad in ("acct_\x00", "a\x00b", "", "tr_a"):
        with pytest.raises(InvalidArgument) as refused:
            ledger_validation.validate_account_id(bad)
        assert fields(refused) == {"account_id"}
    ledger_validation.validate_customer_filter("")
    with pytest.raises(InvalidArgument) as refused:
        ledger_validation.validate_customer_filter("cus_\x00")
    assert fields(refused) == {"customer_id"}


# --- payments ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_FRAGMENTS)
def test_payments_refuses_control_characters_in_every_stored_or_logged_text(bad: str) -> None:
    request = PaymentRequest(
        payment_id="pay_1",
        kind=PaymentKind.PAYOUT,
        customer_id="cus_a",
        amount=100,
        currency="EUR",
        counterparty=BankAccount("DE89370400440532013000", f"Ada{bad}"),
        description=f"rent{bad}",
    )
    with pytest.raises(InvalidArgument) as payout:
        payments_validation.validate_payment_request(request, "destination")
    assert fields(payout) == {"destination.holder_name", "description"}
    with pytest.raises(InvalidArgument) as refund:
        payments_validation.validate_refund("pay_2", "pay_1", 10, f"broken{bad}")
    assert fields(refund) == {"reason"}
    with pytest.raises(InvalidArgument) as note:
        payments_validation.validate_note(f"ok{bad}", "note")
    assert fields(note) == {"note"}


TODAY = date(2026, 12, 4)


@pytest.mark.parametrize(
    "text",
    [
        "20261201",  # basic format: date.fromisoformat takes it
        "2026-W48-1",  # ISO week date: taken too
        "2026-336",  # ordinal date
        "\uff12\uff10\uff12\uff16-12-01",  # full-width digits
        "2026-12-01T00:00:00",
        " 2026-12-01",
        "2026-1-1",
        "2026-02-30",
        "",
        "2026-12-01\x00",
    ],
)
def test_a_statement_date_is_an_iso_day_and_nothing_else(text: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        payments_validation.validate_run("rec_1", text, TODAY)
    assert fields(refused) == {"statement_date"}


def test_a_statement_date_that_has_not_begun_anywhere_is_refused_with_its_reason() -> None:
    assert payments_validation.validate_run("rec_1", "2026-12-04", TODAY) == TODAY
    assert payments_validation.validate_run("rec_1", "2026-12-05", TODAY) == date(2026, 12, 5)
    assert payments_validation.validate_run("rec_1", "0001-01-01", TODAY) == date(1, 1, 1)
    for future in ("2026-12-06", "2999-01-01", "9999-12-31"):
        with pytest.raises(InvalidArgument) as refused:
            payments_validation.validate_run("rec_1", future, TODAY)
        assert [(v.field, v.reason) for v in refused.value.violations] == [
            ("statement_date", "STATEMENT_DATE_IN_FUTURE")
        ]


def test_payments_refuses_ids_that_cannot_exist_in_runs_and_filters() -> None:
    for bad in ("rec_\x00", "", "pay_1"):
        with pytest.raises(InvalidArgument) as refused:
            payments_validation.validate_run_id(bad)
        assert fields(refused) == {"run_id"}
    payments_validation.validate_customer_filter("")
    with pytest.raises(InvalidArgument) as customer:
        payments_validation.validate_customer_filter("cus_\x00")
    assert fields(customer) == {"customer_id"}


def test_the_payment_state_filter_refuses_undefined_numbers_like_the_kyc_filter() -> None:
    assert state_filter_from_pb(0) is None
    assert state_filter_from_pb(ppb.PAYMENT_STATE_SETTLED) is PaymentState.SETTLED
    for undefined in (11, 99, -1):
        with pytest.raises(InvalidArgument) as refused:
            state_filter_from_pb(undefined)
        assert fields(refused) == {"state"}
