"""Token verification: every forged or stale token refused with its own stable reason."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from chassis.auth.claims import new_private_key
from chassis.auth.principal import PrincipalKind
from chassis.auth.testing import TokenMint
from chassis.auth.verifier import TokenVerifier
from chassis.kernel.errors import DomainError, ErrorCategory
from cryptography.hazmat.primitives import serialization


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims_of(token: str) -> dict[str, object]:
    return jwt.decode(token, options={"verify_signature": False})


def _forge(
    header: Mapping[str, object], claims: Mapping[str, object], signature: bytes = b""
) -> str:
    """A token assembled by hand, the way an attacker would (no library refuses to help)."""
    head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    return head + "." + _b64(signature)


def _refusal(mint: TokenMint, token: str) -> DomainError:
    with pytest.raises(DomainError) as caught:
        mint.verifier().verify(token)
    return caught.value


@pytest.fixture
def mint() -> TokenMint:
    return TokenMint()


def test_a_good_token_gives_its_principal(mint: TokenMint) -> None:
    token = mint.token(["ledger.accounts.read", "ledger.transfers.read"], subject="cli_pay")
    principal = mint.verifier().verify(token)
    assert principal.subject == "cli_pay"
    assert principal.client_id == "cli_pay"
    assert principal.kind is PrincipalKind.CLIENT
    assert principal.customer_id == ""
    assert principal.scopes == {"ledger.accounts.read", "ledger.transfers.read"}
    assert principal.missing_scopes(["ledger.accounts.read", "ledger.accounts.write"]) == [
        "ledger.accounts.write"
    ]


def test_a_customer_token_names_the_customer(mint: TokenMint) -> None:
    token = mint.customer_token("cus_ann", ["ledger.accounts.read"], client_id="cli_app")
    principal = mint.verifier().verify(token)
    assert principal.kind is PrincipalKind.CUSTOMER
    assert principal.customer_id == "cus_ann"
    assert principal.client_id == "cli_app"


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "eyJhbGciOiJFUzI1NiJ9.e30"])
def test_malformed_tokens_are_refused(mint: TokenMint, token: str) -> None:
    error = _refusal(mint, token)
    assert error.category is ErrorCategory.UNAUTHENTICATED
    assert error.reason == "MALFORMED_TOKEN"


def test_alg_none_is_refused(mint: TokenMint) -> None:
    claims = _claims_of(mint.token())
    token = _forge({"alg": "none", "typ": "JWT", "kid": mint.kid}, claims)
    assert _refusal(mint, token).reason == "ALGORITHM_NOT_ALLOWED"


def test_hs256_signed_with_the_public_key_is_refused(mint: TokenMint) -> None:
    # The classic confusion attack: HMAC "signed" with the verifier's public key.
    public_pem = (
        mint._keys[mint.kid]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": mint.kid}
    claims = _claims_of(mint.token())
    unsigned = _forge(header, claims).rsplit(".", 1)[0]
    signature = hmac.new(public_pem, unsigned.encode(), hashlib.sha256).digest()
    assert _refusal(mint, f"{unsigned}.{_b64(signature)}").reason == "ALGORITHM_NOT_ALLOWED"


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_pyjwt_itself_refuses_other_algorithms(mint: TokenMint, alg: str) -> None:
    # Defence in depth: even past our header check, the library's allow-list holds.
    verifier = mint.verifier()
    token = _forge({"alg": alg, "kid": mint.kid}, _claims_of(mint.token()), b"x")
    key = verifier.keys.key_for(mint.kid)
    assert key is not None
    with pytest.raises(DomainError) as caught:
        verifier._decode(token, key)
    assert caught.value.reason in ("ALGORITHM_NOT_ALLOWED", "MALFORMED_TOKEN")


def test_a_token_signed_by_an_unknown_key_is_refused(mint: TokenMint) -> None:
    stranger = TokenMint(issuer=mint.issuer)
    stranger.kid = "someone-elses-key"
    stranger._keys = {"someone-elses-key": new_private_key()}
    assert _refusal(mint, stranger.token()).reason == "UNKNOWN_SIGNING_KEY"


def test_a_bad_signature_under_a_known_kid_is_refused(mint: TokenMint) -> None:
    forged = mint.token(signing_key=new_private_key())  # our kid, another key
    assert _refusal(mint, forged).reason == "BAD_SIGNATURE"
    head, body, signature = mint.token().split(".")
    tampered = json.loads(base64.urlsafe_b64decode(body + "=="))
    tampered["scope"] = "identity.keys.admin"
    assert _refusal(mint, f"{head}.{_b64(json.dumps(tampered).encode())}.{signature}").reason == (
        "BAD_SIGNATURE"
    )


def test_a_token_without_kid_is_refused(mint: TokenMint) -> None:
    token = jwt.encode(_claims_of(mint.token()), mint._keys[mint.kid], algorithm="ES256")
    assert _refusal(mint, token).reason == "MISSING_KEY_ID"


def test_expired_tokens_are_refused_beyond_the_leeway(mint: TokenMint) -> None:
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    expired = mint.token(issued_at=long_ago, ttl=timedelta(minutes=5))
    assert _refusal(mint, expired).reason == "TOKEN_EXPIRED"
    # Expired 10 s ago: inside the 30 s leeway for clock skew, still accepted.
    recent = mint.token(issued_at=datetime.now(UTC) - timedelta(seconds=70), ttl=timedelta(60))
    assert mint.verifier(leeway_seconds=30).verify(recent).subject == "cli_test"


def test_tokens_not_yet_valid_are_refused(mint: TokenMint) -> None:
    future = mint.token(issued_at=datetime.now(UTC) + timedelta(minutes=10))
    assert _refusal(mint, future).reason == "TOKEN_NOT_YET_VALID"


def test_wrong_issuer_and_audience_are_refused(mint: TokenMint) -> None:
    assert _refusal(mint, mint.token(issuer="https://evil.example")).reason == "WRONG_ISSUER"
    assert _refusal(mint, mint.token(audience="payments-only")).reason == "WRONG_AUDIENCE"


@pytest.mark.parametrize("claim", ["exp", "iss", "aud", "sub", "scope", "azp", "sub_type"])
def test_tokens_missing_a_required_claim_are_refused(mint: TokenMint, claim: str) -> None:
    assert _refusal(mint, mint.token(drop_claims=[claim])).reason == "MISSING_CLAIM"


def test_an_unknown_subject_type_is_refused(mint: TokenMint) -> None:
    token = mint.token(extra_claims={"sub_type": "root"})
    assert _refusal(mint, token).reason == "MALFORMED_TOKEN"


def test_refusal_messages_never_echo_the_token(mint: TokenMint) -> None:
    token = mint.token(issuer="https://evil.example")
    error = _refusal(mint, token)
    assert token not in error.message
    assert all(token not in v for v in error.metadata.values())


# --- remembering verified tokens ------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.now


def _counting_decode(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts signature checks (PyJWT's decode) without changing what they do."""
    calls = [0]
    real = jwt.decode

    def decode(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jwt, "decode", decode)
    return calls


def test_a_verified_token_is_not_checked_again_until_it_expires(
    mint: TokenMint, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()
    verifier = TokenVerifier(
        mint.verifier().keys,
        issuer=mint.issuer,
        audience=mint.audience,
        leeway_seconds=0,
        clock=clock,
    )
    token = mint.token(ttl=timedelta(minutes=5))
    calls = _counting_decode(monkeypatch)
    first = verifier.verify(token)
    assert verifier.verify(token) is first
    assert calls[0] == 1
    clock.now += 301  # past exp: the remembered verification no longer counts
    verifier.verify(token)  # PyJWT's own clock has not moved: it still verifies, afresh
    assert calls[0] == 2


def test_a_remembered_token_fails_once_its_key_is_withdrawn(mint: TokenMint) -> None:
    verifier = mint.verifier()
    token = mint.token()
    verifier.verify(token)
    old = mint.kid
    mint.rotate()
    mint.retire(old)
    verifier.keys.refresh()  # the published key set is read again (as when it goes stale)
    with pytest.raises(DomainError) as withdrawn:
        verifier.verify(token)
    assert withdrawn.value.reason == "UNKNOWN_SIGNING_KEY"


def test_refused_tokens_are_never_remembered(mint: TokenMint) -> None:
    verifier = mint.verifier()
    token = mint.token(audience="somebody-else")
    for _ in range(2):
        with pytest.raises(DomainError) as refused:
            verifier.verify(token)
        assert refused.value.reason == "WRONG_AUDIENCE"
