"""Payments' settings, from ``PAYMENTS_*`` environment variables.

Amount limits are JSON objects of minor units per ISO 4217 code, e.g.
``PAYMENTS_FRAUD_MAX_AMOUNT='{"EUR": 1000000}'``; a currency without an entry
has no such fraud limit (``PAYMENTS_AMOUNT_MAX``: the major-unit default applies).
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from chassis.config import TokenVerifyingSettings
from chassis.kernel.money import MAX_AMOUNT, is_currency
from chassis.pii import read_key_encryption_keys
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from payments.domain.limits import DEFAULT_MAX_MAJOR_UNITS, DEFAULT_STOP_RATIO

# Every currency's default maximum fits int64, up to ISO 4217's largest exponent (4).
_MAX_MAJOR_UNITS = MAX_AMOUNT // 10**4


class PaymentsSettings(TokenVerifyingSettings):
    model_config = SettingsConfigDict(env_prefix="PAYMENTS_", extra="ignore", frozen=True)

    environment: Literal["development", "production"] = Field(
        "production",
        description="development allows a plain http:// bank URL (the sandbox bank); "
        "production refuses it at start",
    )
    grpc_port: int = Field(50053, ge=0, le=65535)
    metrics_port: int = Field(9103, ge=0, le=65535)
    auth_audience: str = Field(
        "payments", min_length=1, description="The token audience (`aud`) accepted"
    )
    database_url: str = Field("sqlite:///.data/payments.db")
    db_pool_size: int = Field(16, ge=1, le=200, description="Connections per process")

    # --- the other contexts ---
    ledger_target: str = Field("127.0.0.1:50052", description="The ledger's gRPC address")
    call_timeout_seconds: float = Field(
        5.0, gt=0, le=120, description="Deadline of each ledger and identity call"
    )
    client_id: str = Field(
        "", description="Service client at identity; with a secret, outgoing calls carry tokens"
    )
    client_secret: SecretStr = Field(SecretStr(""), description="The service client's secret")

    kyc_subscriber_enabled: bool = Field(
        True, description="Follow identity's events into the KYC projection (needs Pub/Sub)"
    )
    kyc_topic: str = Field("", description="Identity's topic; empty: astra-identity-events")
    kyc_subscription: str = Field(
        "astra-payments-kyc", description="Payments' subscription to identity's topic"
    )

    # --- personal data at rest ---
    key_encryption_key: SecretStr | None = Field(
        None,
        description="Fernet key(s), comma-separated, that wrap the customers' data keys "
        "(counterparty account numbers and names at rest); the first wraps, any unwraps",
    )
    key_encryption_key_file: str = Field(
        "", description="File holding the Fernet key(s), one per line (instead of the variable)"
    )

    # --- the bank ---
    bank_url: str = Field(
        "http://127.0.0.1:8181",
        description="Base URL of the bank's API; https:// outside development",
    )
    bank_ca_file: str = Field(
        "", description="CA bundle that verifies the bank's TLS certificate; empty: system CAs"
    )
    bank_key_id: str = Field(
        "payments", description="Key id of the key shared with the bank (sent with each request)"
    )
    bank_signing_key: SecretStr = Field(
        SecretStr(""),
        description="Key shared with the bank (32+ characters): signs requests, verifies answers",
    )
    bank_signing_key_file: str = Field(
        "", description="File holding the key shared with the bank, instead of the value"
    )
    bank_timeout_seconds: float = Field(
        2.0, gt=0, le=120, description="Timeout of one bank request (connect and read)"
    )
    bank_retry_attempts: int = Field(5, ge=1, le=50, description="Attempts per bank call")
    bank_retry_initial_seconds: float = Field(
        0.1, ge=0, le=60, description="Cap of the first retry's jittered wait"
    )
    bank_retry_max_seconds: float = Field(
        2.0, ge=0, le=600, description="Cap of any retry's jittered wait"
    )
    bank_retry_budget_seconds: float = Field(
        10.0, gt=0, le=3600, description="Total time of one bank call with all its retries"
    )
    bank_breaker_failures: int = Field(
        5, ge=1, le=1000, description="Consecutive failed requests that open the breaker"
    )
    bank_breaker_reset_seconds: float = Field(
        5.0, gt=0, le=3600, description="How long the breaker stays open before a trial call"
    )
    bank_max_connections: int = Field(64, ge=1, le=1000, description="HTTP connection pool size")
    bank_feed_wait_seconds: float = Field(
        10.0, ge=0, le=30, description="Long-poll wait of the bank's event feed"
    )

    # --- creation ---
    create_batch_max: int = Field(
        200, ge=1, le=2000, description="Most concurrent creations decided in one transaction"
    )
    create_batch_workers: int = Field(
        2, ge=1, le=32, description="Threads that decide grouped creations"
    )

    # --- workers ---
    workers_enabled: bool = Field(
        True, description="Run the workers (bank feed, submissions, ledger follow-ups) in serve"
    )
    worker_loops: int = Field(2, ge=1, le=32, description="Worker threads claiming due payments")
    worker_batch_size: int = Field(200, ge=1, le=5000, description="Payments claimed at once")
    worker_threads: int = Field(16, ge=1, le=256, description="Concurrent bank calls per batch")
    worker_poll_seconds: float = Field(
        0.5, gt=0, le=60, description="Idle wait before looking for due work again"
    )
    worker_lease_seconds: float = Field(
        30.0, gt=0, le=3600, description="How long a claimed payment is left to its worker"
    )
    status_poll_seconds: float = Field(
        60.0, gt=0, le=86400, description="Ask the bank about a submitted payment after this"
    )
    reconciliation_interval_seconds: float = Field(
        3600.0,
        ge=0,
        description="How often workers make sure yesterday's statement is reconciled (0: never)",
    )
    retry_max_seconds: float = Field(
        60.0, gt=0, le=86400, description="Longest wait before retrying an unfinished action"
    )

    # --- limits ---
    amount_max_major_units: int = Field(
        DEFAULT_MAX_MAJOR_UNITS,
        ge=1,
        le=_MAX_MAJOR_UNITS,
        description="Largest payment, in major units of its currency, unless amount_max sets one",
    )
    amount_max: dict[str, int] = Field(
        default_factory=dict,
        description="Largest payment per currency (minor units), instead of the major-unit default",
    )
    house_account_stop_ratio: float = Field(
        DEFAULT_STOP_RATIO,
        gt=0,
        le=1,
        description="Share of the int64 range at which a house account's totals stop new payments "
        "in its currency (the rest books those accepted)",
    )
    house_account_check_seconds: float = Field(
        30.0, gt=0, le=3600, description="How often the house accounts' totals are read"
    )
    stuck_after_retries: int = Field(
        10, ge=1, le=1000, description="Failed attempts after which a payment counts as stuck"
    )

    # --- fees and fraud rules ---
    payout_fee_basis_points: int = Field(0, ge=0, le=10_000, description="Payout fee rate")
    payout_fee_fixed: dict[str, int] = Field(
        default_factory=dict, description="Fixed payout fee per currency (minor units)"
    )
    fraud_max_amount: dict[str, int] = Field(
        default_factory=dict, description="Per-payment limit per currency; above: declined"
    )
    fraud_review_amount: dict[str, int] = Field(
        default_factory=dict, description="At or above: held for review"
    )
    fraud_velocity_window_seconds: int = Field(
        3600, ge=1, description="Sliding window of the velocity rules"
    )
    fraud_velocity_max_count: int = Field(
        0, ge=0, description="Most payments per customer in the window (0: no limit)"
    )
    fraud_velocity_max_amount: dict[str, int] = Field(
        default_factory=dict, description="Most per customer and currency in the window"
    )
    fraud_new_customer_days: int = Field(
        30, ge=0, description="Customers younger than this are new"
    )
    fraud_new_customer_max_amount: dict[str, int] = Field(
        default_factory=dict, description="Per-payment limit per currency for new customers"
    )

    # --- sanctions screening (payments.domain.sanctions) ---
    sanctions_list_file: str = Field(
        "",
        description="The sanctions list's sdn.csv (OFAC SDN layout; alt.csv and add.csv beside "
        "it are read too); empty: no screening",
    )
    sanctions_threshold: int = Field(
        90, ge=1, le=100, description="Match score (0-100) at or above which a payment is held"
    )

    # --- transaction monitoring ---
    monitor_window_seconds: int = Field(
        86_400, ge=60, le=90 * 86_400, description="Window of the monitoring rules"
    )
    monitor_structuring_amount: dict[str, int] = Field(
        default_factory=dict,
        description="Threshold that structuring stays just under, per currency (minor units); "
        "a currency without one uses fraud_review_amount's (neither: no structuring rule)",
    )
    monitor_structuring_margin_basis_points: int = Field(
        1_000, ge=1, le=10_000, description="How far under the threshold counts as just under"
    )
    monitor_structuring_count: int = Field(
        3, ge=2, le=1_000, description="Payments just under the threshold in the window: alert"
    )
    monitor_in_out_seconds: int = Field(
        3_600,
        ge=0,
        le=30 * 86_400,
        description="A payout this soon after collections is rapid in-and-out (0: rule off)",
    )
    monitor_in_out_share_basis_points: int = Field(
        8_000, ge=1, le=100_000, description="Share of the collected amount a payout must take out"
    )
    monitor_new_counterparties: int = Field(
        5,
        ge=0,
        le=10_000,
        description="New counterparties paid in the window that raise an alert (0: rule off)",
    )
    monitor_hold_for_review: bool = Field(
        False, description="An alert also holds its payment for review (else only reported)"
    )

    # --- the learned fraud score ---
    fraud_model_file: str = Field(
        "",
        description="Manifest of the fraud model's artifact (JSON beside the LightGBM model); "
        "empty: payments are not scored. A corrupt or mismatched artifact stops the start",
    )
    fraud_score_review: float = Field(
        0.5, gt=0, le=1, description="Model score at or above which a payment is held for review"
    )
    fraud_score_decline: float = Field(
        0.9, gt=0, le=1, description="Model score at or above which a payment is declined"
    )

    @model_validator(mode="after")
    def _score_thresholds(self) -> PaymentsSettings:
        if self.fraud_score_review > self.fraud_score_decline:
            raise ValueError(
                f"fraud_score_review ({self.fraud_score_review}) must not be above "
                f"fraud_score_decline ({self.fraud_score_decline})"
            )
        return self

    @model_validator(mode="after")
    def _bank_link(self) -> PaymentsSettings:
        scheme = urlsplit(self.bank_url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"bank_url: {self.bank_url!r} is not an http(s) URL")
        if scheme == "http" and self.environment != "development":
            raise ValueError(
                "bank_url: a plain http:// bank URL is refused outside development "
                f"(PAYMENTS_ENVIRONMENT={self.environment}); use https://"
            )
        if self.bank_signing_key.get_secret_value() and self.bank_signing_key_file:
            raise ValueError("bank_signing_key: set the key or its file, not both")
        return self

    @field_validator(
        "amount_max",
        "payout_fee_fixed",
        "fraud_max_amount",
        "fraud_review_amount",
        "fraud_velocity_max_amount",
        "fraud_new_customer_max_amount",
        "monitor_structuring_amount",
    )
    @classmethod
    def _amounts_per_currency(cls, value: dict[str, int]) -> dict[str, int]:
        for code, amount in value.items():
            if not is_currency(code):
                raise ValueError(f"{code!r} is not an ISO 4217 code with minor units")
            if not 0 <= amount <= MAX_AMOUNT:
                raise ValueError(f"{code}: {amount} is outside 0..{MAX_AMOUNT} minor units")
        return value

    def key_encryption_keys(self) -> list[str]:
        """The Fernet keys, from the variable or the file; an error saying how to provide one."""
        return read_key_encryption_keys(
            self.key_encryption_key,
            self.key_encryption_key_file,
            env_prefix="PAYMENTS_",
            command="astra-payments",
        )
