"""The sandbox bank's settings, from ``SANDBOX_BANK_*`` environment variables.

The fault settings are only the starting values: ``PUT /admin/faults`` changes
them while the bank runs (tests use that to start and stop a storm).
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class FaultSettings(BaseSettings):
    """What goes wrong, and how often. Rates are probabilities per request (0 to 1)."""

    model_config = SettingsConfigDict(env_prefix="SANDBOX_BANK_", extra="ignore")

    error_rate: float = Field(0.0, ge=0, le=1, description="Answer 500/502/503 without acting")
    timeout_rate: float = Field(
        0.0, ge=0, le=1, description="Hang for hang_seconds without acting, then answer 504"
    )
    lost_response_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Submissions only: act, then hang for hang_seconds (the reply never arrives)",
    )
    rate_limit_rate: float = Field(
        0.0, ge=0, le=1, description="Answer 429 with Retry-After without acting"
    )
    retry_after_seconds: int = Field(1, ge=0, le=3600, description="Retry-After of a 429")
    slow_rate: float = Field(0.0, ge=0, le=1, description="Act normally after slow_seconds")
    slow_seconds: float = Field(1.0, ge=0, le=600, description="How long a slow answer takes")
    hang_seconds: float = Field(
        30.0, ge=0, le=3600, description="How long a timeout or a lost response hangs"
    )
    latency_ms: float = Field(0.0, ge=0, le=60000, description="Added to every /v1 request")


class BankSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SANDBOX_BANK_", extra="ignore", frozen=True)

    host: str = Field("127.0.0.1", description="Interface the HTTP server binds to")
    port: int = Field(8181, ge=0, le=65535, description="HTTP port")
    database: str = Field(
        ".data/sandbox_bank.db",
        description="SQLite file holding payments, idempotency keys, events and statements",
    )
    settlement_delay_seconds: float = Field(
        2.0, ge=0, le=86400, description="Time from acceptance to settlement"
    )
    return_delay_seconds: float = Field(
        1.0, ge=0, le=86400, description="Time from settlement to the automatic return (…9904)"
    )
    seed: int | None = Field(None, description="Seed of the fault dice; unset: random")
    signing_key: SecretStr = Field(
        SecretStr(""),
        description="Key shared with payments (32+ characters): verifies requests, signs answers",
    )
    signing_key_file: str = Field(
        "", description="File holding the key shared with payments, instead of the value"
    )
    signing_key_id: str = Field("payments", description="Key id of the key shared with payments")
    tls_cert_file: str = Field(
        "", description="Serve https with this certificate (PEM); empty: plain http"
    )
    tls_key_file: str = Field("", description="Private key (PEM) of tls_cert_file")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
