"""The bench's empty-call ceilings and load generators, on real server processes.

The chassis ceiling is only worth comparing against if its calls really pass
through what a service call passes through: a call without a valid token for
the right scope must be refused there, and a good one answered.
"""

from __future__ import annotations

import grpc
import pytest
from astra_testkit.tls import tls_channel

from bench.ceilings import empty_server, measure_empty_calls
from bench.common import MINT
from bench.empty_server import METHOD
from bench.load import run_fixed_rate


def _call(target: str, metadata: tuple[tuple[str, str], ...]) -> bytes:
    with tls_channel(target) as channel:
        call = channel.unary_unary(
            METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        reply: bytes = call(b"", timeout=10, metadata=metadata)
        return reply


def test_the_bare_server_answers_without_a_token() -> None:
    with empty_server() as server:
        assert server.metadata == ()
        assert _call(server.target, ()) == b""


def test_the_chassis_server_verifies_tokens_and_scopes() -> None:
    with empty_server(chassis=True) as server:
        assert _call(server.target, server.metadata) == b""
        with pytest.raises(grpc.RpcError) as missing:
            _call(server.target, ())
        assert missing.value.code() is grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as unscoped:
            _call(server.target, MINT.metadata(["ledger.accounts.read"]))
        assert unscoped.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "ledger.transfers.write" in (unscoped.value.details() or "")


@pytest.mark.parametrize("chassis", [False, True], ids=["bare", "chassis"])
def test_empty_calls_are_counted_with_the_cpu_they_cost(chassis: bool) -> None:
    result, cost = measure_empty_calls(4, seconds=0.5, chassis=chassis)
    assert result.errors == 0
    assert result.calls > 0
    assert len(result.latencies_ms) == result.calls
    assert cost.server > 0
    assert cost.client > 0


def test_a_fixed_rate_load_paces_its_calls_and_counts_them_all() -> None:
    rate, count = 200.0, 100
    with empty_server() as server:
        result = run_fixed_rate(server.target, METHOD, [b""] * count, rate_per_s=rate)
    assert (result.calls, result.errors) == (count, 0)
    assert len(result.latencies_ms) == count
    # The last call may not start before its turn: (count - 1) intervals after the first.
    assert result.seconds >= (count - 1) / rate
