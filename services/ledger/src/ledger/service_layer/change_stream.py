"""The change stream: follow the journal from a sequence, each record with the balances it left.

Page by page (bounded memory; no transaction stays open while a page is
sent), then, once caught up, a poll every ``poll_seconds`` for what committed
since. The journal's sequence is gap-free and a record commits only after the
one before it (appenders queue on the head's lock until they commit), so
reading ``after`` the last sequence sent never skips or repeats a record.

A place beyond the head is refused (OUT_OF_RANGE), not waited for: see
``ledger.domain.errors.sequence_beyond_head``. It is checked whenever a page
comes back empty, so a stream that was caught up when its ledger was restored
from an older backup is told at its next poll.
"""

from __future__ import annotations

from chassis.kernel.errors import FieldViolation, InvalidArgument

from ledger.domain.errors import sequence_beyond_head
from ledger.domain.journal_changes import (
    AccountTerms,
    JournalChange,
    accounts_named,
    decoded,
    journal_change,
    opened_terms,
)
from ledger.domain.replay import Change
from ledger.service_layer.use_cases import SERVICE, Caller, UowFactory

PAGE_SIZE = 500
# How often a caught-up stream looks for new records.
POLL_SECONDS = 0.15


def check_after_sequence(after_sequence: int) -> int:
    if after_sequence < 0:
        raise InvalidArgument(
            [FieldViolation("after_sequence", "must be 0 (from the start) or a record's sequence")]
        )
    return after_sequence


def journal_page(
    uow_factory: UowFactory,
    after: int,
    limit: int,
    terms: dict[str, AccountTerms],
) -> list[JournalChange]:
    """The changes after ``after``, at most ``limit``; ``terms`` caches accounts' terms
    across pages (an account is read once per stream, and not at all when its opening
    is in the stream). None after ``after`` while the head is before it: refused."""
    with uow_factory() as uow:
        rows = uow.ledger.journal_after(after, limit)
        if not rows:
            head = uow.ledger.journal_head().sequence
            if head < after:
                raise sequence_beyond_head(after, head)
        bodies: list[Change] = []
        unknown: set[str] = set()
        for row in rows:
            body = decoded(row)
            bodies.append(body)
            opened = opened_terms(body)
            if opened is not None:
                terms[opened[0]] = opened[1]
            unknown |= accounts_named(body) - terms.keys()
        for account_id in sorted(unknown):
            account = uow.ledger.get_account(account_id)
            # An entry names an account that exists in the same database: never None.
            assert account is not None, f"journal entry of unknown account {account_id}"
            terms[account_id] = AccountTerms(account.currency, account.normal_side)
    return [journal_change(row, body, terms) for row, body in zip(rows, bodies, strict=True)]


class JournalFollower:
    """A consumer's place in the journal: each ``next_page`` reads the changes after the last
    one it returned. The caller (the servicer's stream) loops, and waits when ``caught_up``."""

    def __init__(
        self,
        uow_factory: UowFactory,
        after_sequence: int,
        caller: Caller = SERVICE,
        *,
        page_size: int = PAGE_SIZE,
    ) -> None:
        caller.require_service()  # the journal names every customer's accounts
        self.after = check_after_sequence(after_sequence)
        self.caught_up = False
        self._uow_factory = uow_factory
        self._page_size = page_size
        self._terms: dict[str, AccountTerms] = {}

    def next_page(self) -> list[JournalChange]:
        page = journal_page(self._uow_factory, self.after, self._page_size, self._terms)
        if page:
            self.after = page[-1].row.sequence
        self.caught_up = len(page) < self._page_size
        return page
