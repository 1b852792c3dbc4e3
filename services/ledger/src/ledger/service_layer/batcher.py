"""Group commit for single-transfer calls (``chassis.batching``).

Concurrent CreateTransfer / PostPendingTransfer / VoidPendingTransfer /
ReverseTransfer calls are executed together as one batch of unlinked items:
each caller gets its own item's outcome, while the database sees a few large
transactions, and a hot account is written once per batch instead of once per
call. Items of one batch are independent, exactly as in a CreateTransfers call
without links.
"""

from __future__ import annotations

from chassis.batching import GroupCommitter

from ledger.domain.model import TransferRequest
from ledger.service_layer.ports import ItemOutcome

TransferBatcher = GroupCommitter[TransferRequest, ItemOutcome]
