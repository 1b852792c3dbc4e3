"""The unit of work's one way of collecting events, and its retry of lost races (no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from chassis.kernel.errors import RetryTransaction
from chassis.kernel.uow import EventSource, TracksAggregates, UnitOfWork, run_in_transaction


@dataclass(eq=False)
class Thing:
    name: str
    events: list[str] = field(default_factory=list)

    def rename(self, name: str) -> None:
        self.events.append(f"{self.name}->{name}")
        self.name = name

    def take_events(self) -> list[str]:
        events, self.events = self.events, []
        return events


class Things(TracksAggregates):
    def __init__(self, stored: dict[str, Thing]) -> None:
        super().__init__()
        self._stored = stored

    def get(self, name: str) -> Thing:
        return self.track(self._stored[name])


class MemoryUnitOfWork(UnitOfWork):
    def __init__(self, stored: dict[str, Thing], log: list[str]) -> None:
        super().__init__(on_commit=lambda events: log.append(f"hook {list(events)}"))
        self._stored = stored
        self.log = log

    def repositories(self) -> Iterable[EventSource]:
        return (self.things,)

    def _begin(self) -> None:
        self.things = Things(self._stored)
        self.log.append("begin")

    def _commit(self, events: Sequence[Any]) -> None:
        self.log.append(f"commit {list(events)}")

    def rollback(self) -> None:
        self.log.append("rollback")


def test_a_commit_writes_the_events_of_every_aggregate_its_repositories_saw_in_order() -> None:
    stored = {"a": Thing("a"), "b": Thing("b")}
    log: list[str] = []
    with MemoryUnitOfWork(stored, log) as uow:
        uow.things.get("b").rename("b2")
        uow.things.get("a").rename("a2")
        uow.things.get("b").rename("b3")  # seen again: tracked once, events in its own order
        uow.commit()
    assert log == [
        "begin",
        "commit ['b->b2', 'b2->b3', 'a->a2']",
        "hook ['b->b2', 'b2->b3', 'a->a2']",
        "rollback",
    ]
    assert uow.committed_events == ["b->b2", "b2->b3", "a->a2"]
    assert stored["a"].events == []
    assert stored["b"].events == []


def test_leaving_without_a_commit_writes_nothing() -> None:
    log: list[str] = []
    with MemoryUnitOfWork({"a": Thing("a")}, log) as uow:
        uow.things.get("a").rename("z")
    assert log == ["begin", "rollback"]
    assert uow.committed_events == []


def test_a_transaction_that_lost_a_race_runs_again_and_other_errors_do_not() -> None:
    log: list[str] = []
    tries: list[int] = []

    def work(uow: MemoryUnitOfWork) -> str:
        tries.append(1)
        if len(tries) < 3:
            raise RetryTransaction("what it read changed")
        return "done"

    assert run_in_transaction(lambda: MemoryUnitOfWork({}, log), work) == "done"
    assert len(tries) == 3
    assert log.count("begin") == 3
    assert log.count("rollback") == 3

    def broken(uow: MemoryUnitOfWork) -> str:
        tries.append(1)
        raise ValueError("not a race")

    tries.clear()
    with pytest.raises(ValueError, match="not a race"):
        run_in_transaction(lambda: MemoryUnitOfWork({}, log), broken)
    assert len(tries) == 1


def test_a_race_lost_every_time_raises_its_own_error_after_the_attempts() -> None:
    def work(uow: MemoryUnitOfWork) -> None:
        raise RetryTransaction("always")

    with pytest.raises(RetryTransaction, match="always"):
        run_in_transaction(lambda: MemoryUnitOfWork({}, []), work, attempts=3)
