"""The sandbox bank's books, in one SQLite file.

Everything a test may depend on after killing and restarting the bank lives
here: payments and their idempotency keys, the event feed and the statement
lines. The server runs on one asyncio loop and calls the store between awaits,
so each method is atomic with respect to every other request.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from chassis.http_signatures import DEFAULT_MAX_SKEW
from chassis.kernel.ids import new_id

SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    request_hash TEXT NOT NULL,
    type TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    counterparty_account TEXT NOT NULL,
    counterparty_name TEXT NOT NULL,
    reference TEXT NOT NULL,
    status TEXT NOT NULL,
    failure_code TEXT,
    created_at TEXT NOT NULL,
    settle_at REAL NOT NULL,
    settled_at TEXT,
    returned_at TEXT,
    return_at REAL
);
CREATE INDEX IF NOT EXISTS ix_payments_due ON payments (status, settle_at);
CREATE INDEX IF NOT EXISTS ix_payments_return ON payments (return_at) WHERE return_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS events (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    payment_id TEXT NOT NULL,
    status TEXT NOT NULL,
    occurred_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS statement_lines (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payment_id TEXT NOT NULL,
    reference TEXT NOT NULL,
    kind TEXT NOT NULL,
    direction TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    booked_at TEXT NOT NULL,
    booked_on TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_statement_lines_day ON statement_lines (booked_on, id);
CREATE TABLE IF NOT EXISTS nonces (
    key_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX IF NOT EXISTS ix_nonces_expiry ON nonces (expires_at);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

# Payment types, from the point of view of the account the client holds here.
CREDIT_TRANSFER = "credit_transfer"  # the client pays someone: money leaves its account
DIRECT_DEBIT = "direct_debit"  # the client collects from someone: money arrives
PAYMENT_TYPES = (CREDIT_TRANSFER, DIRECT_DEBIT)

PENDING, SETTLED, FAILED, RETURNED = "pending", "settled", "failed", "returned"

# Magic counterparty account endings, as sandbox banks document them.
REJECT_AT_SUBMISSION = "9902"  # refused at once: the account is closed
FAIL_AT_SETTLEMENT = "9903"  # accepted, then fails: insufficient funds at the other bank
RETURN_AFTER_SETTLEMENT = "9904"  # settles, then comes back


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="microseconds")


def request_hash(body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Submission:
    type: str
    amount: int
    currency: str
    counterparty_account: str
    counterparty_name: str
    reference: str


class IdempotencyKeyReused(Exception):
    pass


class BankStore:
    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # A killed process keeps every committed row with NORMAL; only an OS crash could lose one.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    # --- request nonces (chassis.http_signatures.NonceStore) -----------------------

    def first_use(self, key_id: str, nonce: str, created: int, now: float) -> bool:
        """Remember a signed request's nonce; False if seen before. Kept in the books, so a
        request recorded before a restart cannot be replayed after it."""
        self._db.execute("DELETE FROM nonces WHERE expires_at < ?", (now,))
        inserted = self._db.execute(
            "INSERT OR IGNORE INTO nonces (key_id, nonce, expires_at) VALUES (?, ?, ?)",
            (key_id, nonce, created + DEFAULT_MAX_SKEW),
        )
        return inserted.rowcount == 1

    # --- submissions -------------------------------------------------------------

    def submit(
        self, key: str, body_hash: str, submission: Submission, settle_at: float
    ) -> tuple[dict[str, Any], bool]:
        """Record a payment once per idempotency key; returns (payment, replayed)."""
        existing = self._db.execute(
            "SELECT * FROM payments WHERE idempotency_key = ?", (key,)
        ).fetchone()
        if existing is not None:
            if existing["request_hash"] != body_hash:
                raise IdempotencyKeyReused(key)
            self._count("submissions_replayed")
            return payment_json(existing), True
        now = _now()
        payment_id = new_id("bpm")
        self._db.execute("BEGIN")
        try:
            self._db.execute(
                "INSERT INTO payments (id, idempotency_key, request_hash, type, amount, currency, "
                "counterparty_account, counterparty_name, reference, status, created_at, "
                "settle_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    payment_id,
                    key,
                    body_hash,
                    submission.type,
                    submission.amount,
                    submission.currency,
                    submission.counterparty_account,
                    submission.counterparty_name,
                    submission.reference,
                    PENDING,
                    _iso(now),
                    settle_at,
                ),
            )
            self._event(payment_id, PENDING, now)
            self._count("submissions_created")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return self.get(payment_id) or {}, False

    def get(self, payment_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM payments WHERE id = ?", (payment_id,)).fetchone()
        return payment_json(row) if row is not None else None

    def find_by_key(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT * FROM payments WHERE idempotency_key = ?", (key,)
        ).fetchone()
        return payment_json(row) if row is not None else None

    def list_payments(self, after: str, limit: int) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT * FROM payments WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
        ).fetchall()
        return [payment_json(r) for r in rows]

    # --- settlement and returns ------------------------------------------------------

    def next_due(self) -> float | None:
        """Epoch seconds of the next settlement or return, if any is scheduled."""
        row = self._db.execute(
            "SELECT MIN(t) FROM (SELECT MIN(settle_at) AS t FROM payments WHERE status = ? "
            "UNION ALL SELECT MIN(return_at) FROM payments WHERE status = ? "
            "AND return_at IS NOT NULL)",
            (PENDING, SETTLED),
        ).fetchone()
        return float(row[0]) if row[0] is not None else None

    def settle_due(self, now_epoch: float, return_delay: float, limit: int = 2000) -> int:
        """Settle (or fail) pending payments that are due, and make due returns."""
        due = self._db.execute(
            "SELECT * FROM payments WHERE status = ? AND settle_at <= ? ORDER BY settle_at LIMIT ?",
            (PENDING, now_epoch, limit),
        ).fetchall()
        returns = self._db.execute(
            "SELECT * FROM payments WHERE status = ? AND return_at IS NOT NULL AND return_at <= ? "
            "LIMIT ?",
            (SETTLED, now_epoch, limit),
        ).fetchall()
        if not due and not returns:
            return 0
        now = _now()
        self._db.execute("BEGIN")
        try:
            for row in due:
                if row["counterparty_account"].endswith(FAIL_AT_SETTLEMENT):
                    self._db.execute(
                        "UPDATE payments SET status = ?, failure_code = ? WHERE id = ?",
                        (FAILED, "insufficient_funds", row["id"]),
                    )
                    self._event(row["id"], FAILED, now)
                    continue
                return_at = (
                    now_epoch + return_delay
                    if row["counterparty_account"].endswith(RETURN_AFTER_SETTLEMENT)
                    else None
                )
                self._db.execute(
                    "UPDATE payments SET status = ?, settled_at = ?, return_at = ? WHERE id = ?",
                    (SETTLED, _iso(now), return_at, row["id"]),
                )
                self._book(row, returned=False, at=now)
                self._event(row["id"], SETTLED, now)
            for row in returns:
                self._return(row, now)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return len(due) + len(returns)

    def return_payment(self, payment_id: str) -> dict[str, Any] | None:
        """Return a settled payment now; None when it is not settled."""
        row = self._db.execute("SELECT * FROM payments WHERE id = ?", (payment_id,)).fetchone()
        if row is None or row["status"] != SETTLED:
            return None
        self._db.execute("BEGIN")
        try:
            self._return(row, _now())
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return self.get(payment_id)

    def _return(self, row: sqlite3.Row, now: datetime) -> None:
        self._db.execute(
            "UPDATE payments SET status = ?, returned_at = ?, return_at = NULL WHERE id = ?",
            (RETURNED, _iso(now), row["id"]),
        )
        self._book(row, returned=True, at=now)
        self._event(row["id"], RETURNED, now)

    def _book(self, row: sqlite3.Row, *, returned: bool, at: datetime) -> None:
        outgoing = row["type"] == CREDIT_TRANSFER
        if returned:
            outgoing = not outgoing
        self._db.execute(
            "INSERT INTO statement_lines (payment_id, reference, kind, direction, amount, "
            "currency, booked_at, booked_on) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row["id"],
                row["reference"],
                "return" if returned else row["type"],
                "debit" if outgoing else "credit",
                row["amount"],
                row["currency"],
                _iso(at),
                at.date().isoformat(),
            ),
        )

    # --- feed, statements, counters ---------------------------------------------------

    def _event(self, payment_id: str, status: str, at: datetime) -> None:
        self._db.execute(
            "INSERT INTO events (payment_id, status, occurred_at) VALUES (?, ?, ?)",
            (payment_id, status, _iso(at)),
        )

    def last_sequence(self) -> int:
        row = self._db.execute("SELECT MAX(sequence) FROM events").fetchone()
        return int(row[0] or 0)

    def events_after(self, after: int, limit: int) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT e.sequence, e.status AS event_status, e.occurred_at, p.* FROM events e "
            "JOIN payments p ON p.id = e.payment_id WHERE e.sequence > ? "
            "ORDER BY e.sequence LIMIT ?",
            (after, limit),
        ).fetchall()
        return [
            {
                "sequence": r["sequence"],
                "status": r["event_status"],
                "occurred_at": r["occurred_at"],
                "payment": payment_json(r),
            }
            for r in rows
        ]

    def statement(self, day: date, after: int, limit: int) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT * FROM statement_lines WHERE booked_on = ? AND id > ? ORDER BY id LIMIT ?",
            (day.isoformat(), after, limit),
        ).fetchall()
        return [
            {
                "line_id": r["id"],
                "payment_id": r["payment_id"],
                "reference": r["reference"],
                "kind": r["kind"],
                "direction": r["direction"],
                "amount": r["amount"],
                "currency": r["currency"],
                "booked_at": r["booked_at"],
            }
            for r in rows
        ]

    def _count(self, name: str, by: int = 1) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def counters(self) -> dict[str, int]:
        rows = self._db.execute("SELECT name, value FROM counters").fetchall()
        counts = {r["name"]: int(r["value"]) for r in rows}
        by_status = self._db.execute("SELECT status, COUNT(*) FROM payments GROUP BY status")
        for status, count in by_status.fetchall():
            counts[f"payments_{status}"] = int(count)
        return counts


def payment_json(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "idempotency_key": row["idempotency_key"],
        "type": row["type"],
        "amount": row["amount"],
        "currency": row["currency"],
        "counterparty": {
            "account_number": row["counterparty_account"],
            "name": row["counterparty_name"],
        },
        "reference": row["reference"],
        "status": row["status"],
        "failure_code": row["failure_code"],
        "created_at": row["created_at"],
        "settled_at": row["settled_at"],
        "returned_at": row["returned_at"],
    }
