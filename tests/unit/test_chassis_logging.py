"""Secrets never reach the log in clear."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import structlog
from chassis.logging import REDACTED, configure_logging, redact_text


def test_secret_keys_and_token_shapes_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("test", "INFO")
    token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJjbGllbnQifQ.c2lnbmF0dXJlLXZhbHVl"
    structlog.get_logger("t").info(
        "calling",
        client_secret="hunter2",
        headers={"authorization": f"Bearer {token}", "x-request-id": "r1"},
        note=f"got {token}",
    )
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    text = json.dumps(line)
    assert "hunter2" not in text
    assert token not in text
    assert line["client_secret"] == REDACTED
    assert line["headers"]["authorization"] == REDACTED
    assert line["headers"]["x-request-id"] == "r1"
    assert line["service"] == "test"


def test_bearer_tokens_in_free_text() -> None:
    assert "abc.def" not in redact_text("Authorization: Bearer abc.def")


# Half the threads log through structlog, half through the standard library (as
# grpc, SQLAlchemy, the Pub/Sub client and uvicorn do); both reach one stdout.
_HAMMER = """
import logging, sys, threading, structlog
from chassis.logging import configure_logging

configure_logging("hammer", "INFO")
threads, lines = int(sys.argv[1]), int(sys.argv[2])
padding = "x" * 300

def ours(index):
    log = structlog.get_logger("ours")
    for number in range(lines):
        log.info("structlog line", thread=index, number=number, padding=padding)

def theirs(index):
    log = logging.getLogger("library")
    for number in range(lines):
        log.warning("stdlib line %s %s %s", index, number, padding)

workers = [
    threading.Thread(target=ours if i % 2 else theirs, args=(i,)) for i in range(threads)
]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
"""


def _assert_every_line_is_json(text: str, expected_lines: int) -> None:
    lines = text.splitlines()
    invalid = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            invalid.append(line)
    assert not invalid, f"{len(invalid)} of {len(lines)} lines not JSON, e.g. {invalid[0][:300]!r}"
    assert len(lines) == expected_lines


def test_threads_logging_through_structlog_and_stdlib_never_share_a_line(
    tmp_path: Path,
) -> None:
    out = tmp_path / "stdout.log"
    with out.open("wb") as stdout:
        subprocess.run(
            [sys.executable, "-c", _HAMMER, "8", "2000"], stdout=stdout, check=True, timeout=120
        )
    _assert_every_line_is_json(out.read_text(), 8 * 2000)


def test_processes_sharing_one_stdout_pipe_write_whole_lines() -> None:
    # The multi-process supervisor's copies inherit its stdout: in a container, a pipe.
    read_end, write_end = os.pipe()
    children = [
        subprocess.Popen([sys.executable, "-c", _HAMMER, "4", "500"], stdout=write_end)
        for _ in range(3)
    ]
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        text = pipe.read().decode()
    assert [child.wait(timeout=120) for child in children] == [0, 0, 0]
    _assert_every_line_is_json(text, 3 * 4 * 500)


def test_an_uncaught_exception_in_a_thread_is_one_json_line() -> None:
    out = io.StringIO()
    configure_logging("test", "INFO", stream=out)
    try:

        def fail() -> None:
            raise ValueError("boom in a worker")

        worker = threading.Thread(target=fail, name="worker-7")
        worker.start()
        worker.join()
    finally:
        configure_logging("test", "INFO")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["level"] == "error"
    assert line["event"] == "uncaught exception in thread worker-7"
    assert "ValueError: boom in a worker" in line["exception"]
