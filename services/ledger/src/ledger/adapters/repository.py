"""The ledger's repository on SQL: reads snapshots for a batch and writes its outcome set-based.

A batch costs a fixed number of statements whatever its size: one read of the
transfer records it names, one locking read of its accounts (``FOR UPDATE`` in
id order, so concurrent batches never deadlock), then COPY of transfers and
entries, one aggregated UPDATE of the accounts, and the hold index changes.
SQLite (``make run``) takes the same path with multi-row statements instead
of COPY; it has one writer at a time anyway.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from chassis.db.arrays import int_array, text_array
from chassis.kernel.audit import Requester, requester_from
from chassis.kernel.clock import utc
from chassis.kernel.uow import TracksAggregates
from sqlalchemy import Connection, DateTime, bindparam, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from ledger.adapters import tables as t
from ledger.domain.batch import BatchOutcome
from ledger.domain.journal import ACCOUNT_OPENED, TRANSFER
from ledger.domain.journal_records import (
    JournalHead,
    JournalRow,
    account_opened_body,
    appended,
    encoded,
    transfer_bodies,
)
from ledger.domain.model import (
    Account,
    Direction,
    Entry,
    EntryType,
    Leg,
    Metadata,
    NormalSide,
    TransferKind,
    TransferRecord,
)

_TRANSFER_COLUMNS = (
    "id, kind, ok, reason, message, fingerprint, legs, pending_transfer_id, "
    "reversed_transfer_id, expires_at, metadata, created_at, requester_id"
)
_COPY_TYPES = {
    "transfers": [
        "text",
        "int2",
        "bool",
        "text",
        "text",
        "text",
        "text",
        "text",
        "text",
        "timestamptz",
        "text",
        "timestamptz",
        "uuid",
    ],
    "journal": ["int8", "text", "bytea", "bytea", "bytea", "timestamptz"],
    "entries": [
        "text",
        "int8",
        "text",
        "int2",
        "int2",
        "int2",
        "int8",
        "int8",
        "int8",
        "int8",
        "int8",
        "timestamptz",
    ],
}
_ENTRY_COLUMNS = (
    "account_id, sequence, transfer_id, kind, entry_type, direction, amount, "
    "debits_posted, credits_posted, debits_pending, credits_pending, created_at"
)
_ACCOUNT_SELECT = (
    "SELECT a.id, a.currency, a.normal_side, a.debits_must_not_exceed_credits, "
    "a.credits_must_not_exceed_debits, a.debits_posted, a.credits_posted, a.debits_pending, "
    "a.credits_pending, a.entry_sequence, a.last_entry_at, a.sealed_through, a.metadata, "
    "a.external_reference, a.customer_id, a.fingerprint, a.created_at, "
    "q.client_id, q.customer_id, q.request_id "
    "FROM accounts a LEFT JOIN requesters q ON q.id = a.requester_id"
)
_JOURNAL_COLUMNS = "sequence, kind, body, prev_hash, hash, recorded_at"
# The head is locked last (after every other write of the transaction), so appending
# transactions queue on it only for their final round trips.
_LOCK_HEAD = "SELECT sequence, hash FROM journal_head WHERE id = 1"
_APPEND_IN_ONE_STATEMENT = """
WITH appended AS (
  INSERT INTO journal (sequence, kind, body, prev_hash, hash, recorded_at)
  SELECT j.*, %(at)s::timestamptz
  FROM unnest(%(seq)s::bigint[], %(kind)s::text[], %(body)s::bytea[], %(prev)s::bytea[],
              %(hash)s::bytea[]) AS j
)
UPDATE journal_head SET sequence = %(head_seq)s, hash = %(head_hash)s WHERE id = 1
"""
# Below this many records a batch is written with one statement; above, with COPY.
COPY_THRESHOLD = 64

_ONE_STATEMENT_WRITE = """
WITH new_transfers AS (
  INSERT INTO transfers (id, kind, ok, reason, message, fingerprint, legs, pending_transfer_id,
                         reversed_transfer_id, expires_at, metadata, requester_id, created_at)
  SELECT t.*, %(at)s::timestamptz
  FROM unnest(%(t_id)s::text[], %(t_kind)s::smallint[], %(t_ok)s::bool[], %(t_reason)s::text[],
              %(t_message)s::text[], %(t_fp)s::text[], %(t_legs)s::text[], %(t_pending)s::text[],
              %(t_reversed)s::text[], %(t_expires)s::timestamptz[], %(t_metadata)s::text[],
              %(t_requester)s::uuid[]) AS t
), new_requesters AS (
  INSERT INTO requesters (id, client_id, customer_id, request_id)
  SELECT * FROM unnest(%(q_id)s::uuid[], %(q_client)s::text[], %(q_customer)s::text[],
                       %(q_request)s::text[])
  ON CONFLICT (id) DO NOTHING
), new_entries AS (
  INSERT INTO entries (account_id, sequence, transfer_id, kind, entry_type, direction, amount,
                       debits_posted, credits_posted, debits_pending, credits_pending, created_at)
  SELECT e.*, %(at)s::timestamptz
  FROM unnest(%(e_account)s::text[], %(e_seq)s::bigint[], %(e_transfer)s::text[],
              %(e_kind)s::smallint[], %(e_type)s::smallint[], %(e_direction)s::smallint[],
              %(e_amount)s::bigint[], %(e_dp)s::bigint[], %(e_cp)s::bigint[], %(e_dq)s::bigint[],
              %(e_cq)s::bigint[]) AS e
), updated_accounts AS (
  UPDATE accounts AS a SET debits_posted = v.dp, credits_posted = v.cp, debits_pending = v.dq,
         credits_pending = v.cq, entry_sequence = v.seq, last_entry_at = %(at)s::timestamptz
  FROM unnest(%(a_id)s::text[], %(a_dp)s::bigint[], %(a_cp)s::bigint[], %(a_dq)s::bigint[],
              %(a_cq)s::bigint[], %(a_seq)s::bigint[]) AS v(id, dp, cp, dq, cq, seq)
  WHERE a.id = v.id
), opened_holds AS (
  INSERT INTO open_holds (transfer_id, expires_at)
  SELECT * FROM unnest(%(h_id)s::text[], %(h_expires)s::timestamptz[])
), closed_holds AS (
  DELETE FROM open_holds WHERE transfer_id = ANY(%(closed)s::text[])
)
SELECT 1
"""

_LOCK_SELECT = (
    "SELECT id, currency, normal_side, debits_must_not_exceed_credits, "
    "credits_must_not_exceed_debits, debits_posted, credits_posted, debits_pending, "
    "credits_pending, entry_sequence, last_entry_at, sealed_through FROM accounts"
)
_RECORD_SELECT = (
    "SELECT t.id, t.kind, t.ok, t.reason, t.message, t.fingerprint, t.legs, "
    "t.pending_transfer_id, t.reversed_transfer_id, t.expires_at, t.metadata, t.created_at, "
    "r.id, r.kind, v.id, q.client_id, q.customer_id, q.request_id FROM transfers t "
    "LEFT JOIN transfers r ON r.pending_transfer_id = t.id AND r.ok "
    "LEFT JOIN transfers v ON v.reversed_transfer_id = t.id AND v.ok "
    "LEFT JOIN requesters q ON q.id = t.requester_id "
)


def _encode_legs(legs: Iterable[Leg]) -> str:
    """``acct_a:1:500:EUR;acct_b:2:500:EUR``: account, direction, amount, currency per leg.

    Every part is validated to [A-Za-z0-9_-] or digits, so ``:`` and ``;`` can
    never occur inside one, and the text needs no quoting in an array literal.
    """
    return ";".join(
        f"{leg.account_id}:{int(leg.direction or 0)}:{leg.amount}:{leg.currency}" for leg in legs
    )


def _decode_legs(raw: str) -> tuple[Leg, ...]:
    if not raw:
        return ()
    legs = []
    for part in raw.split(";"):
        account_id, direction, amount, currency = part.split(":")
        legs.append(Leg(account_id, Direction(int(direction)), int(amount), currency))
    return tuple(legs)


def _encode_metadata(metadata: Metadata) -> str | None:
    return json.dumps(dict(metadata), separators=(",", ":")) if metadata else None


def _decode_metadata(raw: str | None) -> Metadata:
    return tuple(sorted(json.loads(raw).items())) if raw else ()


def requester_key(requester: Requester) -> uuid.UUID:
    """The ``requesters`` row of a requester: a digest of its values, so the same requester
    is one row however many writes name it (and inserting it again changes nothing)."""
    parts = (requester.client_id, requester.customer_id or "", requester.request_id)
    return uuid.UUID(bytes=hashlib.sha256("\x1f".join(parts).encode()).digest()[:16])


def _aware(value: datetime | str | None) -> datetime | None:
    """Aware UTC; SQLite hands back text for columns read through ``text()``."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return utc(value)


def _key_of(requester: Requester | None) -> uuid.UUID | None:
    return requester_key(requester) if requester is not None else None


def _snapshot(row: Sequence[Any]) -> Account:
    """An account as a batch decision needs it (the columns of ``_LOCK_SELECT``)."""
    return Account(
        id=row[0],
        currency=row[1],
        normal_side=NormalSide(row[2]),
        debits_must_not_exceed_credits=bool(row[3]),
        credits_must_not_exceed_debits=bool(row[4]),
        debits_posted=row[5],
        credits_posted=row[6],
        debits_pending=row[7],
        credits_pending=row[8],
        entry_sequence=row[9],
        last_entry_at=_aware(row[10]),
        sealed_through=_aware(row[11]),
    )


def _account(row: Sequence[Any]) -> Account:
    """A whole account (the columns of ``_ACCOUNT_SELECT``: the snapshot's, then the rest)."""
    account = _snapshot(row)
    account.metadata = _decode_metadata(row[12])
    account.external_reference = row[13]
    account.customer_id = row[14]
    account.fingerprint = row[15]
    account.created_at = _aware(row[16])
    account.created_by = requester_from(row[17], row[18], row[19])
    return account


def _record(row: Sequence[Any]) -> TransferRecord:
    created = _aware(row[11])
    assert created is not None
    return TransferRecord(
        id=row[0],
        kind=TransferKind(row[1]),
        ok=bool(row[2]),
        reason=row[3] or "",
        message=row[4] or "",
        fingerprint=row[5],
        legs=_decode_legs(row[6]),
        pending_transfer_id=row[7] or "",
        reversed_transfer_id=row[8] or "",
        expires_at=_aware(row[9]),
        metadata=_decode_metadata(row[10]),
        created_at=created,
        resolved_by=row[12] or "",
        resolution_kind=TransferKind(row[13]) if row[13] is not None else None,
        reversed_by=row[14] or "",
        created_by=requester_from(row[15], row[16], row[17]),
    )


def _entry(row: Sequence[Any]) -> Entry:
    created = _aware(row[11])
    assert created is not None
    return Entry(
        account_id=row[0],
        sequence=row[1],
        transfer_id=row[2],
        kind=TransferKind(row[3]),
        entry_type=EntryType(row[4]),
        direction=Direction(row[5]),
        amount=row[6],
        debits_posted=row[7],
        credits_posted=row[8],
        debits_pending=row[9],
        credits_pending=row[10],
        created_at=created,
    )


def _transfer_rows(records: Iterable[TransferRecord]) -> list[tuple[Any, ...]]:
    return [
        (
            r.id,
            int(r.kind),
            r.ok,
            r.reason or None,
            r.message or None,
            r.fingerprint,
            _encode_legs(r.legs),
            r.pending_transfer_id or None,
            r.reversed_transfer_id or None,
            r.expires_at,
            _encode_metadata(r.metadata),
            r.created_at,
            _key_of(r.created_by),
        )
        for r in records
    ]


def _entry_rows(entries: Iterable[Entry]) -> list[tuple[Any, ...]]:
    return [
        (
            e.account_id,
            e.sequence,
            e.transfer_id,
            int(e.kind),
            int(e.entry_type),
            int(e.direction),
            e.amount,
            e.debits_posted,
            e.credits_posted,
            e.debits_pending,
            e.credits_pending,
            e.created_at,
        )
        for e in entries
    ]


class SqlLedgerRepository(TracksAggregates):
    # Benchmark only (bench/): the same writes without the journal, to measure what the
    # chain costs. No setting reaches it; a ledger that serves always keeps its journal.
    journal_enabled = True

    def __init__(self, connection: Connection) -> None:
        super().__init__()
        self._c = connection
        self._pg = connection.dialect.name == "postgresql"
        # Encoded records (kind, body) waiting for ``append_journal``, in order, and whether
        # they go in with COPY (a batch of them was written with COPY).
        self._unjournaled: list[tuple[str, bytes]] = []
        self._copy_journal = False

    def _in(self, column: str, name: str, values: Sequence[str]) -> tuple[Any, dict[str, Any]]:
        """``column IN values`` as ``= ANY(array)`` on PostgreSQL (one parameter)."""
        if self._pg:
            return f"{column} = ANY(CAST(:{name} AS text[]))", {name: text_array(values)}
        return f"{column} IN :{name}", {name: list(values)}

    def _query(self, sql: str, params: dict[str, Any], expanding: Sequence[str] = ()) -> Any:
        statement = text(sql)
        if not self._pg and expanding:
            statement = statement.bindparams(*(bindparam(n, expanding=True) for n in expanding))
        return self._c.execute(statement, params)

    # --- accounts -------------------------------------------------------------

    def insert_requesters(self, requesters: Iterable[Requester | None]) -> None:
        """Record each distinct requester once (rows already there stay as they are)."""
        rows = {
            requester_key(r): {
                "id": requester_key(r),
                "client_id": r.client_id,
                "customer_id": r.customer_id,
                "request_id": r.request_id,
            }
            for r in requesters
            if r is not None
        }
        if not rows:
            return
        dialect = postgresql if self._pg else sqlite
        statement = dialect.insert(t.requesters).on_conflict_do_nothing(index_elements=["id"])
        self._c.execute(statement, list(rows.values()))

    def insert_account(self, account: Account) -> None:
        self.track(account)
        self.insert_requesters([account.created_by])
        self._c.execute(
            insert(t.accounts).values(
                id=account.id,
                currency=account.currency,
                normal_side=int(account.normal_side),
                debits_must_not_exceed_credits=account.debits_must_not_exceed_credits,
                credits_must_not_exceed_debits=account.credits_must_not_exceed_debits,
                metadata=_encode_metadata(account.metadata),
                external_reference=account.external_reference,
                customer_id=account.customer_id,
                fingerprint=account.fingerprint,
                created_at=account.created_at,
                requester_id=_key_of(account.created_by),
            )
        )
        self._journal(ACCOUNT_OPENED, encoded([account_opened_body(account)]), copy=False)

    def get_account(self, account_id: str) -> Account | None:
        row = self._c.execute(
            text(f"{_ACCOUNT_SELECT} WHERE a.id = :id"), {"id": account_id}
        ).first()
        return _account(row) if row is not None else None

    def list_accounts(self, after: str | None, limit: int, customer_id: str) -> list[Account]:
        clauses, params = [], {"limit": limit}
        if after is not None:
            clauses.append("a.id > :after")
            params["after"] = after  # type: ignore[assignment]
        if customer_id:
            clauses.append("a.customer_id = :customer")
            params["customer"] = customer_id  # type: ignore[assignment]
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._c.execute(text(f"{_ACCOUNT_SELECT}{where} ORDER BY a.id LIMIT :limit"), params)
        return [_account(r) for r in rows]

    def lock_accounts(self, account_ids: Iterable[str]) -> dict[str, Account]:
        """Load and lock accounts in id order: concurrent batches queue, never deadlock.

        Only what a batch decision needs is read (no metadata): the snapshots
        live for one transaction.
        """
        ids = sorted(set(account_ids))
        if not ids:
            return {}
        condition, params = self._in("id", "ids", ids)
        lock = " FOR UPDATE" if self._pg else ""
        rows = self._query(f"{_LOCK_SELECT} WHERE {condition} ORDER BY id{lock}", params, ["ids"])
        return {row[0]: _snapshot(row) for row in rows}

    # --- transfers --------------------------------------------------------------

    def load_records(self, transfer_ids: Iterable[str]) -> dict[str, TransferRecord]:
        ids = list(set(transfer_ids))
        if not ids:
            return {}
        condition, params = self._in("t.id", "ids", ids)
        rows = self._query(f"{_RECORD_SELECT} WHERE {condition}", params, ["ids"])
        return {r.id: r for r in map(_record, rows)}

    def load_for_batch(
        self,
        transfer_ids: Sequence[str],
        leg_account_ids: Iterable[str],
        referenced_ids: Iterable[str],
    ) -> tuple[dict[str, TransferRecord], dict[str, Account]]:
        """The records a batch names and its accounts, locked, in as few round trips as can be.

        Without references to earlier transfers every account is known up front:
        on PostgreSQL the records and the locking read go in one pipelined round
        trip. With references, the referenced transfers' legs name more accounts:
        read them first, then lock everything in id order and re-read the
        referenced transfers' state, which only now (under the locks) is final.
        A referenced transfer that was still committing at the first read and is
        visible at the second names accounts this batch has not locked: the
        decision then asks for the transaction to start over
        (``RetryTransaction``), and the next first read sees it (rare: the
        reference has to be sent while its transfer commits).
        """
        referenced = set(referenced_ids)
        account_ids = set(leg_account_ids)
        if not self._pg:
            known = self.load_records([*transfer_ids, *referenced])
            for transfer_id in referenced:
                if transfer_id in known:
                    account_ids.update(leg.account_id for leg in known[transfer_id].legs)
            accounts = self.lock_accounts(account_ids)
            if referenced:
                known.update(self.load_records(referenced))
            return known, accounts
        if not referenced:
            known_rows, account_rows = self._pipelined(
                (_RECORD_SELECT + "WHERE t.id = ANY(%s::text[])", transfer_ids),
                (
                    _LOCK_SELECT + " WHERE id = ANY(%s::text[]) ORDER BY id FOR UPDATE",
                    sorted(account_ids),
                ),
            )
            return (
                {r.id: r for r in map(_record, known_rows)},
                {row[0]: _snapshot(row) for row in account_rows},
            )
        known = self.load_records([*transfer_ids, *referenced])
        for transfer_id in referenced:
            if transfer_id in known:
                account_ids.update(leg.account_id for leg in known[transfer_id].legs)
        account_rows, referenced_rows = self._pipelined(
            (
                _LOCK_SELECT + " WHERE id = ANY(%s::text[]) ORDER BY id FOR UPDATE",
                sorted(account_ids),
            ),
            (_RECORD_SELECT + "WHERE t.id = ANY(%s::text[])", sorted(referenced)),
        )
        known.update({r.id: r for r in map(_record, referenced_rows)})
        return known, {row[0]: _snapshot(row) for row in account_rows}

    def _pipelined(self, *queries: tuple[str, Sequence[str]]) -> list[list[tuple[Any, ...]]]:
        """Run several reads in one round trip, in order.

        With identifiers only (always, for validated requests) the statements go
        as one simple-protocol string with literal arrays: half the client CPU
        of psycopg's pipeline mode, which remains the fallback.
        """
        literals = [text_array(ids) for _, ids in queries]
        if all(isinstance(literal, str) for literal in literals):
            text = "; ".join(
                sql.replace("%s", f"'{literal}'")
                for (sql, _), literal in zip(queries, literals, strict=True)
            )
            with self._driver().cursor() as cursor:
                cursor.execute(text.encode())
                results = [cursor.fetchall()]
                while cursor.nextset():
                    results.append(cursor.fetchall())
            return results
        raw = self._driver()
        cursors = [raw.cursor() for _ in queries]
        try:
            with raw.pipeline():
                for cursor, (sql, ids) in zip(cursors, queries, strict=True):
                    cursor.execute(sql, (text_array(ids),))
            return [cursor.fetchall() for cursor in cursors]
        finally:
            for cursor in cursors:
                cursor.close()

    def _driver(self) -> Any:
        raw = self._c.connection.driver_connection
        assert raw is not None
        return raw

    def get_record(self, transfer_id: str) -> TransferRecord | None:
        return self.load_records([transfer_id]).get(transfer_id)

    def due_holds(self, now: datetime, limit: int) -> list[str]:
        rows = self._c.execute(
            select(t.open_holds.c.transfer_id)
            .where(t.open_holds.c.expires_at <= now)
            .order_by(t.open_holds.c.expires_at)
            .limit(limit)
        )
        return [r[0] for r in rows]

    # --- writing a batch's outcome ------------------------------------------------

    def write(self, outcome: BatchOutcome) -> None:
        self.track(outcome)
        # A hold placed and resolved within the batch never needs indexing.
        closed_now = set(outcome.closed_holds)
        opened = [h for h in outcome.opened_holds if h.id not in closed_now]
        opened_now = {h.id for h in outcome.opened_holds}
        closed = [c for c in outcome.closed_holds if c not in opened_now]
        accounts = list(outcome.accounts.values())
        # Encoded before any lock of the head is taken: only chaining waits for it.
        bodies = encoded(transfer_bodies(outcome)) if self.journal_enabled else []
        if self._pg and len(outcome.records) < COPY_THRESHOLD:
            self._write_in_one_statement(outcome.records, outcome.entries, accounts, opened, closed)
            self._journal(TRANSFER, bodies, copy=False)
            return
        transfer_rows = _transfer_rows(outcome.records)
        entry_rows = _entry_rows(outcome.entries)
        self.insert_requesters(r.created_by for r in outcome.records)
        if self._pg:
            self._copy("transfers", _TRANSFER_COLUMNS, transfer_rows)
            self._copy("entries", _ENTRY_COLUMNS, entry_rows)
        else:
            self._insert_many(t.transfers, _TRANSFER_COLUMNS, transfer_rows)
            self._insert_many(t.entries, _ENTRY_COLUMNS, entry_rows)
        self._update_accounts(accounts)
        if opened:
            self._c.execute(
                insert(t.open_holds),
                [{"transfer_id": h.id, "expires_at": h.expires_at} for h in opened],
            )
        if closed:
            condition, params = self._in("transfer_id", "ids", closed)
            self._query(f"DELETE FROM open_holds WHERE {condition}", params, ["ids"])
        self._journal(TRANSFER, bodies, copy=True)

    # --- the journal ----------------------------------------------------------------

    def _journal(self, kind: str, bodies: list[bytes], *, copy: bool) -> None:
        if self.journal_enabled and bodies:
            self._unjournaled.extend((kind, body) for body in bodies)
            self._copy_journal = self._copy_journal or copy

    def append_journal(self) -> None:
        """Append this transaction's records after the head, locked from now until it ends.

        The unit of work calls this last, just before it commits (and a read of the
        journal first), so appending transactions queue on the head only for this
        statement or two and the commit. Hashes are chained in memory; the rows go in
        with COPY when a batch was written with COPY, else with one statement, and the
        head moves to the last of them.
        """
        if not self._unjournaled:
            return
        pending, self._unjournaled = self._unjournaled, []
        sequence, head_hash = self._lock_head()
        rows = appended(JournalHead(sequence, bytes(head_hash)), pending, datetime.now(UTC))
        last = rows[-1]
        if self._pg and not self._copy_journal:
            params = {
                "at": last.recorded_at,
                "seq": int_array(r.sequence for r in rows),
                "kind": text_array([r.kind for r in rows]),
                "body": [r.body for r in rows],
                "prev": [r.prev_hash for r in rows],
                "hash": [r.hash for r in rows],
                "head_seq": last.sequence,
                "head_hash": last.hash,
            }
            with self._driver().cursor() as cursor:
                cursor.execute(_APPEND_IN_ONE_STATEMENT, params)
            return
        tuples = [(r.sequence, r.kind, r.body, r.prev_hash, r.hash, r.recorded_at) for r in rows]
        if self._pg:
            self._copy("journal", _JOURNAL_COLUMNS, tuples)
        else:
            self._insert_many(t.journal, _JOURNAL_COLUMNS, tuples)
        self._c.execute(
            update(t.journal_head)
            .where(t.journal_head.c.id == 1)
            .values(sequence=last.sequence, hash=last.hash)
        )

    def _lock_head(self) -> tuple[int, bytes]:
        if not self._pg:
            row = self._c.execute(text(_LOCK_HEAD)).one()  # SQLite: the one writer already
            return row[0], bytes(row[1])
        # On the driver: this statement is on every commit's path, under no other lock.
        with self._driver().cursor() as cursor:
            cursor.execute(_LOCK_HEAD + " FOR UPDATE")
            row = cursor.fetchone()
        assert row is not None, "the journal's head row is missing (see migration 0005)"
        return row[0], bytes(row[1])

    def journal_head(self) -> JournalHead:
        self.append_journal()  # a transaction reads what it wrote
        sequence, head_hash = self._c.execute(text(_LOCK_HEAD)).one()
        return JournalHead(sequence, bytes(head_hash))

    def journal_after(self, sequence: int, limit: int) -> list[JournalRow]:
        self.append_journal()
        rows = self._c.execute(
            text(
                f"SELECT {_JOURNAL_COLUMNS} FROM journal WHERE sequence > :s "
                "ORDER BY sequence LIMIT :n"
            ),
            {"s": sequence, "n": limit},
        )
        return [
            JournalRow(r[0], r[1], bytes(r[2]), bytes(r[3]), bytes(r[4]), _aware(r[5]))
            for r in rows
        ]

    def _write_in_one_statement(
        self,
        records: list[TransferRecord],
        entries: list[Entry],
        accounts: list[Account],
        opened: list[TransferRecord],
        closed: list[str],
    ) -> None:
        """A small batch's whole write as one statement of writable CTEs: one round trip.

        COPY needs a round trip per table; for a few transfers (the batcher's
        grouped single calls) the round trips, not the rows, are the cost. A
        batch is decided at one instant, sent once; columns of identifiers and
        numbers go as array literals, which cost far less to build than
        adapting Python lists element by element.
        """
        if not records:
            return  # replays only: nothing new to write
        instants = {r.created_at for r in records} | {e.created_at for e in entries}
        assert len(instants) == 1, "a batch is decided at one instant"
        requesters = {
            requester_key(r.created_by): r.created_by for r in records if r.created_by is not None
        }
        params = {
            "at": instants.pop(),
            "t_id": text_array([r.id for r in records]),
            "t_kind": int_array(int(r.kind) for r in records),
            "t_ok": "{" + ",".join("t" if r.ok else "f" for r in records) + "}",
            "t_reason": text_array([r.reason or None for r in records]),
            "t_message": text_array([r.message or None for r in records]),
            "t_fp": text_array([r.fingerprint for r in records]),
            "t_legs": text_array([_encode_legs(r.legs) for r in records]),
            "t_pending": text_array([r.pending_transfer_id or None for r in records]),
            "t_reversed": text_array([r.reversed_transfer_id or None for r in records]),
            "t_expires": [r.expires_at for r in records],
            "t_metadata": text_array([_encode_metadata(r.metadata) for r in records]),
            "t_requester": [_key_of(r.created_by) for r in records],
            "q_id": list(requesters),
            "q_client": [q.client_id for q in requesters.values()],
            "q_customer": [q.customer_id for q in requesters.values()],
            "q_request": [q.request_id for q in requesters.values()],
            "e_account": text_array([e.account_id for e in entries]),
            "e_seq": int_array(e.sequence for e in entries),
            "e_transfer": text_array([e.transfer_id for e in entries]),
            "e_kind": int_array(int(e.kind) for e in entries),
            "e_type": int_array(int(e.entry_type) for e in entries),
            "e_direction": int_array(int(e.direction) for e in entries),
            "e_amount": int_array(e.amount for e in entries),
            "e_dp": int_array(e.debits_posted for e in entries),
            "e_cp": int_array(e.credits_posted for e in entries),
            "e_dq": int_array(e.debits_pending for e in entries),
            "e_cq": int_array(e.credits_pending for e in entries),
            "a_id": text_array([a.id for a in accounts]),
            "a_dp": int_array(a.debits_posted for a in accounts),
            "a_cp": int_array(a.credits_posted for a in accounts),
            "a_dq": int_array(a.debits_pending for a in accounts),
            "a_cq": int_array(a.credits_pending for a in accounts),
            "a_seq": int_array(a.entry_sequence for a in accounts),
            "h_id": text_array([h.id for h in opened]),
            "h_expires": [h.expires_at for h in opened],
            "closed": text_array(closed),
        }
        with self._driver().cursor() as cursor:
            cursor.execute(_ONE_STATEMENT_WRITE, params)

    def _copy(self, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        """COPY in binary format: ~5x less client CPU than text rows, and cheaper to parse."""
        if not rows:
            return
        sql = f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)"
        with self._driver().cursor() as cursor, cursor.copy(sql) as copy:
            copy.set_types(_COPY_TYPES[table])
            for row in rows:
                copy.write_row(row)

    def _insert_many(self, table: Any, columns: str, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        names = [c.strip() for c in columns.split(",")]
        self._c.execute(insert(table), [dict(zip(names, row, strict=True)) for row in rows])

    def _update_accounts(self, accounts: list[Account]) -> None:
        if not accounts:
            return
        if self._pg:
            # One statement for all accounts; every account of a batch gets the
            # batch's instant as its last entry time.
            self._c.execute(
                text(
                    "UPDATE accounts AS a SET debits_posted = v.dp, credits_posted = v.cp, "
                    "debits_pending = v.dq, credits_pending = v.cq, entry_sequence = v.seq, "
                    "last_entry_at = :at "
                    "FROM unnest(CAST(:ids AS text[]), CAST(:dp AS bigint[]), "
                    "CAST(:cp AS bigint[]), CAST(:dq AS bigint[]), CAST(:cq AS bigint[]), "
                    "CAST(:seq AS bigint[])) "
                    "AS v(id, dp, cp, dq, cq, seq) WHERE a.id = v.id"
                ).bindparams(bindparam("at", type_=DateTime(timezone=True))),
                {
                    "ids": text_array([a.id for a in accounts]),
                    "dp": int_array(a.debits_posted for a in accounts),
                    "cp": int_array(a.credits_posted for a in accounts),
                    "dq": int_array(a.debits_pending for a in accounts),
                    "cq": int_array(a.credits_pending for a in accounts),
                    "seq": int_array(a.entry_sequence for a in accounts),
                    "at": max(a.last_entry_at for a in accounts if a.last_entry_at),
                },
            )
            return
        self._update_each(
            [
                {
                    "b_id": a.id,
                    "b_dp": a.debits_posted,
                    "b_cp": a.credits_posted,
                    "b_dq": a.debits_pending,
                    "b_cq": a.credits_pending,
                    "b_seq": a.entry_sequence,
                    "b_at": a.last_entry_at,
                }
                for a in accounts
            ]
        )

    def _update_each(self, rows: list[dict[str, Any]]) -> None:
        """Accounts' sums, version and last entry time, one parameter set per account."""
        if not rows:
            return
        self._c.execute(
            update(t.accounts)
            .where(t.accounts.c.id == bindparam("b_id"))
            .values(
                debits_posted=bindparam("b_dp"),
                credits_posted=bindparam("b_cp"),
                debits_pending=bindparam("b_dq"),
                credits_pending=bindparam("b_cq"),
                entry_sequence=bindparam("b_seq"),
                last_entry_at=bindparam("b_at"),
            ),
            rows,
        )

    # --- restoring an imported journal -------------------------------------------------

    def restore(
        self,
        accounts: Sequence[Account],
        records: Sequence[TransferRecord],
        entries: Sequence[Entry],
        opened: Sequence[tuple[str, datetime | None]],
        closed: Sequence[str],
    ) -> None:
        """Rows a run of journal records wrote, written back as they are, set-based: accounts
        as opened (their sums come last, ``restore_sums``), transfers, entries, holds."""
        self.insert_requesters([a.created_by for a in accounts])
        self.insert_requesters(r.created_by for r in records)
        if accounts:
            self._c.execute(
                insert(t.accounts),
                [
                    {
                        "id": a.id,
                        "currency": a.currency,
                        "normal_side": int(a.normal_side),
                        "debits_must_not_exceed_credits": a.debits_must_not_exceed_credits,
                        "credits_must_not_exceed_debits": a.credits_must_not_exceed_debits,
                        "metadata": _encode_metadata(a.metadata),
                        "external_reference": a.external_reference,
                        "customer_id": a.customer_id,
                        "fingerprint": a.fingerprint,
                        "created_at": a.created_at,
                        "requester_id": _key_of(a.created_by),
                    }
                    for a in accounts
                ],
            )
        transfer_rows, entry_rows = _transfer_rows(records), _entry_rows(entries)
        if self._pg:
            self._copy("transfers", _TRANSFER_COLUMNS, transfer_rows)
            self._copy("entries", _ENTRY_COLUMNS, entry_rows)
        else:
            self._insert_many(t.transfers, _TRANSFER_COLUMNS, transfer_rows)
            self._insert_many(t.entries, _ENTRY_COLUMNS, entry_rows)
        if closed:
            condition, params = self._in("transfer_id", "ids", closed)
            self._query(f"DELETE FROM open_holds WHERE {condition}", params, ["ids"])
        if opened:
            self._c.execute(
                insert(t.open_holds),
                [{"transfer_id": h, "expires_at": expires_at} for h, expires_at in opened],
            )

    def restore_sums(self, last_entries: Iterable[Entry]) -> None:
        """Each account's running sums, version and last entry time as its last entry left
        them."""
        rows = [
            {
                "b_id": e.account_id,
                "b_dp": e.debits_posted,
                "b_cp": e.credits_posted,
                "b_dq": e.debits_pending,
                "b_cq": e.credits_pending,
                "b_seq": e.sequence,
                "b_at": e.created_at,
            }
            for e in last_entries
        ]
        self._update_each(rows)

    # --- history ------------------------------------------------------------------

    def seal_history(self, account_id: str, through: datetime) -> None:
        """Make ``account_id``'s history through ``through`` final: no entry will be stamped
        at or before it.

        The update waits for the account's lock, so a batch that is writing the
        account (and may have stamped its entries at or before ``through``)
        commits first; every later batch reads the seal under that lock and
        stamps after it. Only an as-of read of an instant past the account's
        last entry needs this; it costs that read one small write.
        """
        column = t.accounts.c.sealed_through
        self._c.execute(
            update(t.accounts)
            .where(t.accounts.c.id == account_id)
            .where((column.is_(None)) | (column < through))
            .values(sealed_through=through)
        )

    def entry_as_of(self, account_id: str, as_of: datetime) -> Entry | None:
        statement = text(
            f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE account_id = :a "
            "AND created_at <= :t ORDER BY created_at DESC, sequence DESC LIMIT 1"
        ).bindparams(bindparam("t", type_=DateTime(timezone=True)))
        row = self._c.execute(statement, {"a": account_id, "t": as_of}).first()
        return _entry(row) if row is not None else None

    def list_entries(self, account_id: str, after_sequence: int, limit: int) -> list[Entry]:
        rows = self._c.execute(
            text(
                f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE account_id = :a "
                "AND sequence > :s ORDER BY sequence LIMIT :n"
            ),
            {"a": account_id, "s": after_sequence, "n": limit},
        )
        return [_entry(r) for r in rows]
