"""``astra.ledger.v1.LedgerService``: thin, proto -> command -> proto."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import grpc
from astra.ledger.v1 import ledger_pb2 as pb
from astra.ledger.v1 import ledger_pb2_grpc
from chassis.auth import current_principal, current_requester
from chassis.grpc.context import current_call, stream_may_go_on, time_remaining
from chassis.kernel.errors import InvalidArgument, ResourceExhausted, Unauthenticated
from chassis.kernel.money import currency
from chassis.protos import from_timestamp

from ledger.adapters.metrics import record_results
from ledger.adapters.protos import (
    account_spec_from_pb,
    account_to_pb,
    balance_to_pb,
    entry_to_pb,
    journal_record_to_pb,
    legs_from_pb,
    results_to_pb,
    transfer_request_from_pb,
    transfer_requests_from_pb,
    transfer_to_pb,
)
from ledger.bootstrap import Ledger
from ledger.domain.model import Account, TransferRequest, metadata_of
from ledger.service_layer import change_stream, use_cases
from ledger.service_layer.ports import ItemOutcome, SubmitTransfer
from ledger.service_layer.use_cases import Caller

CallerOf = Callable[[grpc.ServicerContext], Caller]


def caller_from_principal(_context: grpc.ServicerContext) -> Caller:
    """The verified caller: a customer token becomes a caller limited to that customer;
    ``peer`` is the part whose certificate the connection showed."""
    principal = current_principal()
    if principal is None:
        # Every LedgerService method requires a token; no principal means auth was bypassed.
        raise Unauthenticated("MISSING_TOKEN", "a bearer token is required")
    call = current_call()
    return Caller(
        customer_id=principal.customer_id,
        requester=current_requester(),
        peer=(call.peer or "") if call else "",
    )


class LedgerServicer(ledger_pb2_grpc.LedgerServiceServicer):
    def __init__(self, ledger: Ledger, caller_of: CallerOf = caller_from_principal) -> None:
        self._ledger = ledger
        self._caller_of = caller_of
        # A followed stream holds one of the server's handler threads for as long as it
        # lasts: at most a quarter of them follow, so the other calls keep theirs.
        self._followers = threading.BoundedSemaphore(max(1, ledger.settings.grpc_max_workers // 4))

    def _account_pb(self, account: Account) -> pb.Account:
        return account_to_pb(account, currency(account.currency).exponent)

    # --- accounts -----------------------------------------------------------------

    def OpenAccount(
        self, request: pb.OpenAccountRequest, context: grpc.ServicerContext
    ) -> pb.OpenAccountResponse:
        caller = self._caller_of(context)
        caller.require_service()
        spec = account_spec_from_pb(request.account)
        account = use_cases.open_account(
            self._ledger.uow, self._ledger.clock, spec, caller.requester
        )
        return pb.OpenAccountResponse(account=self._account_pb(account))

    def GetAccount(
        self, request: pb.GetAccountRequest, context: grpc.ServicerContext
    ) -> pb.GetAccountResponse:
        account = use_cases.get_account(
            self._ledger.uow, request.account_id, self._caller_of(context)
        )
        return pb.GetAccountResponse(account=self._account_pb(account))

    def ListAccounts(
        self, request: pb.ListAccountsRequest, context: grpc.ServicerContext
    ) -> pb.ListAccountsResponse:
        page = use_cases.list_accounts(
            self._ledger.uow,
            request.page_size,
            request.page_token,
            request.customer_id,
            self._caller_of(context),
        )
        return pb.ListAccountsResponse(
            accounts=[self._account_pb(a) for a in page.items],
            next_page_token=page.next_page_token,
        )

    # --- transfers ----------------------------------------------------------------

    def CreateTransfers(
        self, request: pb.CreateTransfersRequest, context: grpc.ServicerContext
    ) -> pb.CreateTransfersResponse:
        caller = self._caller_of(context)
        caller.require_service()
        requests = transfer_requests_from_pb(request.transfers)
        results = use_cases.create_transfers(
            self._ledger.uow, self._ledger.clock, requests, caller.requester
        )
        record_results(results)
        return pb.CreateTransfersResponse(results=results_to_pb(results))

    def _submit(self, context: grpc.ServicerContext) -> SubmitTransfer:
        """The group commit for one call: within its deadline, its result counted."""
        timeout = time_remaining(context)

        def submit(transfer: TransferRequest) -> ItemOutcome:
            outcome = self._ledger.batcher.submit(transfer, timeout=timeout)
            record_results((outcome.result,))
            return outcome

        return submit

    def CreateTransfer(
        self, request: pb.CreateTransferRequest, context: grpc.ServicerContext
    ) -> pb.CreateTransferResponse:
        try:
            transfer = transfer_request_from_pb(request.transfer)
        except InvalidArgument as refused:
            raise refused.under("transfer") from None
        record = use_cases.create_transfer(
            self._submit(context), transfer, self._caller_of(context)
        )
        return pb.CreateTransferResponse(transfer=transfer_to_pb(record))

    def PostPendingTransfer(
        self, request: pb.PostPendingTransferRequest, context: grpc.ServicerContext
    ) -> pb.PostPendingTransferResponse:
        record = use_cases.post_pending_transfer(
            self._submit(context),
            request.transfer_id,
            request.pending_transfer_id,
            legs_from_pb(request.legs),
            metadata_of(dict(request.metadata)),
            self._caller_of(context),
        )
        return pb.PostPendingTransferResponse(transfer=transfer_to_pb(record))

    def VoidPendingTransfer(
        self, request: pb.VoidPendingTransferRequest, context: grpc.ServicerContext
    ) -> pb.VoidPendingTransferResponse:
        record = use_cases.void_pending_transfer(
            self._submit(context),
            request.transfer_id,
            request.pending_transfer_id,
            metadata_of(dict(request.metadata)),
            self._caller_of(context),
        )
        return pb.VoidPendingTransferResponse(transfer=transfer_to_pb(record))

    def ReverseTransfer(
        self, request: pb.ReverseTransferRequest, context: grpc.ServicerContext
    ) -> pb.ReverseTransferResponse:
        record = use_cases.reverse_transfer(
            self._submit(context),
            request.transfer_id,
            request.reversed_transfer_id,
            request.shortfall_account_id,
            metadata_of(dict(request.metadata)),
            self._caller_of(context),
        )
        return pb.ReverseTransferResponse(transfer=transfer_to_pb(record))

    def GetTransfer(
        self, request: pb.GetTransferRequest, context: grpc.ServicerContext
    ) -> pb.GetTransferResponse:
        record = use_cases.get_transfer(
            self._ledger.uow, request.transfer_id, self._caller_of(context)
        )
        return pb.GetTransferResponse(transfer=transfer_to_pb(record))

    def LookupTransfers(
        self, request: pb.LookupTransfersRequest, context: grpc.ServicerContext
    ) -> pb.LookupTransfersResponse:
        records = use_cases.lookup_transfers(
            self._ledger.uow, list(request.transfer_ids), self._caller_of(context)
        )
        return pb.LookupTransfersResponse(transfers=[transfer_to_pb(r) for r in records])

    # --- balances and history -------------------------------------------------------

    def GetBalance(
        self, request: pb.GetBalanceRequest, context: grpc.ServicerContext
    ) -> pb.GetBalanceResponse:
        as_of = from_timestamp(request.as_of, "as_of") if request.HasField("as_of") else None
        balance = use_cases.get_balance(
            self._ledger.uow,
            request.account_id,
            as_of,
            self._ledger.clock,
            self._caller_of(context),
        )
        return pb.GetBalanceResponse(balance=balance_to_pb(balance))

    def ListAccountEntries(
        self, request: pb.ListAccountEntriesRequest, context: grpc.ServicerContext
    ) -> pb.ListAccountEntriesResponse:
        account, page = use_cases.list_entries(
            self._ledger.uow,
            request.account_id,
            request.page_size,
            request.page_token,
            self._caller_of(context),
        )
        return pb.ListAccountEntriesResponse(
            entries=[entry_to_pb(e, account) for e in page.items],
            next_page_token=page.next_page_token,
        )

    # --- the change stream ------------------------------------------------------------

    def FollowJournal(
        self, request: pb.FollowJournalRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.FollowJournalResponse]:
        follower = change_stream.JournalFollower(
            self._ledger.uow, request.after_sequence, self._caller_of(context)
        )
        if not self._followers.acquire(blocking=False):
            raise ResourceExhausted(
                "TOO_MANY_FOLLOWERS",
                "this ledger process serves as many journal streams as it takes; retry later",
                retry_after=1.0,
            )
        try:
            # Page by page; once caught up, a poll for what committed since, until the client
            # leaves, its deadline passes or the server drains (SERVER_DRAINING). Checked after
            # every record, not only every page: a slow consumer's page (up to 500 records)
            # must not hold the drain, nor be cut without the reason when its grace runs out.
            while True:
                for change in follower.next_page():
                    yield pb.FollowJournalResponse(
                        record=journal_record_to_pb(change, request.include_body)
                    )
                    if not stream_may_go_on(context):
                        return
                wait = change_stream.POLL_SECONDS if follower.caught_up else 0.0
                if not stream_may_go_on(context, wait):
                    return
        finally:
            self._followers.release()
