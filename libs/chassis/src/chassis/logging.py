"""Structured JSON logs to stdout, one object per line.

Every line, ours (structlog) or a library's (the standard ``logging`` module:
grpc, SQLAlchemy, the Pub/Sub client, uvicorn), goes through one writer that
holds one lock while it writes the whole line and its newline in one
``write`` and flushes. Two writers with their own locks (structlog's
``PrintLogger`` prints the text and the newline as two writes under its lock,
the standard handler writes under another) let two threads' lines land on one
line now and then. One ``write`` of a whole line per flush also keeps lines
whole across processes sharing a pipe (the multi-process supervisor's copies),
as long as a line is at most ``PIPE_BUF`` (4,096) bytes; a regular file opened
for append keeps longer ones whole too.

Every line carries the service name and, inside a call, the request id and
method (bound by the request-context interceptor through contextvars) and the
trace and span ids of the current OpenTelemetry span. Values under secret-like
keys are redacted and account numbers masked before rendering, whatever the
caller passed.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any, TextIO

import structlog
from opentelemetry import trace

_SECRET_KEY = re.compile(
    r"(secret|password|passwd|token|authorization|private_key|api_key|credential|jwt)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+")
REDACTED = "[REDACTED]"
# Keys whose values identify a person's bank account: only the last 4 characters stay.
_ACCOUNT_KEY = re.compile(
    r"(account_number|accountnumber|iban|card_number|(^|_)pan$|bank_account|routing_number)",
    re.IGNORECASE,
)
# Account numbers inside free text: IBAN-shaped tokens and long runs of digits.
_ACCOUNT_IN_TEXT = re.compile(r"\b(?:[A-Z]{2}\d{2}[A-Z0-9]{10,30}|\d{9,19})\b")
# The values a database quotes in its errors (engines hide the bound parameters, but
# PostgreSQL names them in its own text): a key's value in a constraint violation
# ("DETAIL:  Key (email)=(ada@example.com) already exists."), the row that broke a
# NOT NULL or CHECK ("Failing row contains (...)"), the input a type refused
# ('invalid input syntax for type integer: "abc"'), and SQLAlchemy's parameter list.
_DB_KEY_VALUE = re.compile(
    r"(Key \([^)]*\)=\().*?(\)(?: already exists| is (?:not )?present|$))", re.M
)
_DB_FAILING_ROW = re.compile(r"(Failing row contains \().*(\))")
_DB_QUOTED_INPUT = re.compile(
    r"((?:for (?:type|encoding) [^:\n]+|value for enum [^:\n]+): )\"[^\"\n]*\""
)
_DB_PARAMETERS = re.compile(r"(\[parameters: ).*?(\]$)", re.M)


def mask_account_number(value: object) -> str:
    """``DE89370400440532013000`` -> ``******************3000``."""
    text = str(value)
    visible = 4 if len(text) > 8 else 0
    return "*" * (len(text) - visible) + text[len(text) - visible :]


def redact_db_values(text: str) -> str:
    """Cuts the values a database error quotes out of its text (see ``_DB_KEY_VALUE``)."""
    if "Key (" in text:
        text = _DB_KEY_VALUE.sub(rf"\g<1>{REDACTED}\g<2>", text)
    if "Failing row" in text:
        text = _DB_FAILING_ROW.sub(rf"\g<1>{REDACTED}\g<2>", text)
    if "[parameters: " in text:
        text = _DB_PARAMETERS.sub(rf"\g<1>{REDACTED}\g<2>", text)
    return _DB_QUOTED_INPUT.sub(rf'\g<1>"{REDACTED}"', text)


def redact_text(text: str) -> str:
    """Masks bearer tokens, anything shaped like a JWT, values quoted in database errors
    and account numbers inside free text."""
    text = _JWT.sub(REDACTED, _BEARER.sub("Bearer " + REDACTED, text))
    text = redact_db_values(text)
    return _ACCOUNT_IN_TEXT.sub(lambda m: mask_account_number(m.group(0)), text)


def _redact_item(key: str, value: Any) -> Any:
    if _SECRET_KEY.search(key):
        return REDACTED
    if _ACCOUNT_KEY.search(key) and isinstance(value, str | int):
        return mask_account_number(value)
    return _redact(value)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_item(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = _redact_item(key, event_dict[key])
    return event_dict


def add_trace_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """``trace_id`` and ``span_id`` of the current span, to join logs with traces."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event_dict.setdefault("trace_id", format(span_context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(span_context.span_id, "016x"))
    return event_dict


class _LineOutput:
    """The one place log lines are written: a whole line per write, under one lock.

    The lock is reentrant: a signal handler that logs runs on the main thread,
    possibly while that thread is inside ``write_line``; the line it interrupted
    was already written whole (one ``write`` call), so writing another is safe.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.stream: TextIO = sys.stdout
        os.register_at_fork(after_in_child=self._reset_lock)

    def _reset_lock(self) -> None:
        # A fork while another thread held the lock would leave it held forever.
        self.lock = threading.RLock()

    def write_line(self, line: str) -> None:
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()


_OUTPUT = _LineOutput()


class _JsonLineLogger:
    """structlog's final logger: hands each rendered line to the shared output."""

    def msg(self, message: str) -> None:
        _OUTPUT.write_line(message)

    log = debug = info = warn = warning = msg
    err = error = critical = exception = fatal = failure = msg


def _json_line_logger(*_args: Any) -> _JsonLineLogger:
    return _JsonLineLogger()


class _JsonLineHandler(logging.Handler):
    """The standard library's records, formatted as JSON, through the shared output."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _OUTPUT.write_line(self.format(record))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def _log_uncaught(
    kind: type[BaseException], value: BaseException, traceback: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, traceback)
        return
    logging.getLogger("uncaught").critical("uncaught exception", exc_info=(kind, value, traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or issubclass(args.exc_type, SystemExit):
        return
    thread = args.thread.name if args.thread is not None else "?"
    logging.getLogger("uncaught").error(
        "uncaught exception in thread %s",
        thread,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def configure_logging(service: str, level: str = "INFO", stream: TextIO | None = None) -> None:
    """JSON lines on ``stream`` (default: stdout) for our logs and the libraries' stdlib logging.

    Warnings and uncaught exceptions (main thread and other threads) become
    JSON lines too, instead of multi-line text on stderr between the JSON.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service,
        add_trace_context,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_json_line_logger,
        # Services configure logging once, before anything logs; caching saves
        # rebuilding a logger on every call (measured ~8 us per gRPC call).
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.processors.JSONRenderer(),
        ],
    )
    # Every logger, including ones cached before this call, writes to the new stream
    # and names the new service.
    _OUTPUT.stream = stream if stream is not None else sys.stdout
    _SERVICE[0] = service
    handler = _JsonLineHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    # Chatty libraries stay at WARNING unless asked for DEBUG.
    for noisy in ("sqlalchemy", "alembic", "google", "urllib3", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))


# The service the logs name; read at each line, so loggers cached under an earlier
# configuration name the current one.
_SERVICE = ["astra"]


def _add_service(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event_dict.setdefault("service", _SERVICE[0])
    return event_dict


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
