"""``astra-identity register-client`` on PostgreSQL: no scope named, none granted; every scope
only on an explicit flag, and only in development."""

from __future__ import annotations

import argparse
import json

import pytest
from chassis.auth import declared_scopes
from identity.entrypoints.admin import register_client

from tests.identity_fixtures import identity_settings


def _args(client_id: str, *scopes: str, all_scopes: bool = False) -> argparse.Namespace:
    return argparse.Namespace(
        client_id=client_id,
        name="",
        scope=list(scopes) or None,
        all_scopes=all_scopes,
        reset_secret=False,
    )


def _registered(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    return dict(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))


def test_register_client_grants_what_is_named_and_nothing_by_default(
    identity_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = identity_settings(identity_db_url)
    register_client(_args("cli_bare"), settings)
    bare = _registered(capsys)
    assert bare["scopes"] == []
    assert str(bare["client_secret"]).startswith("astra_cs_")
    register_client(_args("cli_named", "ledger.accounts.read"), settings)
    assert _registered(capsys)["scopes"] == ["ledger.accounts.read"]


def test_all_scopes_is_refused_outside_development(
    identity_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit, match="development only"):
        register_client(_args("cli_all", all_scopes=True), identity_settings(identity_db_url))
    with pytest.raises(SystemExit, match="not both"):
        register_client(
            _args("cli_all", "ledger.accounts.read", all_scopes=True),
            identity_settings(identity_db_url, environment="development"),
        )
    register_client(
        _args("cli_all", all_scopes=True),
        identity_settings(identity_db_url, environment="development"),
    )
    assert _registered(capsys)["scopes"] == sorted(declared_scopes())
