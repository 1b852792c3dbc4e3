"""The ledger's refusals as domain errors, for the single-item RPCs.

Batch items report their reason in the per-item result; a single-item call
raises the same reason as an error, with the category that picks its gRPC code.
"""

from __future__ import annotations

from chassis.kernel.errors import DomainError, ErrorCategory, FieldViolation, NotFound

from ledger.domain.model import ItemResult

_NOT_FOUND = {"ACCOUNT_NOT_FOUND", "PENDING_TRANSFER_NOT_FOUND", "TRANSFER_NOT_FOUND"}


def category_of(reason: str) -> ErrorCategory:
    if reason in _NOT_FOUND:
        return ErrorCategory.NOT_FOUND
    if reason == "IDEMPOTENCY_KEY_REUSED":
        return ErrorCategory.ALREADY_EXISTS
    # Everything else is a valid request the ledger's state refuses (AIP-193).
    return ErrorCategory.FAILED_PRECONDITION


def refusal(result: ItemResult) -> DomainError:
    metadata = {"transfer_id": result.id}
    if result.replayed:
        metadata["replayed"] = "true"
    if result.created_at is not None:
        # A refusal kept for replay was committed: say when (a replay, the original instant).
        metadata["create_time"] = result.created_at.isoformat()
    return DomainError(
        result.reason, result.message, category=category_of(result.reason), metadata=metadata
    )


def account_not_found(account_id: str) -> NotFound:
    return NotFound(
        "ACCOUNT_NOT_FOUND", f"account {account_id} does not exist", metadata={"id": account_id}
    )


def transfer_not_found(transfer_id: str, refused_reason: str = "") -> NotFound:
    message = f"transfer {transfer_id} does not exist"
    metadata = {"id": transfer_id}
    if refused_reason:
        message = f"transfer {transfer_id} was refused ({refused_reason}); nothing was applied"
        metadata["refused_reason"] = refused_reason
    return NotFound("TRANSFER_NOT_FOUND", message, metadata=metadata)


def sequence_beyond_head(after: int, head: int) -> DomainError:
    """A change stream's place past the journal's head: this ledger does not have that
    record (restored from an older backup, or another ledger). Records it writes next take
    those sequences with other content, so waiting for them would pass the consumer a
    history that forks from the one it holds (services/ledger/JOURNAL.md)."""
    return DomainError(
        "SEQUENCE_BEYOND_HEAD",
        f"after_sequence {after} is beyond the journal's head ({head}): this ledger does not "
        f"have that record (restored from an older backup?); what you hold after {head} "
        "is not its history",
        category=ErrorCategory.OUT_OF_RANGE,
        metadata={"after_sequence": str(after), "head_sequence": str(head)},
        violations=[
            FieldViolation("after_sequence", f"must not be beyond the journal's head ({head})")
        ],
    )
