"""The access token format, defined once for the issuer (identity) and the test mint.

A token is a JWS (RFC 7515) signed with ES256 carrying a ``kid`` header and
these claims: ``iss``, ``aud``, ``sub``, ``iat``, ``nbf``, ``exp``, ``jti``,
``scope`` (space-separated, RFC 8693 style), ``azp`` (the client the token was
issued to) and ``sub_type`` (``client`` or ``customer``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from chassis.auth.principal import PrincipalKind

ALGORITHM = "ES256"
SUB_TYPE = "sub_type"
REQUIRED_CLAIMS = ("iss", "aud", "sub", "iat", "nbf", "exp", "scope", "azp", SUB_TYPE)


def make_claims(
    *,
    issuer: str,
    audience: str,
    subject: str,
    kind: PrincipalKind,
    client_id: str,
    scopes: Iterable[str],
    issued_at: datetime,
    ttl: timedelta,
    token_id: str | None = None,
) -> dict[str, Any]:
    issued = int(issued_at.timestamp())
    return {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl.total_seconds()),
        "jti": token_id or uuid.uuid4().hex,
        "scope": " ".join(sorted(set(scopes))),
        "azp": client_id,
        SUB_TYPE: kind.value,
    }


def sign(claims: dict[str, Any], private_key: ec.EllipticCurvePrivateKey, kid: str) -> str:
    return jwt.encode(claims, private_key, algorithm=ALGORITHM, headers={"kid": kid})


def new_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(private_key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, str]:
    """The public half as a JWK (RFC 7517) with ``kid``, ``use`` and ``alg``."""
    jwk: dict[str, str] = jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig", "alg": ALGORITHM}
