"""Wires payments' adapters into its service layer: the only place that does."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc
from chassis.auth.keys import IDENTITY_SERVER_NAME
from chassis.db.data_keys import DataKeys
from chassis.db.engine import create_db_engine
from chassis.db.migrations import upgrade
from chassis.events.writer import OutboxWriter
from chassis.grpc.client import TokenSource, open_channel
from chassis.http_signatures import SigningAuth, load_key
from chassis.kernel.clock import Clock, SystemClock
from chassis.pii import Envelope
from chassis.retry import RetryPolicy
from screening.matcher import Screener
from screening.sdn import SanctionsListError, load_sdn
from sqlalchemy import Connection, Engine

from payments.adapters import tables
from payments.adapters.bank_gateway import HttpBankGateway, new_breaker
from payments.adapters.events import to_outbox_message
from payments.adapters.fraud_model import LightGbmFraudModel
from payments.adapters.identity_client import GrpcIdentity
from payments.adapters.ledger_client import GrpcLedger
from payments.adapters.metrics import count_transitions, record_house_account
from payments.adapters.unit_of_work import JoinedPaymentsUnitOfWork, SqlPaymentsUnitOfWork
from payments.config import PaymentsSettings
from payments.domain.fees import FeeSchedule
from payments.domain.fraud import FraudRules
from payments.domain.limits import AmountLimits
from payments.domain.monitoring import MonitoringRules
from payments.domain.policy import Policy
from payments.domain.risk_score import ScoreThresholds
from payments.service_layer.capacity import CapacityWatch
from payments.service_layer.creation import CreationBatcher, create_payments
from payments.service_layer.ports import BankGateway, IdentityPort, LedgerPort
from payments.service_layer.unit_of_work import PaymentsUnitOfWork
from payments.service_layer.use_cases import Deps

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
CONTEXT = "payments"
ERROR_DOMAIN = "payments.astra"
# The name the ledger's certificate carries: payments moves money only with the real ledger.
LEDGER_SERVER_NAME = "ledger"
# What payments asks identity for when it has client credentials.
# What payments asks for, per service it calls: a token is for one audience.
LEDGER_SCOPES = (
    "ledger.accounts.read",
    "ledger.accounts.write",
    "ledger.transfers.read",
    "ledger.transfers.write",
)
IDENTITY_SCOPES = ("identity.customers.read",)


def migrate(database_url: str, key_encryption_keys: list[str] | None = None) -> None:
    """Apply the migrations; the KEK seals existing personal data (0006), else it is read
    from the environment when there is any."""
    upgrade(database_url, MIGRATIONS, key_encryption_keys=key_encryption_keys)


def sanctions_screener(settings: PaymentsSettings) -> Screener | None:
    """The list new payments are screened against, loaded at start (None: screening off); a
    list that cannot be read stops the start, with the file and line."""
    if not settings.sanctions_list_file:
        return None
    try:
        sanctions = load_sdn(settings.sanctions_list_file)
    except SanctionsListError as error:
        raise ValueError(f"PAYMENTS_SANCTIONS_LIST_FILE: {error}") from None
    return Screener(sanctions, settings.sanctions_threshold)


def policy_from(settings: PaymentsSettings) -> Policy:
    return Policy(
        sanctions=sanctions_screener(settings),
        fees=FeeSchedule(settings.payout_fee_basis_points, dict(settings.payout_fee_fixed)),
        fraud=FraudRules(
            max_amount=dict(settings.fraud_max_amount),
            review_amount=dict(settings.fraud_review_amount),
            velocity_window=timedelta(seconds=settings.fraud_velocity_window_seconds),
            velocity_max_count=settings.fraud_velocity_max_count,
            velocity_max_amount=dict(settings.fraud_velocity_max_amount),
            new_customer_age=timedelta(days=settings.fraud_new_customer_days),
            new_customer_max_amount=dict(settings.fraud_new_customer_max_amount),
        ),
        limits=AmountLimits(settings.amount_max_major_units, dict(settings.amount_max)),
        monitoring=MonitoringRules(
            window=timedelta(seconds=settings.monitor_window_seconds),
            structuring_amount={
                **settings.fraud_review_amount,
                **settings.monitor_structuring_amount,
            },
            structuring_margin_bp=settings.monitor_structuring_margin_basis_points,
            structuring_min_count=settings.monitor_structuring_count,
            in_out_window=timedelta(seconds=settings.monitor_in_out_seconds),
            in_out_share_bp=settings.monitor_in_out_share_basis_points,
            new_counterparties=settings.monitor_new_counterparties,
            hold_for_review=settings.monitor_hold_for_review,
        ),
        score_thresholds=ScoreThresholds(settings.fraud_score_review, settings.fraud_score_decline),
        lease=timedelta(seconds=settings.worker_lease_seconds),
        status_poll=timedelta(seconds=settings.status_poll_seconds),
        retry_max_seconds=settings.retry_max_seconds,
        stuck_after=settings.stuck_after_retries,
    )


def bank_gateway(settings: PaymentsSettings) -> HttpBankGateway:
    key = load_key(
        settings.bank_key_id,
        settings.bank_signing_key.get_secret_value(),
        settings.bank_signing_key_file,
        setting="PAYMENTS_BANK_SIGNING_KEY",
    )
    verify = ssl.create_default_context(cafile=settings.bank_ca_file or None)
    return HttpBankGateway(
        settings.bank_url,
        policy=RetryPolicy(
            max_attempts=settings.bank_retry_attempts,
            initial_backoff=settings.bank_retry_initial_seconds,
            max_backoff=settings.bank_retry_max_seconds,
            budget=settings.bank_retry_budget_seconds,
        ),
        breaker=new_breaker(
            "bank", settings.bank_breaker_failures, settings.bank_breaker_reset_seconds
        ),
        # One key both ways: the bank signs its answers with the key payments signs with.
        auth=SigningAuth(key, {key.key_id: key.secret}),
        verify=verify,
        timeout=settings.bank_timeout_seconds,
        max_connections=settings.bank_max_connections,
    )


def token_source(
    settings: PaymentsSettings, audience: str, scopes: Sequence[str]
) -> TokenSource | None:
    """Tokens for calls to ``audience`` (the ledger or identity), when payments has a client."""
    secret = settings.client_secret.get_secret_value()
    if not (settings.client_id and secret):
        return None
    from chassis.auth import ClientCredentialsTokenSource

    return ClientCredentialsTokenSource(
        settings.identity_target,
        settings.client_id,
        secret,
        audience=audience,
        tls=settings.tls,
        scopes=scopes,
        timeout=settings.call_timeout_seconds,
    )


@dataclass
class Payments:
    """The running service's parts, as the entrypoints use them."""

    settings: PaymentsSettings
    engine: Engine
    deps: Deps
    creator: CreationBatcher
    # A unit of work on an event handler's transaction (its inbox row's), with the outbox.
    joined_uow: Callable[[Connection], PaymentsUnitOfWork]
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def uow(self) -> Callable[[], PaymentsUnitOfWork]:
        return self.deps.uow

    def close(self) -> None:
        self.creator.close()
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):
                close()
        self.engine.dispose()


def bootstrap(
    settings: PaymentsSettings,
    *,
    clock: Clock | None = None,
    ledger: LedgerPort | None = None,
    identity: IdentityPort | None = None,
    bank: BankGateway | None = None,
) -> Payments:
    """The service wired from settings; tests may pass their own real adapters."""
    # First: a model that cannot be trusted stops the start before anything else opens.
    fraud_model = (
        LightGbmFraudModel.load(settings.fraud_model_file) if settings.fraud_model_file else None
    )
    kek = settings.key_encryption_keys()
    if settings.migrate_on_start:
        migrate(settings.database_url, kek)
    # Counterparties' account numbers and names sealed with a data key per customer.
    data_keys = DataKeys(tables.data_keys, Envelope(kek))
    engine = create_db_engine(
        settings.database_url, pool_size=settings.db_pool_size, application_name="astra-payments"
    )
    closers: list[Callable[[], None]] = []
    if ledger is None:
        ledger_channel = open_channel(
            settings.ledger_target,
            tls=settings.tls,
            server_name=LEDGER_SERVER_NAME,
            default_timeout=settings.call_timeout_seconds,
            token_source=token_source(settings, "ledger", LEDGER_SCOPES),
        )
        closers.append(ledger_channel.close)
        ledger = GrpcLedger(ledger_channel)
    if identity is None:
        identity_channel: grpc.Channel = open_channel(
            settings.identity_target,
            tls=settings.tls,
            server_name=IDENTITY_SERVER_NAME,
            default_timeout=settings.call_timeout_seconds,
            token_source=token_source(settings, "identity", IDENTITY_SCOPES),
        )
        closers.append(identity_channel.close)
        identity = GrpcIdentity(identity_channel)
    if bank is None:
        gateway = bank_gateway(settings)
        closers.append(gateway.close)
        bank = gateway
    write_events = OutboxWriter(tables.outbox, CONTEXT).events_writer(to_outbox_message)

    def uow() -> PaymentsUnitOfWork:
        return SqlPaymentsUnitOfWork(engine, data_keys, write_events, count_transitions)

    def joined_uow(connection: Connection) -> PaymentsUnitOfWork:
        return JoinedPaymentsUnitOfWork(connection, data_keys, write_events)

    deps = Deps(
        uow=uow,
        clock=clock or SystemClock(),
        ledger=ledger,
        identity=identity,
        bank=bank,
        policy=policy_from(settings),
        capacity=CapacityWatch(settings.house_account_stop_ratio, record_house_account),
        fraud_model=fraud_model,
    )

    creator = CreationBatcher(
        lambda creations: create_payments(deps, creations),
        max_batch=settings.create_batch_max,
        workers=settings.create_batch_workers,
    )
    return Payments(settings, engine, deps, creator, joined_uow, closers)
