"""IdentityService over gRPC on PostgreSQL: customers and KYC, clients, tokens, keys."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import grpc
import jwt
import pytest
from astra.identity.v1 import events_pb2 as ev
from astra.identity.v1 import identity_pb2 as pb
from astra.identity.v1.identity_pb2_grpc import IdentityServiceStub
from chassis.grpc.status import bad_request, reason_of
from cryptography.fernet import Fernet
from identity.adapters import tables
from identity.adapters.crypto import KeyEncryptionKeyError
from identity.bootstrap import Identity, bootstrap
from identity.service_layer import use_cases
from sqlalchemy import func, select

from tests.identity_fixtures import (
    TEST_KEK,
    IdentityServer,
    identity_settings,
)
from tests.ledger_fixtures import MovableClock


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def create(stub: IdentityServiceStub, customer_id: str, **kw: str) -> pb.Customer:
    customer = pb.Customer(
        id=customer_id,
        display_name=kw.get("display_name", "Ann Example"),
        email=kw.get("email", f"{customer_id}@example.com"),
    )
    return stub.CreateCustomer(pb.CreateCustomerRequest(customer=customer)).customer


def register(stub: IdentityServiceStub, client_id: str, *scopes: str) -> str:
    reply = stub.RegisterClient(
        pb.RegisterClientRequest(
            client=pb.Client(id=client_id, display_name=client_id, allowed_scopes=list(scopes))
        )
    )
    return reply.client_secret


def outbox_events(identity: Identity) -> list[tuple[str, str, bytes]]:
    with identity.engine.connect() as connection:
        rows = connection.execute(
            select(
                tables.outbox.c.event_type, tables.outbox.c.ordering_key, tables.outbox.c.payload
            ).order_by(tables.outbox.c.id)
        ).all()
    return [(r.event_type, r.ordering_key, bytes(r.payload)) for r in rows]


def count(identity: Identity, table: Any) -> int:
    with identity.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


# --- customers -------------------------------------------------------------------------


def test_create_customer_is_idempotent_on_its_id(identity_stub: IdentityServiceStub) -> None:
    first = create(identity_stub, "cus_ann")
    assert first.kyc_status == pb.KYC_STATUS_UNVERIFIED
    assert first.kyc_version == 0
    assert create(identity_stub, "cus_ann") == first
    error = rpc_error(lambda: create(identity_stub, "cus_ann", email="other@example.com"))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert reason_of(error) == "IDEMPOTENCY_KEY_REUSED"
    got = identity_stub.GetCustomer(pb.GetCustomerRequest(customer_id="cus_ann")).customer
    assert got == first


def test_bad_customers_are_refused_field_by_field(identity_stub: IdentityServiceStub) -> None:
    error = rpc_error(lambda: create(identity_stub, "acct_x", display_name="", email="nope"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = bad_request(error)
    assert details is not None
    assert {v.field for v in details.field_violations} == {
        "customer.id",
        "customer.display_name",
        "customer.email",
    }
    missing = rpc_error(
        lambda: identity_stub.GetCustomer(pb.GetCustomerRequest(customer_id="cus_nobody"))
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert reason_of(missing) == "CUSTOMER_NOT_FOUND"


def test_list_customers_pages_and_filters_by_kyc_status(
    identity_stub: IdentityServiceStub,
) -> None:
    for i in range(7):
        create(identity_stub, f"cus_{i:02d}")
    for i in (1, 4):
        identity_stub.SubmitKyc(
            pb.SubmitKycRequest(request_id=f"kyc_s{i}", customer_id=f"cus_{i:02d}")
        )
    seen: list[str] = []
    token = ""
    while True:
        page = identity_stub.ListCustomers(pb.ListCustomersRequest(page_size=3, page_token=token))
        seen += [c.id for c in page.customers]
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"cus_{i:02d}" for i in range(7)]
    pending = identity_stub.ListCustomers(
        pb.ListCustomersRequest(kyc_status=pb.KYC_STATUS_PENDING_REVIEW)
    )
    assert [c.id for c in pending.customers] == ["cus_01", "cus_04"]
    other_filter = rpc_error(
        lambda: identity_stub.ListCustomers(
            pb.ListCustomersRequest(
                page_size=3,
                page_token=_first_token(identity_stub),
                kyc_status=pb.KYC_STATUS_PENDING_REVIEW,
            )
        )
    )
    assert other_filter.code() == grpc.StatusCode.INVALID_ARGUMENT


def _first_token(stub: IdentityServiceStub) -> str:
    return stub.ListCustomers(pb.ListCustomersRequest(page_size=3)).next_page_token


# --- KYC ----------------------------------------------------------------------------------


def test_kyc_lifecycle_with_reasons_history_and_events(
    identity_stub: IdentityServiceStub, identity: Identity, identity_server: IdentityServer
) -> None:
    create(identity_stub, "cus_kyc")
    submitted = identity_stub.SubmitKyc(
        pb.SubmitKycRequest(request_id="kyc_1", customer_id="cus_kyc")
    ).customer
    assert (submitted.kyc_status, submitted.kyc_version) == (pb.KYC_STATUS_PENDING_REVIEW, 1)
    rejected = identity_stub.ReviewKyc(
        pb.ReviewKycRequest(
            request_id="kyc_2",
            customer_id="cus_kyc",
            decision=pb.KYC_DECISION_REJECT,
            reason="passport expired",
        )
    ).customer
    assert rejected.kyc_status == pb.KYC_STATUS_REJECTED
    assert rejected.kyc_reason == "passport expired"
    identity_stub.SubmitKyc(pb.SubmitKycRequest(request_id="kyc_3", customer_id="cus_kyc"))
    verified = identity_stub.ReviewKyc(
        pb.ReviewKycRequest(
            request_id="kyc_4", customer_id="cus_kyc", decision=pb.KYC_DECISION_APPROVE
        )
    ).customer
    assert (verified.kyc_status, verified.kyc_version) == (pb.KYC_STATUS_VERIFIED, 4)
    assert [(h.status, h.reason, h.actor) for h in verified.kyc_history] == [
        (pb.KYC_STATUS_PENDING_REVIEW, "", identity_server.admin_id),
        (pb.KYC_STATUS_REJECTED, "passport expired", identity_server.admin_id),
        (pb.KYC_STATUS_PENDING_REVIEW, "", identity_server.admin_id),
        (pb.KYC_STATUS_VERIFIED, "", identity_server.admin_id),
    ]

    events = outbox_events(identity)
    assert [t for t, _, _ in events] == [
        "astra.identity.v1.CustomerCreated",
        *["astra.identity.v1.CustomerKycChanged"] * 4,
    ]
    assert {key for _, key, _ in events} == {"cus_kyc"}
    created = ev.CustomerCreated.FromString(events[0][2])
    assert created.customer_id == "cus_kyc"
    assert created.kyc_status == pb.KYC_STATUS_UNVERIFIED
    changes = [ev.CustomerKycChanged.FromString(p) for _, _, p in events[1:]]
    assert [c.kyc_version for c in changes] == [1, 2, 3, 4]
    assert changes[1].previous_status == pb.KYC_STATUS_PENDING_REVIEW
    assert changes[1].status == pb.KYC_STATUS_REJECTED
    assert changes[1].reason == "passport expired"
    assert all(c.HasField("occur_time") for c in changes)


def test_kyc_requests_replay_their_outcome_including_refusals(
    identity_stub: IdentityServiceStub, identity: Identity
) -> None:
    create(identity_stub, "cus_r")
    first = identity_stub.SubmitKyc(pb.SubmitKycRequest(request_id="kyc_a", customer_id="cus_r"))
    identity_stub.ReviewKyc(
        pb.ReviewKycRequest(
            request_id="kyc_b", customer_id="cus_r", decision=pb.KYC_DECISION_APPROVE
        )
    )
    # The replay answers as the first call did, though the customer has moved on.
    again = identity_stub.SubmitKyc(pb.SubmitKycRequest(request_id="kyc_a", customer_id="cus_r"))
    assert again.customer.kyc_status == pb.KYC_STATUS_PENDING_REVIEW
    assert again.customer.kyc_version == first.customer.kyc_version == 1

    refused = rpc_error(
        lambda: identity_stub.SubmitKyc(
            pb.SubmitKycRequest(request_id="kyc_c", customer_id="cus_r")
        )
    )
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(refused) == "INVALID_KYC_TRANSITION"
    events_before = len(outbox_events(identity))
    replayed = rpc_error(
        lambda: identity_stub.SubmitKyc(
            pb.SubmitKycRequest(request_id="kyc_c", customer_id="cus_r")
        )
    )
    assert reason_of(replayed) == "INVALID_KYC_TRANSITION"
    assert len(outbox_events(identity)) == events_before

    reused = rpc_error(
        lambda: identity_stub.ReviewKyc(
            pb.ReviewKycRequest(
                request_id="kyc_b",
                customer_id="cus_r",
                decision=pb.KYC_DECISION_REJECT,
                reason="changed my mind",
            )
        )
    )
    assert reused.code() == grpc.StatusCode.ALREADY_EXISTS
    assert reason_of(reused) == "IDEMPOTENCY_KEY_REUSED"


def test_a_rejection_needs_a_reason(identity_stub: IdentityServiceStub) -> None:
    create(identity_stub, "cus_n")
    identity_stub.SubmitKyc(pb.SubmitKycRequest(request_id="kyc_n1", customer_id="cus_n"))
    error = rpc_error(
        lambda: identity_stub.ReviewKyc(
            pb.ReviewKycRequest(
                request_id="kyc_n2", customer_id="cus_n", decision=pb.KYC_DECISION_REJECT
            )
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- clients and tokens --------------------------------------------------------------


def test_a_client_secret_is_shown_once_and_stored_only_as_a_keyed_hash(
    identity_stub: IdentityServiceStub, identity: Identity
) -> None:
    secret = register(identity_stub, "cli_pay", "ledger.accounts.read", "ledger.transfers.write")
    assert secret.startswith("astra_cs_")
    assert len(secret) > 40
    replay = identity_stub.RegisterClient(
        pb.RegisterClientRequest(
            client=pb.Client(
                id="cli_pay",
                display_name="cli_pay",
                allowed_scopes=["ledger.transfers.write", "ledger.accounts.read"],
            )
        )
    )
    assert replay.client_secret == ""
    assert replay.client.id == "cli_pay"
    with identity.engine.connect() as connection:
        stored = connection.execute(
            select(tables.clients).where(tables.clients.c.id == "cli_pay")
        ).one()
    assert stored.secret_hash.startswith("hmac-sha256$")
    assert secret not in str(tuple(stored))
    changed = rpc_error(lambda: register(identity_stub, "cli_pay", "ledger.accounts.read"))
    assert reason_of(changed) == "IDEMPOTENCY_KEY_REUSED"


def test_client_credentials_give_a_short_lived_es256_token(
    identity_stub: IdentityServiceStub, identity_server: IdentityServer
) -> None:
    secret = register(identity_stub, "cli_pay", "ledger.accounts.read", "ledger.transfers.write")
    anonymous = IdentityServiceStub(identity_server.anonymous())
    reply = anonymous.IssueToken(
        pb.IssueTokenRequest(
            client_id="cli_pay",
            client_secret=secret,
            scopes=["ledger.accounts.read"],
            audience="ledger",
        )
    )
    assert reply.token_type == "Bearer"
    assert reply.expires_in.seconds == 900
    assert list(reply.scopes) == ["ledger.accounts.read"]
    header = jwt.get_unverified_header(reply.access_token)
    assert header["alg"] == "ES256"
    keys = anonymous.GetPublicKeys(pb.GetPublicKeysRequest())
    assert header["kid"] == keys.keys[0].kid
    claims = jwt.decode(reply.access_token, options={"verify_signature": False})
    assert claims["iss"] == keys.issuer == "astra-identity"
    assert claims["aud"] == "ledger"  # one audience: the service the token is for
    assert claims["sub"] == claims["azp"] == "cli_pay"
    assert claims["scope"] == "ledger.accounts.read"
    assert claims["exp"] - claims["iat"] == 900
    assert keys.max_age.seconds == 300

    everything = anonymous.IssueToken(
        pb.IssueTokenRequest(client_id="cli_pay", client_secret=secret, audience="ledger")
    )
    assert sorted(everything.scopes) == ["ledger.accounts.read", "ledger.transfers.write"]
    too_much = rpc_error(
        lambda: anonymous.IssueToken(
            pb.IssueTokenRequest(
                client_id="cli_pay",
                client_secret=secret,
                scopes=["identity.keys.admin"],
                audience="identity",
            )
        )
    )
    assert too_much.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(too_much) == "SCOPE_NOT_ALLOWED"


@pytest.mark.parametrize(
    ("client_id", "secret"), [("cli_pay", "astra_cs_wrong"), ("cli_nobody", "astra_cs_whatever")]
)
def test_wrong_credentials_get_one_answer(
    identity_stub: IdentityServiceStub,
    identity_server: IdentityServer,
    client_id: str,
    secret: str,
) -> None:
    register(identity_stub, "cli_pay", "ledger.accounts.read")
    anonymous = IdentityServiceStub(identity_server.anonymous())
    error = rpc_error(
        lambda: anonymous.IssueToken(
            pb.IssueTokenRequest(client_id=client_id, client_secret=secret, audience="ledger")
        )
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason_of(error) == "INVALID_CLIENT"
    assert secret not in (error.details() or "")


def test_a_disabled_client_gets_no_new_token_and_nothing_is_written(
    identity_stub: IdentityServiceStub, identity_server: IdentityServer, identity: Identity
) -> None:
    secret = register(identity_stub, "cli_old", "ledger.accounts.read")
    disabled = identity_stub.DisableClient(pb.DisableClientRequest(client_id="cli_old")).client
    assert disabled.disabled
    assert disabled.HasField("disable_time")
    again = identity_stub.DisableClient(pb.DisableClientRequest(client_id="cli_old")).client
    assert again.disable_time == disabled.disable_time
    rows = (count(identity, tables.clients), count(identity, tables.outbox))
    anonymous = IdentityServiceStub(identity_server.anonymous())
    error = rpc_error(
        lambda: anonymous.IssueToken(
            pb.IssueTokenRequest(client_id="cli_old", client_secret=secret, audience="ledger")
        )
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason_of(error) == "CLIENT_DISABLED"
    assert (count(identity, tables.clients), count(identity, tables.outbox)) == rows


def test_admin_rpcs_need_their_scope(
    identity_stub: IdentityServiceStub, identity_server: IdentityServer, identity: Identity
) -> None:
    secret = register(identity_stub, "cli_reader", "identity.customers.read")
    reader = IdentityServiceStub(identity_server.channel(client_id="cli_reader", secret=secret))
    clients_before = count(identity, tables.clients)
    for call in (
        lambda: register(reader, "cli_sneaky", "identity.keys.admin"),
        lambda: reader.RotateSigningKey(pb.RotateSigningKeyRequest(request_id="rot_x")),
        lambda: reader.ReviewKyc(
            pb.ReviewKycRequest(
                request_id="kyc_x", customer_id="cus_x", decision=pb.KYC_DECISION_APPROVE
            )
        ),
        lambda: reader.IssueCustomerToken(
            pb.IssueCustomerTokenRequest(audience="ledger", customer_id="cus_x")
        ),
    ):
        error = rpc_error(call)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason_of(error) == "MISSING_SCOPE"
    assert count(identity, tables.clients) == clients_before
    no_token = rpc_error(
        lambda: IdentityServiceStub(identity_server.anonymous()).GetCustomer(
            pb.GetCustomerRequest(customer_id="cus_x")
        )
    )
    assert no_token.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason_of(no_token) == "MISSING_TOKEN"


def test_customer_tokens_speak_for_an_existing_customer_with_customer_scopes(
    identity_stub: IdentityServiceStub, identity_server: IdentityServer
) -> None:
    create(identity_stub, "cus_tok")
    reply = identity_stub.IssueCustomerToken(
        pb.IssueCustomerTokenRequest(audience="ledger", customer_id="cus_tok")
    )
    claims = jwt.decode(reply.access_token, options={"verify_signature": False})
    assert claims["sub"] == "cus_tok"
    assert claims["sub_type"] == "customer"
    assert claims["azp"] == identity_server.admin_id
    assert sorted(reply.scopes) == ["ledger.accounts.read", "ledger.transfers.read"]
    narrow = identity_stub.IssueCustomerToken(
        pb.IssueCustomerTokenRequest(
            audience="ledger", customer_id="cus_tok", scopes=["ledger.accounts.read"]
        )
    )
    assert list(narrow.scopes) == ["ledger.accounts.read"]
    write = rpc_error(
        lambda: identity_stub.IssueCustomerToken(
            pb.IssueCustomerTokenRequest(
                audience="ledger", customer_id="cus_tok", scopes=["ledger.transfers.write"]
            )
        )
    )
    assert reason_of(write) == "SCOPE_NOT_ALLOWED"
    nobody = rpc_error(
        lambda: identity_stub.IssueCustomerToken(
            pb.IssueCustomerTokenRequest(audience="ledger", customer_id="cus_ghost")
        )
    )
    assert nobody.code() == grpc.StatusCode.NOT_FOUND


# --- keys ---------------------------------------------------------------------------


def test_rotation_keeps_old_tokens_valid_until_they_expire(
    identity_stub: IdentityServiceStub,
    identity_server: IdentityServer,
    identity: Identity,
    identity_clock: MovableClock,
) -> None:
    anonymous = IdentityServiceStub(identity_server.anonymous())
    secret = register(identity_stub, "cli_rot", "identity.customers.read")
    issue = pb.IssueTokenRequest(client_id="cli_rot", client_secret=secret, audience="identity")
    old_token = anonymous.IssueToken(issue).access_token
    old_kid = jwt.get_unverified_header(old_token)["kid"]

    rotation = identity_stub.RotateSigningKey(pb.RotateSigningKeyRequest(request_id="rot_1"))
    assert rotation.key.kid != old_kid
    assert rotation.key.alg == "ES256"
    assert rotation.key.crv == "P-256"
    replay = identity_stub.RotateSigningKey(pb.RotateSigningKeyRequest(request_id="rot_1"))
    assert replay.key == rotation.key
    assert replay.previous_key_retire_time == rotation.previous_key_retire_time

    new_token = anonymous.IssueToken(issue).access_token
    assert jwt.get_unverified_header(new_token)["kid"] == rotation.key.kid
    published = [k.kid for k in anonymous.GetPublicKeys(pb.GetPublicKeysRequest()).keys]
    assert published == [rotation.key.kid, old_kid]  # the signing key first

    # Both verify, at identity itself, without a restart.
    for token in (old_token, new_token):
        assert identity.verifier.verify(token).subject == "cli_rot"

    # Once every token the old key signed has expired (15 min + 2 min margin), it is gone.
    identity_clock.advance(timedelta(minutes=17, seconds=1))
    published = [k.kid for k in anonymous.GetPublicKeys(pb.GetPublicKeysRequest()).keys]
    assert published == [rotation.key.kid]


def test_signing_keys_are_encrypted_at_rest(identity: Identity) -> None:
    with identity.engine.connect() as connection:
        rows = connection.execute(select(tables.signing_keys)).all()
    assert rows
    for row in rows:
        sealed = bytes(row.encrypted_private_key)
        assert b"PRIVATE KEY" not in sealed
        assert "d" not in row.public_jwk  # the JWK column is the public half only


def test_a_retired_key_keeps_only_its_public_half(
    identity_stub: IdentityServiceStub, identity: Identity
) -> None:
    before = use_cases.published_keys(identity.deps)
    assert len(before) == 1
    identity_stub.RotateSigningKey(pb.RotateSigningKeyRequest(request_id="rot_erase"))
    with identity.engine.connect() as connection:
        rows = connection.execute(select(tables.signing_keys)).all()
    (retired,) = (row for row in rows if not row.active)
    assert retired.kid == before[0].kid
    assert bytes(retired.encrypted_private_key) == b""
    assert retired.public_jwk == before[0].public_jwk  # still published, still verifies
    (active,) = (row for row in rows if row.active)
    assert b"PRIVATE KEY" not in bytes(active.encrypted_private_key)
    assert len(bytes(active.encrypted_private_key)) > 100  # the signing key keeps its own
    assert [k.kid for k in use_cases.published_keys(identity.deps)] == [active.kid, retired.kid]


def test_the_key_encryption_key_guards_the_signing_keys(
    identity: Identity, identity_db_url: str
) -> None:
    stranger = Fernet.generate_key().decode()
    with pytest.raises(KeyEncryptionKeyError, match="cannot be decrypted"):
        bootstrap(identity_settings(identity_db_url, key_encryption_key=stranger))
    # Rotating the key-encryption key: the new one first, the old one still listed.
    rotated = bootstrap(
        identity_settings(identity_db_url, key_encryption_key=f"{stranger},{TEST_KEK}")
    )
    try:
        assert [k.kid for k in use_cases.published_keys(rotated.deps)] == [
            k.kid for k in use_cases.published_keys(identity.deps)
        ]
    finally:
        rotated.close()


# --- every id and text at its maximum ------------------------------------------------------


def test_every_id_and_text_at_its_maximum_goes_through_every_rpc(
    identity_stub: IdentityServiceStub, identity_server: IdentityServer, identity: Identity
) -> None:
    """Each limit of the contract fits its column, on PostgreSQL, with text that is not ASCII."""
    admin = "cli_" + "A" * 60
    name = ("Zoë Ångström 漢字 " * 13)[:200]
    assert len(name) == 200
    every_scope = [
        "identity.customers.read",
        "identity.customers.write",
        "identity.kyc.review",
        "identity.clients.admin",
        "identity.tokens.issue_customer",
        "identity.keys.admin",
    ]
    secret = identity_stub.RegisterClient(
        pb.RegisterClientRequest(
            client=pb.Client(id=admin, display_name=name, allowed_scopes=every_scope)
        )
    ).client_secret
    # Every call from here is made as the client with the longest id: it is the recorded actor.
    stub = IdentityServiceStub(identity_server.channel(client_id=admin, secret=secret))
    customer = "cus_" + "c" * 60
    email = "e" * 64 + "@" + ("d" * 63 + ".") * 2 + "d" * 58 + ".io"  # 254 characters
    assert len(email) == 254
    created = create(stub, customer, display_name=name, email=email)
    assert (created.id, created.display_name, created.email) == (customer, name, email)
    reason = "Pièce d'identité illisible — 请重新提交 " * 15
    reason = reason[:500]
    stub.SubmitKyc(pb.SubmitKycRequest(request_id="kyc_" + "1" * 60, customer_id=customer))
    rejected = stub.ReviewKyc(
        pb.ReviewKycRequest(
            request_id="kyc_" + "2" * 60,
            customer_id=customer,
            decision=pb.KYC_DECISION_REJECT,
            reason=reason,
        )
    ).customer
    assert (rejected.kyc_status, rejected.kyc_reason) == (pb.KYC_STATUS_REJECTED, reason)
    with identity.engine.connect() as connection:
        actors = connection.execute(
            select(tables.kyc_changes.c.actor).where(tables.kyc_changes.c.customer_id == customer)
        ).scalars()
        assert set(actors) == {admin}
    token = stub.IssueCustomerToken(
        pb.IssueCustomerTokenRequest(audience="ledger", customer_id=customer)
    )
    assert jwt.decode(token.access_token, options={"verify_signature": False})["sub"] == customer
    rotated = stub.RotateSigningKey(pb.RotateSigningKeyRequest(request_id="rot_" + "3" * 60))
    assert rotated.key.kid
    other = "cli_" + "B" * 60
    register(stub, other, "ledger.accounts.read")
    assert stub.GetClient(pb.GetClientRequest(client_id=other)).client.id == other
    assert stub.DisableClient(pb.DisableClientRequest(client_id=other)).client.disabled
    found = stub.GetCustomer(pb.GetCustomerRequest(customer_id=customer)).customer
    assert found.kyc_reason == reason
