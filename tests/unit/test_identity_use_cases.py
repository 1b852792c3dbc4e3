"""Identity's use cases on the in-memory unit of work: the whole service layer, no I/O.

Keys are real (ES256, encrypted at rest); secrets are hashed as in production
(HMAC-SHA256 under a key derived from the key-encryption key).
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from chassis.kernel.errors import (
    DomainError,
    FailedPrecondition,
    IdempotencyKeyReused,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from chassis.kernel.uow import run_in_transaction
from chassis.ratelimit import Rate, RateLimit
from cryptography.fernet import Fernet
from identity.adapters.crypto import KeyedSecretHasher, KeyVault
from identity.adapters.memory import MemoryIdentityDatabase
from identity.domain.events import CustomerCreated, CustomerErased, CustomerKycChanged
from identity.domain.model import (
    ClientSpec,
    Customer,
    CustomerSpec,
    KycDecision,
    KycStatus,
    TokenPolicy,
)
from identity.service_layer import use_cases
from identity.service_layer.unit_of_work import IdentityUnitOfWork

from tests.ledger_fixtures import MovableClock

TTL = timedelta(minutes=15)
MARGIN = timedelta(minutes=2)
SCOPES = frozenset({"ledger.read", "ledger.write", "identity.customers.read"})
AUDIENCES = ("identity", "ledger", "payments")


class Identity:
    def __init__(self) -> None:
        self.db = MemoryIdentityDatabase()
        self.clock = MovableClock(datetime.now(UTC).replace(microsecond=0))
        kek = Fernet.generate_key().decode()
        self.vault = KeyVault([kek])
        self.deps = use_cases.Deps(
            uow=self.db.uow,
            clock=self.clock,
            hasher=KeyedSecretHasher([kek]),
            keys=self.vault,
            tokens=TokenPolicy("astra-identity", AUDIENCES, TTL, ("ledger.read",)),
            retire_margin=MARGIN,
            declared_scopes=SCOPES,
        )

    def claims(self, token: str) -> dict[str, object]:
        """The token's claims, verified against the published keys."""
        kid = jwt.get_unverified_header(token)["kid"]
        [key] = [k for k in use_cases.published_keys(self.deps) if k.kid == kid]
        claims: dict[str, object] = jwt.decode(
            token, jwt.PyJWK(key.public_jwk).key, algorithms=["ES256"], audience=AUDIENCES
        )
        return claims


@pytest.fixture
def identity() -> Identity:
    made = Identity()
    use_cases.ensure_signing_key(made.deps)
    return made


def violated(call: Callable[[], object]) -> list[str]:
    with pytest.raises(InvalidArgument) as refused:
        call()
    return [v.field for v in refused.value.violations]


def reason(call: Callable[[], object]) -> str:
    with pytest.raises(DomainError) as refused:
        call()
    return refused.value.reason


# --- customers -------------------------------------------------------------------


def test_a_customer_is_created_once_with_its_event(identity: Identity) -> None:
    spec = CustomerSpec("cus_ada", "Ada", "ada@example.com")
    view = use_cases.create_customer(identity.deps, spec)
    assert use_cases.create_customer(identity.deps, spec) == view
    assert (view.kyc_status, view.kyc_version, view.history) == (KycStatus.UNVERIFIED, 0, ())
    assert [type(e) for e in identity.db.events] == [CustomerCreated]
    with pytest.raises(IdempotencyKeyReused):
        use_cases.create_customer(
            identity.deps, CustomerSpec("cus_ada", "Ada L", "ada@example.com")
        )
    assert violated(
        lambda: use_cases.create_customer(identity.deps, CustomerSpec("x", "", "not-an-email"))
    ) == ["customer.id", "customer.display_name", "customer.email"]


def test_customers_are_read_and_listed_in_pages_by_status(identity: Identity) -> None:
    for i in range(5):
        use_cases.create_customer(
            identity.deps, CustomerSpec(f"cus_{i}", f"C {i}", f"c{i}@example.com")
        )
    use_cases.submit_kyc(identity.deps, "kyc_1", "cus_3", "tester")
    assert use_cases.get_customer(identity.deps, "cus_3").kyc_status is KycStatus.PENDING_REVIEW
    with pytest.raises(NotFound):
        use_cases.get_customer(identity.deps, "cus_nobody")
    first = use_cases.list_customers(identity.deps, 2, "", None)
    second = use_cases.list_customers(identity.deps, 2, first.next_page_token, None)
    assert [v.id for v in [*first.items, *second.items]] == ["cus_0", "cus_1", "cus_2", "cus_3"]
    pending = use_cases.list_customers(identity.deps, 10, "", KycStatus.PENDING_REVIEW)
    assert ([v.id for v in pending.items], pending.next_page_token) == (["cus_3"], "")
    assert violated(
        lambda: use_cases.list_customers(
            identity.deps, 2, first.next_page_token, KycStatus.VERIFIED
        )
    ) == ["page_token"]


def test_kyc_moves_through_review_and_each_request_id_replays_its_answer(
    identity: Identity,
) -> None:
    use_cases.create_customer(identity.deps, CustomerSpec("cus_ada", "Ada", "ada@example.com"))
    submitted = use_cases.submit_kyc(identity.deps, "kyc_1", "cus_ada", "cli_onboarding")
    identity.clock.advance(timedelta(minutes=1))
    approved = use_cases.review_kyc(
        identity.deps, "kyc_2", "cus_ada", KycDecision.APPROVE, "documents ok", "cli_reviewer"
    )
    assert (submitted.kyc_version, approved.kyc_status, approved.kyc_version) == (
        1,
        KycStatus.VERIFIED,
        2,
    )
    # Replays answer as of their own change, whatever happened since.
    assert use_cases.submit_kyc(identity.deps, "kyc_1", "cus_ada", "cli_onboarding") == submitted
    with pytest.raises(IdempotencyKeyReused):
        use_cases.review_kyc(identity.deps, "kyc_2", "cus_ada", KycDecision.REJECT, "no", "x")
    changes = [e for e in identity.db.events if isinstance(e, CustomerKycChanged)]
    assert [(e.status, e.kyc_version, e.actor) for e in changes] == [
        ("PENDING_REVIEW", 1, "cli_onboarding"),
        ("VERIFIED", 2, "cli_reviewer"),
    ]


def test_a_refused_kyc_change_is_recorded_and_replayed_and_changes_nothing(
    identity: Identity,
) -> None:
    use_cases.create_customer(identity.deps, CustomerSpec("cus_ada", "Ada", "ada@example.com"))
    events = len(identity.db.events)
    with pytest.raises(FailedPrecondition) as refused:
        use_cases.review_kyc(identity.deps, "kyc_r", "cus_ada", KycDecision.APPROVE, "", "x")
    assert refused.value.reason == "INVALID_KYC_TRANSITION"
    use_cases.submit_kyc(identity.deps, "kyc_s", "cus_ada", "x")
    with pytest.raises(FailedPrecondition) as replayed:
        use_cases.review_kyc(identity.deps, "kyc_r", "cus_ada", KycDecision.APPROVE, "", "x")
    assert replayed.value.metadata["replayed"] == "true"
    assert len(identity.db.events) == events + 1  # the submission only
    assert violated(
        lambda: use_cases.review_kyc(identity.deps, "kyc_x", "cus_ada", None, "", "x")
    ) == ["decision"]
    assert reason(lambda: use_cases.submit_kyc(identity.deps, "kyc_y", "cus_nobody", "x")) == (
        "CUSTOMER_NOT_FOUND"
    )


# --- service clients and tokens ---------------------------------------------------------


def test_an_erased_customer_keeps_its_kyc_and_loses_its_personal_data_once(
    identity: Identity,
) -> None:
    spec = CustomerSpec("cus_gone", "Ada", "ada@example.com")
    use_cases.create_customer(identity.deps, spec)
    register(identity, "cli_app", "ledger.read")
    erased = use_cases.erase_customer(identity.deps, "cus_gone", "cli_admin")
    assert use_cases.erase_customer(identity.deps, "cus_gone", "cli_admin") == erased
    assert (erased.display_name, erased.email, erased.kyc_status) == (
        "",
        "",
        KycStatus.UNVERIFIED,
    )
    assert erased.erased_at is not None
    assert use_cases.get_customer(identity.deps, "cus_gone") == erased
    assert [type(e) for e in identity.db.events] == [CustomerCreated, CustomerErased]
    # Its id is not handed out again, and nobody acts for it any more.
    assert reason(lambda: use_cases.create_customer(identity.deps, spec)) == "CUSTOMER_ERASED"
    assert (
        reason(
            lambda: use_cases.issue_customer_token(
                identity.deps, "cli_app", "cus_gone", [], "ledger"
            )
        )
        == "CUSTOMER_ERASED"
    )
    with pytest.raises(NotFound):
        use_cases.erase_customer(identity.deps, "cus_nobody", "cli_admin")


def register(identity: Identity, client_id: str, *scopes: str) -> str:
    _, secret = use_cases.register_client(identity.deps, ClientSpec(client_id, client_id, scopes))
    return secret


def test_a_client_is_registered_once_and_its_secret_earns_a_signed_token(
    identity: Identity,
) -> None:
    secret = register(identity, "cli_pay", "ledger.read", "ledger.write")
    again, replayed_secret = use_cases.register_client(
        identity.deps, ClientSpec("cli_pay", "cli_pay", ("ledger.write", "ledger.read"))
    )
    assert (again.id, replayed_secret) == ("cli_pay", "")
    issued = use_cases.issue_token(identity.deps, "cli_pay", secret, ["ledger.read"], "ledger")
    claims = identity.claims(issued.access_token)
    assert (claims["sub"], claims["scope"], issued.expires_in) == ("cli_pay", "ledger.read", TTL)
    everything = use_cases.issue_token(identity.deps, "cli_pay", secret, [], "ledger")
    assert everything.scopes == ("ledger.read", "ledger.write")
    with pytest.raises(IdempotencyKeyReused):
        register(identity, "cli_pay", "ledger.read")
    assert violated(lambda: register(identity, "cli_x", "made.up.scope")) == [
        "client.allowed_scopes[0]"
    ]


def test_tokens_are_refused_alike_for_an_unknown_client_and_a_wrong_secret(
    identity: Identity,
) -> None:
    secret = register(identity, "cli_pay", "ledger.read")
    for client_id, given in (("cli_pay", secret + "x"), ("cli_nobody", secret)):
        with pytest.raises(Unauthenticated) as refused:
            use_cases.issue_token(identity.deps, client_id, given, [], "ledger")
        assert refused.value.reason == "INVALID_CLIENT"
    with pytest.raises(PermissionDenied):
        use_cases.issue_token(identity.deps, "cli_pay", secret, ["ledger.write"], "ledger")
    assert violated(lambda: use_cases.issue_token(identity.deps, "pay", "", [], "ledger")) == [
        "client_id",
        "client_secret",
    ]


def test_a_reset_secret_replaces_the_old_one_and_a_disabled_client_gets_no_token(
    identity: Identity,
) -> None:
    old = register(identity, "cli_pay", "ledger.read")
    new = use_cases.reset_client_secret(identity.deps, "cli_pay")
    assert reason(lambda: use_cases.issue_token(identity.deps, "cli_pay", old, [], "ledger")) == (
        "INVALID_CLIENT"
    )
    assert use_cases.issue_token(identity.deps, "cli_pay", new, [], "ledger").scopes == (
        "ledger.read",
    )
    disabled = use_cases.disable_client(identity.deps, "cli_pay")
    assert disabled.disabled
    assert use_cases.get_client(identity.deps, "cli_pay").disabled_at == identity.clock.now()
    assert reason(lambda: use_cases.issue_token(identity.deps, "cli_pay", new, [], "ledger")) == (
        "CLIENT_DISABLED"
    )
    with pytest.raises(NotFound):
        use_cases.reset_client_secret(identity.deps, "cli_nobody")
    with pytest.raises(NotFound):
        use_cases.disable_client(identity.deps, "cli_nobody")


def test_a_customer_token_carries_the_customer_and_only_customer_scopes(
    identity: Identity,
) -> None:
    use_cases.create_customer(identity.deps, CustomerSpec("cus_ada", "Ada", "ada@example.com"))
    register(identity, "cli_app", "ledger.read", "ledger.write")
    issued = use_cases.issue_customer_token(identity.deps, "cli_app", "cus_ada", [], "ledger")
    claims = identity.claims(issued.access_token)
    assert (claims["sub"], claims["azp"], issued.scopes) == (
        "cus_ada",
        "cli_app",
        ("ledger.read",),
    )
    with pytest.raises(PermissionDenied):
        use_cases.issue_customer_token(
            identity.deps, "cli_app", "cus_ada", ["ledger.write"], "ledger"
        )
    with pytest.raises(NotFound):
        use_cases.issue_customer_token(identity.deps, "cli_app", "cus_nobody", [], "ledger")


def test_no_token_is_signed_before_there_is_a_key() -> None:
    fresh = Identity()
    secret = register(fresh, "cli_pay", "ledger.read")
    with pytest.raises(Unavailable):
        use_cases.issue_token(fresh.deps, "cli_pay", secret, [], "ledger")
    key = use_cases.ensure_signing_key(fresh.deps)
    assert use_cases.ensure_signing_key(fresh.deps).kid == key.kid
    assert use_cases.issue_token(fresh.deps, "cli_pay", secret, [], "ledger").access_token


# --- key rotation ---------------------------------------------------------------------------


def test_a_rotation_signs_with_a_new_key_and_publishes_the_old_until_its_tokens_expire(
    identity: Identity,
) -> None:
    secret = register(identity, "cli_pay", "ledger.read")
    old_token = use_cases.issue_token(identity.deps, "cli_pay", secret, [], "ledger").access_token
    [old] = use_cases.published_keys(identity.deps)
    rotation = use_cases.rotate_signing_key(identity.deps, "rot_1")
    now = identity.clock.now()
    assert rotation.previous_retire_at == now + TTL + MARGIN
    assert [k.kid for k in use_cases.published_keys(identity.deps)] == [rotation.key.kid, old.kid]
    retired = identity.db.signing_keys.get(old.kid)
    assert retired is not None
    assert (retired.active, retired.encrypted_private_key) == (False, b"")
    assert identity.claims(old_token)["sub"] == "cli_pay"  # still verifiable
    new_token = use_cases.issue_token(identity.deps, "cli_pay", secret, [], "ledger").access_token
    assert jwt.get_unverified_header(new_token)["kid"] == rotation.key.kid
    # The same request replays the same rotation, even later.
    identity.clock.advance(timedelta(minutes=1))
    replay = use_cases.rotate_signing_key(identity.deps, "rot_1")
    assert (replay.key.kid, replay.previous_retire_at) == (
        rotation.key.kid,
        rotation.previous_retire_at,
    )
    identity.clock.advance(TTL + MARGIN)
    assert [k.kid for k in use_cases.published_keys(identity.deps)] == [rotation.key.kid]
    assert violated(lambda: use_cases.rotate_signing_key(identity.deps, "x")) == ["request_id"]


def test_rotations_in_a_row_keep_one_active_key(identity: Identity) -> None:
    kids = [use_cases.rotate_signing_key(identity.deps, f"rot_{i}").key.kid for i in range(4)]
    active = identity.db.signing_keys.select(lambda key: key.active)
    assert [k.kid for k in active] == [kids[-1]]
    assert len(identity.db.signing_keys) == 5


# --- the unit of work ------------------------------------------------------------------------


def test_a_failed_transaction_leaves_nothing_behind_and_records_no_event(
    identity: Identity,
) -> None:
    use_cases.create_customer(identity.deps, CustomerSpec("cus_ada", "Ada", "ada@example.com"))
    events = len(identity.db.events)

    [key] = use_cases.published_keys(identity.deps)

    def work(uow: IdentityUnitOfWork) -> None:
        now = identity.clock.now()
        customer = uow.customers.get("cus_ada", for_update=True)
        assert customer is not None
        customer.submit_for_review("x", now)
        uow.customers.add(Customer.create(CustomerSpec("cus_bob", "Bob", "b@example.com"), now))
        active = uow.signing_keys.active(for_update=True)
        assert active is not None
        active.retire(now, TTL, MARGIN)
        uow.signing_keys.add(identity.vault.new_signing_key(now, "rot_x"))  # written at once
        raise RuntimeError("crash before the commit")

    with pytest.raises(RuntimeError):
        run_in_transaction(identity.db.uow, work)
    assert use_cases.get_customer(identity.deps, "cus_ada").kyc_version == 0
    assert identity.db.customers.get("cus_bob") is None
    assert [(k.kid, k.active) for k in use_cases.published_keys(identity.deps)] == [(key.kid, True)]
    assert len(identity.db.events) == events


def test_what_a_read_returns_stays_usable_after_its_block(identity: Identity) -> None:
    register(identity, "cli_pay", "ledger.read")
    client = use_cases.get_client(identity.deps, "cli_pay")
    keys = use_cases.published_keys(identity.deps)
    assert (client.id, client.allowed_scopes, keys[0].active) == ("cli_pay", ("ledger.read",), True)
    started = datetime.now(UTC) - timedelta(days=1)
    assert all(k.created_at > started for k in keys)


# --- audiences, customer scopes, rate limits, revocations --------------------------------


def test_a_token_is_for_the_one_audience_asked_for_and_an_unknown_one_is_refused(
    identity: Identity,
) -> None:
    secret = register(identity, "cli_pay", "ledger.read")
    for audience in AUDIENCES:
        token = use_cases.issue_token(identity.deps, "cli_pay", secret, [], audience)
        assert identity.claims(token.access_token)["aud"] == audience
    for wrong in ("", "astra", "bank"):
        with pytest.raises(InvalidArgument) as refused:
            use_cases.issue_token(identity.deps, "cli_pay", secret, [], wrong)
        assert [v.field for v in refused.value.violations] == ["audience"]


def test_a_customer_token_gets_at_most_what_customers_and_the_acting_client_both_may(
    identity: Identity,
) -> None:
    use_cases.create_customer(identity.deps, CustomerSpec("cus_ada", "Ada", "ada@example.com"))
    # Customers may have ledger.read; this client may not: its customer tokens get nothing.
    register(identity, "cli_narrow", "ledger.write")
    issued = use_cases.issue_customer_token(identity.deps, "cli_narrow", "cus_ada", [], "ledger")
    assert issued.scopes == ()
    with pytest.raises(PermissionDenied) as refused:
        use_cases.issue_customer_token(
            identity.deps, "cli_narrow", "cus_ada", ["ledger.read"], "ledger"
        )
    assert refused.value.reason == "SCOPE_NOT_ALLOWED"


def test_a_disabled_client_mints_no_customer_token(identity: Identity) -> None:
    use_cases.create_customer(identity.deps, CustomerSpec("cus_ada", "Ada", "ada@example.com"))
    register(identity, "cli_app", "ledger.read")
    assert use_cases.issue_customer_token(identity.deps, "cli_app", "cus_ada", [], "ledger")
    use_cases.disable_client(identity.deps, "cli_app")
    with pytest.raises(Unauthenticated) as refused:
        use_cases.issue_customer_token(identity.deps, "cli_app", "cus_ada", [], "ledger")
    assert refused.value.reason == "CLIENT_DISABLED"


def test_token_requests_over_the_rate_are_refused_with_the_time_to_wait(
    identity: Identity,
) -> None:
    now = [0.0]
    limited = dataclasses.replace(
        identity.deps,
        rate_limit=RateLimit(Rate(1.0, 2), Rate(100.0, 100), monotonic=lambda: now[0]),
    )
    secret = register(identity, "cli_pay", "ledger.read")
    for _ in range(2):
        use_cases.issue_token(limited, "cli_pay", secret, [], "ledger")
    with pytest.raises(ResourceExhausted) as refused:
        use_cases.issue_token(limited, "cli_pay", secret, [], "ledger")
    assert refused.value.reason == "RATE_LIMITED"
    assert refused.value.retry_after == pytest.approx(1.0)
    # Unknown ids are limited the same way, before any lookup or hash.
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            use_cases.issue_token(limited, "cli_ghost", secret, [], "ledger")
    with pytest.raises(ResourceExhausted):
        use_cases.issue_token(limited, "cli_ghost", secret, [], "ledger")
    now[0] += 1.0
    assert use_cases.issue_token(limited, "cli_pay", secret, [], "ledger").access_token


def test_revocations_are_listed_since_a_time_until_their_tokens_would_have_expired(
    identity: Identity,
) -> None:
    start = identity.clock.now()
    first = use_cases.revoke_token(identity.deps, "jti_first")
    assert first.expire_at == start + TTL + MARGIN
    identity.clock.advance(timedelta(seconds=5))
    assert use_cases.revoke_token(identity.deps, "jti_first").revoked_at == start  # idempotent
    use_cases.revoke_token(identity.deps, "jti_second")
    register(identity, "cli_gone", "ledger.read")
    use_cases.disable_client(identity.deps, "cli_gone")
    everything = use_cases.list_revocations(identity.deps, None)
    assert [r.token_id for r in everything.tokens] == ["jti_first", "jti_second"]
    assert everything.disabled_client_ids == ["cli_gone"]
    later = use_cases.list_revocations(identity.deps, start + timedelta(seconds=1))
    assert [r.token_id for r in later.tokens] == ["jti_second"]
    identity.clock.advance(TTL + MARGIN - timedelta(seconds=1))  # the first has expired
    assert [r.token_id for r in use_cases.list_revocations(identity.deps, None).tokens] == [
        "jti_second"
    ]
    assert violated(lambda: use_cases.revoke_token(identity.deps, "bad id!")) == ["token_id"]


def test_secrets_are_256_bit_and_verified_by_a_keyed_hash_that_refuses_what_it_cannot_check() -> (
    None
):
    kek = Fernet.generate_key().decode()
    hasher = KeyedSecretHasher([kek])
    secret = hasher.new_secret()
    assert len(base64.urlsafe_b64decode(secret.removeprefix("astra_cs_") + "=")) == 32
    stored = hasher.hash(secret)
    assert stored.startswith("hmac-sha256$")
    assert secret not in stored
    assert hasher.verify(stored, secret)
    assert not hasher.verify(stored, secret + "x")
    assert not hasher.verify(None, secret)
    legacy = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"
    assert not hasher.verify(legacy, secret)
    # After a key-encryption key rotation (new key first, old kept), old hashes still verify.
    rotated = KeyedSecretHasher([Fernet.generate_key().decode(), kek])
    assert rotated.verify(stored, secret)
    assert rotated.hash(secret) != stored  # new hashes are made under the new key
    assert not KeyedSecretHasher([Fernet.generate_key().decode()]).verify(stored, secret)
