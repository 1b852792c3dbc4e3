"""Local verification of access tokens.

PyJWT does the parsing and the signature check with an explicit algorithm
allow-list (ES256 only): a token with ``alg: none``, or an HS256 token "signed"
with the public key, is refused by the library before any key is used. Each
refusal has a stable reason; messages never contain the token.

A service presents the same token on every call until it renews it, and an
ES256 signature check costs tens of microseconds of CPU: a verified token is
remembered (bounded, least recently used out first) until its expiry plus the
leeway, and only while the key that signed it is still published. Only
successful verifications are remembered; a refused token is checked afresh.

A token is for one audience, the service called (``aud``): a verifier accepts
its own service's name only. With a ``RevocationList``, every call (cached or
not) is also refused if its token was revoked or its client disabled.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import jwt

from chassis.auth.claims import ALGORITHM, REQUIRED_CLAIMS, SUB_TYPE
from chassis.auth.keys import JwksCache
from chassis.auth.principal import Principal, PrincipalKind
from chassis.auth.revocation import RevocationList
from chassis.kernel.errors import Unauthenticated


def _refused(reason: str, what: str) -> Unauthenticated:
    return Unauthenticated(reason, f"a valid bearer token is required: {what}")


class TokenVerifier:
    def __init__(
        self,
        keys: JwksCache,
        *,
        issuer: str,
        audience: str,
        leeway_seconds: float = 30.0,
        algorithms: Sequence[str] = (ALGORITHM,),
        cache_size: int = 4096,
        clock: Callable[[], float] = time.time,
        revocations: RevocationList | None = None,
    ) -> None:
        if not issuer or not audience:
            raise ValueError("a verifier needs an issuer and an audience")
        self.keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_seconds
        self._algorithms = list(algorithms)
        self._cache_size = cache_size
        self._clock = clock
        self._verified: OrderedDict[str, tuple[Principal, str, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.revocations = revocations

    @property
    def audience(self) -> str:
        return self._audience

    def close(self) -> None:
        """Stop following the revocations (the server that used this verifier stopped)."""
        if self.revocations is not None:
            self.revocations.close()

    def verify(self, token: str) -> Principal:
        """The token's principal; refused if invalid, revoked, or its client is disabled."""
        principal = self._verified_principal(token)
        # Checked on every call, cached or not: a revocation must reach tokens already seen.
        if self.revocations is not None:
            self.revocations.check(principal)
        return principal

    def _verified_principal(self, token: str) -> Principal:
        with self._lock:
            hit = self._verified.get(token)
            if hit is not None:
                self._verified.move_to_end(token)
        if hit is not None:
            principal, kid, valid_until = hit
            if self._clock() < valid_until and self.keys.key_for(kid) is not None:
                return principal
            with self._lock:
                self._verified.pop(token, None)
        principal, kid = self._verify(token)
        valid_until = principal.expires_at.timestamp() + self._leeway
        with self._lock:
            self._verified[token] = (principal, kid, valid_until)
            if len(self._verified) > self._cache_size:
                self._verified.popitem(last=False)
        return principal

    def _verify(self, token: str) -> tuple[Principal, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise _refused("MALFORMED_TOKEN", "the token is not a well-formed JWT") from None
        if header.get("alg") not in self._algorithms:
            raise _refused("ALGORITHM_NOT_ALLOWED", "the token's algorithm is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _refused("MISSING_KEY_ID", "the token names no signing key (kid)")
        key = self.keys.key_for(kid)
        if key is None:
            raise _refused("UNKNOWN_SIGNING_KEY", "the token was signed by an unknown key")
        claims = self._decode(token, key)
        return _principal(claims), kid

    def _decode(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": list(REQUIRED_CLAIMS), "strict_aud": True},
            )
        except jwt.ExpiredSignatureError:
            raise _refused("TOKEN_EXPIRED", "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise _refused("TOKEN_NOT_YET_VALID", "the token is not valid yet") from None
        except jwt.InvalidIssuerError:
            raise _refused("WRONG_ISSUER", "the token comes from another issuer") from None
        except jwt.InvalidAudienceError:
            raise _refused("WRONG_AUDIENCE", "the token is meant for another audience") from None
        except jwt.MissingRequiredClaimError as error:
            raise _refused("MISSING_CLAIM", f"the token lacks the {error.claim!r} claim") from None
        except jwt.InvalidAlgorithmError:
            raise _refused("ALGORITHM_NOT_ALLOWED", "the algorithm is not accepted") from None
        except jwt.InvalidSignatureError:
            raise _refused("BAD_SIGNATURE", "the token's signature does not verify") from None
        except jwt.InvalidTokenError:
            raise _refused("MALFORMED_TOKEN", "the token is not a well-formed JWT") from None
        return claims


def _principal(claims: dict[str, Any]) -> Principal:
    subject, scope, client_id = claims["sub"], claims["scope"], claims["azp"]
    try:
        kind = PrincipalKind(claims[SUB_TYPE])
    except ValueError:
        raise _refused("MALFORMED_TOKEN", "the token's subject type is unknown") from None
    if not (isinstance(subject, str) and isinstance(scope, str) and isinstance(client_id, str)):
        raise _refused("MALFORMED_TOKEN", "the token's claims have the wrong types")
    return Principal(
        subject=subject,
        kind=kind,
        client_id=client_id,
        scopes=frozenset(scope.split()),
        token_id=str(claims.get("jti", "")),
        expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
    )
