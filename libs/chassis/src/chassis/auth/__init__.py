"""Suite-wide auth: local token verification, per-RPC scopes from the contracts, principals.

- ``TokenVerifier`` checks a token (ES256 only, kid, iss, aud, exp/nbf/iat with
  leeway) against public keys cached by ``JwksCache``.
- ``AccessPolicy`` reads each RPC's required scopes from the
  ``astra.auth.v1.access`` method option; ``AuthInterceptor`` enforces it and
  binds the ``Principal`` for the service layer (``current_principal()``).
- ``RevocationList`` follows identity's revoked tokens and disabled clients.
- ``ClientCredentialsTokenSource`` gives outgoing calls a cached token.
"""

from chassis.auth.interceptor import AuthInterceptor, bearer_token
from chassis.auth.keys import (
    CallableKeySource,
    FileKeySource,
    IdentityKeySource,
    JwksCache,
    KeyDocument,
    KeySource,
)
from chassis.auth.policy import AccessPolicy, MethodRule, UndeclaredAccess, declared_scopes
from chassis.auth.principal import (
    Principal,
    PrincipalKind,
    current_principal,
    current_requester,
)
from chassis.auth.revocation import (
    CallableRevocationSource,
    IdentityRevocationSource,
    RevocationList,
    Revocations,
)
from chassis.auth.setup import build_verifier, verifier_from
from chassis.auth.token_source import ClientCredentialsTokenSource
from chassis.auth.verifier import TokenVerifier

__all__ = [
    "AccessPolicy",
    "AuthInterceptor",
    "CallableKeySource",
    "CallableRevocationSource",
    "ClientCredentialsTokenSource",
    "FileKeySource",
    "IdentityKeySource",
    "IdentityRevocationSource",
    "JwksCache",
    "KeyDocument",
    "KeySource",
    "MethodRule",
    "Principal",
    "PrincipalKind",
    "RevocationList",
    "Revocations",
    "TokenVerifier",
    "UndeclaredAccess",
    "bearer_token",
    "build_verifier",
    "current_principal",
    "current_requester",
    "declared_scopes",
    "verifier_from",
]
