"""The chassis' metric families and helpers (no network: values read from the registry)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from chassis import metrics
from prometheus_client import REGISTRY


class _Context:
    def __init__(self, code: grpc.StatusCode | None) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode | None:
        return self._code


def test_full_method_names_split_into_service_and_method() -> None:
    assert metrics.split_method("/astra.ledger.v1.LedgerService/CreateTransfer") == (
        "astra.ledger.v1.LedgerService",
        "CreateTransfer",
    )


@pytest.mark.parametrize(
    ("set_code", "failed", "expected"),
    [
        (None, False, grpc.StatusCode.OK),
        (None, True, grpc.StatusCode.UNKNOWN),
        (grpc.StatusCode.NOT_FOUND, True, grpc.StatusCode.NOT_FOUND),
        (grpc.StatusCode.ALREADY_EXISTS, False, grpc.StatusCode.ALREADY_EXISTS),
    ],
)
def test_the_status_of_a_call_is_what_the_handler_set_or_aborted_with(
    set_code: grpc.StatusCode | None, failed: bool, expected: grpc.StatusCode
) -> None:
    assert metrics.status_code_of(_Context(set_code), failed) is expected  # type: ignore[arg-type]


def test_outbox_backlog_is_recorded_per_context() -> None:
    metrics.record_outbox_backlog("unit-ctx", metrics.OutboxBacklog(17, 42.5))
    assert REGISTRY.get_sample_value("outbox_backlog_messages", {"context": "unit-ctx"}) == 17
    assert (
        REGISTRY.get_sample_value("outbox_oldest_unpublished_age_seconds", {"context": "unit-ctx"})
        == 42.5
    )


@pytest.mark.parametrize(("state", "value"), [("closed", 0), ("half-open", 1), ("OPEN", 2)])
def test_breaker_states_become_numbers_dashboards_can_threshold(state: str, value: int) -> None:
    metrics.record_breaker_state("unit-bank", state)
    assert REGISTRY.get_sample_value("circuit_breaker_state", {"breaker": "unit-bank"}) == value


def test_a_breaker_state_we_do_not_know_is_an_error() -> None:
    with pytest.raises(KeyError):
        metrics.record_breaker_state("unit-bank", "ajar")


def test_sampler_samples_at_once_and_stops() -> None:
    sampled = threading.Event()
    calls: list[int] = []

    def sample() -> None:
        calls.append(1)
        sampled.set()

    sampler = metrics.Sampler("unit", sample, interval=3600).start()
    assert sampled.wait(10)
    sampler.stop()
    assert calls == [1]


def test_a_failing_sample_does_not_kill_the_sampler(
    json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    attempts: list[int] = []
    second = threading.Event()

    def sample() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("database away")
        second.set()

    sampler = metrics.Sampler("unit-failing", sample, interval=0.01).start()
    assert second.wait(10)
    sampler.stop()
    assert len(attempts) >= 2
    warning = next(line for line in json_logs() if line["event"].startswith("metrics sample"))
    assert warning["sampler"] == "unit-failing"


def test_gauges_declare_how_processes_combine() -> None:
    gauge = metrics.gauge("unit_test_gauge", "a gauge", ("x",), mode="livesum")
    gauge.labels("a").set(3)
    assert REGISTRY.get_sample_value("unit_test_gauge", {"x": "a"}) == 3
    assert gauge._multiprocess_mode == "livesum"


def test_scrapes_see_this_process_unless_in_multiprocess_mode(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.delenv(metrics.MULTIPROC_DIR_ENV, raising=False)
    assert metrics.scrape_registry() is REGISTRY
    monkeypatch.setenv(metrics.MULTIPROC_DIR_ENV, str(tmp_path))
    assert metrics.scrape_registry() is not REGISTRY


def test_no_metrics_endpoint_when_the_port_is_zero() -> None:
    hooks: list[object] = []

    class _Server:
        def on_stop(self, hook: object) -> None:
            hooks.append(hook)

    assert metrics.serve_metrics(_Server(), "127.0.0.1", 0) is None
    assert hooks == []
