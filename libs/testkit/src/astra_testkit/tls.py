"""Certificates for tests and benchmarks: one development CA per run, and the one way to dial.

``suite_ca()`` makes the CA (``chassis.tls.devca``, as ``make run`` does) in a
temporary folder the first time it is asked for, removed at exit; every
in-process server, every process the testkit starts and every client of a test
uses it. ``tls_channel`` is a bare mutual-TLS channel (no interceptors) for
tests that speak to a server raw; ``chassis.grpc.client.open_channel`` with
``tls=suite_ca().client`` is the channel with deadlines and tokens.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import grpc
from chassis.tls import TlsFiles, secure_channel
from chassis.tls.devca import CLIENT, DevCa, ensure_dev_ca


@functools.cache
def suite_ca() -> DevCa:
    folder = tempfile.mkdtemp(prefix="astra-test-tls-")
    atexit.register(shutil.rmtree, folder, True)
    return ensure_dev_ca(folder)


def tls_files(part: str = CLIENT) -> TlsFiles:
    """``part``'s certificate files (the developer client's by default)."""
    return suite_ca().files(part)


def tls_env(prefix: str, part: str) -> dict[str, str]:
    """The ``<PREFIX>_TLS_*`` variables that give a process ``part``'s certificate."""
    return suite_ca().env(prefix, part)


def tls_channel(
    target: str,
    *,
    part: str = CLIENT,
    server_name: str | None = None,
    options: Sequence[tuple[str, Any]] | None = None,
) -> grpc.Channel:
    """A bare mutual-TLS channel to ``target`` with ``part``'s certificate, nothing else on it."""
    return secure_channel(target, tls_files(part), server_name=server_name, options=options)


def tls_settings(part: str) -> dict[str, str]:
    """The ``tls_*`` fields of a settings object built in-process, for ``part``'s certificate."""
    files = tls_files(part)
    return {
        "tls_cert_file": files.cert_file,
        "tls_key_file": files.key_file,
        "tls_ca_file": files.ca_file,
    }


def grpcurl_tls() -> list[str]:
    """grpcurl's arguments for mutual TLS with the developer's certificate (no ``-plaintext``)."""
    files = tls_files()
    return ["-cacert", files.ca_file, "-cert", files.cert_file, "-key", files.key_file]
