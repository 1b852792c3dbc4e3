"""Bad input is refused before anything is read or written, with one violation per field."""

from __future__ import annotations

from datetime import timedelta

import pytest
from chassis.kernel.errors import InvalidArgument
from ledger.domain.model import (
    MAX_BATCH,
    AccountSpec,
    Leg,
    MovementOp,
    NormalSide,
    TransferRequest,
)
from ledger.domain.validation import validate_account_spec, validate_transfer, validate_transfers

from tests.ledger_builders import credit, debit, hold, move, post


def violations(error: pytest.ExceptionInfo[InvalidArgument]) -> dict[str, str]:
    return {v.field: v.reason or v.description for v in error.value.violations}


def test_a_well_formed_batch_passes() -> None:
    validate_transfers([move("tr_1", debit("acct_a", 5), credit("acct_b", 5))])


@pytest.mark.parametrize(
    ("amount", "reason"),
    [(0, "AMOUNT_OUT_OF_RANGE"), (-5, "AMOUNT_OUT_OF_RANGE"), (2**63, "AMOUNT_OUT_OF_RANGE")],
)
def test_amounts_must_be_positive_int64(amount: int, reason: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        validate_transfer(move("tr_1", debit("acct_a", amount), credit("acct_b", amount)))
    found = violations(error)
    assert found["transfer.movement.legs[0].amount"] == reason
    assert found["transfer.movement.legs[1].amount"] == reason


def test_unknown_currency_and_currency_without_minor_units() -> None:
    with pytest.raises(InvalidArgument) as error:
        validate_transfer(move("tr_1", debit("acct_a", 5, "XXY"), credit("acct_b", 5, "XAU")))
    found = violations(error)
    assert found["transfer.movement.legs[0].currency"] == "UNKNOWN_CURRENCY"
    assert found["transfer.movement.legs[1].currency"] == "UNKNOWN_CURRENCY"


def test_unbalanced_legs_per_currency() -> None:
    with pytest.raises(InvalidArgument) as error:
        validate_transfer(
            move(
                "tr_1",
                debit("acct_a", 5, "EUR"),
                credit("acct_b", 5, "USD"),
            )
        )
    assert error.value.violations[0].reason == "UNBALANCED_TRANSFER"
    assert "EUR" in error.value.message or "USD" in error.value.message


def test_a_four_leg_exchange_balanced_in_each_currency_passes() -> None:
    validate_transfer(
        move(
            "tr_fx",
            debit("acct_a", 100, "EUR"),
            credit("acct_fx_eur", 100, "EUR"),
            debit("acct_fx_usd", 108, "USD"),
            credit("acct_b", 108, "USD"),
        )
    )


def test_structure_rules() -> None:
    cases = {
        "one leg": move("tr_1", debit("acct_a", 5)),
        "same account twice": move("tr_1", debit("acct_a", 5), credit("acct_a", 5)),
        "no operation": TransferRequest("tr_1", None),
        "bad id": move("transfer-1", debit("acct_a", 5), credit("acct_b", 5)),
        "bad account id": move("tr_1", debit("a", 5), credit("acct_b", 5)),
        "no direction": TransferRequest(
            "tr_1", MovementOp((Leg("acct_a", None, 5, "EUR"), credit("acct_b", 5)))
        ),
        "zero timeout": hold("tr_1", debit("acct_a", 5), credit("acct_b", 5), timeout=timedelta(0)),
        "long timeout": hold(
            "tr_1", debit("acct_a", 5), credit("acct_b", 5), timeout=timedelta(days=400)
        ),
        "post bad target": post("tr_1", "nope"),
        "too long id": move("tr_" + "x" * 61, debit("acct_a", 5), credit("acct_b", 5)),
    }
    for name, request in cases.items():
        with pytest.raises(InvalidArgument):
            validate_transfer(request)
        assert name  # each case named for the failure message


def test_metadata_limits() -> None:
    request = TransferRequest(
        "tr_1",
        MovementOp((debit("acct_a", 5), credit("acct_b", 5))),
        metadata=tuple((f"k{i}", "v") for i in range(17)),
    )
    with pytest.raises(InvalidArgument) as error:
        validate_transfer(request)
    assert "transfer.metadata" in violations(error)
    long_value = TransferRequest(
        "tr_1", MovementOp((debit("acct_a", 5), credit("acct_b", 5))), metadata=(("k", "v" * 257),)
    )
    with pytest.raises(InvalidArgument):
        validate_transfer(long_value)


def test_batch_size_bounds_and_open_chains() -> None:
    with pytest.raises(InvalidArgument) as empty:
        validate_transfers([])
    assert "transfers" in violations(empty)
    one = move("tr_1", debit("acct_a", 5), credit("acct_b", 5))
    with pytest.raises(InvalidArgument) as huge:
        validate_transfers([one] * (MAX_BATCH + 1))
    assert violations(huge)["transfers"] == "BATCH_TOO_LARGE"
    validate_transfers([one] * MAX_BATCH)
    linked_last = move("tr_2", debit("acct_a", 5), credit("acct_b", 5), linked=True)
    with pytest.raises(InvalidArgument) as chain:
        validate_transfers([one, linked_last])
    assert violations(chain)["transfers[1].linked"] == "LINKED_CHAIN_OPEN"
    with pytest.raises(InvalidArgument):
        validate_transfer(linked_last)


def test_violations_name_the_item_in_a_batch() -> None:
    good = move("tr_1", debit("acct_a", 5), credit("acct_b", 5))
    bad = move("tr_2", debit("acct_a", 0), credit("acct_b", 5))
    with pytest.raises(InvalidArgument) as error:
        validate_transfers([good, good, bad])
    assert "transfers[2].movement.legs[0].amount" in violations(error)


def test_account_spec_rules() -> None:
    validate_account_spec(AccountSpec("acct_1", "JPY", NormalSide.DEBIT))
    with pytest.raises(InvalidArgument) as error:
        validate_account_spec(
            AccountSpec(
                "acct_" + "y" * 61,
                "ABC",
                None,
                debits_must_not_exceed_credits=True,
                credits_must_not_exceed_debits=True,
                external_reference="r" * 129,
                customer_id="customer-1",
            )
        )
    assert set(violations(error)) == {
        "account.id",
        "account.currency",
        "account.normal_side",
        "account.credits_must_not_exceed_debits",
        "account.external_reference",
        "account.customer_id",
    }
