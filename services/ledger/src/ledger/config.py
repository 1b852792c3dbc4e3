"""The ledger's settings, from ``LEDGER_*`` environment variables."""

from __future__ import annotations

from chassis.config import TokenVerifyingSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class LedgerSettings(TokenVerifyingSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGER_", extra="ignore", frozen=True)

    grpc_port: int = Field(50052, ge=0, le=65535)
    metrics_port: int = Field(9102, ge=0, le=65535)
    auth_audience: str = Field(
        "ledger", min_length=1, description="The token audience (`aud`) accepted"
    )
    database_url: str = Field("sqlite:///.data/ledger.db")
    db_pool_size: int = Field(16, ge=1, le=200, description="Connections per process")
    batcher_workers: int = Field(
        1,
        ge=1,
        le=32,
        description="Threads that commit grouped single-transfer calls (one gathers the most "
        "calls per commit: measured best on 2 cores)",
    )
    batcher_max_batch: int = Field(
        1000, ge=1, le=8189, description="Most single-transfer calls grouped into one commit"
    )
    expiry_interval_seconds: float = Field(
        1.0, gt=0, description="How often expired holds are looked for and voided"
    )
    journal_checkpoint_seconds: float = Field(
        60.0,
        gt=0,
        description="How often the journal's head is stored as a checkpoint and published "
        "(JournalCheckpointed), when it moved",
    )
