"""Configuration from environment variables only (pydantic-settings).

Each service subclasses ``ServiceSettings`` (or ``TokenVerifyingSettings``)
with its own prefix (``LEDGER_``, ``PAYMENTS_``...); a bad value fails at start
with a message naming the variable.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from chassis.tls import TlsFiles

TLS_CERT_HELP = (
    "PEM certificate (leaf first) the process serves and calls with; re-read when the file "
    "changes (a new certificate serves new connections without a restart)"
)
TLS_KEY_HELP = "PEM private key of the certificate (re-read with it)"
TLS_CA_HELP = "PEM CA certificate(s) every peer's certificate must be signed by (mutual TLS)"


class ServiceSettings(BaseSettings):
    """Settings every gRPC service has. Subclasses set ``env_prefix``."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    grpc_host: str = Field("127.0.0.1", description="Interface the gRPC server binds to")
    grpc_port: int = Field(..., ge=0, le=65535, description="gRPC port (0 picks a free one)")
    grpc_max_workers: int = Field(32, ge=1, le=1024, description="gRPC handler threads")
    grpc_max_concurrent_rpcs: int = Field(
        256,
        ge=1,
        le=100_000,
        description="Calls served or queued at once; beyond it gRPC answers RESOURCE_EXHAUSTED",
    )
    grpc_max_message_bytes: int = Field(
        64 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Largest request body of an ordinary method (open ones included)",
    )
    grpc_max_batch_message_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Largest request body of a batch method (the ledger's CreateTransfers, "
        "LookupTransfers); the server's overall limit",
    )
    grpc_reuse_port: bool = Field(
        False, description="Set SO_REUSEPORT so several processes can share the port"
    )
    grace_seconds: float = Field(
        10.0,
        ge=0,
        description="Drain time on SIGTERM: calls in flight get this long, then the workers "
        "stop within what is left (and 2 s at least)",
    )
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Prometheus /metrics HTTP port on grpc_host (0: none)"
    )
    processes: int = Field(
        1, ge=1, le=64, description="Server processes sharing grpc_port via SO_REUSEPORT"
    )
    database_url: str = Field(..., description="SQLAlchemy URL of the context's own database")
    migrate_on_start: bool = Field(True, description="Apply Alembic migrations before serving")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    auth_leeway_seconds: float = Field(
        30.0, ge=0, le=300, description="Clock skew allowed when checking exp/nbf/iat"
    )
    # No plaintext mode: a service only ever listens and calls with mutual TLS.
    tls_cert_file: str = Field(..., min_length=1, description=TLS_CERT_HELP)
    tls_key_file: str = Field(..., min_length=1, description=TLS_KEY_HELP)
    tls_ca_file: str = Field(..., min_length=1, description=TLS_CA_HELP)

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles(self.tls_cert_file, self.tls_key_file, self.tls_ca_file)


class AuthSettings(ServiceSettings):
    """What every service's token checks read. There is no switch that turns them off.

    ``auth_audience`` defaults to the service's name in each service's settings.
    """

    auth_audience: str = Field(
        ..., min_length=1, description="The token audience (`aud`) accepted: this service's name"
    )
    auth_revocation_refresh_seconds: float = Field(
        2.0,
        gt=0,
        le=300,
        description="How often the revoked tokens and disabled clients are fetched again",
    )
    auth_revocation_max_staleness_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Past this age without a successful fetch of the revocations, every "
        "token is refused (UNAVAILABLE) rather than trusted blindly",
    )


class TokenVerifyingSettings(AuthSettings):
    """A service whose callers present tokens identity issued, checked with identity's public
    keys (identity checks the tokens sent to it with its own keys: it is not one)."""

    auth_issuer: str = Field(
        "astra-identity", min_length=1, description="The token issuer (`iss`) accepted"
    )
    identity_target: str = Field(
        "127.0.0.1:50051",
        description="identity's gRPC address, where the public keys (and its API) are",
    )
    auth_jwks_file: str = Field(
        "",
        description="Read the public keys from this JWKS file instead of asking identity "
        "(tests and benchmarks: no revocation feed then)",
    )


class PubSubSettings(BaseSettings):
    """Where events go; ``PUBSUB_EMULATOR_HOST`` (read by the client) selects the emulator."""

    model_config = SettingsConfigDict(env_prefix="ASTRA_PUBSUB_", extra="ignore", frozen=True)

    project: str = Field("astra-local", description="Google Cloud project of the topics")
    create_topics: bool = Field(True, description="Create a missing topic instead of failing")
