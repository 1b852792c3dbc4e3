"""The ledger's use cases: one function per command or query, each in a unit of work."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from chassis.kernel.audit import Requester
from chassis.kernel.clock import Clock, utc
from chassis.kernel.errors import IdempotencyKeyReused, PermissionDenied
from chassis.kernel.pagination import Page, is_sequence, parse_page
from chassis.kernel.uow import run_in_transaction

from ledger.domain import validation
from ledger.domain.batch import decide_batch
from ledger.domain.errors import account_not_found, refusal, transfer_not_found
from ledger.domain.model import (
    Account,
    AccountSpec,
    Balance,
    Entry,
    ExpirePendingOp,
    ItemResult,
    Leg,
    Metadata,
    PostPendingOp,
    ReversalOp,
    TransferRecord,
    TransferRequest,
    VoidPendingOp,
)
from ledger.service_layer.ports import ItemOutcome, SubmitTransfer
from ledger.service_layer.unit_of_work import LedgerUnitOfWork

UowFactory = Callable[[], LedgerUnitOfWork]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks, as far as object-level rules care: a customer sees only its own accounts."""

    customer_id: str = ""
    # Who asks, as writes record it (None: a caller the ledger cannot name, e.g. its own workers).
    requester: Requester | None = None
    # The part of the suite that called (SPIFFE id of its certificate), "" when unknown.
    peer: str = ""

    def check_account(self, account: Account) -> None:
        if self.customer_id and account.customer_id != self.customer_id:
            raise PermissionDenied(
                "NOT_ACCOUNT_OWNER",
                f"account {account.id} does not belong to the calling customer",
                metadata={"id": account.id},
            )

    def require_service(self) -> None:
        """Only services move money or open accounts; a customer token only reads."""
        if self.customer_id:
            raise PermissionDenied(
                "SERVICE_CALLER_REQUIRED", "a customer token may only read its own accounts"
            )


SERVICE = Caller()


# --- accounts ---------------------------------------------------------------


def open_account(
    uow_factory: UowFactory, clock: Clock, spec: AccountSpec, requester: Requester | None = None
) -> Account:
    validation.validate_account_spec(spec)

    def work(uow: LedgerUnitOfWork) -> Account:
        existing = uow.ledger.get_account(spec.id)
        if existing is not None:
            if existing.fingerprint != spec.fingerprint():
                raise IdempotencyKeyReused("account", spec.id)
            return existing
        account = Account.open(spec, clock.now(), requester)
        uow.ledger.insert_account(account)
        return account

    return run_in_transaction(uow_factory, work)


def get_account(uow_factory: UowFactory, account_id: str, caller: Caller = SERVICE) -> Account:
    validation.validate_account_id(account_id)
    with uow_factory() as uow:
        account = uow.ledger.get_account(account_id)
    if account is None:
        raise account_not_found(account_id)
    caller.check_account(account)
    return account


def list_accounts(
    uow_factory: UowFactory,
    page_size: int,
    page_token: str,
    customer_id: str = "",
    caller: Caller = SERVICE,
) -> Page[Account]:
    if caller.customer_id:
        if customer_id and customer_id != caller.customer_id:
            raise PermissionDenied("NOT_ACCOUNT_OWNER", "a customer may list only its own accounts")
        customer_id = caller.customer_id
    validation.validate_customer_filter(customer_id)
    filters = {"customer_id": customer_id}
    page = parse_page(page_size, page_token, filters, after_rule=validation.is_account_id)
    with uow_factory() as uow:
        items = uow.ledger.list_accounts(page.after, page.fetch, customer_id)
    return page.page(items, lambda account: account.id)


# --- transfers --------------------------------------------------------------


def execute_batch(
    uow_factory: UowFactory, clock: Clock, requests: Sequence[TransferRequest]
) -> list[ItemOutcome]:
    """Decide and write already validated requests as one transaction (retried on conflicts)."""

    def work(uow: LedgerUnitOfWork) -> list[ItemOutcome]:
        referenced = {r for r in (q.referenced_transfer_id() for q in requests) if r}
        leg_accounts = {account_id for q in requests for account_id in q.account_ids()}
        known, accounts = uow.ledger.load_for_batch(
            [q.id for q in requests], leg_accounts, referenced
        )
        now = clock.now()
        for account in accounts.values():
            now = account.next_stamp(now)
        outcome = decide_batch(requests, accounts, known, now)
        for account in outcome.accounts.values():
            account.last_entry_at = now
        uow.ledger.write(outcome)
        records = {r.id: r for r in outcome.records}
        return [
            ItemOutcome(result, records.get(result.id) or known.get(result.id))
            for result in outcome.results
        ]

    return run_in_transaction(uow_factory, work)


def create_transfers(
    uow_factory: UowFactory,
    clock: Clock,
    requests: Sequence[TransferRequest],
    requester: Requester | None = None,
) -> list[ItemResult]:
    validation.validate_transfers(requests)
    if requester is not None:
        requests = [replace(request, requester=requester) for request in requests]
    return [o.result for o in execute_batch(uow_factory, clock, requests)]


# A single-transfer call joins the group commit (``SubmitTransfer``): validated here,
# decided and written with whatever else was submitted meanwhile, answered alone.


def create_transfer(
    submit: SubmitTransfer, request: TransferRequest, caller: Caller = SERVICE
) -> TransferRecord:
    """The transfer a ``TransferSpec`` asks for (CreateTransfer), or its refusal raised."""
    caller.require_service()
    validation.validate_transfer(request)
    return _applied(submit(replace(request, requester=caller.requester)))


def post_pending_transfer(
    submit: SubmitTransfer,
    transfer_id: str,
    pending_transfer_id: str,
    legs: tuple[Leg, ...] = (),
    metadata: Metadata = (),
    caller: Caller = SERVICE,
) -> TransferRecord:
    """Post a hold, whole or (``legs``) in part."""
    caller.require_service()
    request = TransferRequest(
        transfer_id,
        PostPendingOp(pending_transfer_id, legs),
        metadata=metadata,
        requester=caller.requester,
    )
    validation.validate_post_pending_transfer(request)
    return _applied(submit(request))


def void_pending_transfer(
    submit: SubmitTransfer,
    transfer_id: str,
    pending_transfer_id: str,
    metadata: Metadata = (),
    caller: Caller = SERVICE,
) -> TransferRecord:
    """Release a hold without moving money."""
    caller.require_service()
    request = TransferRequest(
        transfer_id,
        VoidPendingOp(pending_transfer_id),
        metadata=metadata,
        requester=caller.requester,
    )
    validation.validate_void_pending_transfer(request)
    return _applied(submit(request))


def reverse_transfer(
    submit: SubmitTransfer,
    transfer_id: str,
    reversed_transfer_id: str,
    shortfall_account_id: str = "",
    metadata: Metadata = (),
    caller: Caller = SERVICE,
) -> TransferRecord:
    """Move a transfer's money back; what a limited account cannot give back goes to
    ``shortfall_account_id`` when one is named."""
    caller.require_service()
    request = TransferRequest(
        transfer_id,
        ReversalOp(reversed_transfer_id, shortfall_account_id),
        metadata=metadata,
        requester=caller.requester,
    )
    validation.validate_reverse_transfer(request)
    return _applied(submit(request))


def _applied(outcome: ItemOutcome) -> TransferRecord:
    """The applied (or replayed) transfer of a single-item call, or its refusal raised."""
    if not outcome.result.ok:
        raise refusal(outcome.result)
    assert outcome.record is not None
    return outcome.record


def get_transfer(
    uow_factory: UowFactory, transfer_id: str, caller: Caller = SERVICE
) -> TransferRecord:
    validation.validate_transfer_id(transfer_id)
    with uow_factory() as uow:
        record = uow.ledger.get_record(transfer_id)
        if record is None:
            raise transfer_not_found(transfer_id)
        if not record.ok:
            raise transfer_not_found(transfer_id, record.reason)
        if caller.customer_id:
            # A customer sees a transfer only if one of its legs touches its own account.
            owners = {
                account.customer_id
                for account in map(uow.ledger.get_account, {leg.account_id for leg in record.legs})
                if account is not None
            }
            if caller.customer_id not in owners:
                raise PermissionDenied(
                    "NOT_TRANSFER_PARTY",
                    f"transfer {transfer_id} touches no account of the calling customer",
                    metadata={"id": transfer_id},
                )
    return record


def lookup_transfers(
    uow_factory: UowFactory, transfer_ids: Sequence[str], caller: Caller = SERVICE
) -> list[TransferRecord]:
    """The applied transfers among ``transfer_ids``, in the order first asked; no others."""
    caller.require_service()
    validation.validate_lookup(transfer_ids)
    unique = list(dict.fromkeys(transfer_ids))
    with uow_factory() as uow:
        records = uow.ledger.load_records(unique)
    return [record for tid in unique if (record := records.get(tid)) is not None and record.ok]


def expire_due_holds(uow_factory: UowFactory, clock: Clock, limit: int = 500) -> int:
    """Void holds whose timeout has passed; returns how many were expired."""
    with uow_factory() as uow:
        due = uow.ledger.due_holds(clock.now(), limit)
    if not due:
        return 0
    requests = [
        TransferRequest(id=f"exp_{pending_id}", operation=ExpirePendingOp(pending_id))
        for pending_id in due
    ]
    outcomes = execute_batch(uow_factory, clock, requests)
    return sum(1 for o in outcomes if o.result.ok and not o.result.replayed)


# --- balances and history ------------------------------------------------------


def get_balance(
    uow_factory: UowFactory,
    account_id: str,
    as_of: datetime | None,
    clock: Clock,
    caller: Caller = SERVICE,
) -> Balance:
    """The balance now, or as of an instant: an as-of answer never changes afterwards.

    Entries are stamped before their batch commits, so an instant past the
    account's last entry could still gain one; such a read first seals the
    account's history through that instant (``LedgerRepository.seal_history``). An
    instant in the future is answered as of now, and the answer says so.
    """
    validation.validate_account_id(account_id)
    with uow_factory() as uow:
        account = uow.ledger.get_account(account_id)
        if account is None:
            raise account_not_found(account_id)
        caller.check_account(account)
        now = clock.now()
        if as_of is None:
            return account.balance(now)
        as_of = min(utc(as_of), now)
        final = account.history_final_through(as_of)
        if final:
            entry = uow.ledger.entry_as_of(account_id, as_of)
    if not final:
        run_in_transaction(uow_factory, lambda u: u.ledger.seal_history(account_id, as_of))
        with uow_factory() as uow:
            entry = uow.ledger.entry_as_of(account_id, as_of)
    if entry is None:
        return Balance(account.id, account.currency, account.normal_side, as_of=as_of)
    return account.balance_after(entry, as_of)


def list_entries(
    uow_factory: UowFactory,
    account_id: str,
    page_size: int,
    page_token: str,
    caller: Caller = SERVICE,
) -> tuple[Account, Page[Entry]]:
    validation.validate_account_id(account_id)
    filters = {"account_id": account_id}
    page = parse_page(page_size, page_token, filters, after_rule=is_sequence)
    after = int(page.after) if page.after else 0
    with uow_factory() as uow:
        account = uow.ledger.get_account(account_id)
        if account is None:
            raise account_not_found(account_id)
        caller.check_account(account)
        entries = uow.ledger.list_entries(account_id, after, page.fetch)
    return account, page.page(entries, lambda entry: str(entry.sequence))
