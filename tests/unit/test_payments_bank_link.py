"""Payments' settings of the bank link: https outside development, and a key to sign with."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from astra_testkit.tls import tls_settings
from payments.bootstrap import bank_gateway
from payments.config import PaymentsSettings

KEY = "k" * 32


def settings(**values: object) -> PaymentsSettings:
    given: dict[str, object] = {"database_url": "sqlite://", **tls_settings("payments"), **values}
    return PaymentsSettings(**given)  # type: ignore[arg-type]


def test_a_plain_http_bank_is_refused_outside_development() -> None:
    with pytest.raises(ValueError, match=r"bank_url: a plain http:// bank URL is refused"):
        settings(environment="production", bank_url="http://bank.example")
    with pytest.raises(ValueError, match="bank_url"):  # production is the default
        settings(bank_url="http://bank.example")
    with pytest.raises(ValueError, match="not an http"):
        settings(environment="development", bank_url="ftp://bank.example")
    assert settings(bank_url="https://bank.example").environment == "production"
    assert settings(environment="development", bank_url="http://127.0.0.1:8181").bank_url


def test_the_variable_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENTS_ENVIRONMENT", "staging")
    with pytest.raises(ValueError, match="environment"):
        settings(bank_url="https://bank.example")


def test_the_gateway_wants_a_signing_key_and_verifies_the_bank_with_the_ca_given(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="PAYMENTS_BANK_SIGNING_KEY or PAYMENTS_BANK_SIGNING_KEY"):
        bank_gateway(settings(bank_url="https://bank.example"))
    with pytest.raises(ValueError, match="not both"):
        settings(bank_url="https://bank.example", bank_signing_key=KEY, bank_signing_key_file="k")
    missing_ca = settings(
        bank_url="https://bank.example", bank_signing_key=KEY, bank_ca_file=str(tmp_path / "no")
    )
    with pytest.raises(FileNotFoundError):
        bank_gateway(missing_ca)
    not_a_ca = tmp_path / "not-a-ca.pem"
    not_a_ca.write_text("not a certificate")
    with pytest.raises(ssl.SSLError):  # the file named is the one the bank is checked with
        bank_gateway(
            settings(
                bank_url="https://bank.example", bank_signing_key=KEY, bank_ca_file=str(not_a_ca)
            )
        )
    key_file = tmp_path / "bank.key"
    key_file.write_text(KEY + "\n")
    bank_gateway(
        settings(bank_url="https://bank.example", bank_signing_key_file=str(key_file))
    ).close()
