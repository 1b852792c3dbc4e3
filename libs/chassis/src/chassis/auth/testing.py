"""A token mint for tests and benchmarks: signing keys, a key source and tokens on demand.

It signs with the same claim format identity uses (``chassis.auth.claims``), so
a service verifies the mint's tokens exactly as it verifies identity's. Tests
also use it to forge the tokens an attacker would send (expired, wrong issuer,
unknown key...).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from chassis.auth.claims import make_claims, new_private_key, public_jwk, sign
from chassis.auth.keys import CallableKeySource, JwksCache, KeyDocument
from chassis.auth.policy import declared_scopes
from chassis.auth.principal import PrincipalKind
from chassis.auth.verifier import TokenVerifier

MINT_ISSUER = "astra-test-identity"
MINT_AUDIENCE = "astra"


class TokenMint:
    def __init__(self, issuer: str = MINT_ISSUER, audience: str = MINT_AUDIENCE) -> None:
        self.issuer = issuer
        self.audience = audience
        self._keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        self.kid = ""
        self.rotate()

    def rotate(self) -> str:
        """Add a new signing key and sign with it from now on; returns its kid."""
        self.kid = f"test-key-{len(self._keys) + 1}"
        self._keys[self.kid] = new_private_key()
        return self.kid

    def retire(self, kid: str) -> None:
        """Stop publishing ``kid`` (its tokens then fail as signed by an unknown key)."""
        del self._keys[kid]

    def key_document(self) -> KeyDocument:
        return KeyDocument([public_jwk(key, kid) for kid, key in self._keys.items()])

    def jwks_json(self) -> str:
        return json.dumps({"keys": list(self.key_document().keys)})

    def write_jwks(self, path: str | Path) -> Path:
        """Write the public keys as a JWKS file (for ``*_AUTH_JWKS_FILE``); returns the path."""
        target = Path(path)
        scratch = target.with_suffix(".tmp")
        scratch.write_text(self.jwks_json())
        scratch.replace(target)  # readers never see half a file
        return target

    def metadata(
        self, scopes: Iterable[str] | None = None, **kwargs: Any
    ) -> tuple[tuple[str, str], ...]:
        """gRPC call metadata carrying a fresh token (all scopes unless given)."""
        return (("authorization", f"Bearer {self.token(scopes, **kwargs)}"),)

    def key_source(self) -> CallableKeySource:
        return CallableKeySource(self.key_document)

    def verifier(
        self, *, leeway_seconds: float = 30.0, min_refresh_interval: float = 0.0
    ) -> TokenVerifier:
        cache = JwksCache(self.key_source(), min_refresh_interval=min_refresh_interval)
        return TokenVerifier(
            cache, issuer=self.issuer, audience=self.audience, leeway_seconds=leeway_seconds
        )

    def token(
        self,
        scopes: Iterable[str] | None = None,
        *,
        subject: str = "cli_test",
        kind: PrincipalKind = PrincipalKind.CLIENT,
        client_id: str | None = None,
        ttl: timedelta = timedelta(minutes=5),
        issued_at: datetime | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        kid: str | None = None,
        signing_key: ec.EllipticCurvePrivateKey | None = None,
        drop_claims: Iterable[str] = (),
        extra_claims: dict[str, Any] | None = None,
    ) -> str:
        """A signed token; every part can be set wrong on purpose. Scopes default to all."""
        claims = make_claims(
            issuer=issuer if issuer is not None else self.issuer,
            audience=audience if audience is not None else self.audience,
            subject=subject,
            kind=kind,
            client_id=client_id if client_id is not None else subject,
            scopes=declared_scopes() if scopes is None else scopes,
            issued_at=issued_at or datetime.now(UTC),
            ttl=ttl,
        )
        for name in drop_claims:
            claims.pop(name, None)
        claims.update(extra_claims or {})
        use_kid = kid or self.kid
        key = signing_key or self._keys[use_kid]
        return sign(claims, key, use_kid)

    def customer_token(self, customer_id: str, scopes: Iterable[str], **kwargs: Any) -> str:
        kwargs.setdefault("client_id", "cli_trusted_service")
        return self.token(scopes, subject=customer_id, kind=PrincipalKind.CUSTOMER, **kwargs)
