"""Wires identity's adapters into its service layer: the only place that does."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from chassis.auth import (
    CallableKeySource,
    JwksCache,
    KeyDocument,
    TokenVerifier,
    declared_scopes,
)
from chassis.db.data_keys import DataKeys
from chassis.db.engine import create_db_engine
from chassis.db.migrations import upgrade
from chassis.events.writer import OutboxWriter
from chassis.kernel.clock import Clock, SystemClock
from chassis.pii import Envelope
from sqlalchemy import Engine

from identity.adapters import tables
from identity.adapters.crypto import Argon2SecretHasher, KeyVault
from identity.adapters.events import to_outbox_message
from identity.adapters.orm import start_mappers
from identity.adapters.unit_of_work import SqlIdentityUnitOfWork
from identity.config import IdentitySettings
from identity.domain.model import TokenPolicy
from identity.service_layer import use_cases
from identity.service_layer.ports import SecretHasher
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
        self.engine.dispose()


def bootstrap(
    settings: IdentitySettings,
    clock: Clock | None = None,
    hasher: SecretHasher | None = None,
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
        hasher=hasher or Argon2SecretHasher(),
        keys=vault,
        tokens=TokenPolicy(
            issuer=settings.token_issuer,
            audience=settings.token_audience,
            ttl=timedelta(seconds=settings.token_ttl_seconds),
            customer_scopes=settings.customer_scopes(),
        ),
        retire_margin=timedelta(seconds=settings.key_retire_margin_seconds),
        declared_scopes=frozenset(declared_scopes()),
    )
    # Fails at start, not at the first token, if the key-encryption key is wrong.
    vault.private_key(use_cases.ensure_signing_key(deps))

    def own_keys() -> KeyDocument:
        return KeyDocument(
            [k.public_jwk for k in use_cases.published_keys(deps)],
            max_age=settings.public_keys_max_age_seconds,
        )

    # Identity verifies the tokens sent to it with its own key set, read locally.
    verifier = TokenVerifier(
        JwksCache(CallableKeySource(own_keys), min_refresh_interval=0.5),
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        leeway_seconds=settings.auth_leeway_seconds,
    )
    return Identity(engine=engine, deps=deps, settings=settings, verifier=verifier)
