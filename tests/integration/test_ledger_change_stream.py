"""FollowJournal over gRPC on PostgreSQL: every record once and in order while transfers keep
committing, a consumer that reconnects from its last sequence, and a ledger restart.

The pure reading of bodies and the follow loop on the fake are in
tests/unit/test_ledger_change_stream.py.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from astra.ledger.v1 import ledger_pb2 as pb
from astra.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from astra_testkit.waiting import wait_until
from chassis.grpc.context import CallContext, ServerDraining, reset_current_call, set_current_call
from chassis.grpc.server import GrpcServer
from chassis.grpc.status import bad_request, reason_of
from google.protobuf.duration_pb2 import Duration
from ledger.bootstrap import Ledger, bootstrap
from ledger.domain.journal import first_break
from ledger.domain.journal_records import JournalRow
from ledger.entrypoints.grpc_api import LedgerServicer
from ledger.entrypoints.server import build_server
from ledger.service_layer import use_cases
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.ledger_fixtures import (
    MovableClock,
    authorized_channel,
    ledger_settings,
    service_metadata,
)
from tests.observability_fixtures import spans_named

pytestmark = pytest.mark.integration

D, C = pb.DIRECTION_DEBIT, pb.DIRECTION_CREDIT
ACCOUNTS = ("acct_s_bank", "acct_s_a", "acct_s_b", "acct_s_c")
# A safety net so a broken stream fails the test instead of hanging it (not a timed assertion).
STREAM_TIMEOUT = 60.0


def open_accounts(stub: LedgerServiceStub) -> None:
    for account_id in ACCOUNTS:
        side = pb.NORMAL_SIDE_DEBIT if account_id == "acct_s_bank" else pb.NORMAL_SIDE_CREDIT
        stub.OpenAccount(
            pb.OpenAccountRequest(
                account=pb.Account(id=account_id, currency="EUR", normal_side=side)
            )
        )


def transfers(prefix: str, count: int) -> pb.CreateTransfersRequest:
    """``count`` movements from the bank to the others in turn (expiring holds among them)."""
    specs = []
    for i in range(count):
        to = ACCOUNTS[1 + i % 3]
        legs = [
            pb.Leg(account_id="acct_s_bank", direction=D, amount=10 + i, currency="EUR"),
            pb.Leg(account_id=to, direction=C, amount=10 + i, currency="EUR"),
        ]
        specs.append(pb.TransferSpec(id=f"tr_{prefix}_{i}", movement=pb.Movement(legs=legs)))
    return pb.CreateTransfersRequest(transfers=specs)


Stream = Iterator[pb.FollowJournalResponse]


def read_until(stream: Stream, last: int) -> list[pb.JournalRecord]:
    """Records from ``stream`` up to and including sequence ``last``."""
    records: list[pb.JournalRecord] = []
    for message in stream:
        records.append(message.record)
        if message.record.sequence >= last:
            break
    return records


def head(ledger: Ledger) -> int:
    with ledger.uow() as uow:
        return uow.ledger.journal_head().sequence


def follow(stub: LedgerServiceStub, after: int, include_body: bool = False) -> Any:
    """The stream (a grpc.Call: iterate it, ``cancel()`` it)."""
    return stub.FollowJournal(
        pb.FollowJournalRequest(after_sequence=after, include_body=include_body),
        timeout=STREAM_TIMEOUT,
    )


def test_every_record_once_in_order_while_transfers_commit(
    ledger_stub: LedgerServiceStub, ledger: Ledger
) -> None:
    open_accounts(ledger_stub)
    stream = follow(ledger_stub, 0, include_body=True)
    records: list[pb.JournalRecord] = []
    arrived = threading.Condition()

    def read() -> None:
        with contextlib.suppress(grpc.RpcError):  # cancelled at the end
            for message in stream:
                with arrived:
                    records.append(message.record)
                    arrived.notify_all()

    # Writers commit while the stream is read: batches and single calls, in two threads.
    def write(prefix: str) -> None:
        for round_ in range(5):
            ledger_stub.CreateTransfers(transfers(f"{prefix}{round_}", 8))
            spec = transfers(f"{prefix}{round_}x", 1).transfers[0]
            ledger_stub.CreateTransfer(pb.CreateTransferRequest(transfer=spec))

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(name,)) for name in ("w", "v")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    last = head(ledger)
    with arrived:
        arrived.wait_for(lambda: bool(records) and records[-1].sequence >= last, STREAM_TIMEOUT)
    stream.cancel()
    reader.join()

    assert [r.sequence for r in records] == list(range(1, last + 1))
    assert len({r.transfer_id for r in records if r.transfer_id}) == 2 * 5 * 9
    # The bodies and hashes sent are the chain: a consumer can verify it.
    rows = [JournalRow(r.sequence, "", r.body, r.prev_hash, r.hash) for r in records]
    assert first_break(row.checked() for row in rows) is None
    latest = {b.account_id: b for r in records for b in r.balances}
    for account_id in ACCOUNTS:
        now = ledger_stub.GetBalance(pb.GetBalanceRequest(account_id=account_id)).balance
        streamed = latest[account_id]
        assert (streamed.posted, streamed.available, streamed.version) == (
            now.posted,
            now.available,
            now.version,
        )
    assert latest["acct_s_bank"].posted == sum(
        b.posted for a, b in latest.items() if a != "acct_s_bank"
    )


def test_a_consumer_resumes_after_its_last_sequence_without_gap_or_duplicate(
    ledger_stub: LedgerServiceStub, ledger: Ledger, clock: MovableClock
) -> None:
    open_accounts(ledger_stub)
    ledger_stub.CreateTransfers(transfers("r", 12))
    k = 7
    first = follow(ledger_stub, 0)
    seen = [next(first).record for _ in range(k)]
    first.cancel()  # the consumer goes away after k records
    ledger_stub.CreateTransfers(transfers("s", 3))
    # A hold that expires: its expiry is a record with the balances it released.
    legs = transfers("h", 1).transfers[0].movement.legs
    hold = pb.PendingMovement(legs=legs, timeout=Duration(seconds=1))
    ledger_stub.CreateTransfer(
        pb.CreateTransferRequest(transfer=pb.TransferSpec(id="tr_hold", pending=hold))
    )
    clock.advance(timedelta(seconds=2))
    assert use_cases.expire_due_holds(ledger.uow, ledger.clock) == 1
    again = follow(ledger_stub, seen[-1].sequence)
    rest = read_until(again, head(ledger))
    again.cancel()
    assert [r.sequence for r in seen + rest] == list(range(1, head(ledger) + 1))
    assert rest[0].sequence == k + 1
    held, expired = rest[-2:]
    assert held.transfer_id == "tr_hold"
    assert expired.kind == pb.JOURNAL_RECORD_KIND_TRANSFER
    assert expired.transfer_id not in ("", "tr_hold")
    released = {b.account_id: b for b in expired.balances}
    assert sorted(released) == ["acct_s_a", "acct_s_bank"]
    assert [(b.account_id, b.pending) for b in held.balances] == [
        ("acct_s_a", 10),
        ("acct_s_bank", 10),
    ]
    assert all(b.pending == 0 for b in released.values())
    assert all(released[b.account_id].version > b.version for b in held.balances)


def test_refusals_name_the_field_and_the_scope(ledger_stub: LedgerServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as negative:
        next(follow(ledger_stub, -1))
    assert negative.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = bad_request(negative.value)
    assert details is not None
    assert [v.field for v in details.field_violations] == ["after_sequence"]
    # Beyond the head (a ledger restored from an older backup): refused, not waited for.
    with pytest.raises(grpc.RpcError) as beyond:
        next(follow(ledger_stub, 2**63 - 1))
    assert beyond.value.code() is grpc.StatusCode.OUT_OF_RANGE
    assert reason_of(beyond.value) == "SEQUENCE_BEYOND_HEAD"
    beyond_details = bad_request(beyond.value)
    assert beyond_details is not None
    assert [v.field for v in beyond_details.field_violations] == ["after_sequence"]
    reading_accounts = ledger_stub.FollowJournal(
        pb.FollowJournalRequest(),
        metadata=service_metadata(["ledger.accounts.read"]),
        timeout=STREAM_TIMEOUT,
    )
    with pytest.raises(grpc.RpcError) as unscoped:
        next(iter(reading_accounts))
    assert unscoped.value.code() is grpc.StatusCode.PERMISSION_DENIED


def serve(
    database_url: str, **settings: object
) -> tuple[GrpcServer, grpc.Channel, LedgerServiceStub]:
    app = bootstrap(ledger_settings(database_url, **settings))
    server = build_server(app, app.settings)  # stopping it closes the app
    port = server.start()
    channel = authorized_channel(f"127.0.0.1:{port}")
    return server, channel, LedgerServiceStub(channel)


def test_the_stream_survives_a_ledger_restart(ledger_db_url: str) -> None:
    server, channel, stub = serve(ledger_db_url)
    open_accounts(stub)
    stub.CreateTransfers(transfers("before", 6))
    stream = follow(stub, 0)
    seen = read_until(stream, 10)  # everything so far: the stream is now waiting for more
    # The drain ends the waiting stream (UNAVAILABLE, resume) instead of waiting for it.
    stopping = threading.Thread(target=server.stop, kwargs={"grace": 30.0})
    stopping.start()
    with pytest.raises(grpc.RpcError) as ended:
        seen.extend(m.record for m in stream)  # nothing more came: the drain ends it
    stopping.join()
    channel.close()
    assert ended.value.code() is grpc.StatusCode.UNAVAILABLE
    assert reason_of(ended.value) == "SERVER_DRAINING"

    server, channel, stub = serve(ledger_db_url)  # a new ledger on the same database
    try:
        stub.CreateTransfers(transfers("after", 5))
        resumed = follow(stub, seen[-1].sequence)
        seen += read_until(resumed, 15)
        resumed.cancel()
        assert [r.sequence for r in seen] == list(range(1, 16))
        assert [r.transfer_id for r in seen[-5:]] == [f"tr_after_{i}" for i in range(5)]
    finally:
        channel.close()
        server.stop(grace=0)


class _ReadingClient:
    """The servicer's view of a call whose client is still there."""

    def is_active(self) -> bool:
        return True


def test_a_drain_ends_the_stream_at_its_next_record_not_at_the_end_of_a_page(
    ledger_stub: LedgerServiceStub, ledger: Ledger
) -> None:
    """A page is read whole but sent record by record: the drain must not wait for (or be
    cut at its grace by) the rest of a page a slow consumer has not taken yet."""
    open_accounts(ledger_stub)
    ledger_stub.CreateTransfers(transfers("p", 20))
    servicer = LedgerServicer(ledger, caller_of=lambda _context: use_cases.SERVICE)
    draining = threading.Event()
    token = set_current_call(CallContext("req-drain", "FollowJournal", draining=draining))
    try:
        stream = servicer.FollowJournal(pb.FollowJournalRequest(), _ReadingClient())  # type: ignore[arg-type]
        assert next(stream).record.sequence == 1  # of a page of 24
        draining.set()
        with pytest.raises(ServerDraining):
            next(stream)
    finally:
        reset_current_call(token)


def test_followers_take_at_most_a_quarter_of_the_handler_threads(ledger_db_url: str) -> None:
    server, channel, stub = serve(ledger_db_url, grpc_max_workers=4)  # one follower
    try:
        open_accounts(stub)
        first = follow(stub, 0)
        assert next(first).record.sequence == 1
        with pytest.raises(grpc.RpcError) as refused:
            next(iter(follow(stub, 0)))
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert reason_of(refused.value) == "TOO_MANY_FOLLOWERS"
        first.cancel()
        # The place is given back once the server sees the stream end (at its next poll).
        resumed: list[int] = []

        def follows_again() -> bool:
            again = follow(stub, 3)
            try:
                resumed.append(next(iter(again)).record.sequence)
            except grpc.RpcError as error:
                if error.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                return False
            again.cancel()
            return True

        wait_until(follows_again, STREAM_TIMEOUT, "the follower's place to be given back")
        assert resumed == [4]
    finally:
        channel.close()
        server.stop(grace=0)


def test_a_traced_client_gets_each_record_as_it_comes_not_when_the_stream_ends(
    collected_spans: InMemorySpanExporter, ledger_stub: LedgerServiceStub
) -> None:
    """With tracing recording, the client's span covers the stream's start: it does not
    wait for the stream's status (a follower's stream never ends)."""
    open_accounts(ledger_stub)
    stream = follow(ledger_stub, 0)
    try:
        first = next(iter(stream))
    finally:
        stream.cancel()
    assert first.record.sequence == 1
    assert spans_named(collected_spans, "astra.ledger.v1.LedgerService/FollowJournal")
