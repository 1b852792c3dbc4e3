"""The network between the simulated processes, as a gRPC channel.

A client adapter of the suite (payments' ``GrpcLedger``, ``GrpcIdentity``) is
given a ``SimChannel`` instead of a real one: its stubs, its requests, its
mapping of statuses to the port's answers run unchanged. The channel serializes
the request, and with the run's fault mix drops it (UNAVAILABLE, nothing done),
delays it (other tasks run first: calls are reordered), duplicates it (a copy
is delivered again later, its answer thrown away) or loses the reply after the
callee did the work (DEADLINE_EXCEEDED). The callee side is the real servicer,
registered by the generated ``add_*Servicer_to_server``; a domain error becomes
the status with rich details the chassis interceptor would send
(``chassis.grpc.status.domain_error_status``), anything else INTERNAL (which the
simulation counts as a violation). A crash of the callee while it works is
UNAVAILABLE for the caller.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from chassis.grpc.status import domain_error_status, internal_error_status
from chassis.kernel.errors import DomainError

from simulation.core import ProcessCrash, Simulation


class SimRpcError(grpc.RpcError, grpc.Call):
    """A failed call as a client adapter sees it: code, details and trailers."""

    def __init__(self, status: grpc.Status | None, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code = code
        self._details = details
        self._trailers = tuple(status.trailing_metadata) if status is not None else ()

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:
        return self._trailers

    def initial_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


def _failed(status: grpc.Status) -> SimRpcError:
    return SimRpcError(status, status.code, status.details)


class _Context:
    """The servicer's view of the call: no deadline pressure in a simulated call."""

    def time_remaining(self) -> float | None:
        return 30.0

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def peer(self) -> str:
        return "sim"

    def is_active(self) -> bool:
        return True


class SimServer:
    """A process's servicers, by full method name (what ``add_*_to_server`` registers)."""

    def __init__(self, sim: Simulation, process: str, domain: str) -> None:
        self.sim = sim
        self.process = process
        self.domain = domain
        self._methods: dict[str, Any] = {}
        self.internal_errors = 0

    # What the generated registration functions call.
    def add_generic_rpc_handlers(self, handlers: Sequence[Any]) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        for method, handler in handlers.items():
            self._methods[f"/{service}/{method}"] = handler

    def handle(self, method: str, data: bytes) -> bytes:
        """Run the call in the callee: its answer's bytes, or a failure as a client sees it."""
        if not self.sim.process(self.process).up:
            raise SimRpcError(None, grpc.StatusCode.UNAVAILABLE, f"{self.process} is down")
        handler = self._methods[method]
        request = handler.request_deserializer(data)
        try:
            reply = handler.unary_unary(request, _Context())
        except DomainError as error:
            raise _failed(domain_error_status(error, self.domain, None)) from None
        except ProcessCrash as crash:
            self.sim.crash(crash.process)
            raise SimRpcError(None, grpc.StatusCode.UNAVAILABLE, "connection reset") from None
        except Exception as error:
            self.internal_errors += 1
            self.sim.violation(f"INTERNAL from {method}: {error!r}")
            raise _failed(internal_error_status(self.domain, "sim")) from None
        return bytes(handler.response_serializer(reply))


class SimChannel:
    """A channel from one process to another's ``SimServer``, faults per the run's mix."""

    def __init__(self, sim: Simulation, caller: str, server: SimServer) -> None:
        self.sim = sim
        self.caller = caller
        self.server = server

    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        **_: Any,
    ) -> Callable[..., Any]:
        assert request_serializer is not None
        assert response_deserializer is not None

        def call(request: Any, timeout: float | None = None, **__: Any) -> Any:
            return response_deserializer(self._deliver(method, request_serializer(request)))

        return call

    def unary_stream(self, method: str, *_: Any, **__: Any) -> Callable[..., Any]:
        def refuse(*_a: Any, **_k: Any) -> Any:
            raise NotImplementedError(f"{method}: streams are not simulated")

        return refuse

    def _deliver(self, method: str, data: bytes) -> bytes:
        sim, faults = self.sim, self.sim.faults
        name = method.rsplit("/", 1)[-1]
        if sim.chance(faults.network_drop):
            sim.record(f"net drop {self.caller}->{self.server.process} {name}")
            raise SimRpcError(None, grpc.StatusCode.UNAVAILABLE, "dropped")
        if sim.chance(faults.network_delay):
            sim.interleave()
        if sim.chance(faults.network_duplicate):
            sim.record(f"net duplicate {self.caller}->{self.server.process} {name}")
            sim.after(
                sim.rng.uniform(0, 1.0),
                f"dup {name}",
                self.server.process,
                lambda: self._late_copy(method, data),
            )
        reply = self.server.handle(method, data)
        if sim.chance(faults.network_lost_reply):
            sim.record(f"net lost reply {self.caller}->{self.server.process} {name}")
            raise SimRpcError(None, grpc.StatusCode.DEADLINE_EXCEEDED, "reply lost")
        return reply

    def _late_copy(self, method: str, data: bytes) -> None:
        with contextlib.suppress(SimRpcError):
            self.server.handle(method, data)

    def close(self) -> None:
        pass
