"""Wires identity's adapters into its service layer: the only place that does."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from chassis.auth import (
    CallableKeySource,
    CallableRevocationSource,
    JwksCache,
    KeyDocument,
    RevocationList,
    Revocations,
    TokenVerifier,
    declared_scopes,
)
from chassis.db.data_keys import DataKeys
from chassis.db.engine import create_db_engine
from chassis.db.migrations import upgrade
from chassis.events.writer import OutboxWriter
from chassis.kernel.clock import Clock, SystemClock
from chassis.pii import Envelope
from chassis.ratelimit import Rate, RateLimit
from screening.matcher import Screener
from screening.sdn import SanctionsListError, load_sdn
from sqlalchemy import Engine

from identity.adapters import tables
from identity.adapters.crypto import KeyedSecretHasher, KeyVault
from identity.adapters.events import to_outbox_message
from identity.adapters.orm import start_mappers
from identity.adapters.unit_of_work import SqlIdentityUnitOfWork
from identity.config import IdentitySettings
from identity.domain.model import TokenPolicy
from identity.service_layer import use_cases
from identity.service_layer.ports import RateLimiter, SecretHasher
from identity.service_layer.unit_of_work import IdentityUnitOfWork

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
CONTEXT = "identity"
ERROR_DOMAIN = "identity.astra"


def migrate(database_url: str, key_encryption_keys: list[str] | None = None) -> None:
    """Apply the migrations; the KEK seals existing personal data (0004), else it is read
    from the environment when there is any."""
    upgrade(database_url, MIGRATIONS, key_encryption_keys=key_encryption_keys)


@dataclass
class Identity:
    """The running identity service's parts, as the entrypoints use them."""

    engine: Engine
    deps: use_cases.Deps
    settings: IdentitySettings
    verifier: TokenVerifier

    def close(self) -> None:
        self.verifier.close()
        self.engine.dispose()


def rate_limit(settings: IdentitySettings) -> RateLimit:
    return RateLimit(
        Rate(settings.issue_token_rate_per_client, settings.issue_token_burst_per_client),
        Rate(settings.issue_token_rate_overall, settings.issue_token_burst_overall),
    )


def sanctions_screener(settings: IdentitySettings) -> Screener | None:
    """The list customers are screened against, loaded at start (None: screening off); a list
    that cannot be read stops the start, with the file and line."""
    if not settings.sanctions_list_file:
        return None
    try:
        sanctions = load_sdn(settings.sanctions_list_file)
    except SanctionsListError as error:
        raise ValueError(f"IDENTITY_SANCTIONS_LIST_FILE: {error}") from None
    return Screener(sanctions, settings.sanctions_threshold)


def bootstrap(
    settings: IdentitySettings,
    clock: Clock | None = None,
    hasher: SecretHasher | None = None,
    limiter: RateLimiter | None = None,
) -> Identity:
    if settings.migrate_on_start:
        migrate(settings.database_url, settings.key_encryption_keys())
    start_mappers()
    kek = settings.key_encryption_keys()
    vault = KeyVault(kek)
    # The same KEK wraps the customers' data keys (their names and e-mails at rest).
    data_keys = DataKeys(tables.data_keys, Envelope(kek))
    engine = create_db_engine(
        settings.database_url, pool_size=settings.db_pool_size, application_name="astra-identity"
    )
    write_events = OutboxWriter(tables.outbox, CONTEXT).events_writer(to_outbox_message)

    def uow() -> IdentityUnitOfWork:
        return SqlIdentityUnitOfWork(engine, data_keys, write_events)

    deps = use_cases.Deps(
        uow=uow,
        clock=clock or SystemClock(),
        hasher=hasher or KeyedSecretHasher(kek),
        keys=vault,
        tokens=TokenPolicy(
            issuer=settings.token_issuer,
            audiences=settings.audiences(),
            ttl=timedelta(seconds=settings.token_ttl_seconds),
            customer_scopes=settings.customer_scopes(),
        ),
        retire_margin=timedelta(seconds=settings.key_retire_margin_seconds),
        declared_scopes=frozenset(declared_scopes()),
        screener=sanctions_screener(settings),
        rate_limit=limiter or rate_limit(settings),
    )
    # Fails at start, not at the first token, if the key-encryption key is wrong.
    vault.private_key(use_cases.ensure_signing_key(deps))

    def own_keys() -> KeyDocument:
        return KeyDocument(
            [k.public_jwk for k in use_cases.published_keys(deps)],
            max_age=settings.public_keys_max_age_seconds,
        )

    def own_revocations(since: float | None) -> Revocations:
        feed = use_cases.list_revocations(
            deps, None if since is None else datetime.fromtimestamp(since, UTC)
        )
        return Revocations(
            tokens=[(r.token_id, r.expire_at.timestamp()) for r in feed.tokens],
            disabled_clients=feed.disabled_client_ids,
            as_of=feed.as_of.timestamp(),
        )

    # Identity verifies the tokens sent to it with its own key set and its own revocations,
    # read locally, on the same refresh as every other service's verifier.
    verifier = TokenVerifier(
        JwksCache(CallableKeySource(own_keys), min_refresh_interval=0.5),
        issuer=settings.token_issuer,
        audience=settings.auth_audience,
        leeway_seconds=settings.auth_leeway_seconds,
        revocations=RevocationList(
            CallableRevocationSource(own_revocations),
            refresh_interval=settings.auth_revocation_refresh_seconds,
            max_staleness=settings.auth_revocation_max_staleness_seconds,
        ),
    )
    return Identity(engine=engine, deps=deps, settings=settings, verifier=verifier)
