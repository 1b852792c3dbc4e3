"""A checkpoint of the journal: its head (sequence, hash) as stored and published at a time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ledger.domain.events import JournalCheckpointed


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
