"""A checkpoint of the journal (its head as stored and published at a time), and the check of
a run of records against the chain, the head and the checkpoints held (pure).

Beyond the chain itself (``ledger.domain.journal.first_break``) the check covers
what a chain cannot show on its own: that the records reach the head (a deleted
last record leaves a chain that verifies), and that the record at each
checkpoint's sequence still has the checkpointed hash (a history rewritten and
re-hashed from some record on is a valid chain; only a hash held from before the
rewrite tells it apart).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from ledger.domain.events import JournalCheckpointed
from ledger.domain.journal import GENESIS, Broken, first_break

Head = tuple[int, bytes]


class Record(Protocol):
    """A stored record as the check reads it."""

    @property
    def sequence(self) -> int: ...

    @property
    def prev_hash(self) -> bytes: ...

    @property
    def hash(self) -> bytes: ...

    @property
    def body(self) -> bytes: ...


@dataclass(slots=True)
class Checkpoint:
    sequence: int
    hash: bytes
    recorded_at: datetime
    events: list[JournalCheckpointed] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def of_head(cls, sequence: int, digest: bytes, now: datetime) -> Checkpoint:
        """A new checkpoint of the head; storing it publishes ``JournalCheckpointed``."""
        checkpoint = cls(sequence, digest, now)
        checkpoint.events.append(JournalCheckpointed(sequence, digest, now))
        return checkpoint

    def take_events(self) -> list[JournalCheckpointed]:
        events, self.events = self.events, []
        return events


def hex_of(digest: bytes) -> str:
    return digest.hex()


def check_chain(
    records: Iterable[Record],
    *,
    head: Head,
    start: Head = (0, GENESIS),
    checkpoints: Iterable[Checkpoint] = (),
) -> Broken | None:
    """The first record from ``start`` to ``head`` that does not verify, against the chain,
    the head, and the hashes ``checkpoints`` (in sequence order) hold for their sequences.

    Streams both: memory does not grow with the journal or the checkpoints."""
    pending = iter(checkpoints)
    upcoming: list[Checkpoint | None] = [next(pending, None)]
    last: list[Head] = [start]
    rewritten: list[Broken] = []
    # The newest checkpoint passed that still matched: a rewrite began after it.
    matched: list[int] = [start[0]]

    def check_held(record: Record) -> bool:
        checkpoint = upcoming[0]
        while checkpoint is not None and checkpoint.sequence < record.sequence:
            checkpoint = next(pending, None)  # at or before the start: not this walk's
        try:
            while checkpoint is not None and checkpoint.sequence == record.sequence:
                if record.hash != checkpoint.hash:
                    rewritten.append(
                        Broken(
                            record.sequence,
                            "its hash is not the one checkpointed at "
                            f"{checkpoint.recorded_at.isoformat()} ({hex_of(checkpoint.hash)}): "
                            f"the history after sequence {matched[0]} and up to this one was "
                            "rewritten",
                        )
                    )
                    return False
                matched[0] = record.sequence
                checkpoint = next(pending, None)
            return True
        finally:
            upcoming[0] = checkpoint

    def links() -> Iterator[tuple[int, bytes, bytes, bytes]]:
        previous: Record | None = None
        for record in records:
            # The one before passed first_break: now its checkpoint, if it has one.
            if previous is not None and not check_held(previous):
                return
            if record.sequence > head[0]:
                break
            yield record.sequence, record.prev_hash, record.hash, record.body
            previous = record
            last[0] = (record.sequence, record.hash)
        if previous is not None:
            check_held(previous)

    broken = first_break(links(), after_sequence=start[0], after_hash=start[1])
    if broken is not None:
        return broken
    if rewritten:
        return rewritten[0]
    sequence, digest = last[0]
    if sequence < head[0]:
        return Broken(sequence + 1, f"it is missing: the head is at sequence {head[0]}")
    if digest != head[1]:
        return Broken(sequence, f"its hash is not the head's ({hex_of(head[1])})")
    beyond = upcoming[0]
    while beyond is not None and beyond.sequence <= head[0]:
        beyond = next(pending, None)
    if beyond is not None:
        return Broken(
            head[0] + 1,
            f"it is missing: sequence {beyond.sequence} was checkpointed at "
            f"{beyond.recorded_at.isoformat()} ({hex_of(beyond.hash)}), the head is at "
            f"sequence {head[0]}",
        )
    return None
