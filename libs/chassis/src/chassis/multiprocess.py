"""Several server processes on one port: a small supervisor.

CPython runs one thread of Python at a time, so a service scales past one core
on a host with more processes. With ``<SERVICE>_PROCESSES=N`` (N > 1) the
service's ``serve`` command becomes this supervisor: it starts N copies of the
server, each binding the same gRPC port with ``SO_REUSEPORT`` (the kernel
spreads connections over them), restarts a copy that dies, forwards SIGTERM so
every copy drains, and serves the metrics of all copies on the one metrics port
(prometheus-client's multiprocess mode: each copy writes its samples to files
in a private folder, the supervisor sums them at scrape time).

Migrations run once, in the supervisor, before the copies start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from chassis.config import ServiceSettings
from chassis.metrics import MULTIPROC_DIR_ENV, MetricsServer

_log = structlog.get_logger("chassis.multiprocess")

PROCESS_INDEX_ENV = "ASTRA_PROCESS_INDEX"


def is_first_process() -> bool:
    """True when run alone, or as the first copy under a supervisor.

    For work done once per service, not once per copy: a gauge sampled from the
    database and written by every copy would show whichever copy wrote last,
    which need not be the newest count.
    """
    return os.environ.get(PROCESS_INDEX_ENV, "0") == "0"


_MAX_RESTART_DELAY = 30.0


@dataclass
class _Child:
    index: int
    process: subprocess.Popen[bytes]
    started: float


class Supervisor:
    """Runs ``processes`` copies of ``command`` and keeps them running until told to stop."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        env_prefix: str,
        processes: int,
        grpc_port: int,
        metrics_host: str,
        metrics_port: int,
        grace_seconds: float = 10.0,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        if processes < 2:
            raise ValueError("a supervisor is for two processes or more")
        if grpc_port == 0:
            raise ValueError(
                f"{env_prefix}GRPC_PORT must be a fixed port when {env_prefix}PROCESSES > 1: "
                "every process binds the same one"
            )
        self._command = list(command)
        self._prefix = env_prefix
        self._processes = processes
        self._metrics_host = metrics_host
        self._metrics_port = metrics_port
        self._grace = grace_seconds
        self._extra_env = dict(extra_env or {})
        self._stop = threading.Event()
        self._children: dict[int, _Child] = {}
        self._restart_delay: dict[int, float] = {}
        self.metrics_dir = tempfile.mkdtemp(prefix="astra-metrics-")
        self.metrics: MetricsServer | None = None

    def _child_env(self, index: int) -> dict[str, str]:
        return {
            **os.environ,
            **self._extra_env,
            f"{self._prefix}PROCESSES": "1",
            f"{self._prefix}GRPC_REUSE_PORT": "true",
            f"{self._prefix}MIGRATE_ON_START": "false",
            # The supervisor serves the sum; the copies serve none of their own.
            f"{self._prefix}METRICS_PORT": "0",
            MULTIPROC_DIR_ENV: self.metrics_dir,
            PROCESS_INDEX_ENV: str(index),
        }

    def _spawn(self, index: int) -> None:
        process = subprocess.Popen(self._command, env=self._child_env(index))
        self._children[index] = _Child(index, process, time.monotonic())
        _log.info("process started", index=index, pid=process.pid)

    def start(self) -> None:
        if self._metrics_port:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.metrics_dir)  # type: ignore[no-untyped-call]
            self.metrics = MetricsServer(self._metrics_host, self._metrics_port, registry)
            self.metrics.start()
        for index in range(self._processes):
            self._spawn(index)

    def stop(self) -> None:
        self._stop.set()

    def _reap(self) -> None:
        """Restart copies that died, waiting longer each time one dies young."""
        for index, child in list(self._children.items()):
            code = child.process.poll()
            if code is None:
                continue
            mark_process_dead(child.process.pid, self.metrics_dir)  # type: ignore[no-untyped-call]
            lived = time.monotonic() - child.started
            delay = self._restart_delay.get(index, 0.5)
            delay = min(delay * 2, _MAX_RESTART_DELAY) if lived < 10 else 0.5
            self._restart_delay[index] = delay
            _log.warning("process exited; restarting", index=index, code=code, delay_s=delay)
            del self._children[index]
            if self._stop.wait(delay):
                return
            self._spawn(index)

    def run(self) -> int:
        """Start, supervise until SIGTERM/SIGINT, then drain every copy and clean up."""

        def request_stop(signum: int, _frame: object) -> None:
            _log.info("signal received", signal=signal.Signals(signum).name)
            self._stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        try:
            self.start()
            while not self._stop.wait(0.5):
                self._reap()
        finally:
            self._shutdown()
        return 0

    def _shutdown(self) -> None:
        for child in self._children.values():
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._grace + 5
        for child in self._children.values():
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _log.warning("process did not drain in time; killing", pid=child.process.pid)
                child.process.kill()
                child.process.wait(timeout=5)
        self._children.clear()
        if self.metrics is not None:
            self.metrics.stop()
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
        _log.info("all processes stopped")


def supervise(settings: ServiceSettings, module: str) -> int:
    """Run ``python -m <module> serve`` ``settings.processes`` times on one port, until stopped.

    The copies read the same environment, with the overrides the supervisor
    sets (one process each, SO_REUSEPORT on, no migrations, no metrics port).
    """
    return Supervisor(
        [sys.executable, "-m", module, "serve"],
        env_prefix=str(settings.model_config.get("env_prefix", "")),
        processes=settings.processes,
        grpc_port=settings.grpc_port,
        metrics_host=settings.grpc_host,
        metrics_port=settings.metrics_port,
        grace_seconds=settings.grace_seconds,
    ).run()
