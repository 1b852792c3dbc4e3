"""The relay's settings, from ``RELAY_*`` environment variables.

Where events go is shared with every Pub/Sub user: ``ASTRA_PUBSUB_PROJECT``,
``ASTRA_PUBSUB_CREATE_TOPICS`` (``chassis.config.PubSubSettings``) and, for the
emulator, ``PUBSUB_EMULATOR_HOST``.
"""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from chassis.config import TLS_CA_HELP, TLS_CERT_HELP, TLS_KEY_HELP
from chassis.events.clients import context_topic
from chassis.events.cloudevents import source_of
from chassis.tls import TlsFiles


class RelaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELAY_", extra="ignore", frozen=True)

    database_url: str = Field(..., description="SQLAlchemy URL of the context's database")
    context: str = Field(
        ...,
        pattern=r"^[a-z][a-z0-9_]*$",
        description="The bounded context (names the NOTIFY channel, ce-source, default topic)",
    )
    topic: str = Field("", description="Topic id or full path; default astra-<context>-events")
    source: str = Field("", description="ce-source of the events; default //astra.<context>")
    subscriptions: str = Field(
        "",
        description="Comma-separated subscriptions to the topic that consumers need: with "
        "ASTRA_PUBSUB_CREATE_TOPICS they are created with the topic, before anything is "
        "published (again after an emulator restart), so no event goes out before they exist",
    )
    batch_size: int = Field(
        1000, ge=1, le=1000, description="Most messages in one publish request (Pub/Sub max 1000)"
    )
    max_rows_per_round: int = Field(
        8000, ge=1, le=100_000, description="Most outbox rows read and published in one round"
    )
    publish_concurrency: int = Field(
        16,
        ge=1,
        le=64,
        description="Publish requests in flight at once (each for other lanes); a lane waits "
        "for its request's ack, so more in flight shortens the wait under steady load",
    )
    publish_timeout_seconds: float = Field(30.0, gt=0, description="Deadline of one publish")
    poll_seconds: float = Field(
        0.5, gt=0, description="Fallback poll when no NOTIFY arrives (SQLite relies on it)"
    )
    rebalance_seconds: float = Field(
        2.0, gt=0, description="How often lanes are rebalanced between live relays"
    )
    backoff_max_seconds: float = Field(
        10.0, gt=0, description="Longest wait between retries while Pub/Sub or the DB fails"
    )
    retention_seconds: float = Field(
        3600.0, ge=0, description="Published rows are deleted after this long"
    )
    purge_interval_seconds: float = Field(60.0, gt=0, description="How often old rows are purged")
    lag_interval_seconds: float = Field(
        5.0, gt=0, description="How often backlog and oldest age are measured and logged"
    )
    health_port: int = Field(
        0, ge=0, le=65535, description="gRPC health port (grpc.health.v1); 0 serves none"
    )
    health_host: str = Field("127.0.0.1", description="Interface of the health port")
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Prometheus /metrics port on health_host; 0 serves none"
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    tls_cert_file: str = Field("", description=f"{TLS_CERT_HELP}; required with a health port")
    tls_key_file: str = Field("", description=f"{TLS_KEY_HELP}; required with a health port")
    tls_ca_file: str = Field("", description=f"{TLS_CA_HELP}; required with a health port")

    @model_validator(mode="after")
    def _health_needs_tls(self) -> RelaySettings:
        # The health port speaks mutual TLS like every server: no plaintext port.
        missing = [
            f"RELAY_{name.upper()}"
            for name in ("tls_cert_file", "tls_key_file", "tls_ca_file")
            if not getattr(self, name)
        ]
        if self.health_port and missing:
            raise ValueError(f"a health port needs {', '.join(missing)}")
        return self

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles(self.tls_cert_file, self.tls_key_file, self.tls_ca_file)

    @property
    def topic_id(self) -> str:
        return self.topic or context_topic(self.context)

    @property
    def subscription_ids(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.subscriptions.split(",") if s.strip())

    @property
    def event_source(self) -> str:
        return self.source or source_of(self.context)
