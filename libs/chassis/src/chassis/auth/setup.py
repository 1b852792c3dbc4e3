"""One way for a service to build its token verifier from its settings."""

from __future__ import annotations

from chassis.auth.keys import FileKeySource, IdentityKeySource, JwksCache, KeySource
from chassis.auth.verifier import TokenVerifier
from chassis.config import TokenVerifyingSettings
from chassis.tls import TlsFiles


def build_verifier(
    *,
    issuer: str,
    audience: str,
    identity_target: str,
    tls: TlsFiles | None = None,
    jwks_file: str = "",
    leeway_seconds: float = 30.0,
    min_refresh_interval: float = 1.0,
) -> TokenVerifier:
    """A verifier whose keys come from ``jwks_file`` when given, else from identity over
    mutual TLS with ``tls``'s certificate (identity's must name ``identity``).

    Keys are fetched lazily (at the first call that needs them), so a service
    starts even while identity is still starting.
    """
    source: KeySource
    if jwks_file:
        source = FileKeySource(jwks_file)
    elif tls is not None:
        source = IdentityKeySource(identity_target, tls=tls)
    else:
        raise ValueError("fetching identity's keys needs TLS files (or give a JWKS file)")
    return TokenVerifier(
        JwksCache(source, min_refresh_interval=min_refresh_interval),
        issuer=issuer,
        audience=audience,
        leeway_seconds=leeway_seconds,
    )


def verifier_from(settings: TokenVerifyingSettings) -> TokenVerifier:
    """The verifier a service's ``<SERVICE>_AUTH_*`` and ``<SERVICE>_IDENTITY_TARGET`` describe."""
    return build_verifier(
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        identity_target=settings.identity_target,
        tls=settings.tls,
        jwks_file=settings.auth_jwks_file,
        leeway_seconds=settings.auth_leeway_seconds,
    )
