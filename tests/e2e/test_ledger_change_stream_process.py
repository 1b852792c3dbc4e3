"""The change stream across real restarts of a ledger process on PostgreSQL.

Consumers follow FollowJournal over mutual TLS through the generated stub while
writers commit transfers (batches and single calls, refusals, holds left to
expire). Mid-stream the ledger process is killed with SIGKILL, and later stopped
with SIGTERM (whose drain ends the streams with UNAVAILABLE / SERVER_DRAINING),
and each time started again on the same port. The first consumer reconnects
from the last sequence it received, the second from an arbitrary older one (and
leaves on its own every so often to do it again), both with backoff while the
ledger is down. Then:
every record once, in order, without a gap, equal to what
``astra-ledger export-journal`` writes; the balances in each record equal to
its entries' balances; ``astra-ledger verify-journal`` passes; the second
consumer got the identical suffix each time. (The two commands run in this
process, through the console script's ``main``: a second interpreter's start-up
would cost seconds of the suite's budget and prove nothing more.)
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from astra.ledger.v1 import ledger_pb2 as pb
from astra_testkit.ledger_workload.driver import CachedToken, Connection, call_until_answered
from astra_testkit.ports import free_port
from astra_testkit.waiting import wait_until
from chassis.db.engine import create_db_engine
from chassis.grpc.status import reason_of
from google.protobuf.duration_pb2 import Duration
from ledger.domain.journal import first_break
from sqlalchemy import Engine
from sqlalchemy import text as sa_text

from tests.ledger_fixtures import ledger_cli, ledger_service_process, service_token

D, C = pb.DIRECTION_DEBIT, pb.DIRECTION_CREDIT
BANK, ALICE, BOB, TIGHT = "acct_bank", "acct_alice", "acct_bob", "acct_tight"
# Safety nets so a broken stream or ledger fails the test instead of hanging it.
STREAM_TIMEOUT = 60.0
WAIT = 30.0
# Records the first consumer receives between two stops of the ledger (so each stop
# comes mid-stream, with writers committing).
RECORDS_BETWEEN_STOPS = 60
# Transfers committed before the consumers start: more than a page of the stream (500), so
# the first pages are full ones.
BACKLOG = 560
# The second consumer leaves after this many records of one session, this many times (a
# consumer that always left would rarely get past where it had been).
REWIND_EVERY, REWINDS = 45, 4
# Reconnect backoff of the consumers: full jitter, doubling up to the cap.
BACKOFF_START, BACKOFF_CAP = 0.05, 0.8
# A follower's stream ends with one of these when the ledger is down, draining, or has no
# follower's place free for a moment: come back later. CANCELLED too, when the consumer did
# not cancel: gRPC cancels a call that reaches a server as it shuts down, before any handler
# took it (grpc/grpc#41785).
COME_BACK_LATER = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
)


def leg(account_id: str, direction: int, amount: int) -> pb.Leg:
    return pb.Leg(account_id=account_id, direction=direction, amount=amount, currency="EUR")  # type: ignore[arg-type]


def movement(transfer_id: str, source: str, to: str, amount: int) -> pb.TransferSpec:
    return pb.TransferSpec(
        id=transfer_id, movement=pb.Movement(legs=[leg(source, D, amount), leg(to, C, amount)])
    )


def hold(transfer_id: str, to: str, amount: int) -> pb.TransferSpec:
    """A hold never posted: the ledger's expiry worker releases it after 0.3 s."""
    legs = [leg(BANK, D, amount), leg(to, C, amount)]
    return pb.TransferSpec(
        id=transfer_id, pending=pb.PendingMovement(legs=legs, timeout=Duration(nanos=300_000_000))
    )


@dataclass
class Session:
    """One FollowJournal call of a consumer: where it resumed, what came, how it ended."""

    after: int
    highest: int  # the highest sequence the consumer had when it resumed
    records: list[pb.JournalRecord] = field(default_factory=list)
    ended: str = ""  # "UNAVAILABLE SERVER_DRAINING", "UNAVAILABLE", "CANCELLED", "rewound"...


class JournalConsumer(threading.Thread):
    """Follows the journal, reconnecting with backoff whenever the stream ends: from the last
    sequence it received, or (``rewind``) from a random older one, also leaving on its own
    after ``REWIND_EVERY`` records of a session, ``REWINDS`` times."""

    def __init__(self, target: str, name: str, *, rewind: bool = False, seed: int = 0) -> None:
        super().__init__(name=name, daemon=True)
        self.sessions: list[Session] = []
        self.failure: BaseException | None = None
        self._connection = Connection(target, CachedToken(service_token))
        self._rewind = rewind
        self._rewinds_left = REWINDS if rewind else 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._call: Any = None
        self._highest = 0

    def highest(self) -> int:
        """The highest sequence received so far."""
        with self._lock:
            return self._highest

    def received(self) -> int:
        with self._lock:
            return sum(len(s.records) for s in self.sessions)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()
        if self.ident is not None:  # started
            self.join(WAIT)
        self._connection.close()
        assert not self.is_alive(), f"{self.name} did not stop"

    def run(self) -> None:
        backoff = BACKOFF_START
        try:
            while not self._stopping.is_set():
                with self._lock:  # stop() cancels the call made here, or finds none made
                    if self._stopping.is_set():
                        return
                    highest = self._highest
                    after = self._rng.randint(0, max(0, highest - 1)) if self._rewind else highest
                    session = Session(after, highest)
                    self.sessions.append(session)
                    self._call = self._connection.stub.FollowJournal(
                        pb.FollowJournalRequest(after_sequence=after, include_body=True),
                        timeout=STREAM_TIMEOUT,
                        metadata=(("authorization", f"Bearer {service_token()}"),),
                    )
                try:
                    session.ended = self._read(session)
                except grpc.RpcError as error:
                    if self._stopping.is_set():
                        session.ended = "stopped"
                        return
                    if error.code() not in COME_BACK_LATER:
                        raise
                    session.ended = " ".join(filter(None, (error.code().name, reason_of(error))))
                if session.records:
                    backoff = BACKOFF_START
                elif session.ended != "rewound":
                    self._stopping.wait(self._rng.uniform(0, backoff))
                    backoff = min(2 * backoff, BACKOFF_CAP)
        except BaseException as error:  # the test's main thread reports it
            self.failure = error

    def _read(self, session: Session) -> str:
        for message in self._call:
            with self._lock:
                session.records.append(message.record)
                self._highest = max(self._highest, message.record.sequence)
            if self._rewinds_left and len(session.records) >= REWIND_EVERY:
                self._rewinds_left -= 1
                self._call.cancel()
                return "rewound"
        return "ended"  # a follower's stream never ends by itself: the check names it


class Writer(threading.Thread):
    """Commits rounds of a batch (two movements, a hold, a refusal) and two single calls,
    retrying each call with the same ids until it has a definite answer."""

    def __init__(self, target: str, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.sent: list[str] = []
        self.codes: list[str] = []  # the status of every attempt
        self.failure: BaseException | None = None
        self._connection = Connection(target, CachedToken(service_token))
        self._rng = random.Random(name)
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        if self.ident is not None:  # started
            self.join(WAIT + STREAM_TIMEOUT)
        self._connection.close()
        assert not self.is_alive(), f"{self.name} did not stop"

    def run(self) -> None:
        try:
            round_ = 0
            while not self._stopping.wait(0.05):
                prefix = f"tr_{self.name}_{round_}"
                batch = [
                    movement(f"{prefix}_a", BANK, ALICE, 10 + round_),
                    movement(f"{prefix}_b", BANK, BOB, 20 + round_),
                    hold(f"{prefix}_hold", ALICE, 5),
                    movement(f"{prefix}_no", TIGHT, BOB, 1),  # TIGHT has nothing: refused, kept
                ]
                self._call("CreateTransfers", pb.CreateTransfersRequest(transfers=batch))
                for spec in (movement(f"{prefix}_s", ALICE, BOB, 1), hold(f"{prefix}_sh", BOB, 2)):
                    self._call("CreateTransfer", pb.CreateTransferRequest(transfer=spec))
                round_ += 1
        except BaseException as error:  # the test's main thread reports it
            self.failure = error

    def _call(self, method: str, request: Any) -> None:
        while True:
            response, error, attempts = call_until_answered(
                self._connection, method, request, 5.0, self._rng
            )
            self.codes += [attempt.code for attempt in attempts]
            # Cancelled by the ledger shutting down as the call arrived (grpc/grpc#41785):
            # no handler took it; send it again, the same ids.
            if error is None or error.code() is not grpc.StatusCode.CANCELLED:
                break
        if error is not None:
            raise error
        if method == "CreateTransfers":
            self.sent += [r.id for r in response.results]
            refused = [r.id for r in response.results if not r.ok]
            assert refused == [request.transfers[-1].id], response
        else:
            self.sent.append(response.transfer.id)


def open_accounts(connection: Connection) -> None:
    for account_id in (BANK, ALICE, BOB, TIGHT):
        account = pb.Account(
            id=account_id,
            currency="EUR",
            normal_side=pb.NORMAL_SIDE_DEBIT if account_id == BANK else pb.NORMAL_SIDE_CREDIT,
            debits_must_not_exceed_credits=account_id == TIGHT,
        )
        connection.call("OpenAccount", pb.OpenAccountRequest(account=account), 10.0)


def entries_by_version(connection: Connection, account_id: str) -> dict[int, pb.Entry]:
    """Every entry of the account (read through the API), by the version it left."""
    entries: dict[int, pb.Entry] = {}
    token = ""
    while True:
        page = connection.call(
            "ListAccountEntries",
            pb.ListAccountEntriesRequest(account_id=account_id, page_size=1000, page_token=token),
            10.0,
        )
        entries.update((e.sequence, e) for e in page.entries)
        token = page.next_page_token
        if not token:
            return entries


def exported_records(path: Path) -> Iterator[tuple[int, str, str, int | None, bytes]]:
    """(sequence, prev_hash hex, hash hex, recorded_at µs, body) of each line of an export,
    read as services/ledger/JOURNAL.md says (the body verbatim: after ``"body":``, up to
    the line's last ``}``)."""
    with path.open("rb") as lines:
        header = json.loads(next(lines))
        assert header["format"] == "astra-ledger-journal"
        for line in lines:
            record = json.loads(line)
            body = line[line.index(b',"body":') + len(b',"body":') : line.rstrip().rindex(b"}")]
            yield (
                record["sequence"],
                record["prev_hash"],
                record["hash"],
                record["recorded_at"],
                body,
            )


def streams_on(
    consumer: JournalConsumer, records: int, what: str, parts: Sequence[JournalConsumer | Writer]
) -> None:
    """Wait until ``consumer`` has ``records`` more than now."""
    mark = consumer.received()
    until(lambda: consumer.received() >= mark + records, what, *parts)


def reaches(consumer: JournalConsumer, sequence: int) -> None:
    until(lambda: consumer.highest() >= sequence, f"{consumer.name} at {sequence}", consumer)


def until(predicate: Callable[[], bool], what: str, *parts: JournalConsumer | Writer) -> None:
    """Wait for ``predicate``; a part that failed meanwhile fails the wait with its error."""
    wait_until(lambda: predicate() or any(p.failure for p in parts), WAIT, what)
    for part in parts:
        if part.failure is not None:
            raise AssertionError(f"{part.name} failed while waiting for {what}") from part.failure


def count(engine: Engine, sql: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa_text(sql)).scalar() or 0)


def test_the_change_stream_across_a_kill_and_a_drain_of_the_ledger_process(
    ledger_db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    target = f"127.0.0.1:{port}"
    ledger = ledger_service_process(
        ledger_db_url,
        port,
        tmp_path,
        LEDGER_MIGRATE_ON_START="false",  # a migrated copy already
        LEDGER_EXPIRY_INTERVAL_SECONDS="0.2",
    ).start()
    ledger.wait_healthy(target)
    engine = create_db_engine(ledger_db_url, pool_size=1, application_name="e2e-stream")
    api = Connection(target, CachedToken(service_token))
    follower = JournalConsumer(target, "follower")
    rewinder = JournalConsumer(target, "rewinder", rewind=True, seed=18)
    writers = [Writer(target, "w1"), Writer(target, "w2")]
    parts: list[JournalConsumer | Writer] = [follower, rewinder, *writers]
    backlog = [movement(f"tr_backlog_{i}", BANK, (ALICE, BOB)[i % 2], 1) for i in range(BACKLOG)]
    try:
        open_accounts(api)
        api.call("CreateTransfers", pb.CreateTransfersRequest(transfers=backlog), WAIT)
        for part in parts:
            part.start()
        streams_on(follower, RECORDS_BETWEEN_STOPS, "records before the SIGKILL", parts)
        ledger.kill()
        ledger.start()
        ledger.wait_healthy(target)
        streams_on(follower, RECORDS_BETWEEN_STOPS, "records before the SIGTERM", parts)
        assert ledger.terminate() == 0, ledger.logs()[-4000:]
        ledger.start()
        ledger.wait_healthy(target)
        streams_on(follower, 20, "records after the last restart", parts)
        for writer in writers:
            writer.stop()
        wait_until(
            lambda: count(engine, "SELECT count(*) FROM open_holds") == 0, WAIT, "holds to expire"
        )
        head = count(engine, "SELECT sequence FROM journal_head")
        for consumer in (follower, rewinder):
            reaches(consumer, head)
        entries = {a: entries_by_version(api, a) for a in (BANK, ALICE, BOB, TIGHT)}
    finally:
        for part in parts:
            part.stop()
        api.close()
        engine.dispose()
        ledger.terminate()
    for part in parts:
        assert part.failure is None, f"{part.name}: {part.failure!r}"
    assert not {"INTERNAL", "UNKNOWN"} & {c for w in writers for c in w.codes}

    # The follower: each session resumed where the one before left off; together, every
    # record once, in order, no gap.
    sessions = follower.sessions
    received: list[pb.JournalRecord] = []
    for session in sessions:
        assert session.after == (received[-1].sequence if received else 0)
        received += session.records
    assert [r.sequence for r in received] == list(range(1, head + 1))
    # The kill cut the stream, the drain ended it with its reason; while the ledger was
    # down, the reconnects were refused, with backoff between them (without it a consumer
    # makes thousands of calls in the seconds of a restart).
    assert [s.ended for s in sessions if s.records] == [
        "UNAVAILABLE",
        "UNAVAILABLE SERVER_DRAINING",
        "stopped",
    ]
    refused = [s.ended for s in sessions if not s.records]
    assert "UNAVAILABLE" in refused
    assert set(refused) <= {"UNAVAILABLE", "CANCELLED"}, refused
    assert len(refused) < 100, len(refused)

    # Equal to the exported journal, record by record, and the chain verifies.
    export = tmp_path / "journal.jsonl"
    code, out = ledger_cli(
        monkeypatch, capsys, ledger_db_url, "export-journal", "--out", str(export)
    )
    assert code == 0, out
    assert list(exported_records(export)) == [
        (
            r.sequence,
            r.prev_hash.hex(),
            r.hash.hex(),
            r.record_time.ToMicroseconds(),
            r.body,
        )
        for r in received
    ]
    code, out = ledger_cli(monkeypatch, capsys, ledger_db_url, "verify-journal")
    assert (code, out.strip()) == (
        0,
        f"journal verified: head sequence {head} hash {received[-1].hash.hex()}",
    )
    assert first_break((r.sequence, r.prev_hash, r.hash, r.body) for r in received) is None

    # Every transfer sent is one record, and so is each hold's expiry.
    sent = [spec.id for spec in backlog] + [t for writer in writers for t in writer.sent]
    transfer_ids = [r.transfer_id for r in received if r.kind == pb.JOURNAL_RECORD_KIND_TRANSFER]
    assert len(transfer_ids) == len(set(transfer_ids))
    assert set(sent) <= set(transfer_ids)
    holds = [t for t in sent if t.endswith(("_hold", "_sh"))]
    assert len(transfer_ids) == len(sent) + len(holds)
    assert [r.account_id for r in received[:4]] == [BANK, ALICE, BOB, TIGHT]

    # Each record's balances are the balances its entries left.
    by_transfer: dict[str, set[tuple[str, int]]] = {}
    for account_id, account_entries in entries.items():
        for version, entry in account_entries.items():
            by_transfer.setdefault(entry.transfer_id, set()).add((account_id, version))
    for record in received:
        if record.kind == pb.JOURNAL_RECORD_KIND_ACCOUNT_OPENED:
            (opened,) = record.balances
            assert (opened.account_id, opened.version, opened.posted) == (record.account_id, 0, 0)
            continue
        touched = by_transfer.pop(record.transfer_id, set())
        assert record.ok == bool(touched), record.transfer_id
        last_of = {a: max(v for b, v in touched if b == a) for a, _ in touched}
        assert [b.account_id for b in record.balances] == sorted(last_of)
        for balance in record.balances:
            assert balance.version == last_of[balance.account_id]
            assert entries[balance.account_id][balance.version].balance_after == balance
    assert by_transfer == {}  # no entry outside a record

    # The rewinder resumed from older sequences and got the identical suffix each time.
    rewinds = [s for s in rewinder.sessions if s.highest]
    assert all(s.after < s.highest for s in rewinds)
    assert sum(s.ended == "rewound" for s in rewinder.sessions) == REWINDS
    assert sum(s.after > 0 for s in rewinds) >= 3
    for session in rewinder.sessions:
        assert session.records == received[session.after : session.after + len(session.records)]
