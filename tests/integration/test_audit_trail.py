"""Every write records who asked, read back over gRPC; the access log line names the caller.

The ledger and identity in-process behind real token verification: what client A
(and the request id its call carried) wrote reads back with A, whoever reads it.
Payments' maker-checker and its reviewer are in test_payments_rules.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from astra.identity.v1 import identity_pb2 as ipb
from astra.identity.v1 import identity_pb2_grpc
from astra.ledger.v1 import ledger_pb2 as pb
from astra.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from astra_testkit.tls import tls_channel
from chassis.auth import build_verifier
from chassis.auth.testing import TokenMint
from ledger.bootstrap import Ledger
from ledger.entrypoints.server import build_server
from structlog.testing import capture_logs

from tests.identity_fixtures import ADMIN_ID

Metadata = tuple[tuple[str, str], ...]


@dataclass
class Audited:
    stub: LedgerServiceStub
    mint: TokenMint

    def as_client(self, client_id: str, request_id: str) -> Metadata:
        return (*self.mint.metadata(subject=client_id), ("x-request-id", request_id))


@pytest.fixture
def audited(ledger: Ledger, tmp_path: Path) -> Iterator[Audited]:
    """The ledger over gRPC, trusting a mint of this test's own (keys from a JWKS file)."""
    mint = TokenMint()
    verifier = build_verifier(
        issuer=mint.issuer,
        audience=mint.audience,
        identity_target="127.0.0.1:9",  # never asked: the keys come from the file
        jwks_file=str(mint.write_jwks(tmp_path / "jwks.json")),
        min_refresh_interval=0,
    )
    server = build_server(ledger, ledger.settings, verifier)
    port = server.start()
    channel = tls_channel(f"127.0.0.1:{port}")
    yield Audited(LedgerServiceStub(channel), mint)
    channel.close()
    server.server.stop(0)


def _requester(message: pb.Requester | ipb.Requester) -> tuple[str, str, str]:
    return (message.client_id, message.customer_id, message.request_id)


def _movement(transfer_id: str, debit: str, credit: str, amount: int) -> pb.TransferSpec:
    legs = [
        pb.Leg(account_id=debit, direction=pb.DIRECTION_DEBIT, amount=amount, currency="EUR"),
        pb.Leg(account_id=credit, direction=pb.DIRECTION_CREDIT, amount=amount, currency="EUR"),
    ]
    return pb.TransferSpec(id=transfer_id, movement=pb.Movement(legs=legs))


def _open(audited: Audited, account_id: str, metadata: Metadata, customer: str = "") -> pb.Account:
    side = pb.NORMAL_SIDE_DEBIT if account_id == "acct_bank" else pb.NORMAL_SIDE_CREDIT
    account = pb.Account(id=account_id, currency="EUR", normal_side=side, customer_id=customer)
    return audited.stub.OpenAccount(
        pb.OpenAccountRequest(account=account), metadata=metadata
    ).account


def test_accounts_and_transfers_read_back_with_the_client_that_made_them(
    audited: Audited,
) -> None:
    opened = _open(audited, "acct_bank", audited.as_client("cli_a", "req-open"))
    _open(audited, "acct_ann", audited.as_client("cli_b", "req-open-b"), "cus_ann")
    assert _requester(opened.created_by) == ("cli_a", "", "req-open")
    single = audited.stub.CreateTransfer(
        pb.CreateTransferRequest(transfer=_movement("tr_one", "acct_bank", "acct_ann", 5)),
        metadata=audited.as_client("cli_a", "req-one"),
    ).transfer
    assert _requester(single.created_by) == ("cli_a", "", "req-one")
    batch = audited.stub.CreateTransfers(
        pb.CreateTransfersRequest(
            transfers=[_movement(f"tr_b{i}", "acct_bank", "acct_ann", 1) for i in range(3)]
        ),
        metadata=audited.as_client("cli_a", "req-batch"),
    )
    assert all(r.ok for r in batch.results)
    # A replay by another client is the same transfer: it keeps its creator.
    replay = audited.stub.CreateTransfer(
        pb.CreateTransferRequest(transfer=_movement("tr_one", "acct_bank", "acct_ann", 5)),
        metadata=audited.as_client("cli_b", "req-replay"),
    ).transfer
    assert _requester(replay.created_by) == ("cli_a", "", "req-one")
    # Whoever reads them (another client, the customer) sees who made them.
    reader = audited.as_client("cli_b", "req-read")
    accounts = {
        a.id: _requester(a.created_by)
        for a in audited.stub.ListAccounts(pb.ListAccountsRequest(), metadata=reader).accounts
    }
    assert accounts == {
        "acct_bank": ("cli_a", "", "req-open"),
        "acct_ann": ("cli_b", "", "req-open-b"),
    }
    looked_up = audited.stub.LookupTransfers(
        pb.LookupTransfersRequest(transfer_ids=["tr_one", "tr_b0", "tr_b2"]), metadata=reader
    ).transfers
    assert [(t.id, _requester(t.created_by)) for t in looked_up] == [
        ("tr_one", ("cli_a", "", "req-one")),
        ("tr_b0", ("cli_a", "", "req-batch")),
        ("tr_b2", ("cli_a", "", "req-batch")),
    ]
    token = audited.mint.customer_token("cus_ann", ["ledger.transfers.read"])
    seen = audited.stub.GetTransfer(
        pb.GetTransferRequest(transfer_id="tr_b1"),
        metadata=(("authorization", f"Bearer {token}"),),
    ).transfer
    assert _requester(seen.created_by) == ("cli_a", "", "req-batch")


def test_the_access_log_line_names_the_caller(audited: Audited) -> None:
    _open(audited, "acct_ann", audited.as_client("cli_a", "req-open"), "cus_ann")
    token = audited.mint.customer_token("cus_ann", ["ledger.accounts.read"], client_id="cli_app")
    customer = (("authorization", f"Bearer {token}"), ("x-request-id", "req-customer"))
    with capture_logs() as logs:
        audited.stub.GetAccount(pb.GetAccountRequest(account_id="acct_ann"), metadata=customer)
        audited.stub.GetAccount(
            pb.GetAccountRequest(account_id="acct_ann"),
            metadata=audited.as_client("cli_b", "req-service"),
        )
        with pytest.raises(grpc.RpcError):
            audited.stub.GetAccount(pb.GetAccountRequest(account_id="acct_ann"))
        with pytest.raises(grpc.RpcError):  # a verified caller without the scope is named
            audited.stub.GetAccount(
                pb.GetAccountRequest(account_id="acct_ann"),
                metadata=audited.mint.metadata(["ledger.transfers.read"], subject="cli_c"),
            )
    lines = [entry for entry in logs if entry["event"] == "rpc"]
    assert [(e["code"], e.get("client_id"), e.get("customer_id")) for e in lines] == [
        ("OK", "cli_app", "cus_ann"),
        ("OK", "cli_b", None),
        ("UNAUTHENTICATED", None, None),  # no token: no caller to name
        ("PERMISSION_DENIED", "cli_c", None),
    ]


def test_identity_writes_record_the_requester(
    identity_stub: identity_pb2_grpc.IdentityServiceStub,
) -> None:
    def ask(request_id: str) -> Metadata:
        return (("x-request-id", request_id),)

    created = identity_stub.CreateCustomer(
        ipb.CreateCustomerRequest(
            customer=ipb.Customer(id="cus_audit", display_name="Ann", email="ann@example.com")
        ),
        metadata=ask("req-create"),
    ).customer
    assert _requester(created.created_by) == (ADMIN_ID, "", "req-create")
    identity_stub.SubmitKyc(
        ipb.SubmitKycRequest(request_id="kyc_submit1", customer_id="cus_audit"),
        metadata=ask("req-submit"),
    )
    identity_stub.ReviewKyc(
        ipb.ReviewKycRequest(
            request_id="kyc_review1",
            customer_id="cus_audit",
            decision=ipb.KYC_DECISION_APPROVE,
        ),
        metadata=ask("req-review"),
    )
    registered = identity_stub.RegisterClient(
        ipb.RegisterClientRequest(
            client=ipb.Client(
                id="cli_audited", display_name="Audited", allowed_scopes=["ledger.accounts.read"]
            )
        ),
        metadata=ask("req-register"),
    ).client
    identity_stub.DisableClient(
        ipb.DisableClientRequest(client_id="cli_audited"), metadata=ask("req-disable")
    )
    customer = identity_stub.GetCustomer(ipb.GetCustomerRequest(customer_id="cus_audit")).customer
    client = identity_stub.GetClient(ipb.GetClientRequest(client_id="cli_audited")).client
    assert _requester(customer.created_by) == (ADMIN_ID, "", "req-create")
    assert [_requester(c.changed_by) for c in customer.kyc_history] == [
        (ADMIN_ID, "", "req-submit"),
        (ADMIN_ID, "", "req-review"),
    ]
    assert _requester(registered.created_by) == (ADMIN_ID, "", "req-register")
    assert (_requester(client.created_by), _requester(client.disabled_by)) == (
        (ADMIN_ID, "", "req-register"),
        (ADMIN_ID, "", "req-disable"),
    )
