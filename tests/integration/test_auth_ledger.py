"""The ledger behind auth: forged tokens refused with the right code and nothing written;
customers see only their own accounts and transfers; keys rotate without a restart."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from astra.ledger.v1 import ledger_pb2 as pb
from astra.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from astra_testkit.tls import tls_channel, tls_files
from chassis.auth import build_verifier
from chassis.auth.testing import TokenMint
from chassis.grpc.status import reason_of
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ledger.adapters import tables
from ledger.bootstrap import Ledger
from ledger.entrypoints.server import build_server
from sqlalchemy import func, select

from tests.auth_forgery import forgeries


@dataclass
class Guarded:
    target: str
    stub: LedgerServiceStub
    mint: TokenMint
    jwks: Path

    def as_service(self, *scopes: str) -> tuple[tuple[str, str], ...]:
        return self.mint.metadata(scopes or None)

    def as_customer(self, customer_id: str) -> tuple[tuple[str, str], ...]:
        token = self.mint.customer_token(
            customer_id, ["ledger.accounts.read", "ledger.transfers.read"]
        )
        return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def guarded(ledger: Ledger, tmp_path: Path) -> Iterator[Guarded]:
    """The ledger over gRPC, trusting a mint of this test's own through a JWKS file."""
    mint = TokenMint()
    jwks = mint.write_jwks(tmp_path / "jwks.json")
    verifier = build_verifier(
        issuer=mint.issuer,
        audience=mint.audience,
        identity_target="127.0.0.1:9",  # never asked: the keys come from the file
        jwks_file=str(jwks),
        min_refresh_interval=0,
    )
    server = build_server(ledger, ledger.settings, verifier)
    port = server.start()
    channel = tls_channel(f"127.0.0.1:{port}")
    guarded = Guarded(f"127.0.0.1:{port}", LedgerServiceStub(channel), mint, jwks)
    _seed(guarded)
    yield guarded
    channel.close()
    server.server.stop(0)


def _account(
    account_id: str, customer_id: str = "", side: pb.NormalSide.ValueType = pb.NORMAL_SIDE_CREDIT
) -> pb.Account:
    return pb.Account(id=account_id, currency="EUR", normal_side=side, customer_id=customer_id)


def _movement(transfer_id: str, debit: str, credit: str, amount: int) -> pb.TransferSpec:
    return pb.TransferSpec(
        id=transfer_id,
        movement=pb.Movement(
            legs=[
                pb.Leg(
                    account_id=debit, direction=pb.DIRECTION_DEBIT, amount=amount, currency="EUR"
                ),
                pb.Leg(
                    account_id=credit, direction=pb.DIRECTION_CREDIT, amount=amount, currency="EUR"
                ),
            ]
        ),
    )


def _seed(g: Guarded) -> None:
    service = g.as_service()
    g.stub.OpenAccount(
        pb.OpenAccountRequest(account=_account("acct_bank", side=pb.NORMAL_SIDE_DEBIT)),
        metadata=service,
    )
    for account_id, customer in (
        ("acct_ann", "cus_ann"),
        ("acct_ann2", "cus_ann"),
        ("acct_bob", "cus_bob"),
    ):
        g.stub.OpenAccount(
            pb.OpenAccountRequest(account=_account(account_id, customer)), metadata=service
        )
    for transfer_id, credit in (("tr_ann", "acct_ann"), ("tr_bob", "acct_bob")):
        g.stub.CreateTransfer(
            pb.CreateTransferRequest(transfer=_movement(transfer_id, "acct_bank", credit, 500)),
            metadata=service,
        )


def _counts(ledger: Ledger) -> dict[str, int]:
    with ledger.engine.connect() as connection:
        return {
            t.name: int(connection.execute(select(func.count()).select_from(t)).scalar_one())
            for t in (tables.accounts, tables.transfers, tables.entries, tables.outbox)
        }


def _refused(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value


@pytest.mark.parametrize("forgery", forgeries(TokenMint()), ids=lambda f: f.name)
def test_forged_tokens_are_refused_and_nothing_is_written(
    guarded: Guarded, ledger: Ledger, forgery: object
) -> None:
    # Re-forge against this test's mint (the parametrized one only names the cases).
    attack = next(f for f in forgeries(guarded.mint) if f.name == forgery.name)  # type: ignore[attr-defined]
    before = _counts(ledger)
    transfer = _movement("tr_attack", "acct_bank", "acct_ann", 1_000_000)
    error = _refused(
        lambda: guarded.stub.CreateTransfer(
            pb.CreateTransferRequest(transfer=transfer), metadata=attack.metadata()
        )
    )
    assert (error.code(), reason_of(error)) == (attack.code, attack.reason)
    opened = _refused(
        lambda: guarded.stub.OpenAccount(
            pb.OpenAccountRequest(account=_account("acct_attack")), metadata=attack.metadata()
        )
    )
    assert opened.code() == attack.code
    assert _counts(ledger) == before
    missing = _refused(
        lambda: guarded.stub.GetTransfer(
            pb.GetTransferRequest(transfer_id="tr_attack"), metadata=guarded.as_service()
        )
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    for secret_part in (attack.authorization or "").split():
        assert secret_part not in (error.details() or "") or secret_part == "Bearer"


def test_a_customer_sees_only_its_own_accounts(guarded: Guarded) -> None:
    ann = guarded.as_customer("cus_ann")
    got = guarded.stub.GetAccount(pb.GetAccountRequest(account_id="acct_ann"), metadata=ann)
    assert got.account.balance.posted == 500
    for call in (
        lambda: guarded.stub.GetAccount(pb.GetAccountRequest(account_id="acct_bob"), metadata=ann),
        lambda: guarded.stub.GetBalance(pb.GetBalanceRequest(account_id="acct_bob"), metadata=ann),
        lambda: guarded.stub.ListAccountEntries(
            pb.ListAccountEntriesRequest(account_id="acct_bob"), metadata=ann
        ),
        lambda: guarded.stub.ListAccounts(
            pb.ListAccountsRequest(customer_id="cus_bob"), metadata=ann
        ),
    ):
        error = _refused(call)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason_of(error) == "NOT_ACCOUNT_OWNER"
    listed = guarded.stub.ListAccounts(pb.ListAccountsRequest(), metadata=ann)
    assert [a.id for a in listed.accounts] == ["acct_ann", "acct_ann2"]


def test_a_customer_sees_only_transfers_touching_its_accounts(guarded: Guarded) -> None:
    ann = guarded.as_customer("cus_ann")
    own = guarded.stub.GetTransfer(pb.GetTransferRequest(transfer_id="tr_ann"), metadata=ann)
    assert own.transfer.id == "tr_ann"
    error = _refused(
        lambda: guarded.stub.GetTransfer(pb.GetTransferRequest(transfer_id="tr_bob"), metadata=ann)
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(error) == "NOT_TRANSFER_PARTY"
    # A service client sees everything.
    theirs = guarded.stub.GetTransfer(
        pb.GetTransferRequest(transfer_id="tr_bob"), metadata=guarded.as_service()
    )
    assert theirs.transfer.id == "tr_bob"


def test_only_services_look_up_transfers_in_bulk(guarded: Guarded) -> None:
    request = pb.LookupTransfersRequest(transfer_ids=["tr_ann", "tr_bob"])
    error = _refused(
        lambda: guarded.stub.LookupTransfers(request, metadata=guarded.as_customer("cus_ann"))
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(error) == "SERVICE_CALLER_REQUIRED"
    found = guarded.stub.LookupTransfers(
        request, metadata=guarded.as_service("ledger.transfers.read")
    )
    assert [t.id for t in found.transfers] == ["tr_ann", "tr_bob"]


def test_health_and_reflection_stay_open(guarded: Guarded) -> None:
    with tls_channel(guarded.target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_keys_rotate_without_a_restart(guarded: Guarded) -> None:
    request = pb.GetAccountRequest(account_id="acct_ann")
    old_kid = guarded.mint.kid
    old_token = guarded.as_service("ledger.accounts.read")
    guarded.stub.GetAccount(request, metadata=old_token)

    guarded.mint.rotate()
    guarded.mint.write_jwks(guarded.jwks)
    new_token = guarded.as_service("ledger.accounts.read")
    assert guarded.stub.GetAccount(request, metadata=new_token).account.id == "acct_ann"
    assert guarded.stub.GetAccount(request, metadata=old_token).account.id == "acct_ann"
    assert [k["kid"] for k in guarded.mint.key_document().keys] == [old_kid, guarded.mint.kid]


def test_without_any_keys_the_ledger_answers_unavailable(ledger: Ledger) -> None:
    # identity unreachable and never reached: a retryable outage, not the caller's fault.
    verifier = build_verifier(
        issuer="astra-identity",
        audience="astra",
        identity_target="127.0.0.1:9",
        tls=tls_files("ledger"),
    )
    server = build_server(ledger, ledger.settings, verifier)
    port = server.start()
    try:
        with tls_channel(f"127.0.0.1:{port}") as channel:
            error = _refused(
                lambda: LedgerServiceStub(channel).GetAccount(
                    pb.GetAccountRequest(account_id="acct_x"),
                    metadata=TokenMint(issuer="astra-identity").metadata(),
                    timeout=30,
                )
            )
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert reason_of(error) == "KEYS_UNAVAILABLE"
    finally:
        server.server.stop(0)
