"""Identity and the ledger as real processes on PostgreSQL: a client gets a token from identity
and calls the ledger with it, through the generated stubs and through grpcurl; keys rotate
under running processes; a disabled client is refused; no secret or token reaches the logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import jwt
import pytest
from astra.identity.v1 import identity_pb2 as ipb
from astra.identity.v1.identity_pb2_grpc import IdentityServiceStub
from astra.ledger.v1 import ledger_pb2 as lpb
from astra.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from astra_testkit.identity_cli import all_scopes, register_client
from astra_testkit.ports import free_port
from astra_testkit.postgres import PostgresServer
from astra_testkit.processes import ServiceProcess
from astra_testkit.tls import grpcurl_tls, tls_channel, tls_env, tls_files
from chassis.grpc.client import open_channel
from chassis.grpc.status import reason_of

BIN = Path(sys.executable).parent
GRPCURL = BIN / "grpcurl"


@dataclass
class Suite:
    identity: str
    ledger: str
    identity_process: ServiceProcess
    ledger_process: ServiceProcess
    admin_id: str
    admin_secret: str
    # Every secret and token handed out during the run, for the log scan at the end.
    secrets: list[str] = field(default_factory=list)

    def token(self, client_id: str, secret: str, *scopes: str, audience: str = "ledger") -> str:
        """A token for one service: the ledger unless ``audience`` says another."""
        with tls_channel(self.identity) as channel:
            reply = IdentityServiceStub(channel).IssueToken(
                ipb.IssueTokenRequest(
                    client_id=client_id, client_secret=secret, scopes=scopes, audience=audience
                ),
                timeout=30,
            )
        self.secrets.append(reply.access_token)
        return reply.access_token

    def admin(self) -> IdentityServiceStub:
        token = self.token(self.admin_id, self.admin_secret, audience="identity")
        channel = open_channel(
            self.identity, tls=tls_files(), default_timeout=30, token_source=lambda: token
        )
        return IdentityServiceStub(channel)


@pytest.fixture(scope="module")
def suite(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    folder = tmp_path_factory.mktemp("suite")
    identity_db = postgres.create_database(prefix="astra_e2e_identity")
    ledger_db = postgres.create_database(prefix="astra_e2e_ledger")
    kek = folder / "identity.kek"
    subprocess.run(
        [str(BIN / "astra-identity"), "generate-kek", "--out", str(kek)],
        env={**os.environ, **tls_env("IDENTITY", "identity")},
        check=True,
        timeout=60,
    )
    assert kek.stat().st_mode & 0o077 == 0  # readable by its owner only
    identity_port, ledger_port = free_port(), free_port()
    identity_env = {
        "IDENTITY_DATABASE_URL": postgres.url_for(identity_db),
        "IDENTITY_GRPC_PORT": str(identity_port),
        "IDENTITY_KEY_ENCRYPTION_KEY_FILE": str(kek),
        "IDENTITY_GRACE_SECONDS": "2",
        "IDENTITY_METRICS_PORT": "0",  # tests never take the default 9101
        "IDENTITY_LOG_LEVEL": "DEBUG",
        **tls_env("IDENTITY", "identity"),
    }
    # The first admin, registered the operator's way; its secret is printed once.
    admin = register_client(identity_env, "cli_e2e_admin", "--name", "E2E admin", *all_scopes())
    admin_secret = str(admin["client_secret"])
    identity = ServiceProcess(
        "identity", [str(BIN / "astra-identity"), "serve"], identity_env, log_dir=folder
    ).start()
    ledger = ServiceProcess(
        "ledger",
        [str(BIN / "astra-ledger"), "serve"],
        {
            "LEDGER_DATABASE_URL": postgres.url_for(ledger_db),
            "LEDGER_GRPC_PORT": str(ledger_port),
            "LEDGER_METRICS_PORT": "0",
            "LEDGER_GRACE_SECONDS": "2",
            "LEDGER_LOG_LEVEL": "DEBUG",
            "LEDGER_IDENTITY_TARGET": f"127.0.0.1:{identity_port}",
            **tls_env("LEDGER", "ledger"),
        },
        log_dir=folder,
    ).start()
    try:
        identity.wait_healthy(f"127.0.0.1:{identity_port}")
        ledger.wait_healthy(f"127.0.0.1:{ledger_port}")
        yield Suite(
            f"127.0.0.1:{identity_port}",
            f"127.0.0.1:{ledger_port}",
            identity,
            ledger,
            "cli_e2e_admin",
            admin_secret,
            secrets=[admin_secret],
        )
    finally:
        ledger.terminate()
        identity.terminate()
        postgres.drop_database(ledger_db)
        postgres.drop_database(identity_db)


def _register(suite: Suite, client_id: str, *scopes: str) -> str:
    reply = suite.admin().RegisterClient(
        ipb.RegisterClientRequest(
            client=ipb.Client(id=client_id, display_name=client_id, allowed_scopes=list(scopes))
        )
    )
    suite.secrets.append(reply.client_secret)
    return reply.client_secret


def _grpcurl(
    target: str, method: str, data: dict[str, object], token: str = ""
) -> dict[str, object]:
    command = [str(GRPCURL), *grpcurl_tls()]
    if token:
        command += ["-H", f"authorization: Bearer {token}"]
    command += ["-d", json.dumps(data), target, method]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_a_client_gets_a_token_and_calls_the_ledger_with_stubs(suite: Suite) -> None:
    secret = _register(
        suite,
        "cli_e2e_payments",
        "ledger.accounts.read",
        "ledger.accounts.write",
        "ledger.transfers.read",
        "ledger.transfers.write",
        "identity.tokens.issue_customer",
        "identity.customers.write",
    )
    token = suite.token("cli_e2e_payments", secret)
    auth = (("authorization", f"Bearer {token}"),)
    id_token = suite.token("cli_e2e_payments", secret, audience="identity")
    id_auth = (("authorization", f"Bearer {id_token}"),)
    with tls_channel(suite.ledger) as channel:
        ledger = LedgerServiceStub(channel)
        for account_id, customer, side in (
            ("acct_e2e_bank", "", lpb.NORMAL_SIDE_DEBIT),
            ("acct_e2e_ann", "cus_e2e_ann", lpb.NORMAL_SIDE_CREDIT),
            ("acct_e2e_bob", "cus_e2e_bob", lpb.NORMAL_SIDE_CREDIT),
        ):
            ledger.OpenAccount(
                lpb.OpenAccountRequest(
                    account=lpb.Account(
                        id=account_id, currency="EUR", normal_side=side, customer_id=customer
                    )
                ),
                metadata=auth,
                timeout=30,
            )
        got = ledger.GetAccount(
            lpb.GetAccountRequest(account_id="acct_e2e_ann"), metadata=auth, timeout=30
        )
        assert got.account.customer_id == "cus_e2e_ann"

        # A customer-scoped token: the customer sees its own account, not another's.
        with tls_channel(suite.identity) as id_channel:
            identity = IdentityServiceStub(id_channel)
            identity.CreateCustomer(
                ipb.CreateCustomerRequest(
                    customer=ipb.Customer(
                        id="cus_e2e_ann", display_name="Ann", email="ann@example.com"
                    )
                ),
                metadata=id_auth,
                timeout=30,
            )
            customer_token = identity.IssueCustomerToken(
                ipb.IssueCustomerTokenRequest(customer_id="cus_e2e_ann", audience="ledger"),
                metadata=id_auth,
                timeout=30,
            ).access_token
        suite.secrets.append(customer_token)
        as_ann = (("authorization", f"Bearer {customer_token}"),)
        own = ledger.GetAccount(
            lpb.GetAccountRequest(account_id="acct_e2e_ann"), metadata=as_ann, timeout=30
        )
        assert own.account.id == "acct_e2e_ann"
        with pytest.raises(grpc.RpcError) as caught:
            ledger.GetAccount(
                lpb.GetAccountRequest(account_id="acct_e2e_bob"), metadata=as_ann, timeout=30
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason_of(caught.value) == "NOT_ACCOUNT_OWNER"

        with pytest.raises(grpc.RpcError) as no_token:
            ledger.GetAccount(lpb.GetAccountRequest(account_id="acct_e2e_ann"), timeout=30)
        assert no_token.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_client_gets_a_token_and_calls_the_ledger_with_grpcurl(suite: Suite) -> None:
    secret = _register(suite, "cli_e2e_curl", "ledger.accounts.read", "ledger.accounts.write")
    issued = _grpcurl(
        suite.identity,
        "astra.identity.v1.IdentityService/IssueToken",
        {"clientId": "cli_e2e_curl", "clientSecret": secret, "audience": "ledger"},
    )
    token = str(issued["access_token"])
    suite.secrets.append(token)
    assert issued["token_type"] == "Bearer"
    opened = _grpcurl(
        suite.ledger,
        "astra.ledger.v1.LedgerService/OpenAccount",
        {"account": {"id": "acct_e2e_curl", "currency": "EUR", "normalSide": "NORMAL_SIDE_DEBIT"}},
        token,
    )
    assert opened["account"]["id"] == "acct_e2e_curl"  # type: ignore[index]
    refused = subprocess.run(
        [
            str(GRPCURL),
            *grpcurl_tls(),
            "-d",
            json.dumps({"accountId": "acct_e2e_curl"}),
            suite.ledger,
            "astra.ledger.v1.LedgerService/GetAccount",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0
    assert "Unauthenticated" in refused.stderr
    assert "MISSING_TOKEN" in refused.stderr


def test_keys_rotate_under_running_processes(suite: Suite) -> None:
    secret = _register(suite, "cli_e2e_rot", "ledger.accounts.read", "ledger.accounts.write")
    old = suite.token("cli_e2e_rot", secret)
    with tls_channel(suite.ledger) as channel:
        ledger = LedgerServiceStub(channel)
        ledger.OpenAccount(
            lpb.OpenAccountRequest(
                account=lpb.Account(
                    id="acct_e2e_rot", currency="EUR", normal_side=lpb.NORMAL_SIDE_DEBIT
                )
            ),
            metadata=(("authorization", f"Bearer {old}"),),
            timeout=30,
        )
        rotated = suite.admin().RotateSigningKey(
            ipb.RotateSigningKeyRequest(request_id="rot_e2e_1"), timeout=30
        )
        new = suite.token("cli_e2e_rot", secret)
        assert jwt.get_unverified_header(new)["kid"] == rotated.key.kid
        assert jwt.get_unverified_header(old)["kid"] != rotated.key.kid
        for token in (new, old):  # the ledger was not restarted
            reply = ledger.GetAccount(
                lpb.GetAccountRequest(account_id="acct_e2e_rot"),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=30,
            )
            assert reply.account.id == "acct_e2e_rot"
    with tls_channel(suite.identity) as channel:
        keys = IdentityServiceStub(channel).GetPublicKeys(ipb.GetPublicKeysRequest(), timeout=30)
    kids = [k.kid for k in keys.keys]
    assert kids[0] == rotated.key.kid
    assert jwt.get_unverified_header(old)["kid"] in kids


def test_a_disabled_client_cannot_get_a_new_token(suite: Suite) -> None:
    secret = _register(suite, "cli_e2e_gone", "ledger.accounts.read")
    suite.token("cli_e2e_gone", secret)
    suite.admin().DisableClient(ipb.DisableClientRequest(client_id="cli_e2e_gone"), timeout=30)
    with pytest.raises(grpc.RpcError) as caught:
        suite.token("cli_e2e_gone", secret)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason_of(caught.value) == "CLIENT_DISABLED"


def test_wrong_secrets_and_garbage_tokens_are_not_echoed(suite: Suite) -> None:
    wrong = "astra_cs_THIS-IS-A-WRONG-SECRET-0123456789"
    suite.secrets.append(wrong)
    with pytest.raises(grpc.RpcError) as caught:
        suite.token("cli_e2e_admin", wrong)
    assert reason_of(caught.value) == "INVALID_CLIENT"
    assert wrong not in (caught.value.details() or "")
    garbage = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5LXRoZS1hdHRhY2tlciJ9.c2lnbmF0dXJl"
    suite.secrets.append(garbage)
    with tls_channel(suite.ledger) as channel, pytest.raises(grpc.RpcError) as refused:
        LedgerServiceStub(channel).GetAccount(
            lpb.GetAccountRequest(account_id="acct_x"),
            metadata=(("authorization", f"Bearer {garbage}"),),
            timeout=30,
        )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert garbage not in (refused.value.details() or "")


def test_no_secret_or_token_reaches_the_logs(suite: Suite) -> None:
    # Its own secrets, tokens and refusals, plus whatever the other tests handed out.
    secret = _register(suite, "cli_e2e_logs", "ledger.accounts.read")
    token = suite.token("cli_e2e_logs", secret)
    with tls_channel(suite.ledger) as channel, pytest.raises(grpc.RpcError):
        LedgerServiceStub(channel).GetAccount(
            lpb.GetAccountRequest(account_id="acct_none"),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=30,
        )
    test_wrong_secrets_and_garbage_tokens_are_not_echoed(suite)
    assert len(suite.secrets) >= 5
    logs = suite.identity_process.logs() + suite.ledger_process.logs()
    assert '"rpc refused"' in logs  # the logs are there and verbose (DEBUG)
    leaked = [s[:12] + "..." for s in suite.secrets if s and s in logs]
    assert leaked == []
    for line in logs.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            assert "client_secret" not in record or record["client_secret"] == "[REDACTED]"
