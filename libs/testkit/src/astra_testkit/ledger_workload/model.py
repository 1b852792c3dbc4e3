"""What the workload's clients know: every id they sent, every answer they got.

A client cannot see inside the ledger. All it knows is what it asked for and what
came back (or that nothing definite came back: a deadline, a dropped
connection). The checks hold the ledger to exactly that knowledge.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from astra.ledger.v1 import ledger_pb2 as pb

OK = "OK"
# Answers that say nothing about the outcome: the client retries with the same id.
# INTERNAL and UNKNOWN are retried too (a careful client would), and counted as
# defects: the server must answer with the outcome or DEADLINE_EXCEEDED.
UNDECIDED = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "UNKNOWN"})

# The method a request went through; CreateTransfers is the batch.
BATCH = "CreateTransfers"
SINGLE = "CreateTransfer"
FLAT = {"post": "PostPendingTransfer", "void": "VoidPendingTransfer", "reversal": "ReverseTransfer"}


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of a call: its status code, the reason it carried, and when."""

    code: str
    reason: str
    sent_at: float  # time.time()
    answered_at: float
    timeout: float


@dataclass(frozen=True)
class Answer:
    """A definite answer about one transfer id.

    ``code`` is the call's gRPC status ("OK" for a batch, whose items carry
    their own outcome); ``ok`` says whether the transfer was applied.
    """

    ok: bool
    code: str
    reason: str = ""
    replayed: bool = False
    transfer: pb.Transfer | None = None  # the success of a single-transfer call
    result: pb.TransferResult | None = None  # an item of a batch
    at: float = 0.0

    @property
    def kind(self) -> int:
        if self.transfer is not None:
            return int(self.transfer.kind)
        return int(self.result.kind) if self.result is not None else 0

    @property
    def create_time(self) -> tuple[int, int] | None:
        stamp = (
            self.transfer.create_time
            if self.transfer is not None
            else self.result.create_time
            if self.result is not None and self.ok
            else None
        )
        return (stamp.seconds, stamp.nanos) if stamp is not None else None

    def describe(self) -> str:
        if self.ok:
            return f"ok kind={self.kind} at={self.create_time}"
        return f"{self.code}/{self.reason}" + (" (replayed)" if self.replayed else "")


def transfer_content(transfer: pb.Transfer) -> tuple[object, ...]:
    """What a transfer is, as every later answer about it must repeat (status may move on)."""
    return (
        transfer.id,
        int(transfer.kind),
        tuple(
            (leg.account_id, int(leg.direction), leg.amount, leg.currency) for leg in transfer.legs
        ),
        transfer.pending_transfer_id,
        transfer.reversed_transfer_id,
        (transfer.expire_time.seconds, transfer.expire_time.nanos)
        if transfer.HasField("expire_time")
        else None,
        tuple(sorted(transfer.metadata.items())),
        (transfer.create_time.seconds, transfer.create_time.nanos),
    )


def answers_differ(first: Answer, later: Answer) -> str | None:
    """How ``later`` (a replay of the same content) differs from ``first``, if it does."""
    if first.ok != later.ok:
        return f"first {first.describe()}, now {later.describe()}"
    if not first.ok:
        if first.reason != later.reason:
            return f"first {first.describe()}, now {later.describe()}"
        # Both single calls: the status code too (a batch item has none of its own).
        if first.result is None and later.result is None and first.code != later.code:
            return f"first {first.describe()}, now {later.describe()}"
        return None
    if (first.kind, first.create_time) != (later.kind, later.create_time):
        return f"first {first.describe()}, now {later.describe()}"
    if first.transfer is not None and later.transfer is not None:
        a, b = transfer_content(first.transfer), transfer_content(later.transfer)
        if a != b:
            return f"first {a}, now {b}"
    return None


@dataclass
class Op:
    """One transfer id the workload used, with its content and what the client learnt."""

    id: str
    kind: str  # movement, pending, post, void, reversal
    purpose: str  # fund, spend, fx, hold, post_vs_void... (for reports)
    spec: pb.TransferSpec  # the content, in batch form (single calls send the same fields)
    via: str  # the method it was first sent through
    client: int
    target: str = ""  # the pending transfer posted or voided, the transfer reversed
    shortfall: str = ""
    # The target's success had been answered to this client before this was first sent,
    # or the target came earlier in the same batch: the ledger must know it.
    target_known: bool = False
    batch: int = -1  # index in WorkloadLog.batches
    first_timeout: float = 0.0  # the deadline of the first attempt, in seconds
    first_sent_at: float = 0.0
    answer: Answer | None = None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def timeout_ms(self) -> int | None:
        if self.kind != "pending" or not self.spec.pending.HasField("timeout"):
            return None
        timeout = self.spec.pending.timeout
        return timeout.seconds * 1000 + timeout.nanos // 1_000_000


@dataclass(frozen=True)
class Replay:
    """An id sent again after its first answer: with the same content, or on purpose not."""

    id: str
    via: str
    same_content: bool
    answer: Answer
    attempts: tuple[Attempt, ...]


@dataclass(frozen=True)
class AsOfReading:
    """A balance as of a past instant, as answered during the run."""

    account_id: str
    as_of: tuple[int, int]  # Timestamp seconds, nanos
    balance: pb.Balance
    at: float


@dataclass(frozen=True)
class Outage:
    """A crash of the ledger: killed at, serving again at (time.time())."""

    killed_at: float
    healthy_at: float


@dataclass(frozen=True)
class Batch:
    ids: tuple[str, ...]
    linked: tuple[bool, ...]

    def chains(self) -> list[list[str]]:
        """The linked chains of two or more items, in order."""
        chains, current = [], []
        for transfer_id, linked in zip(self.ids, self.linked, strict=True):
            current.append(transfer_id)
            if not linked:
                if len(current) > 1:
                    chains.append(current)
                current = []
        return chains


class WorkloadLog:
    """Everything every client sent and learnt; safe to add to from many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ops: dict[str, Op] = {}
        self.replays: list[Replay] = []
        self.readings: list[AsOfReading] = []
        self.batches: list[Batch] = []
        self.outages: list[Outage] = []
        # Attempts of reads (first sends and replays keep their own).
        self.other_attempts: list[tuple[str, Attempt]] = []
        # Exceptions in the workload's own code: the run proves nothing with any.
        self.errors: list[str] = []

    def add(self, op: Op) -> None:
        with self._lock:
            if op.id in self.ops:
                raise ValueError(f"the workload used {op.id} twice")
            self.ops[op.id] = op

    def add_batch(self, batch: Batch) -> int:
        with self._lock:
            self.batches.append(batch)
            return len(self.batches) - 1

    def add_replay(self, replay: Replay) -> None:
        with self._lock:
            self.replays.append(replay)

    def add_reading(self, reading: AsOfReading) -> None:
        with self._lock:
            self.readings.append(reading)

    def add_attempts(self, what: str, attempts: list[Attempt]) -> None:
        with self._lock:
            self.other_attempts.extend((what, a) for a in attempts)

    def add_outage(self, outage: Outage) -> None:
        with self._lock:
            self.outages.append(outage)

    def set_answer(self, op: Op, answer: Answer | None, attempts: list[Attempt]) -> None:
        with self._lock:
            op.attempts.extend(attempts)
            op.answer = answer

    def add_error(self, error: str) -> None:
        with self._lock:
            self.errors.append(error)

    def answered_ok(self, transfer_id: str) -> bool:
        with self._lock:
            op = self.ops.get(transfer_id)
            return op is not None and op.answer is not None and op.answer.ok

    def every_attempt(self) -> list[tuple[str, Attempt]]:
        with self._lock:
            first = [(op.id, a) for op in self.ops.values() for a in op.attempts]
            replays = [(r.id, a) for r in self.replays for a in r.attempts]
            return first + replays + list(self.other_attempts)
