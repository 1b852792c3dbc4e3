"""Concurrent clients doing what a bank does to its ledger, as real clients do it.

Every client thread has its own connection and its own random stream (from the
run's seed), and loops until the run's time is up over: single transfers (funding,
spending, peer to peer, FX with four legs, lending and repaying a loan limited
the other way), holds posted or voided the instant they exist or while they are
still being created, holds left to expire, reversals of transfers still
committing (with and without a shortfall account), linked batches, replays of
its own ids (same content; and other content under the same id on purpose),
first attempts under deadlines of a few milliseconds, and balances as of an
instant just past. An id whose answer is not definite (UNAVAILABLE,
DEADLINE_EXCEEDED, and INTERNAL or UNKNOWN, which are defects) is sent again
with the same content until it is, as a careful client would. A chaos hook
runs meanwhile (a ``kill -9`` and restart of the ledger, in the end-to-end test).

The seed fixes each client's plan (what it sends, with what content, under
which deadline); the interleaving of concurrent clients, and so the ledger's
answers, are not fixed, and the checks hold for any of them.
"""

from __future__ import annotations

import os
import random
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from astra.ledger.v1 import ledger_pb2 as pb
from astra.ledger.v1.ledger_pb2_grpc import LedgerServiceStub
from chassis.grpc.status import error_info
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from astra_testkit.ledger_workload.chart import AccountDef, Chart
from astra_testkit.ledger_workload.model import (
    BATCH,
    FLAT,
    OK,
    SINGLE,
    UNDECIDED,
    Answer,
    AsOfReading,
    Attempt,
    Batch,
    Op,
    Outage,
    Replay,
    WorkloadLog,
)
from astra_testkit.tls import tls_channel

DEBIT = pb.DIRECTION_DEBIT
CREDIT = pb.DIRECTION_CREDIT
# The deadline of every call but the tight first attempts.
NORMAL_TIMEOUT = 15.0
# First attempts under these deadlines (seconds) often expire inside the group commit.
TIGHT_TIMEOUTS = (0.002, 0.005, 0.01, 0.02, 0.04)
# How long a client keeps retrying one id before it gives up (the check then fails).
RESOLVE_BUDGET = 120.0
# Reconnect quickly after a restart: gRPC's default backoff starts at a second.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
    # Each client its own connection, as separate client processes would have.
    ("grpc.use_local_subchannel_pool", 1),
]

T = TypeVar("T")


@dataclass(frozen=True)
class WorkloadConfig:
    """Size and seed of a run; each from ``ASTRA_WORKLOAD_<NAME>`` when set."""

    seed: int = 20261204
    clients: int = 16
    seconds: float = 20.0
    kills: int = 1
    # The share of first attempts sent under a deadline of a few milliseconds.
    tight_share: float = 0.15

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> WorkloadConfig:
        def get(name: str, default: T, cast: Callable[[str], T]) -> T:
            raw = environ.get(f"ASTRA_WORKLOAD_{name.upper()}")
            return cast(raw) if raw else default

        base = cls()
        return cls(
            seed=get("seed", base.seed, int),
            clients=get("clients", base.clients, int),
            seconds=get("seconds", base.seconds, float),
            kills=get("kills", base.kills, int),
            tight_share=get("tight_share", base.tight_share, float),
        )

    def describe(self) -> str:
        return (
            f"bank workload: seed={self.seed} clients={self.clients} seconds={self.seconds} "
            f"kills={self.kills} tight_share={self.tight_share} "
            f"(replay with ASTRA_WORKLOAD_SEED={self.seed})"
        )


class CachedToken:
    """A bearer token reused for a while, as a client library would (not minted per call)."""

    def __init__(self, source: Callable[[], str], refresh_seconds: float = 60.0) -> None:
        self._source = source
        self._refresh = refresh_seconds
        self._lock = threading.Lock()
        self._token = ""
        self._minted = 0.0

    def __call__(self) -> str:
        with self._lock:
            if not self._token or time.monotonic() - self._minted > self._refresh:
                self._token, self._minted = self._source(), time.monotonic()
            return self._token


class Connection:
    """One client's channel; calls wait for the channel within their deadline."""

    def __init__(self, target: str, token: Callable[[], str]) -> None:
        self.channel = tls_channel(target, options=list(CHANNEL_OPTIONS))
        self.stub = LedgerServiceStub(self.channel)
        self._token = token

    def call(self, method: str, request: Message, timeout: float) -> Any:
        return getattr(self.stub, method)(
            request,
            timeout=timeout,
            metadata=(("authorization", f"Bearer {self._token()}"),),
            wait_for_ready=True,
        )

    def close(self) -> None:
        self.channel.close()


def call_until_answered(
    connection: Connection,
    method: str,
    request: Message,
    first_timeout: float,
    rng: random.Random,
) -> tuple[Any, grpc.RpcError | None, list[Attempt]]:
    """Call until the answer is definite; the response or the definite error, and each try."""
    attempts: list[Attempt] = []
    timeout = first_timeout
    give_up = time.monotonic() + RESOLVE_BUDGET
    backoff = 0.02
    while True:
        sent = time.time()
        try:
            response = connection.call(method, request, timeout)
        except grpc.RpcError as error:
            code = error.code().name
            info = error_info(error)
            attempts.append(Attempt(code, info.reason if info else "", sent, time.time(), timeout))
            if code in UNDECIDED and time.monotonic() < give_up:
                time.sleep(rng.uniform(0, backoff))
                backoff = min(backoff * 2, 0.5)
                timeout = NORMAL_TIMEOUT
                continue
            return None, error, attempts
        attempts.append(Attempt(OK, "", sent, time.time(), timeout))
        return response, None, attempts


def _refusal(error: grpc.RpcError) -> Answer:
    info = error_info(error)
    return Answer(
        ok=False,
        code=error.code().name,
        reason=info.reason if info else "",
        replayed=bool(info is not None and info.metadata.get("replayed") == "true"),
        at=time.time(),
    )


def single_answer(response: Any, error: grpc.RpcError | None) -> Answer | None:
    """The answer of a single-transfer call; None when it never became definite."""
    if error is None:
        return Answer(ok=True, code=OK, transfer=response.transfer, at=time.time())
    if error.code().name in UNDECIDED:
        return None
    return _refusal(error)


def batch_answers(response: Any, error: grpc.RpcError | None, size: int) -> list[Answer | None]:
    if error is None:
        now = time.time()
        return [
            Answer(ok=r.ok, code=OK, reason=r.reason, replayed=r.replayed, result=r, at=now)
            for r in response.results
        ]
    if error.code().name in UNDECIDED:
        return [None] * size
    refusal = _refusal(error)
    return [refusal] * size


def request_for(method: str, spec: pb.TransferSpec) -> Message:
    """The request that sends ``spec`` through ``method`` (a batch gets it alone)."""
    alone = pb.TransferSpec()
    alone.CopyFrom(spec)
    alone.linked = False
    if method == BATCH:
        return pb.CreateTransfersRequest(transfers=[alone])
    if method == SINGLE:
        return pb.CreateTransferRequest(transfer=alone)
    metadata = dict(spec.metadata)
    if method == FLAT["post"]:
        return pb.PostPendingTransferRequest(
            transfer_id=spec.id,
            pending_transfer_id=spec.post_pending.pending_transfer_id,
            legs=spec.post_pending.legs,
            metadata=metadata,
        )
    if method == FLAT["void"]:
        return pb.VoidPendingTransferRequest(
            transfer_id=spec.id,
            pending_transfer_id=spec.void_pending.pending_transfer_id,
            metadata=metadata,
        )
    if method == FLAT["reversal"]:
        return pb.ReverseTransferRequest(
            transfer_id=spec.id,
            reversed_transfer_id=spec.reversal.transfer_id,
            shortfall_account_id=spec.reversal.shortfall_account_id,
            metadata=metadata,
        )
    raise ValueError(method)


def leg(account: AccountDef, direction: pb.Direction.ValueType, amount: int) -> pb.Leg:
    return pb.Leg(
        account_id=account.id, direction=direction, amount=amount, currency=account.currency
    )


def swapped(legs: Sequence[pb.Leg]) -> list[pb.Leg]:
    return [
        pb.Leg(
            account_id=x.account_id,
            direction=CREDIT if x.direction == DEBIT else DEBIT,
            amount=x.amount,
            currency=x.currency,
        )
        for x in legs
    ]


def open_accounts(target: str, token: Callable[[], str], chart: Chart) -> None:
    connection = Connection(target, token)
    try:
        for account in chart.accounts:
            connection.call(
                "OpenAccount", pb.OpenAccountRequest(account=account.to_pb()), NORMAL_TIMEOUT
            )
    finally:
        connection.close()


def _weighted(rng: random.Random, table: Sequence[tuple[str, float]]) -> str:
    return rng.choices([name for name, _ in table], weights=[w for _, w in table])[0]


ACTIONS = (
    ("transfer", 22.0),
    ("reverse_while_committing", 7.0),
    ("double_reverse", 3.0),
    ("hold", 24.0),
    ("batch", 10.0),
    ("replay", 14.0),
    ("reuse_key", 4.0),
    ("as_of", 8.0),
)
MOVEMENTS = (
    ("fund", 3.0),
    ("spend", 4.0),
    ("p2p", 2.0),
    ("refund", 1.0),
    ("fx", 1.5),
    ("lend", 1.0),
    ("repay", 1.2),
)
HOLD_FOLLOW_UPS = (
    ("post_now", 25.0),
    ("partial_now", 12.0),
    ("void_now", 12.0),
    ("post_while_creating", 12.0),
    ("void_while_creating", 6.0),
    ("post_vs_void", 10.0),
    ("post_later", 8.0),
    ("leave", 15.0),
)
CURRENCY_WEIGHTS = {"EUR": 6.0, "USD": 3.0, "JPY": 1.0}


class Client:
    def __init__(
        self,
        number: int,
        config: WorkloadConfig,
        chart: Chart,
        log: WorkloadLog,
        connection: Connection,
        end: float,
    ) -> None:
        self.number = number
        self.config = config
        self.chart = chart
        self.log = log
        self.connection = connection
        self.end = end
        self.rng = random.Random(f"{config.seed}/{number}")
        # Retry backoff only: drawn from whichever thread retries.
        self.jitter = random.Random(f"{config.seed}/{number}/jitter")
        self._count = 0
        # This client's ids with a definite answer, for replays.
        self.finished: list[Op] = []
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"client{number}")

    # --- the loop -----------------------------------------------------------------

    def run(self) -> None:
        try:
            while time.monotonic() < self.end:
                getattr(self, _weighted(self.rng, ACTIONS))()
        except Exception:
            self.log.add_error(f"client {self.number}: {traceback.format_exc()}")
        finally:
            self._pool.shutdown(wait=True)

    # --- ids, content, sending ----------------------------------------------------

    def new_id(self, tag: str) -> str:
        self._count += 1
        return f"tr_c{self.number}_{self._count}_{tag}"

    def metadata(self, purpose: str) -> dict[str, str]:
        return {"client": str(self.number), "purpose": purpose} if self.rng.random() < 0.5 else {}

    def op(
        self,
        kind: str,
        purpose: str,
        spec: pb.TransferSpec,
        via: str,
        *,
        target: str = "",
        shortfall: str = "",
    ) -> Op:
        return Op(
            id=spec.id,
            kind=kind,
            purpose=purpose,
            spec=spec,
            via=via,
            client=self.number,
            target=target,
            shortfall=shortfall,
            first_timeout=self.first_timeout(),
        )

    def first_timeout(self) -> float:
        if self.rng.random() < self.config.tight_share:
            return self.rng.choice(TIGHT_TIMEOUTS)
        return NORMAL_TIMEOUT

    def send(self, op: Op) -> Answer | None:
        """First send of ``op`` (retried until definite); its answer, recorded.

        May run on the client's second thread: it draws nothing from the client's
        random stream but retry jitter, so the seed still fixes the client's plan.
        """
        self.log.add(op)
        if op.target:
            op.target_known = self.log.answered_ok(op.target)
        op.first_sent_at = time.time()
        response, error, attempts = call_until_answered(
            self.connection, op.via, request_for(op.via, op.spec), op.first_timeout, self.jitter
        )
        answer = (
            batch_answers(response, error, 1)[0]
            if op.via == BATCH
            else single_answer(response, error)
        )
        self.log.set_answer(op, answer, attempts)
        if answer is not None:
            self.finished.append(op)
        return answer

    def send_batch(self, ops: list[Op], known_in_batch: set[str]) -> list[Answer | None]:
        index = self.log.add_batch(
            Batch(tuple(o.id for o in ops), tuple(o.spec.linked for o in ops))
        )
        for op in ops:
            op.batch = index
            self.log.add(op)
            if op.target:
                op.target_known = op.target in known_in_batch or self.log.answered_ok(op.target)
            op.first_sent_at = time.time()
        request = pb.CreateTransfersRequest(transfers=[o.spec for o in ops])
        response, error, attempts = call_until_answered(
            self.connection, BATCH, request, ops[0].first_timeout, self.jitter
        )
        answers = batch_answers(response, error, len(ops))
        for i, (op, answer) in enumerate(zip(ops, answers, strict=True)):
            # The call's attempts are counted once, on its first item.
            self.log.set_answer(op, answer, attempts if i == 0 else [])
            if answer is not None:
                self.finished.append(op)
        return answers

    def together(self, *calls: Callable[[], T]) -> list[T]:
        """Run calls at once (the first from another thread), so their requests race."""
        futures = [self._pool.submit(call) for call in calls[1:]]
        if self.rng.random() < 0.5:
            time.sleep(self.rng.uniform(0, 0.002))
        first = calls[0]()
        return [first, *(f.result() for f in futures)]

    # --- what money does ------------------------------------------------------------

    def currency(self, *allowed: str) -> str:
        names = list(allowed or CURRENCY_WEIGHTS)
        return self.rng.choices(names, weights=[CURRENCY_WEIGHTS[n] for n in names])[0]

    def wallet(self, currency: str) -> AccountDef:
        return self.rng.choice(self.chart.of(currency, "wallet"))

    def amount(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def movement(self, purpose: str | None = None) -> tuple[str, list[pb.Leg]]:
        purpose = purpose or _weighted(self.rng, MOVEMENTS)
        chart = self.chart
        if purpose == "fx":
            eur, usd = chart.one("EUR", "fx"), chart.one("USD", "fx")
            eur_wallet, usd_wallet = self.wallet("EUR"), self.wallet("USD")
            paid = self.amount(100, 1500)
            if self.rng.random() < 0.5:
                got = paid * 108 // 100
                return purpose, [
                    leg(eur_wallet, DEBIT, paid),
                    leg(eur, CREDIT, paid),
                    leg(usd, DEBIT, got),
                    leg(usd_wallet, CREDIT, got),
                ]
            got = paid * 92 // 100
            return purpose, [
                leg(usd_wallet, DEBIT, paid),
                leg(usd, CREDIT, paid),
                leg(eur, DEBIT, got),
                leg(eur_wallet, CREDIT, got),
            ]
        if purpose in ("lend", "repay"):
            currency = self.currency("EUR", "USD")
            loan, wallet = chart.one(currency, "loan"), self.wallet(currency)
            if purpose == "lend":
                amount = self.amount(500, 3000)
                return purpose, [leg(loan, DEBIT, amount), leg(wallet, CREDIT, amount)]
            amount = self.amount(200, 4000)
            return purpose, [leg(wallet, DEBIT, amount), leg(loan, CREDIT, amount)]
        currency = self.currency()
        wallet = self.wallet(currency)
        if purpose == "fund":
            amount = self.amount(500, 4000)
            reserve = chart.one(currency, "reserve")
            return purpose, [leg(reserve, DEBIT, amount), leg(wallet, CREDIT, amount)]
        if purpose == "refund":
            amount = self.amount(50, 1000)
            merchant = chart.one(currency, "merchant")
            return purpose, [leg(merchant, DEBIT, amount), leg(wallet, CREDIT, amount)]
        others = [w for w in chart.of(currency, "wallet") if w.id != wallet.id]
        amount = self.amount(100, 3000)
        if purpose == "p2p" and others:
            return purpose, [
                leg(wallet, DEBIT, amount),
                leg(self.rng.choice(others), CREDIT, amount),
            ]
        merchant = chart.one(currency, "merchant")
        return "spend", [leg(wallet, DEBIT, amount), leg(merchant, CREDIT, amount)]

    def shortfall_for(self, legs: Sequence[pb.Leg]) -> str:
        """The receivable that can take a reversal's shortfall, when one currency can spill.

        A reversing leg spills only where a limited account takes it in its limited
        direction; a shortfall account in another currency would not match it.
        """
        reversing = swapped(legs)
        spilling = {
            x.currency
            for x in reversing
            if (x.direction == DEBIT and self.chart.get(x.account_id).no_overdraft)
            or (x.direction == CREDIT and self.chart.get(x.account_id).no_excess_credit)
        }
        if len(spilling) > 1:
            return ""
        currency = next(iter(spilling), reversing[0].currency)
        return self.chart.one(currency, "receivable").id

    def movement_op(self, via: str = SINGLE, purpose: str | None = None) -> Op:
        purpose, legs = self.movement(purpose)
        spec = pb.TransferSpec(
            id=self.new_id("mv"), movement=pb.Movement(legs=legs), metadata=self.metadata(purpose)
        )
        return self.op("movement", purpose, spec, via)

    def reversal_op(
        self, original: Op, via: str | None = None, *, shortfall: bool | None = None
    ) -> Op:
        legs = original.spec.movement.legs or original.spec.post_pending.legs
        if original.kind == "post" and not legs:
            legs = self.log.ops[original.target].spec.pending.legs
        use_shortfall = self.rng.random() < 0.5 if shortfall is None else shortfall
        account = self.shortfall_for(legs) if use_shortfall else ""
        spec = pb.TransferSpec(
            id=self.new_id("rev"),
            reversal=pb.Reversal(transfer_id=original.id, shortfall_account_id=account),
            metadata=self.metadata("reversal"),
        )
        if via is None:
            via = FLAT["reversal"] if self.rng.random() < 0.7 else SINGLE
        return self.op("reversal", "reversal", spec, via, target=original.id, shortfall=account)

    def resolution_op(
        self, kind: str, hold: Op, via: str | None = None, *, partial: bool = False
    ) -> Op:
        pending_legs = hold.spec.pending.legs
        if kind == "post":
            legs: list[pb.Leg] = []
            if partial and len(pending_legs) == 2 and pending_legs[0].amount > 1:
                part = self.amount(1, pending_legs[0].amount - 1)
                legs = [
                    pb.Leg(
                        account_id=x.account_id,
                        direction=x.direction,
                        amount=part,
                        currency=x.currency,
                    )
                    for x in pending_legs
                ]
            spec = pb.TransferSpec(
                id=self.new_id("post"),
                post_pending=pb.PostPending(pending_transfer_id=hold.id, legs=legs),
                metadata=self.metadata("post"),
            )
        else:
            spec = pb.TransferSpec(
                id=self.new_id("void"),
                void_pending=pb.VoidPending(pending_transfer_id=hold.id),
                metadata=self.metadata("void"),
            )
        if via is None:
            via = FLAT[kind] if self.rng.random() < 0.7 else SINGLE
        return self.op(kind, kind, spec, via, target=hold.id)

    def hold_op(self, via: str = SINGLE, *, timed: bool | None = None) -> Op:
        purpose = _weighted(self.rng, (("spend", 6.0), ("repay", 1.5), ("fx", 1.0), ("p2p", 1.5)))
        purpose, legs = self.movement(purpose)
        pending = pb.PendingMovement(legs=legs)
        if self.rng.random() < 0.5 if timed is None else timed:
            seconds, millis = divmod(self.amount(250, 1500), 1000)
            pending.timeout.CopyFrom(Duration(seconds=seconds, nanos=millis * 1_000_000))
        spec = pb.TransferSpec(
            id=self.new_id("hold"), pending=pending, metadata=self.metadata("hold")
        )
        return self.op("pending", f"hold_{purpose}", spec, via)

    # --- actions --------------------------------------------------------------------

    def transfer(self) -> None:
        original = self.movement_op()
        answer = self.send(original)
        if answer is not None and answer.ok and self.rng.random() < 0.3:
            self.send(self.reversal_op(original))

    def crossed(self) -> tuple[str, str | None]:
        """Methods for a transfer and one naming it, sent at once: one a batch of its own,
        the other a single call. Single calls share the group commit's worker; a batch runs
        beside it, so the two really race."""
        if self.rng.random() < 0.5:
            return BATCH, None
        return SINGLE, BATCH

    def reverse_while_committing(self) -> None:
        first, second = self.crossed()
        original = self.movement_op(first)
        reversal = self.reversal_op(original, second)
        if self.rng.random() < 0.5:
            self.together(lambda: self.send(original), lambda: self.send(reversal))
        else:
            self.together(lambda: self.send(reversal), lambda: self.send(original))

    def double_reverse(self) -> None:
        original = self.movement_op()
        answer = self.send(original)
        if answer is None or not answer.ok:
            return
        first, second = self.reversal_op(original, BATCH), self.reversal_op(original)
        self.together(lambda: self.send(first), lambda: self.send(second))

    def hold(self) -> None:
        mode = _weighted(self.rng, HOLD_FOLLOW_UPS)
        if mode in ("post_while_creating", "void_while_creating"):
            first, second = self.crossed()
            hold = self.hold_op(first)
            kind = "post" if mode == "post_while_creating" else "void"
            follow = self.resolution_op(kind, hold, second, partial=self.rng.random() < 0.3)
            calls = [lambda: self.send(hold), lambda: self.send(follow)]
            if self.rng.random() < 0.5:
                calls.reverse()
            self.together(*calls)
            return
        hold = self.hold_op()
        answer = self.send(hold)
        if answer is None:
            return
        if not answer.ok:
            if self.rng.random() < 0.2:  # a post of a refused hold finds nothing
                self.send(self.resolution_op("post", hold))
            return
        if mode in ("post_now", "partial_now"):
            post = self.resolution_op("post", hold, partial=mode == "partial_now")
            posted = self.send(post)
            if posted is not None and posted.ok and self.rng.random() < 0.2:
                self.send(self.reversal_op(post))
        elif mode == "void_now":
            self.send(self.resolution_op("void", hold))
        elif mode == "post_vs_void":
            first, second = self.crossed()
            post = self.resolution_op("post", hold, first)
            void = self.resolution_op("void", hold, second)
            self.together(lambda: self.send(post), lambda: self.send(void))
        elif mode == "post_later":
            time.sleep(self.rng.uniform(0.1, 1.6))
            self.send(self.resolution_op("post", hold))

    def batch(self) -> None:
        """A CreateTransfers call of linked chains and single items, some naming earlier ones."""
        ops: list[Op] = []
        known: set[str] = set()
        size = self.rng.randint(2, 7)
        while len(ops) < size:
            shape = _weighted(
                self.rng,
                (
                    ("chain", 4.0),
                    ("single", 3.0),
                    ("hold_then_post", 2.0),
                    ("hold_post_chain", 1.0),
                    ("move_then_reverse", 2.0),
                    ("timed_hold", 1.0),
                ),
            )
            if shape == "chain":
                chain = [self.movement_op(BATCH) for _ in range(self.rng.randint(2, 4))]
                for member in chain[:-1]:
                    member.spec.linked = True
                ops += chain
            elif shape == "single":
                ops.append(self.movement_op(BATCH))
            elif shape in ("hold_then_post", "hold_post_chain"):
                hold = self.hold_op(BATCH, timed=False)
                kind = "post" if self.rng.random() < 0.75 else "void"
                follow = self.resolution_op(kind, hold, BATCH, partial=self.rng.random() < 0.3)
                hold.spec.linked = shape == "hold_post_chain"
                known.add(hold.id)
                ops += [hold, follow]
            elif shape == "move_then_reverse":
                original = self.movement_op(BATCH)
                known.add(original.id)
                ops += [original, self.reversal_op(original, BATCH)]
            else:
                ops.append(self.hold_op(BATCH, timed=True))
        self.send_batch(ops, known)

    def replayable(self) -> Op | None:
        candidates = [o for o in self.finished if o.answer is not None]
        return self.rng.choice(candidates) if candidates else None

    def replay(self) -> None:
        """Send an answered id again with the same content: the first answer, again."""
        op = self.replayable()
        if op is None:
            return
        if op.batch >= 0 and self.rng.random() < 0.4:
            batch = self.log.batches[op.batch]
            specs = [self.log.ops[i].spec for i in batch.ids]
            response, error, attempts = call_until_answered(
                self.connection,
                BATCH,
                pb.CreateTransfersRequest(transfers=specs),
                self.first_timeout(),
                self.jitter,
            )
            answers = batch_answers(response, error, len(specs))
            for i, (transfer_id, answer) in enumerate(zip(batch.ids, answers, strict=True)):
                if answer is not None:
                    self.log.add_replay(
                        Replay(transfer_id, BATCH, True, answer, tuple(attempts) if i == 0 else ())
                    )
            return
        via = op.via
        if self.rng.random() < 0.3:  # the same content through another door
            via = (
                (FLAT.get(op.kind, SINGLE) if self.rng.random() < 0.5 else SINGLE)
                if via == BATCH
                else BATCH
            )
        self._replay(op, op.spec, via, same_content=True)

    def reuse_key(self) -> None:
        """Send an answered id with other content: refused as IDEMPOTENCY_KEY_REUSED."""
        op = self.replayable()
        if op is None:
            return
        altered = pb.TransferSpec()
        altered.CopyFrom(op.spec)
        altered.metadata["altered"] = str(self.rng.randint(1, 10**6))
        via = op.via if self.rng.random() < 0.7 else BATCH
        self._replay(op, altered, via, same_content=False)

    def _replay(self, op: Op, spec: pb.TransferSpec, via: str, *, same_content: bool) -> None:
        response, error, attempts = call_until_answered(
            self.connection, via, request_for(via, spec), self.first_timeout(), self.jitter
        )
        answer = (
            batch_answers(response, error, 1)[0] if via == BATCH else single_answer(response, error)
        )
        if answer is not None:
            self.log.add_replay(Replay(op.id, via, same_content, answer, tuple(attempts)))
        else:
            self.log.add_attempts(f"replay {op.id}", attempts)

    def as_of(self) -> None:
        read_as_of(self.connection, self.chart, self.log, self.rng)


HOT_ROLES = ("wallet", "merchant", "loan")


def read_as_of(connection: Connection, chart: Chart, log: WorkloadLog, rng: random.Random) -> None:
    """A hot account's balance as of an instant a few milliseconds ago, kept for later."""
    account = rng.choice([a for a in chart.accounts if a.role in HOT_ROLES])
    instant = time.time() - rng.uniform(0, 0.004)
    stamp = Timestamp(seconds=int(instant), nanos=int((instant % 1) * 1e6) * 1000)
    request = pb.GetBalanceRequest(account_id=account.id, as_of=stamp)
    response, error, attempts = call_until_answered(
        connection, "GetBalance", request, NORMAL_TIMEOUT, rng
    )
    log.add_attempts(f"GetBalance {account.id}", attempts)
    if error is None:
        log.add_reading(
            AsOfReading(account.id, (stamp.seconds, stamp.nanos), response.balance, time.time())
        )


def run_workload(
    target: str,
    token: Callable[[], str],
    chart: Chart,
    config: WorkloadConfig,
    crash: Callable[[], Outage] | None = None,
) -> WorkloadLog:
    """Run the clients for ``config.seconds`` (each then finishes what it started).

    ``crash`` is called ``config.kills`` times, evenly spread over the run; it
    returns when the ledger serves again.
    """
    log = WorkloadLog()
    start = time.monotonic()
    end = start + config.seconds
    connections = [Connection(target, token) for _ in range(config.clients + 1)]
    clients = [Client(n, config, chart, log, connections[n], end) for n in range(config.clients)]
    threads = [threading.Thread(target=c.run, name=f"client-{c.number}") for c in clients]

    def audit() -> None:
        """As-of readings all along, on top of the clients' own."""
        rng = random.Random(f"{config.seed}/auditor")
        try:
            while time.monotonic() < end:
                read_as_of(connections[-1], chart, log, rng)
                time.sleep(0.01)
        except Exception:
            log.add_error(f"auditor: {traceback.format_exc()}")

    def chaos() -> None:
        try:
            for i in range(config.kills):
                time.sleep(
                    max(
                        0.0,
                        start + config.seconds * (i + 1) / (config.kills + 1) - time.monotonic(),
                    )
                )
                assert crash is not None
                log.add_outage(crash())
        except Exception:
            log.add_error(f"chaos: {traceback.format_exc()}")

    threads.append(threading.Thread(target=audit, name="auditor"))
    if crash is not None and config.kills:
        threads.append(threading.Thread(target=chaos, name="chaos"))
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join(config.seconds + RESOLVE_BUDGET + 60)
            if thread.is_alive():
                log.add_error(f"{thread.name} did not finish")
    finally:
        for connection in connections:
            connection.close()
    return log
