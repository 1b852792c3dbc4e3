"""Group commit without shared fate: each caller gets its own outcome, or its own error.

A fake ``execute`` stands in for a database transaction: it "commits" the
requests of a batch to a dict (idempotently, as the real ones must) unless one
of them is poisoned, and can fail after its commit.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from chassis.batching import GroupCommitter
from chassis.kernel.errors import DeadlineExceeded, ErrorCategory


class Book:
    """An idempotent ``execute``: applies each request once, replays it afterwards."""

    def __init__(self, *, poison: frozenset[str] = frozenset()) -> None:
        self.poison = poison
        self.committed: dict[str, int] = {}
        self.batches: list[list[str]] = []
        self.fail_after_commit: set[str] = set()
        self.unavailable = False
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def execute(self, requests: Sequence[str]) -> list[str]:
        self.started.set()
        self.gate.wait(10)
        self.batches.append(list(requests))
        if self.unavailable:
            raise psycopg.OperationalError("connection refused")
        if any(r in self.poison for r in requests):
            raise ValueError("the database refused one row of the batch")
        for request in requests:
            self.committed[request] = self.committed.get(request, 0) + 1
        # Once only: an error while building outcomes, after the commit.
        hit = self.fail_after_commit & set(requests)
        if hit:
            self.fail_after_commit -= hit
            raise RuntimeError("failed after commit")
        return [f"done:{r}" for r in requests]


def committer(book: Book) -> GroupCommitter[str, str]:
    return GroupCommitter(book.execute, max_batch=100, workers=1, name="test-batcher")


def submit_all_at_once(
    gc: GroupCommitter[str, str], book: Book, requests: list[str]
) -> dict[str, str]:
    """Submit every request while the worker is held, so that they form one batch."""
    book.gate.clear()
    answers: dict[str, str] = {}

    def one(request: str) -> None:
        try:
            answers[request] = gc.submit(request, timeout=10)
        except Exception as error:
            answers[request] = f"error:{type(error).__name__}"

    with ThreadPoolExecutor(len(requests) + 1) as pool:
        pool.submit(one, "warmup")  # occupies the worker until the gate opens
        assert book.started.wait(5)
        futures = [pool.submit(one, r) for r in requests]
        while gc._queue.qsize() < len(requests):
            threading.Event().wait(0.001)
        book.gate.set()
        for future in futures:
            future.result()
    return answers


def test_one_poisoned_request_fails_alone_and_every_other_caller_gets_its_outcome() -> None:
    book = Book(poison=frozenset({"r7"}))
    gc = committer(book)
    requests = [f"r{i}" for i in range(20)]
    try:
        answers = submit_all_at_once(gc, book, requests)
    finally:
        gc.close()
    assert book.batches[1] == requests  # they really were grouped, and the group failed
    assert answers == {
        **{r: f"done:{r}" for r in requests if r != "r7"},
        "r7": "error:ValueError",
        "warmup": "done:warmup",
    }
    assert set(book.committed) == {"warmup", *requests} - {"r7"}
    assert set(book.committed.values()) == {1}


def test_an_error_after_the_commit_is_answered_from_the_replay_not_as_an_error() -> None:
    book = Book()
    book.fail_after_commit = {"r3"}
    gc = committer(book)
    requests = [f"r{i}" for i in range(6)]
    try:
        answers = submit_all_at_once(gc, book, requests)
        # A lone request is executed once more too: its error may have come after its commit.
        book.fail_after_commit = {"solo"}
        alone = gc.submit("solo", timeout=10)
    finally:
        gc.close()
    assert answers == {r: f"done:{r}" for r in ["warmup", *requests]}
    assert alone == "done:solo"
    assert book.committed["solo"] == 2  # executed twice; a real execute replays the second


def test_an_unreachable_database_fails_the_whole_batch_at_once() -> None:
    book = Book()
    book.unavailable = True
    gc = committer(book)
    requests = [f"r{i}" for i in range(8)]
    try:
        answers = submit_all_at_once(gc, book, requests)
    finally:
        gc.close()
    assert answers == dict.fromkeys(["warmup", *requests], "error:OperationalError")
    assert book.batches[1] == requests  # executed once, not split
    assert len(book.batches) == 2


def test_a_caller_whose_deadline_passes_before_its_request_started_withdraws_it() -> None:
    book = Book()
    gc = committer(book)
    book.gate.clear()
    try:
        with ThreadPoolExecutor(1) as pool:
            blocker = pool.submit(gc.submit, "blocker", 10)
            assert book.started.wait(5)
            with pytest.raises(DeadlineExceeded) as caught:
                gc.submit("late", timeout=0.05)
            book.gate.set()
            assert blocker.result() == "done:blocker"
        assert gc.submit("after", timeout=10) == "done:after"
    finally:
        gc.close()
    assert caught.value.category is ErrorCategory.DEADLINE_EXCEEDED
    assert caught.value.reason == "DEADLINE_EXCEEDED"
    assert "same id" in caught.value.message
    assert "late" not in book.committed  # withdrawn: it never ran


def test_a_caller_whose_deadline_passes_while_its_request_runs_gets_deadline_exceeded() -> None:
    book = Book()
    gc = committer(book)
    book.gate.clear()
    try:
        with pytest.raises(DeadlineExceeded):
            gc.submit("slow", timeout=0.05)
        book.gate.set()
        # It ran on; the same id afterwards learns the outcome.
        assert gc.submit("slow", timeout=10) == "done:slow"
    finally:
        gc.close()
    assert book.committed["slow"] == 2  # a real execute replays the second time
