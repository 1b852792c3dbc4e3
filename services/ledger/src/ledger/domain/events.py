"""Domain events the ledger records; an adapter maps them to ``astra.ledger.v1`` event protos."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the model records these events: it imports this module
    from ledger.domain.model import Account, Balance, Leg, Metadata, TransferKind


@dataclass(frozen=True, slots=True)
class AccountOpened:
    account: Account
    occurred_at: datetime

    @property
    def aggregate_id(self) -> str:
        return self.account.id


@dataclass(slots=True)
class TransferApplied:
    """A transfer entered the journal. ``kind`` says which event it is for subscribers."""

    kind: TransferKind
    transfer_id: str
    legs: tuple[Leg, ...]
    balances: tuple[Balance, ...]
    metadata: Metadata
    occurred_at: datetime
    pending_transfer_id: str = ""
    reversed_transfer_id: str = ""
    expires_at: datetime | None = None

    @property
    def aggregate_id(self) -> str:
        # One hold's life (created, then posted, voided or expired) shares an
        # ordering key, and so does a transfer and its reversal.
        return self.pending_transfer_id or self.reversed_transfer_id or self.transfer_id


@dataclass(frozen=True, slots=True)
class JournalCheckpointed:
    """The journal's head was stored as a checkpoint (``ledger.domain.checkpoint``)."""

    sequence: int
    hash: bytes
    occurred_at: datetime

    @property
    def aggregate_id(self) -> str:
        return "journal"  # one ordering key: checkpoints arrive in the order they were taken


LedgerEvent = AccountOpened | TransferApplied | JournalCheckpointed
