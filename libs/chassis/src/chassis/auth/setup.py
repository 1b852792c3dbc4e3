"""One way for a service to build its token verifier from its settings."""

from __future__ import annotations

from chassis.auth.keys import FileKeySource, IdentityKeySource, JwksCache, KeySource
from chassis.auth.revocation import IdentityRevocationSource, RevocationList
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
    revocation_refresh_seconds: float = 2.0,
    revocation_max_staleness_seconds: float = 30.0,
) -> TokenVerifier:
    """A verifier whose keys come from ``jwks_file`` when given, else from identity over
    mutual TLS with ``tls``'s certificate (identity's must name ``identity``), and which
    follows identity's revocations the same way (not with a JWKS file: tests and benchmarks).

    Keys and revocations are fetched lazily (at the first call that needs them),
    so a service starts even while identity is still starting.
    """
    source: KeySource
    revocations: RevocationList | None = None
    if jwks_file:
        source = FileKeySource(jwks_file)
    elif tls is not None:
        source = IdentityKeySource(identity_target, tls=tls)
        revocations = RevocationList(
            IdentityRevocationSource(identity_target, tls=tls),
            refresh_interval=revocation_refresh_seconds,
            max_staleness=revocation_max_staleness_seconds,
        )
    else:
        raise ValueError("fetching identity's keys needs TLS files (or give a JWKS file)")
    return TokenVerifier(
        JwksCache(source, min_refresh_interval=min_refresh_interval),
        issuer=issuer,
        audience=audience,
        leeway_seconds=leeway_seconds,
        revocations=revocations,
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
        revocation_refresh_seconds=settings.auth_revocation_refresh_seconds,
        revocation_max_staleness_seconds=settings.auth_revocation_max_staleness_seconds,
    )
