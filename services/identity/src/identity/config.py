"""Identity's settings, from ``IDENTITY_*`` environment variables."""

from __future__ import annotations

from chassis.config import ServiceSettings
from chassis.pii import read_key_encryption_keys
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

DEFAULT_CUSTOMER_SCOPES = "ledger.accounts.read ledger.transfers.read"


class IdentitySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IDENTITY_", extra="ignore", frozen=True)

    grpc_port: int = Field(50051, ge=0, le=65535)
    metrics_port: int = Field(9101, ge=0, le=65535)
    database_url: str = Field("sqlite:///.data/identity.db")
    db_pool_size: int = Field(8, ge=1, le=200, description="Connections per process")
    token_issuer: str = Field(
        "astra-identity", min_length=1, description="The `iss` of every token issued"
    )
    token_audience: str = Field(
        "astra", min_length=1, description="The `aud` of every token issued"
    )
    token_ttl_seconds: int = Field(900, ge=30, le=86400, description="Lifetime of a token")
    customer_token_scopes: str = Field(
        DEFAULT_CUSTOMER_SCOPES,
        description="Space-separated scopes a customer token may carry",
    )
    key_encryption_key: SecretStr | None = Field(
        None,
        description="Fernet key(s), comma-separated, that encrypt the signing keys and the "
        "customers' data keys at rest; the first encrypts, any decrypts",
    )
    key_encryption_key_file: str = Field(
        "", description="File holding the Fernet key(s), one per line (instead of the variable)"
    )
    key_retire_margin_seconds: int = Field(
        120, ge=0, le=3600, description="How long past the token lifetime a retired key stays"
    )
    public_keys_max_age_seconds: int = Field(
        300, ge=1, le=86400, description="Cache lifetime verifiers are told for the public keys"
    )

    def customer_scopes(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.customer_token_scopes.replace(",", " ").split())))

    def key_encryption_keys(self) -> list[str]:
        """The Fernet keys, from the variable or the file; an error saying how to provide one."""
        return read_key_encryption_keys(
            self.key_encryption_key,
            self.key_encryption_key_file,
            env_prefix="IDENTITY_",
            command="astra-identity",
        )
