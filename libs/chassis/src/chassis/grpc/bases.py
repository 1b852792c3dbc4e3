"""Base classes for interceptors, typed for mypy (grpc-stubs makes them generic).

The stubs' generics do not exist at run time, so the aliases differ by phase;
one module holds them so that every interceptor subclasses the same names.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    ServerInterceptorBase = grpc.ServerInterceptor[Any, Any]
    UnaryUnaryClientBase = grpc.UnaryUnaryClientInterceptor[Any, Any]
    UnaryStreamClientBase = grpc.UnaryStreamClientInterceptor[Any, Any]
else:
    ServerInterceptorBase = grpc.ServerInterceptor
    UnaryUnaryClientBase = grpc.UnaryUnaryClientInterceptor
    UnaryStreamClientBase = grpc.UnaryStreamClientInterceptor


class ClientCallDetails(
    collections.namedtuple(
        "ClientCallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    """An outgoing call's details as a client interceptor passes them on, changed."""
