"""Service to service: a cached client-credentials token, and the ledger verifying it with
public keys it fetches from identity over gRPC (the path payments takes)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from astra.identity.v1 import identity_pb2 as ipb
from astra.identity.v1.identity_pb2_grpc import IdentityServiceStub
from astra.ledger.v1 import ledger_pb2 as lpb
from astra.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from astra_testkit.tls import tls_files
from chassis.auth import ClientCredentialsTokenSource
from chassis.grpc.client import open_channel
from chassis.grpc.status import reason_of
from ledger.bootstrap import Ledger
from ledger.entrypoints.server import build_server

from tests.identity_fixtures import (
    IdentityServer,
)
from tests.ledger_fixtures import ledger_settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def register(stub: IdentityServiceStub, client_id: str, *scopes: str) -> str:
    reply = stub.RegisterClient(
        ipb.RegisterClientRequest(
            client=ipb.Client(id=client_id, display_name=client_id, allowed_scopes=list(scopes))
        )
    )
    return reply.client_secret


def test_the_token_is_reused_until_shortly_before_it_expires(
    identity_server: IdentityServer, identity_stub: IdentityServiceStub
) -> None:
    secret = register(identity_stub, "cli_svc", "identity.customers.read")
    clock = Clock()
    source = ClientCredentialsTokenSource(
        identity_server.target,
        "cli_svc",
        secret,
        tls=tls_files(),
        refresh_margin=60,
        monotonic=clock,
    )
    try:
        first = source()
        for _ in range(20):
            assert source() == first
        assert source.issued_count == 1
        clock.now += 900 - 61  # the token lives 900 s; renewed 60 s ahead
        assert source() == first
        clock.now += 2
        assert source() != first
        assert source.issued_count == 2
        assert secret not in repr(source)
    finally:
        source.close()


def test_a_service_calls_identity_with_its_token(
    identity_server: IdentityServer, identity_stub: IdentityServiceStub
) -> None:
    identity_stub.CreateCustomer(
        ipb.CreateCustomerRequest(
            customer=ipb.Customer(id="cus_p", display_name="P", email="p@example.com")
        )
    )
    secret = register(identity_stub, "cli_payments", "identity.customers.read")
    source = ClientCredentialsTokenSource(
        identity_server.target, "cli_payments", secret, tls=tls_files()
    )
    with open_channel(identity_server.target, tls=tls_files(), token_source=source) as channel:
        reply = IdentityServiceStub(channel).GetCustomer(
            ipb.GetCustomerRequest(customer_id="cus_p")
        )
    assert reply.customer.kyc_status == ipb.KYC_STATUS_UNVERIFIED
    source.close()


@pytest.fixture
def ledger_trusting_identity(
    ledger: Ledger, ledger_db_url: str, identity_server: IdentityServer
) -> Iterator[str]:
    """The ledger verifying tokens with keys fetched from identity over gRPC."""
    settings = ledger_settings(
        ledger_db_url,
        auth_jwks_file="",
        auth_issuer="astra-identity",
        identity_target=identity_server.target,
    )
    server = build_server(ledger, settings)
    port = server.start()
    yield f"127.0.0.1:{port}"
    server.server.stop(0)


def test_the_ledger_verifies_identity_tokens_and_follows_its_rotations(
    identity_server: IdentityServer,
    identity_stub: IdentityServiceStub,
    ledger_trusting_identity: str,
) -> None:
    secret = register(
        identity_stub, "cli_payments", "ledger.accounts.read", "ledger.accounts.write"
    )
    source = ClientCredentialsTokenSource(
        identity_server.target, "cli_payments", secret, tls=tls_files()
    )
    with open_channel(ledger_trusting_identity, tls=tls_files(), token_source=source) as channel:
        ledger = LedgerServiceStub(channel)
        ledger.OpenAccount(
            lpb.OpenAccountRequest(
                account=lpb.Account(id="acct_p", currency="EUR", normal_side=lpb.NORMAL_SIDE_CREDIT)
            )
        )
        identity_stub.RotateSigningKey(ipb.RotateSigningKeyRequest(request_id="rot_e"))
        # The cached token was signed by the old key: still good until it expires.
        assert ledger.GetAccount(lpb.GetAccountRequest(account_id="acct_p")).account.id == "acct_p"
        source.invalidate()
        # A new token, signed by the new key, which the ledger fetches on sight.
        assert ledger.GetAccount(lpb.GetAccountRequest(account_id="acct_p")).account.id == "acct_p"
        assert source.issued_count == 2
        with pytest.raises(grpc.RpcError) as caught:
            ledger.CreateTransfer(lpb.CreateTransferRequest())
        assert reason_of(caught.value) == "MISSING_SCOPE"
    source.close()
