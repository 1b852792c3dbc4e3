"""The supervisor's refusals and what it tells its copies (nothing is started here)."""

from __future__ import annotations

import shutil

import pytest
from chassis.metrics import MULTIPROC_DIR_ENV
from chassis.multiprocess import PROCESS_INDEX_ENV, Supervisor, is_first_process


def _supervisor(**overrides: object) -> Supervisor:
    options: dict[str, object] = {
        "env_prefix": "LEDGER_",
        "processes": 2,
        "grpc_port": 50999,
        "metrics_host": "127.0.0.1",
        "metrics_port": 0,
        **overrides,
    }
    return Supervisor(["true"], **options)  # type: ignore[arg-type]


def test_several_processes_need_a_fixed_port() -> None:
    with pytest.raises(ValueError, match="LEDGER_GRPC_PORT must be a fixed port"):
        _supervisor(grpc_port=0)


def test_a_supervisor_is_for_two_processes_or_more() -> None:
    with pytest.raises(ValueError, match="two processes or more"):
        _supervisor(processes=1)


def test_each_copy_is_one_process_sharing_the_port_without_migrating_or_serving_metrics() -> None:
    supervisor = _supervisor()
    try:
        env = supervisor._child_env(1)
    finally:
        shutil.rmtree(supervisor.metrics_dir)
    assert env["LEDGER_PROCESSES"] == "1"
    assert env["LEDGER_GRPC_REUSE_PORT"] == "true"
    assert env["LEDGER_MIGRATE_ON_START"] == "false"
    assert env["LEDGER_METRICS_PORT"] == "0"
    assert env[MULTIPROC_DIR_ENV] == supervisor.metrics_dir
    assert env[PROCESS_INDEX_ENV] == "1"


def test_only_the_first_copy_or_a_lone_process_is_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROCESS_INDEX_ENV, raising=False)
    assert is_first_process()
    monkeypatch.setenv(PROCESS_INDEX_ENV, "0")
    assert is_first_process()
    monkeypatch.setenv(PROCESS_INDEX_ENV, "1")
    assert not is_first_process()
