"""The journal on SQL: its head, its records streamed in order, its checkpoints, and restore.

Reads stream: the records come through a server-side cursor on PostgreSQL
(``stream_results``), a page at a time, so verifying or exporting a journal
of any length holds one page in memory. The ``journal`` and ``journal_head``
tables belong to migration 0005_journal and are named here in SQL text;
``journal_checkpoints`` is 0006's (``tables.journal_checkpoints``).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from datetime import datetime

from chassis.kernel.clock import utc
from chassis.kernel.uow import TracksAggregates
from sqlalchemy import Connection, DateTime, bindparam, select, text
from sqlalchemy.dialects import postgresql, sqlite

from ledger.adapters import tables as t
from ledger.adapters.repository import SqlLedgerRepository
from ledger.domain.checkpoint import Checkpoint
from ledger.domain.journal import GENESIS
from ledger.domain.journal_records import JournalRow
from ledger.domain.model import Account, Entry, TransferRecord

PAGE = 1000


def _bytes(value: bytes | memoryview | None) -> bytes:
    return bytes(value) if value is not None else b""


def _instant(value: object) -> datetime | None:
    # SQLite hands back text for columns read through ``text()``.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return utc(value) if isinstance(value, datetime) else None


class SqlJournal(TracksAggregates):
    def __init__(self, connection: Connection) -> None:
        super().__init__()
        self._c = connection
        self._pg = connection.dialect.name == "postgresql"

    def read_snapshot(self) -> None:
        """Make this transaction read one snapshot (PostgreSQL): the head, the records and
        the checkpoints as of one instant, so that a checkpoint stored while verifying is
        not taken for one beyond the head. First statement of the transaction."""
        if self._pg:
            self._c.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))

    def head(self) -> tuple[int, bytes]:
        row = self._c.execute(text("SELECT sequence, hash FROM journal_head WHERE id = 1")).first()
        if row is None:
            return 0, GENESIS
        return int(row[0]), _bytes(row[1])

    def records(self, after: int, through: int) -> Generator[JournalRow, None, None]:
        result = self._c.execution_options(stream_results=True, max_row_buffer=PAGE).execute(
            text(
                "SELECT sequence, prev_hash, hash, body, kind, recorded_at FROM journal "
                "WHERE sequence > :after AND sequence <= :through ORDER BY sequence"
            ),
            {"after": after, "through": through},
        )
        try:
            for row in result:
                yield JournalRow(
                    sequence=int(row[0]),
                    prev_hash=_bytes(row[1]),
                    hash=_bytes(row[2]),
                    body=_bytes(row[3]),
                    kind=row[4],
                    recorded_at=_instant(row[5]),
                )
        finally:
            result.close()

    def hash_at(self, sequence: int) -> bytes | None:
        row = self._c.execute(
            text("SELECT hash FROM journal WHERE sequence = :s"), {"s": sequence}
        ).first()
        return _bytes(row[0]) if row is not None else None

    # --- checkpoints ----------------------------------------------------------------

    def checkpoints(self) -> Generator[Checkpoint, None, None]:
        c = t.journal_checkpoints.c
        result = self._c.execution_options(stream_results=True, max_row_buffer=PAGE).execute(
            select(c.sequence, c.hash, c.recorded_at).order_by(c.sequence)
        )
        try:
            for row in result:
                yield Checkpoint(int(row[0]), _bytes(row[1]), utc(row[2]))
        finally:
            result.close()

    def latest_checkpoint(self) -> Checkpoint | None:
        c = t.journal_checkpoints.c
        row = self._c.execute(
            select(c.sequence, c.hash, c.recorded_at).order_by(c.sequence.desc()).limit(1)
        ).first()
        return Checkpoint(int(row[0]), _bytes(row[1]), utc(row[2])) if row is not None else None

    def add_checkpoint(self, checkpoint: Checkpoint) -> bool:
        """Store it unless one is stored at its sequence already (another process's);
        True if stored, and then its event goes out with the transaction."""
        dialect = postgresql if self._pg else sqlite
        statement = (
            dialect.insert(t.journal_checkpoints)
            .values(
                sequence=checkpoint.sequence,
                hash=checkpoint.hash,
                recorded_at=checkpoint.recorded_at,
            )
            .on_conflict_do_nothing(index_elements=["sequence"])
            .returning(t.journal_checkpoints.c.sequence)
        )
        stored = self._c.execute(statement).first() is not None
        if stored:
            self.track(checkpoint)
        return stored

    # --- restore (import into an empty ledger) ------------------------------------------

    def is_empty(self) -> bool:
        """No account, transfer or journal record: nothing an import would collide with."""
        for table in ("accounts", "transfers", "journal"):
            if self._c.execute(text(f"SELECT 1 FROM {table} LIMIT 1")).first() is not None:
                return False
        return True

    def insert_records(self, records: Sequence[JournalRow], recorded_at: datetime) -> None:
        if not records:
            return
        self._c.execute(
            text(
                "INSERT INTO journal (sequence, kind, body, prev_hash, hash, recorded_at) "
                "VALUES (:sequence, :kind, :body, :prev_hash, :hash, :recorded_at)"
            ).bindparams(bindparam("recorded_at", type_=DateTime(timezone=True))),
            [
                {
                    "sequence": record.sequence,
                    "kind": record.kind,
                    "body": record.body,
                    "prev_hash": record.prev_hash,
                    "hash": record.hash,
                    "recorded_at": record.recorded_at or recorded_at,
                }
                for record in records
            ],
        )

    def set_head(self, sequence: int, digest: bytes) -> None:
        updated = self._c.execute(
            text("UPDATE journal_head SET sequence = :s, hash = :h WHERE id = 1"),
            {"s": sequence, "h": digest},
        ).rowcount
        if not updated:
            self._c.execute(
                text("INSERT INTO journal_head (id, sequence, hash) VALUES (1, :s, :h)"),
                {"s": sequence, "h": digest},
            )

    def restore(
        self,
        accounts: Sequence[Account],
        records: Sequence[TransferRecord],
        entries: Sequence[Entry],
        opened: Sequence[tuple[str, datetime | None]],
        closed: Sequence[str],
    ) -> None:
        # The ledger's own writers (COPY on PostgreSQL), not a second copy of them.
        SqlLedgerRepository(self._c).restore(accounts, records, entries, opened, closed)

    def restore_sums(self, last_entries: Iterable[Entry]) -> None:
        SqlLedgerRepository(self._c).restore_sums(last_entries)
