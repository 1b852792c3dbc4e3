"""Configuration from environment variables only (pydantic-settings).

Each service subclasses ``ServiceSettings`` with its own prefix (``LEDGER_``,
``PAYMENTS_``...); a bad value fails at start with a message naming the variable.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Settings every gRPC service has. Subclasses set ``env_prefix``."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    grpc_host: str = Field("127.0.0.1", description="Interface the gRPC server binds to")
    grpc_port: int = Field(..., ge=0, le=65535, description="gRPC port (0 picks a free one)")
    grpc_max_workers: int = Field(32, ge=1, le=1024, description="gRPC handler threads")
    grpc_reuse_port: bool = Field(
        False, description="Set SO_REUSEPORT so several processes can share the port"
    )
    grace_seconds: float = Field(10.0, ge=0, description="Drain time on SIGTERM")
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Prometheus /metrics HTTP port on grpc_host (0: none)"
    )
    processes: int = Field(
        1, ge=1, le=64, description="Server processes sharing grpc_port via SO_REUSEPORT"
    )
    database_url: str = Field(..., description="SQLAlchemy URL of the context's own database")
    migrate_on_start: bool = Field(True, description="Apply Alembic migrations before serving")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")


class PubSubSettings(BaseSettings):
    """Where events go; ``PUBSUB_EMULATOR_HOST`` (read by the client) selects the emulator."""

    model_config = SettingsConfigDict(env_prefix="ASTRA_PUBSUB_", extra="ignore", frozen=True)

    project: str = Field("astra-local", description="Google Cloud project of the topics")
    create_topics: bool = Field(True, description="Create a missing topic instead of failing")
