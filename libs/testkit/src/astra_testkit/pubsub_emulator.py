"""The official Google Pub/Sub emulator, on a free port, in its own process group.

The emulator's own launcher (``platform/pubsub-emulator/bin/cloud-pubsub-emulator``
in the Cloud SDK) is run directly: stopping it stops its Java process too, which
``gcloud beta emulators pubsub start`` would leave behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from astra_testkit.ports import free_port, wait_for_port


class EmulatorUnavailable(RuntimeError):
    pass


def find_launcher() -> Path:
    explicit = os.environ.get("ASTRA_PUBSUB_EMULATOR_BIN")
    candidates = [Path(explicit)] if explicit else []
    gcloud = shutil.which("gcloud")
    if gcloud:
        sdk = Path(gcloud).resolve().parent.parent
        candidates.append(sdk / "platform/pubsub-emulator/bin/cloud-pubsub-emulator")
    candidates += [
        Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"),
        Path("/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"),
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise EmulatorUnavailable(
        "the Pub/Sub emulator is required: install the Cloud SDK component pubsub-emulator "
        "or set ASTRA_PUBSUB_EMULATOR_BIN to its cloud-pubsub-emulator launcher"
    )


class PubSubEmulator:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._data_dir = tempfile.mkdtemp(prefix="astra-pubsub-")
        self.log_path = Path(self._data_dir) / "emulator.log"

    def start(self, timeout: float = 60.0) -> PubSubEmulator:
        launcher = find_launcher()
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [str(launcher), "--host=127.0.0.1", f"--port={self.port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self._data_dir,
        )
        try:
            wait_for_port("127.0.0.1", self.port, timeout)
        except TimeoutError as error:
            self.stop()
            raise EmulatorUnavailable(
                f"the Pub/Sub emulator did not start: {self.log_path.read_text()[-2000:]}"
            ) from error
        return self

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def thread_count(self) -> int:
        """Threads of the emulator's JVM (the launcher execs java: same pid); Linux only.

        The emulator starts a thread per ordering key it meets on an ordered
        subscription and never ends it, so this shows how many keys it holds.
        """
        assert self._process is not None, "the emulator is not running"
        status = Path(f"/proc/{self._process.pid}/status").read_text()
        return int(
            next(line for line in status.splitlines() if line.startswith("Threads:")).split()[1]
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        # The JVM may outlive its launcher's exit for a moment; wait for the port to free.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                wait_for_port("127.0.0.1", self.port, 0.05)
            except TimeoutError:
                return
            time.sleep(0.1)

    def restart(self, timeout: float = 60.0) -> None:
        """Start again on the same port (a fresh, empty emulator)."""
        self.stop()
        self.start(timeout)

    def __enter__(self) -> PubSubEmulator:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
        shutil.rmtree(self._data_dir, ignore_errors=True)
