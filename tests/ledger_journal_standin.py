"""STAND-IN for the journal's write path (branch j18/jwrite), until it is merged.

The one place the verification tests get a journal from. It creates the
``journal`` and ``journal_head`` tables as the issue 18 spec defines them
(migration 0005_journal will), and appends the chained records of every
account and transfer row not journaled yet, built with
``ledger.domain.journal.chain`` from the rows the ledger's use cases wrote,
in the bodies' form of j18/jwrite's ``ledger.domain.journal_records`` (legs as
lists, metadata as objects, enums by name, empty text as null).

Once 0005_journal and the appends are merged, both are no-ops by themselves:
``create_journal_tables`` finds the migration's tables, and ``append_journal``
finds every change journaled already (each use case appends in its own
transaction). Then delete this module and its calls.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from chassis.kernel.clock import utc
from ledger.domain.journal import ACCOUNT_OPENED, GENESIS, TRANSFER, canonical, chain, micros
from ledger.domain.model import Direction, EntryType, NormalSide, TransferKind
from sqlalchemy import Engine, inspect, text

_PG_DDL = [
    """CREATE TABLE journal (
         sequence BIGINT PRIMARY KEY,
         kind VARCHAR(32) NOT NULL,
         body BYTEA NOT NULL,
         prev_hash BYTEA NOT NULL,
         hash BYTEA NOT NULL,
         recorded_at TIMESTAMP WITH TIME ZONE NOT NULL)""",
    """CREATE TABLE journal_head (
         id SMALLINT PRIMARY KEY,
         sequence BIGINT NOT NULL,
         hash BYTEA NOT NULL)""",
    "CREATE TRIGGER journal_immutable BEFORE UPDATE OR DELETE ON journal "
    "FOR EACH ROW EXECUTE FUNCTION ledger_journal_is_immutable()",
    "CREATE TRIGGER journal_no_truncate BEFORE TRUNCATE ON journal "
    "FOR EACH STATEMENT EXECUTE FUNCTION ledger_journal_is_immutable()",
]
_SQLITE_DDL = [
    """CREATE TABLE journal (
         sequence BIGINT PRIMARY KEY,
         kind VARCHAR(32) NOT NULL,
         body BLOB NOT NULL,
         prev_hash BLOB NOT NULL,
         hash BLOB NOT NULL,
         recorded_at DATETIME NOT NULL)""",
    """CREATE TABLE journal_head (
         id SMALLINT PRIMARY KEY,
         sequence BIGINT NOT NULL,
         hash BLOB NOT NULL)""",
]


def create_journal_tables(engine: Engine) -> None:
    if inspect(engine).has_table("journal"):
        return  # the write path's migration made them
    ddl = _PG_DDL if engine.dialect.name == "postgresql" else _SQLITE_DDL
    with engine.begin() as c:
        for statement in ddl:
            c.execute(text(statement))
        c.execute(
            text("INSERT INTO journal_head (id, sequence, hash) VALUES (1, 0, :h)"), {"h": GENESIS}
        )


def _us(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite reads instants through text() as text
        value = datetime.fromisoformat(value)
    return micros(utc(value))


def _requester(row: Any, offset: int) -> dict[str, Any] | None:
    client, customer, request = row[offset], row[offset + 1], row[offset + 2]
    if not client:
        return None
    return {"client_id": client, "customer_id": customer, "request_id": request}


def _bodies(engine: Engine, journaled: set[tuple[str, str]]) -> list[tuple[str, bytes]]:
    changes: list[tuple[tuple[int, int, int, str], str, dict[str, Any]]] = []
    with engine.connect() as c:
        for row in c.execute(
            text(
                "SELECT a.id, a.currency, a.normal_side, a.debits_must_not_exceed_credits, "
                "a.credits_must_not_exceed_debits, a.metadata, a.external_reference, "
                "a.customer_id, a.fingerprint, a.created_at, q.client_id, q.customer_id, "
                "q.request_id FROM accounts a LEFT JOIN requesters q ON q.id = a.requester_id"
            )
        ):
            if (ACCOUNT_OPENED, row[0]) in journaled:
                continue
            body: dict[str, Any] = {
                "kind": ACCOUNT_OPENED,
                "account": {
                    "id": row[0],
                    "currency": row[1],
                    "normal_side": NormalSide(row[2]).name,
                    "debits_must_not_exceed_credits": bool(row[3]),
                    "credits_must_not_exceed_debits": bool(row[4]),
                    "metadata": json.loads(row[5]) if row[5] else None,
                    "external_reference": row[6],
                    "customer_id": row[7],
                    "fingerprint": row[8],
                    "created_at": _us(row[9]),
                },
                "requester": _requester(row, 10),
            }
            changes.append(((_us(row[9]) or 0, 0, 0, row[0]), ACCOUNT_OPENED, body))
        entries: dict[str, list[dict[str, Any]]] = {}
        for e in c.execute(
            text(
                "SELECT account_id, sequence, transfer_id, kind, entry_type, direction, amount, "
                "debits_posted, credits_posted, debits_pending, credits_pending, created_at "
                "FROM entries ORDER BY account_id, sequence"
            )
        ):
            entries.setdefault(e[2], []).append(
                {
                    "account_id": e[0],
                    "sequence": e[1],
                    "transfer_id": e[2],
                    "kind": TransferKind(e[3]).name,
                    "entry_type": EntryType(e[4]).name,
                    "direction": Direction(e[5]).name,
                    "amount": e[6],
                    "debits_posted": e[7],
                    "credits_posted": e[8],
                    "debits_pending": e[9],
                    "credits_pending": e[10],
                    "created_at": _us(e[11]),
                }
            )
        for row in c.execute(
            text(
                "SELECT t.id, t.kind, t.ok, t.reason, t.message, t.fingerprint, t.legs, "
                "t.pending_transfer_id, t.reversed_transfer_id, t.expires_at, t.metadata, "
                "t.created_at, q.client_id, q.customer_id, q.request_id "
                "FROM transfers t LEFT JOIN requesters q ON q.id = t.requester_id"
            )
        ):
            if (TRANSFER, row[0]) in journaled:
                continue
            kind = TransferKind(row[1])
            ok = bool(row[2])
            opened = [[row[0], _us(row[9])]] if ok and kind is TransferKind.PENDING else []
            resolves = kind in (
                TransferKind.POST_PENDING,
                TransferKind.VOID_PENDING,
                TransferKind.EXPIRE_PENDING,
            )
            body = {
                "kind": TRANSFER,
                "transfer": {
                    "id": row[0],
                    "kind": kind.name,
                    "ok": ok,
                    "reason": row[3],
                    "message": row[4],
                    "fingerprint": row[5],
                    "legs": [
                        [account, Direction(int(side)).name, int(amount), currency]
                        for account, side, amount, currency in (
                            leg.split(":") for leg in row[6].split(";") if leg
                        )
                    ],
                    "pending_transfer_id": row[7],
                    "reversed_transfer_id": row[8],
                    "expires_at": _us(row[9]),
                    "metadata": json.loads(row[10]) if row[10] else None,
                    "created_at": _us(row[11]),
                    "requester": _requester(row, 12),
                },
                "entries": entries.get(row[0], []),
                "holds": {"opened": opened, "closed": [row[7]] if ok and resolves else []},
            }
            # Commit order within one instant: a hold before what resolves it, a movement
            # before its reversal (the kinds' numbers are in that order).
            changes.append(((_us(row[11]) or 0, 1, int(kind), row[0]), TRANSFER, body))
    changes.sort(key=lambda change: change[0])
    return [(kind, canonical(body)) for _, kind, body in changes]


def append_journal(engine: Engine) -> tuple[int, bytes]:
    """Journal every change not journaled yet, in commit order; returns the new head."""
    with engine.connect() as c:
        journaled = set()
        for (body,) in c.execute(text("SELECT body FROM journal")):
            value = json.loads(bytes(body))
            row = value["account"] if value["kind"] == ACCOUNT_OPENED else value["transfer"]
            journaled.add((value["kind"], row["id"]))
        head = c.execute(text("SELECT sequence, hash FROM journal_head WHERE id = 1")).one()
    sequence, digest = int(head[0]), bytes(head[1])
    changes = _bodies(engine, journaled)
    if not changes:
        return sequence, digest
    links = chain(sequence, digest, [body for _, body in changes])
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO journal (sequence, kind, body, prev_hash, hash, recorded_at) "
                "VALUES (:s, :k, :b, :p, :h, CURRENT_TIMESTAMP)"
            ),
            [
                {"s": link.sequence, "k": kind, "b": body, "p": link.prev_hash, "h": link.hash}
                for link, (kind, body) in zip(links, changes, strict=True)
            ],
        )
        c.execute(
            text("UPDATE journal_head SET sequence = :s, hash = :h WHERE id = 1"),
            {"s": links[-1].sequence, "h": links[-1].hash},
        )
    return links[-1].sequence, links[-1].hash
