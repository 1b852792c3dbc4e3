"""``astra-identity``'s operator commands, as tests and benchmarks set a suite up with them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from astra_testkit.tls import tls_env

IDENTITY_BIN = Path(sys.executable).parent / "astra-identity"


def identity_cli(env: Mapping[str, str], *args: str) -> str:
    """Run one command with ``env`` over this process's environment (and identity's
    certificate from the suite CA, which every command's settings require); its stdout."""
    result = subprocess.run(
        [str(IDENTITY_BIN), *args],
        env={**os.environ, **tls_env("IDENTITY", "identity"), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"astra-identity {args[0]} failed: {result.stderr}")
    return result.stdout


def register_client(env: Mapping[str, str], client_id: str, *options: str) -> dict[str, object]:
    """Register a service client; what the command printed, its one-time secret included."""
    output = identity_cli(env, "register-client", client_id, *options)
    return dict(json.loads(output.strip().splitlines()[-1]))


def all_scopes() -> list[str]:
    """``--scope`` arguments for every scope the contracts declare (a client with no scope
    named gets none, and ``--all-scopes`` is for development only)."""
    from chassis.auth import declared_scopes

    return [arg for scope in sorted(declared_scopes()) for arg in ("--scope", scope)]


def client_secret(env: Mapping[str, str], client_id: str, *options: str) -> str:
    return str(register_client(env, client_id, *options)["client_secret"])
