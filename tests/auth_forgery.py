"""Tokens an attacker would send, each paired with the refusal it must get.

Built from a ``TokenMint`` whose keys the service under test trusts: every
token here is wrong in exactly one way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import jwt
from chassis.auth.claims import new_private_key
from chassis.auth.testing import TokenMint
from cryptography.hazmat.primitives import serialization

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


@dataclass(frozen=True)
class Forgery:
    name: str
    authorization: str | None  # the whole header value; None sends no header
    code: grpc.StatusCode
    reason: str

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return () if self.authorization is None else (("authorization", self.authorization),)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _with_header(mint: TokenMint, header: dict[str, object], secret: bytes | None) -> str:
    claims = jwt.decode(mint.token(), options={"verify_signature": False})
    unsigned = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    signature = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest() if secret else b""
    return f"{unsigned}.{_b64(signature)}"


def forgeries(mint: TokenMint) -> list[Forgery]:
    public_pem = (
        mint._keys[mint.kid]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    stranger = TokenMint(issuer=mint.issuer, audience=mint.audience)
    now = datetime.now(UTC)

    def bearer(token: str) -> str:
        return f"Bearer {token}"

    return [
        Forgery("no token", None, UNAUTHENTICATED, "MISSING_TOKEN"),
        Forgery("basic auth", "Basic dXNlcjpwYXNz", UNAUTHENTICATED, "MALFORMED_AUTHORIZATION"),
        Forgery("malformed", bearer("not-a-jwt"), UNAUTHENTICATED, "MALFORMED_TOKEN"),
        Forgery(
            "bad signature",
            bearer(mint.token(signing_key=new_private_key())),
            UNAUTHENTICATED,
            "BAD_SIGNATURE",
        ),
        Forgery(
            "unknown key",
            bearer(stranger.token(kid="stranger-key", signing_key=new_private_key())),
            UNAUTHENTICATED,
            "UNKNOWN_SIGNING_KEY",
        ),
        Forgery(
            "alg none",
            bearer(_with_header(mint, {"alg": "none", "kid": mint.kid}, None)),
            UNAUTHENTICATED,
            "ALGORITHM_NOT_ALLOWED",
        ),
        Forgery(
            "hs256 with the public key",
            bearer(_with_header(mint, {"alg": "HS256", "kid": mint.kid}, public_pem)),
            UNAUTHENTICATED,
            "ALGORITHM_NOT_ALLOWED",
        ),
        Forgery(
            "expired",
            bearer(mint.token(issued_at=now - timedelta(hours=1), ttl=timedelta(minutes=15))),
            UNAUTHENTICATED,
            "TOKEN_EXPIRED",
        ),
        Forgery(
            "not yet valid",
            bearer(mint.token(issued_at=now + timedelta(minutes=10))),
            UNAUTHENTICATED,
            "TOKEN_NOT_YET_VALID",
        ),
        Forgery(
            "wrong issuer",
            bearer(mint.token(issuer="https://evil.example")),
            UNAUTHENTICATED,
            "WRONG_ISSUER",
        ),
        Forgery(
            "wrong audience",
            bearer(mint.token(audience="some-other-suite")),
            UNAUTHENTICATED,
            "WRONG_AUDIENCE",
        ),
        Forgery(
            "missing scope",
            bearer(mint.token(["ledger.accounts.read", "ledger.transfers.read"])),
            grpc.StatusCode.PERMISSION_DENIED,
            "MISSING_SCOPE",
        ),
        Forgery(
            "customer token on a write",
            bearer(mint.customer_token("cus_ann", ["ledger.transfers.write"])),
            grpc.StatusCode.PERMISSION_DENIED,
            "SERVICE_CALLER_REQUIRED",
        ),
    ]
