"""Service to service: a cached client-credentials token, and the ledger verifying it with
public keys it fetches from identity over gRPC (the path payments takes)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import jwt
import pytest
from astra.identity.v1 import identity_pb2 as ipb
from astra.identity.v1.identity_pb2_grpc import IdentityServiceStub
from astra.ledger.v1 import ledger_pb2 as lpb
from astra.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from astra_testkit.tls import tls_channel, tls_files
from astra_testkit.waiting import wait_until
from chassis.auth import ClientCredentialsTokenSource, verifier_from
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
        audience="identity",
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
        identity_server.target, "cli_payments", secret, audience="identity", tls=tls_files()
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
        auth_audience="ledger",
        identity_target=identity_server.target,
        # Quick, so that the revocation test waits little (the default is 2 s).
        auth_revocation_refresh_seconds=0.2,
    )
    verifier = verifier_from(settings)
    server = build_server(ledger, settings, verifier)
    port = server.start()
    yield f"127.0.0.1:{port}"
    server.server.stop(0)
    verifier.close()  # stops following identity's revocations


def test_the_ledger_verifies_identity_tokens_and_follows_its_rotations(
    identity_server: IdentityServer,
    identity_stub: IdentityServiceStub,
    ledger_trusting_identity: str,
) -> None:
    secret = register(
        identity_stub, "cli_payments", "ledger.accounts.read", "ledger.accounts.write"
    )
    source = ClientCredentialsTokenSource(
        identity_server.target, "cli_payments", secret, audience="ledger", tls=tls_files()
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


def _refusal(call: Callable[[], object]) -> tuple[grpc.StatusCode, str | None]:
    try:
        call()
    except grpc.RpcError as error:
        return error.code(), reason_of(error)
    return grpc.StatusCode.OK, None


def _issue(target: str, client_id: str, secret: str, audience: str) -> str:
    with tls_channel(target) as channel:
        reply = IdentityServiceStub(channel).IssueToken(
            ipb.IssueTokenRequest(client_id=client_id, client_secret=secret, audience=audience),
            timeout=10,
        )
    return reply.access_token


def test_a_token_is_accepted_only_by_the_service_it_was_issued_for(
    identity_server: IdentityServer,
    identity_stub: IdentityServiceStub,
    ledger_trusting_identity: str,
) -> None:
    secret = register(identity_stub, "cli_aud", "ledger.accounts.read", "identity.customers.read")
    for_identity = _issue(identity_server.target, "cli_aud", secret, "identity")
    for_ledger = _issue(identity_server.target, "cli_aud", secret, "ledger")
    with tls_channel(ledger_trusting_identity) as channel:
        ledger = LedgerServiceStub(channel)
        assert _refusal(
            lambda: ledger.GetAccount(
                lpb.GetAccountRequest(account_id="acct_none"),
                metadata=(("authorization", f"Bearer {for_identity}"),),
            )
        ) == (grpc.StatusCode.UNAUTHENTICATED, "WRONG_AUDIENCE")
        # The ledger's own token passes authentication (the account just does not exist).
        assert _refusal(
            lambda: ledger.GetAccount(
                lpb.GetAccountRequest(account_id="acct_none"),
                metadata=(("authorization", f"Bearer {for_ledger}"),),
            )
        ) == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")
    with tls_channel(identity_server.target) as channel:
        assert _refusal(
            lambda: IdentityServiceStub(channel).GetCustomer(
                ipb.GetCustomerRequest(customer_id="cus_none"),
                metadata=(("authorization", f"Bearer {for_ledger}"),),
            )
        ) == (grpc.StatusCode.UNAUTHENTICATED, "WRONG_AUDIENCE")
    with tls_channel(identity_server.target) as channel:
        assert _refusal(
            lambda: IdentityServiceStub(channel).IssueToken(
                ipb.IssueTokenRequest(client_id="cli_aud", client_secret=secret, audience="bank")
            )
        ) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")


def test_a_revoked_token_and_a_disabled_clients_token_are_refused_by_the_ledger(
    identity_server: IdentityServer,
    identity_stub: IdentityServiceStub,
    ledger_trusting_identity: str,
) -> None:
    secret = register(identity_stub, "cli_rev", "ledger.accounts.read")
    other_secret = register(identity_stub, "cli_off", "ledger.accounts.read")
    revoked = _issue(identity_server.target, "cli_rev", secret, "ledger")
    kept = _issue(identity_server.target, "cli_rev", secret, "ledger")
    disabled = _issue(identity_server.target, "cli_off", other_secret, "ledger")
    with tls_channel(ledger_trusting_identity) as channel:
        ledger = LedgerServiceStub(channel)

        def outcome(token: str) -> tuple[grpc.StatusCode, str | None]:
            return _refusal(
                lambda: ledger.GetAccount(
                    lpb.GetAccountRequest(account_id="acct_none"),
                    metadata=(("authorization", f"Bearer {token}"),),
                )
            )

        for token in (revoked, kept, disabled):  # each verified (and cached) first
            assert outcome(token) == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")
        jti = str(jwt.decode(revoked, options={"verify_signature": False})["jti"])
        identity_stub.RevokeToken(ipb.RevokeTokenRequest(token_id=jti))
        identity_stub.DisableClient(ipb.DisableClientRequest(client_id="cli_off"))
        # The refresh interval is 0.2 s here; the deadline is far beyond it.
        wait_until(
            lambda: outcome(revoked) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED"),
            10,
            "the ledger to refuse the revoked token",
        )
        wait_until(
            lambda: outcome(disabled) == (grpc.StatusCode.UNAUTHENTICATED, "CLIENT_DISABLED"),
            10,
            "the ledger to refuse the disabled client's token",
        )
        assert outcome(kept) == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")
    listed = IdentityServiceStub(channel := identity_server.channel()).ListRevocations(
        ipb.ListRevocationsRequest()
    )
    channel.close()
    assert [t.token_id for t in listed.revoked_tokens] == [jti]
    assert list(listed.disabled_client_ids) == ["cli_off"]


def test_a_disabled_client_cannot_mint_customer_tokens(
    identity_server: IdentityServer, identity_stub: IdentityServiceStub
) -> None:
    identity_stub.CreateCustomer(
        ipb.CreateCustomerRequest(
            customer=ipb.Customer(id="cus_d", display_name="D", email="d@example.com")
        )
    )
    secret = register(
        identity_stub, "cli_minter", "identity.tokens.issue_customer", "ledger.accounts.read"
    )
    token = _issue(identity_server.target, "cli_minter", secret, "identity")
    auth = (("authorization", f"Bearer {token}"),)
    request = ipb.IssueCustomerTokenRequest(customer_id="cus_d", audience="ledger")
    with tls_channel(identity_server.target) as channel:
        minter = IdentityServiceStub(channel)
        minted = minter.IssueCustomerToken(request, metadata=auth)
        # At most what customers and this client may both have.
        assert list(minted.scopes) == ["ledger.accounts.read"]
        identity_stub.DisableClient(ipb.DisableClientRequest(client_id="cli_minter"))
        # Refused at once, whether by the use case or (within the refresh) the verifier.
        assert _refusal(lambda: minter.IssueCustomerToken(request, metadata=auth)) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "CLIENT_DISABLED",
        )
