"""Hostile input to the ledger over gRPC: each is INVALID_ARGUMENT naming its field, and nothing
is written (found by the contract fuzzer, tests/e2e/test_contract_fuzz.py)."""

from __future__ import annotations

from functools import partial

import grpc
import pytest
from astra.ledger.v1 import ledger_pb2 as pb
from astra.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from chassis.grpc.status import bad_request
from chassis.kernel.pagination import encode_page_token
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from ledger.bootstrap import Ledger

from tests.integration.test_ledger_api import (
    C,
    D,
    journal_counts,
    leg,
    movement,
    open_account,
    rpc_error,
)


@pytest.fixture
def accounts(ledger_stub: LedgerServiceStub) -> LedgerServiceStub:
    open_account(ledger_stub, "acct_bank", normal_side=pb.NORMAL_SIDE_DEBIT)
    open_account(ledger_stub, "acct_alice")
    return ledger_stub


def violated_fields(error: grpc.RpcError) -> list[str]:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    violations = bad_request(error)
    assert violations is not None
    return [v.field for v in violations.field_violations]


OUT_OF_RANGE_TIMESTAMPS = [
    Timestamp(seconds=-62_135_596_801),
    Timestamp(seconds=253_402_300_800),
    Timestamp(seconds=2**63 - 1),
    Timestamp(seconds=-(2**63)),
    Timestamp(seconds=0, nanos=-1),
    Timestamp(seconds=0, nanos=1_000_000_000),
]


@pytest.mark.parametrize("as_of", OUT_OF_RANGE_TIMESTAMPS)
def test_a_balance_as_of_an_instant_no_clock_has_is_refused_naming_as_of(
    accounts: LedgerServiceStub, as_of: Timestamp
) -> None:
    error = rpc_error(
        lambda: accounts.GetBalance(pb.GetBalanceRequest(account_id="acct_alice", as_of=as_of))
    )
    assert violated_fields(error) == ["as_of"]


OUT_OF_RANGE_DURATIONS = [
    Duration(seconds=315_576_000_001),
    Duration(seconds=2**63 - 1),
    Duration(seconds=-(2**63)),
    Duration(seconds=1, nanos=-1),
    Duration(seconds=0, nanos=1_000_000_000),
]


@pytest.mark.parametrize("timeout", OUT_OF_RANGE_DURATIONS)
def test_a_hold_timeout_no_duration_can_be_is_refused_naming_the_item(
    accounts: LedgerServiceStub, ledger: Ledger, timeout: Duration
) -> None:
    before = journal_counts(ledger)
    hold = pb.TransferSpec(
        id="tr_hold",
        pending=pb.PendingMovement(
            legs=[leg("acct_bank", D, 5), leg("acct_alice", C, 5)], timeout=timeout
        ),
    )
    good = movement("tr_good", "acct_bank", "acct_alice", 1)
    batch = rpc_error(
        lambda: accounts.CreateTransfers(pb.CreateTransfersRequest(transfers=[good, hold]))
    )
    assert violated_fields(batch) == ["transfers[1].pending.timeout"]
    single = rpc_error(lambda: accounts.CreateTransfer(pb.CreateTransferRequest(transfer=hold)))
    assert violated_fields(single) == ["transfer.pending.timeout"]
    assert journal_counts(ledger) == before


@pytest.mark.parametrize("bad", ["acct_\x00", "a\x00b", "acct_" + "a" * 61])
def test_nul_or_malformed_ids_are_refused_before_any_read_looks_them_up(
    accounts: LedgerServiceStub, bad: str
) -> None:
    for call in (
        lambda: accounts.GetAccount(pb.GetAccountRequest(account_id=bad)),
        lambda: accounts.GetBalance(pb.GetBalanceRequest(account_id=bad)),
        lambda: accounts.ListAccountEntries(pb.ListAccountEntriesRequest(account_id=bad)),
    ):
        assert violated_fields(rpc_error(call)) == ["account_id"]
    transfer_id = bad.replace("acct_", "tr_")
    get = rpc_error(lambda: accounts.GetTransfer(pb.GetTransferRequest(transfer_id=transfer_id)))
    assert violated_fields(get) == ["transfer_id"]
    customer_id = bad.replace("acct_", "cus_")
    listed = rpc_error(
        lambda: accounts.ListAccounts(pb.ListAccountsRequest(customer_id=customer_id))
    )
    assert violated_fields(listed) == ["customer_id"]


def test_text_with_nul_is_refused_in_accounts_and_transfers_and_nothing_is_written(
    accounts: LedgerServiceStub, ledger: Ledger
) -> None:
    before = journal_counts(ledger)
    account = pb.Account(
        id="acct_nul",
        currency="EUR",
        normal_side=pb.NORMAL_SIDE_DEBIT,
        external_reference="ref\x00",
        metadata={"k": "v\x00"},
    )
    opened = rpc_error(lambda: accounts.OpenAccount(pb.OpenAccountRequest(account=account)))
    assert violated_fields(opened) == ["account.external_reference", "account.metadata['k']"]
    spec = movement("tr_nul", "acct_bank", "acct_alice", 5, metadata={"k\x00": "v"})
    created = rpc_error(lambda: accounts.CreateTransfer(pb.CreateTransferRequest(transfer=spec)))
    assert violated_fields(created) == ["transfer.metadata['k\\x00']"]
    assert journal_counts(ledger) == before


def test_a_forged_page_token_must_hold_a_position_of_the_lists_own_shape(
    accounts: LedgerServiceStub,
) -> None:
    # The digest is no secret: a token made with the right one gets past it.
    for after in ("²", "-1", "99999999999999999999", "\x00"):
        entries = pb.ListAccountEntriesRequest(
            account_id="acct_alice",
            page_token=encode_page_token(after, {"account_id": "acct_alice"}),
        )
        error = rpc_error(partial(accounts.ListAccountEntries, entries))
        assert violated_fields(error) == ["page_token"]
    for after in ("acct_\x00", "cus_a", "7"):
        listed = pb.ListAccountsRequest(page_token=encode_page_token(after, {"customer_id": ""}))
        error = rpc_error(partial(accounts.ListAccounts, listed))
        assert violated_fields(error) == ["page_token"]
