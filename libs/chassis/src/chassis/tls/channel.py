"""A client channel that follows its certificate files: a rotated client certificate (or CA)
is used without a restart.

gRPC's channel credentials are fixed when a channel is made, and a service
keeps its channels for its whole life. ``ReloadingChannel`` looks at its files
at most once per ``check_interval`` (on a call); when they hold a new, whole
certificate, key and CA it opens a new channel with them, and new calls go
there. The old channel is not closed under the calls still running on it: it
is retired, and closed once ``retire_after`` has passed (longer than any
deadline of ours) or when the channel is closed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, cast

import grpc
import structlog

from chassis.tls.credentials import TlsFiles, channel_credentials, check_pair, files_stamp

_log = structlog.get_logger("chassis.tls")


class ReloadingChannel(grpc.Channel):
    def __init__(
        self,
        target: str,
        files: TlsFiles,
        options: Sequence[tuple[str, Any]],
        *,
        check_interval: float = 5.0,
        retire_after: float = 900.0,
    ) -> None:
        self._target = target
        self._files = files
        self._options = list(options)
        self._check_interval = check_interval
        self._retire_after = retire_after
        self._lock = threading.Lock()
        self._stamp = files_stamp(files)
        self._contents = files.read()
        self._channel = self._open(self._contents)
        self._generation = 0
        self._checked_at = time.monotonic()
        self._retired: list[tuple[float, grpc.Channel]] = []

    def _open(self, contents: tuple[bytes, bytes, bytes]) -> grpc.Channel:
        return grpc.secure_channel(
            self._target, channel_credentials(contents), options=self._options
        )

    def current(self) -> tuple[int, grpc.Channel]:
        """The channel new calls use (and its generation), after a look at the files if due."""
        now = time.monotonic()
        if now - self._checked_at < self._check_interval:
            return self._generation, self._channel
        with self._lock:
            if now - self._checked_at >= self._check_interval:
                self._checked_at = now
                self._reload_if_changed(now)
            return self._generation, self._channel

    def _reload_if_changed(self, now: float) -> None:
        try:
            stamp = files_stamp(self._files)
        except OSError:
            return  # a file is being replaced: keep what works
        if stamp != self._stamp:
            try:
                contents = self._files.read()
                leaf = check_pair(*contents)
            except Exception as error:  # half-replaced: looked at again at the next check
                _log.warning("tls client files not reloaded", error=str(error))
                return
            self._stamp = stamp
            if contents != self._contents:
                self._contents = contents
                self._retired.append((now, self._channel))
                self._channel = self._open(contents)
                self._generation += 1
                _log.info(
                    "tls client certificate reloaded",
                    target=self._target,
                    serial=format(leaf.serial_number, "x"),
                )
        while self._retired and now - self._retired[0][0] >= self._retire_after:
            self._retired.pop(0)[1].close()

    # --- grpc.Channel -------------------------------------------------------------------

    def unary_unary(
        self, method: str, *args: Any, **kwargs: Any
    ) -> grpc.UnaryUnaryMultiCallable[Any, Any]:
        return cast(
            "grpc.UnaryUnaryMultiCallable[Any, Any]",
            _Method(self, "unary_unary", method, args, kwargs),
        )

    def unary_stream(
        self, method: str, *args: Any, **kwargs: Any
    ) -> grpc.UnaryStreamMultiCallable[Any, Any]:
        return cast(
            "grpc.UnaryStreamMultiCallable[Any, Any]",
            _Method(self, "unary_stream", method, args, kwargs),
        )

    def stream_unary(
        self, method: str, *args: Any, **kwargs: Any
    ) -> grpc.StreamUnaryMultiCallable[Any, Any]:
        return cast(
            "grpc.StreamUnaryMultiCallable[Any, Any]",
            _Method(self, "stream_unary", method, args, kwargs),
        )

    def stream_stream(
        self, method: str, *args: Any, **kwargs: Any
    ) -> grpc.StreamStreamMultiCallable[Any, Any]:
        return cast(
            "grpc.StreamStreamMultiCallable[Any, Any]",
            _Method(self, "stream_stream", method, args, kwargs),
        )

    def subscribe(
        self, callback: Callable[[grpc.ChannelConnectivity], None], try_to_connect: bool = False
    ) -> None:
        self.current()[1].subscribe(callback, try_to_connect=try_to_connect)

    def unsubscribe(self, callback: Callable[[grpc.ChannelConnectivity], None]) -> None:
        self._channel.unsubscribe(callback)

    def close(self) -> None:
        with self._lock:
            for _, channel in self._retired:
                channel.close()
            self._retired.clear()
            self._channel.close()

    def __enter__(self) -> ReloadingChannel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class _Method:
    """A method of a ``ReloadingChannel``: each call goes to the channel of the moment."""

    __slots__ = ("_args", "_bound", "_channel", "_kind", "_kwargs", "_method")

    def __init__(
        self,
        channel: ReloadingChannel,
        kind: str,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self._channel = channel
        self._kind = kind
        self._method = method
        self._args = args
        self._kwargs = kwargs
        # (generation, the method on that generation's channel): one attribute, read whole.
        self._bound: tuple[int, Any] = (-1, None)

    def _resolve(self) -> Any:
        generation, channel = self._channel.current()
        bound_generation, inner = self._bound
        if generation != bound_generation:
            inner = getattr(channel, self._kind)(self._method, *self._args, **self._kwargs)
            self._bound = (generation, inner)
        return inner

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._resolve()(*args, **kwargs)

    def with_call(self, *args: Any, **kwargs: Any) -> Any:
        return self._resolve().with_call(*args, **kwargs)

    def future(self, *args: Any, **kwargs: Any) -> Any:
        return self._resolve().future(*args, **kwargs)


def secure_channel(
    target: str,
    files: TlsFiles,
    *,
    server_name: str | None = None,
    options: Sequence[tuple[str, Any]] | None = None,
) -> grpc.Channel:
    """A mutual-TLS channel to ``target`` that follows ``files`` (``ReloadingChannel``).

    ``server_name``: the name the server's certificate must carry, whatever the
    address dialled (every server's certificate names ``localhost`` and
    ``127.0.0.1``, so without it any part of the suite could answer on
    ``127.0.0.1``); with it, only the part of that name can (the verifier asks
    for ``identity``).
    """
    channel_options = list(options or [])
    if server_name:
        channel_options.append(("grpc.ssl_target_name_override", server_name))
    return ReloadingChannel(target, files, channel_options)
