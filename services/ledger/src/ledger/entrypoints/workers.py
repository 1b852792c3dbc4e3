"""The ledger's background work: voiding holds whose timeout has passed, checkpointing the
journal's head."""

from __future__ import annotations

import structlog
from chassis.background import Periodic
from chassis.db.locks import try_advisory_lock

from ledger.bootstrap import Ledger
from ledger.service_layer import journal, use_cases

_log = structlog.get_logger("ledger")

# One expirer at a time across processes; the key every version has held, so
# that old and new processes exclude each other during a rolling deploy.
HOLD_EXPIRY_LOCK = 0x1ED6E5
# One checkpointer at a time across processes (the table's key makes a second one
# harmless anyway: it stores nothing for a head already stored).
CHECKPOINT_LOCK = "ledger-journal-checkpoint"


class HoldExpiry(Periodic):
    """Every ``LEDGER_EXPIRY_INTERVAL_SECONDS``: void the due holds, until none is left."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__("hold-expiry", self.expire_due, ledger.settings.expiry_interval_seconds)
        self._ledger = ledger

    def expire_due(self) -> None:
        ledger = self._ledger
        with try_advisory_lock(ledger.engine, HOLD_EXPIRY_LOCK) as mine:
            if not mine:
                return  # another process is at it
            while not self.stopping:
                expired = use_cases.expire_due_holds(ledger.uow, ledger.clock)
                if not expired:
                    return
                _log.info("holds expired", count=expired)

    def failed(self) -> None:
        _log.exception("hold expiry failed; will try again")


class JournalCheckpoints(Periodic):
    """Every ``LEDGER_JOURNAL_CHECKPOINT_SECONDS``: store and publish the journal's head, if it
    moved."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__(
            "journal-checkpoints", self.checkpoint, ledger.settings.journal_checkpoint_seconds
        )
        self._ledger = ledger

    def checkpoint(self) -> None:
        ledger = self._ledger
        with try_advisory_lock(ledger.engine, CHECKPOINT_LOCK) as mine:
            if not mine:
                return
            taken = journal.checkpoint(ledger.uow, ledger.clock)
            if taken is not None:
                _log.info("journal checkpointed", sequence=taken.sequence, hash=taken.hash.hex())

    def failed(self) -> None:
        _log.exception("journal checkpoint failed; will try again")
