"""Services started as real processes, stopped with SIGTERM (then SIGKILL) afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from chassis.grpc.server import is_serving
from chassis.tls import TlsFiles

from astra_testkit.tls import tls_files


class ServiceProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        log_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = {**os.environ, **env}
        folder = log_dir or Path(tempfile.mkdtemp(prefix=f"astra-{name}-"))
        self.log_path = folder / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_healthy(
        self,
        target: str,
        timeout: float = 60.0,
        service: str = "",
        tls: TlsFiles | None = None,
    ) -> None:
        """Wait until the process answers SERVING over mutual TLS (``tls``: the suite CA's
        developer client by default)."""
        deadline = time.monotonic() + timeout
        files = tls or tls_files()
        while True:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early:\n{self.logs()[-4000:]}")
            if is_serving(target, files, service=service, timeout=1):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not healthy:\n{self.logs()[-4000:]}")
            time.sleep(0.1)

    def terminate(self, timeout: float = 20.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, as far as the process can tell."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
