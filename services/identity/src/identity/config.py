"""Identity's settings, from ``IDENTITY_*`` environment variables."""

from __future__ import annotations

from typing import Literal

from chassis.config import AuthSettings
from chassis.pii import read_key_encryption_keys
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

DEFAULT_CUSTOMER_SCOPES = "ledger.accounts.read ledger.transfers.read"
DEFAULT_AUDIENCES = "identity ledger payments"


class IdentitySettings(AuthSettings):
    model_config = SettingsConfigDict(env_prefix="IDENTITY_", extra="ignore", frozen=True)

    grpc_port: int = Field(50051, ge=0, le=65535)
    metrics_port: int = Field(9101, ge=0, le=65535)
    database_url: str = Field("sqlite:///.data/identity.db")
    db_pool_size: int = Field(8, ge=1, le=200, description="Connections per process")
    token_issuer: str = Field(
        "astra-identity", min_length=1, description="The `iss` of every token issued"
    )
    auth_audience: str = Field(
        "identity", min_length=1, description="The token audience (`aud`) identity accepts"
    )
    token_audiences: str = Field(
        DEFAULT_AUDIENCES,
        description="Space-separated audiences a token may be issued for (the services)",
    )
    environment: Literal["development", "production"] = Field(
        "production",
        description="development lets `register-client --all-scopes` grant every scope",
    )
    issue_token_rate_per_client: float = Field(
        5.0,
        gt=0,
        le=100_000,
        description="IssueToken/IssueCustomerToken calls a second per client (per process)",
    )
    issue_token_burst_per_client: int = Field(
        20, ge=1, le=100_000, description="Calls a client may make at once before its rate applies"
    )
    issue_token_rate_overall: float = Field(
        200.0,
        gt=0,
        le=1_000_000,
        description="IssueToken/IssueCustomerToken calls a second in all (per process)",
    )
    issue_token_burst_overall: int = Field(
        200, ge=1, le=1_000_000, description="Calls at once in all before the overall rate applies"
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

    sanctions_list_file: str = Field(
        "",
        description="The sanctions list's sdn.csv (OFAC SDN layout; alt.csv and add.csv beside "
        "it are read too) customers are screened against at KYC; empty: no screening",
    )
    sanctions_threshold: int = Field(
        90, ge=1, le=100, description="Match score (0-100) at or above which a customer is held"
    )

    def audiences(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.token_audiences.replace(",", " ").split())))

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
