"""The simulation's kernel: a clock, a seeded scheduler, processes that crash, an event log.

Nothing here reads wall time or unseeded randomness, starts a thread or iterates a
set of strings: one seed gives one run. A task is a plain callable run to its end
(one step of a worker, one client call); concurrency is modelled by the order the
scheduler picks (same-instant tasks in a seeded order) and by interleaving other
due tasks at the points where a real process would wait (before a transaction
begins, while a message is on the network: ``Simulation.interleave``).
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class ProcessCrash(BaseException):
    """A process dies here (a BaseException: ``except Exception`` in the code under test
    must not swallow it, as it cannot swallow a SIGKILL)."""

    def __init__(self, process: str) -> None:
        super().__init__(process)
        self.process = process


class SimClock:
    """The one clock of a run: it moves only when the scheduler runs a later task."""

    def __init__(self, start: datetime = START) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance_to(self, instant: datetime) -> None:
        if instant > self._now:
            self._now = instant


@dataclass(frozen=True)
class Faults:
    """The fault mix of one run, drawn from its seed (probabilities per chance)."""

    network_drop: float
    network_lost_reply: float
    network_duplicate: float
    network_delay: float
    crash_at_commit: float
    interleave: float
    bank_error: float
    bank_lost_answer: float
    bank_return: float
    pubsub_redeliver: float
    pubsub_duplicate: float

    @classmethod
    def draw(cls, rng: random.Random) -> Faults:
        def level(most: float) -> float:
            # A quarter of runs without this fault, the rest anywhere up to ``most``.
            return 0.0 if rng.random() < 0.25 else round(rng.uniform(0, most), 3)

        return cls(
            network_drop=level(0.15),
            network_lost_reply=level(0.15),
            network_duplicate=level(0.1),
            network_delay=level(0.2),
            crash_at_commit=level(0.02),
            interleave=level(0.5),
            bank_error=level(0.2),
            bank_lost_answer=level(0.2),
            bank_return=level(0.2),
            pubsub_redeliver=level(0.3),
            pubsub_duplicate=level(0.2),
        )

    @classmethod
    def none(cls) -> Faults:
        return cls(*(0.0,) * 11)


@dataclass
class Process:
    """A process of the suite: its epoch changes when it crashes, which cancels the tasks it
    had scheduled and invalidates what it held in memory."""

    name: str
    up: bool = True
    epoch: int = 0
    crashes: int = 0
    on_restart: list[Callable[[], None]] = field(default_factory=list)


@dataclass(order=True)
class _Task:
    at: datetime
    order: int
    name: str = field(compare=False)
    process: str = field(compare=False)
    epoch: int = field(compare=False)
    run: Callable[[], None] = field(compare=False)


class Violation(AssertionError):
    """An invariant does not hold."""


class Simulation:
    """Clock, seeded randomness, scheduler, processes and the event log of one run."""

    def __init__(self, seed: int, faults: Faults | None = None) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.faults = faults if faults is not None else Faults.draw(self.rng)
        self.clock = SimClock()
        self.processes: dict[str, Process] = {}
        self._queue: list[_Task] = []
        self._order = 0
        self._depth = 0
        self._running: list[_Task] = []
        self.log: list[str] = []
        self._hash = hashlib.sha256()
        self.violations: list[str] = []
        # Set while a transaction is open anywhere: no interleaving then (one thread).
        self.open_transactions = 0
        self.faults_enabled = True
        self.steps = 0

    # --- the event log ---

    def record(self, line: str) -> None:
        text = f"{self.clock.now().isoformat()} {line}"
        self.log.append(text)
        self._hash.update(text.encode())
        self._hash.update(b"\n")

    def digest(self) -> str:
        return self._hash.hexdigest()

    def violation(self, what: str) -> None:
        self.record(f"VIOLATION {what}")
        self.violations.append(what)

    # --- chance ---

    def chance(self, probability: float) -> bool:
        """True with ``probability``, while faults are on (the final drain runs without)."""
        return self.faults_enabled and probability > 0 and self.rng.random() < probability

    # --- processes ---

    def process(self, name: str) -> Process:
        return self.processes.setdefault(name, Process(name))

    def crash(self, name: str) -> None:
        """``name`` dies now: its scheduled tasks are void; it restarts a little later."""
        process = self.process(name)
        if not process.up:
            return
        process.up = False
        process.epoch += 1
        process.crashes += 1
        self.record(f"crash {name}")

        def restart() -> None:
            process.up = True
            process.epoch += 1
            self.record(f"restart {name}")
            for start in process.on_restart:
                start()

        self.after(self.rng.uniform(0.05, 2.0), f"restart {name}", "supervisor", restart)

    def maybe_crash(self, name: str) -> None:
        if self.chance(self.faults.crash_at_commit):
            raise ProcessCrash(name)

    # --- scheduling ---

    def after(self, seconds: float, name: str, process: str, run: Callable[[], None]) -> None:
        """Run ``run`` as ``process`` ``seconds`` from now (rounded to the millisecond)."""
        at = self.clock.now() + timedelta(milliseconds=round(max(seconds, 0.0) * 1000))
        epoch = self.process(process).epoch
        self._order += 1
        # Same-instant tasks run in a seeded order, not in the order they were scheduled.
        order = self.rng.randrange(1 << 30) if self.faults.interleave else self._order
        heapq.heappush(
            self._queue, _Task(at, order * 1_000_000 + self._order, name, process, epoch, run)
        )

    def every(
        self, period: float, name: str, process: str, run: Callable[[], None], jitter: float = 0.5
    ) -> None:
        """A worker's loop: ``run`` again and again while its process lives; restarted with it."""

        def loop(epoch: int) -> None:
            if self.process(process).epoch != epoch:
                return
            try:
                run()
            finally:
                if self.process(process).epoch == epoch:
                    self.after(
                        period * self.rng.uniform(1 - jitter, 1 + jitter),
                        name,
                        process,
                        lambda: loop(epoch),
                    )

        def start() -> None:
            epoch = self.process(process).epoch
            self.after(period * self.rng.random(), name, process, lambda: loop(epoch))

        self.process(process).on_restart.append(start)
        start()

    def pending(self) -> int:
        return len(self._queue)

    def run_until(self, deadline: datetime, stop: Callable[[], bool] = lambda: False) -> None:
        count = 0
        while self._queue and self._queue[0].at <= deadline:
            count += 1
            if count % 50 == 0 and stop():
                return
            self._run(heapq.heappop(self._queue))
        self.clock.advance_to(deadline)

    def jump(self, instant: datetime) -> None:
        """Nothing happens until ``instant`` (a quiet night): what was due before runs then."""
        for task in self._queue:
            if task.at < instant:
                task.at = instant
        heapq.heapify(self._queue)
        self.clock.advance_to(instant)

    def _run(self, task: _Task) -> None:
        process = self.process(task.process)
        if task.process != "supervisor" and (not process.up or process.epoch != task.epoch):
            return
        self.clock.advance_to(task.at)
        self.steps += 1
        self.record(f"run {task.process}: {task.name}")
        self._running.append(task)
        try:
            task.run()
        except ProcessCrash as crash:
            self.crash(crash.process)
            if crash.process != task.process:
                # A task's own process survives a crash of the process it called into only
                # if the call boundary turned it into an error; reaching here means it did not.
                self.violation(f"crash of {crash.process} escaped into {task.name}")
        finally:
            self._running.pop()

    def interleave(self) -> None:
        """Where a real process would wait: maybe run other tasks due now first (one level)."""
        if self._depth or self.open_transactions or not self.chance(self.faults.interleave):
            return
        outer = self._running[-1] if self._running else None
        self._depth += 1
        try:
            for _ in range(self.rng.randint(1, 3)):
                if not self._queue or self._queue[0].at > self.clock.now():
                    break
                self._run(heapq.heappop(self._queue))
        finally:
            self._depth -= 1
        if outer is not None and outer.process != "supervisor":
            process = self.process(outer.process)
            if not process.up or process.epoch != outer.epoch:
                # The process this task runs in died meanwhile: so does the task.
                raise ProcessCrash(outer.process)
