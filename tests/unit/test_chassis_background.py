"""Background workers (chassis.background): started in order, stopped in reverse, on time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from chassis.background import Periodic, Workers, stop_within


class Recorder:
    """A worker that notes when it starts and stops (and may hang or fail in stop)."""

    def __init__(
        self, name: str, log: list[str], *, hang: threading.Event | None = None, fail: bool = False
    ) -> None:
        self.name = name
        self._log = log
        self._hang = hang
        self._fail = fail
        self.timeouts: list[float] = []

    def start(self) -> None:
        if self.name == "broken":
            raise RuntimeError("cannot start")
        self._log.append(f"start {self.name}")

    def stop(self, timeout: float) -> None:
        self.timeouts.append(timeout)
        if self._hang is not None:
            self._hang.wait(60)
        if self._fail:
            raise RuntimeError("cannot stop")
        self._log.append(f"stop {self.name}")


def test_workers_start_in_order_and_stop_in_reverse(
    json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    log: list[str] = []
    workers = Workers([Recorder("a", log), Recorder("b", log), Recorder("c", log)])
    workers.start()
    assert workers.stop(time.monotonic() + 30) == []
    assert log == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]
    stopped = [line["worker"] for line in json_logs() if line["event"] == "worker stopped"]
    assert stopped == ["c", "b", "a"]


def test_a_worker_that_fails_to_start_stops_those_started_before_it() -> None:
    log: list[str] = []
    workers = Workers([Recorder("a", log), Recorder("broken", log), Recorder("c", log)])
    with pytest.raises(RuntimeError, match="cannot start"):
        workers.start()
    assert log == ["start a", "stop a"]


def test_a_worker_still_stopping_at_the_deadline_is_left_behind_and_takes_no_ones_time(
    json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    log: list[str] = []
    hang = threading.Event()
    first, stuck, last = Recorder("a", log), Recorder("stuck", log, hang=hang), Recorder("c", log)
    workers = Workers([first, stuck, last])
    workers.start()
    try:
        late = workers.stop(time.monotonic() + 1.5)
    finally:
        hang.set()
    assert late == ["stuck"]
    # Asked in reverse order; the one before the stuck one was asked while it hung.
    assert log[3:] == ["stop c", "stop a"]
    assert first.timeouts[0] > 0
    stopped = [line["worker"] for line in json_logs() if line["event"] == "worker stopped"]
    assert stopped == ["c", "a"]
    warnings = [line for line in json_logs() if line["event"].startswith("worker did not stop")]
    assert [line["worker"] for line in warnings] == ["stuck"]


def test_a_slow_worker_goes_on_stopping_while_the_next_is_asked() -> None:
    log: list[str] = []
    release = threading.Event()

    class Releasing(Recorder):
        def stop(self, timeout: float) -> None:
            release.set()  # "slow" can finish only once this one was asked
            super().stop(timeout)

    slow = Recorder("slow", log, hang=release)
    workers = Workers([Releasing("a", log), slow, Recorder("c", log)])
    workers.start()
    assert workers.stop(time.monotonic() + 4) == []  # "slow" has half of it, then "a" is asked
    assert log[3] == "stop c"
    assert sorted(log[4:]) == ["stop a", "stop slow"]


def test_a_stop_that_raises_is_logged_not_raised(
    json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    worker = Recorder("x", [], fail=True)
    assert stop_within(worker.name, worker.stop, time.monotonic() + 30) == "failed"
    (line,) = [line for line in json_logs() if line["event"] == "failed to stop"]
    assert line["worker"] == "x"


def test_each_stop_is_given_the_time_left() -> None:
    worker = Recorder("a", [])
    assert stop_within(worker.name, worker.stop, time.monotonic() + 30) == "stopped"
    assert 0 < worker.timeouts[0] <= 30


def test_a_periodic_worker_ticks_survives_a_failing_tick_and_stops(
    json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    ticks: list[int] = []
    second = threading.Event()

    def tick() -> None:
        ticks.append(1)
        if len(ticks) == 1:
            raise RuntimeError("database away")
        second.set()

    worker = Periodic("unit-periodic", tick, interval=0.01, at_start=True).start()
    assert second.wait(10)
    worker.stop(10)
    assert not worker.running
    assert len(ticks) >= 2
    (failure,) = [line for line in json_logs() if line["event"].startswith("background work")]
    assert failure["worker"] == "unit-periodic"


def test_a_periodic_worker_stopped_before_its_first_interval_never_ticks() -> None:
    ticks: list[int] = []
    worker = Periodic("unit-lazy", lambda: ticks.append(1), interval=3600).start()
    worker.stop(10)
    assert not worker.running
    assert ticks == []
