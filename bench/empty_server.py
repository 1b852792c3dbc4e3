"""A gRPC server whose one method returns an empty message: the framework's own ceiling.

Run as ``python -m bench.empty_server PORT``; a sync server with the same thread
pool size as our services, so the comparison with them is fair.
"""

from __future__ import annotations

import sys
import threading
from concurrent import futures

import grpc

SERVICE = "astra.bench.v1.Empty"
METHOD = f"/{SERVICE}/Call"


def _raw(data: bytes) -> bytes:
    return data


def _empty(_request: bytes, _context: grpc.ServicerContext) -> bytes:
    return b""


def main() -> None:
    port = int(sys.argv[1])
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=32), options=[("grpc.so_reuseport", 0)]
    )
    handler = grpc.unary_unary_rpc_method_handler(
        _empty, request_deserializer=_raw, response_serializer=_raw
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Call": handler}),)
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
