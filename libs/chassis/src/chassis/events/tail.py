"""``astra-events``: tail a topic and print each event as one JSON object per line.

It creates a temporary subscription, prints what arrives from then on, and
deletes the subscription on exit. Each line holds the message's attributes,
subject (the aggregate), ordering key and Pub/Sub ids, and the event decoded by
``ce-type`` from every installed contract (``"error"`` instead when it cannot be
decoded).

Safe to point at a busy topic: the subscription is unordered unless
``--ordered`` asks for one aggregate's events in order (an ordered
subscription costs the emulator a thread per ordering key); flow control holds
at most ``--max-outstanding`` messages while the terminal catches up; and the
subscription keeps at most ten minutes of backlog and expires a day after a
tail killed without cleaning up.

    astra-events ledger                 # the ledger context's topic
    astra-events --count 5 astra-ledger-events
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TextIO

from google.cloud import pubsub_v1
from google.protobuf.json_format import MessageToDict

from chassis.config import PubSubSettings
from chassis.events import cloudevents as ce
from chassis.events.clients import (
    context_topic,
    delete_subscription,
    ensure_subscription,
    subscriber_client,
    subscription_path,
    topic_path,
)
from chassis.events.decoding import UndecodableEvent, decode, import_contract_events

DEFAULT_MAX_OUTSTANDING = 100
# A tail that was killed leaves its subscription behind: it keeps little and goes away.
_RETENTION = timedelta(minutes=10)
_EXPIRES_AFTER_IDLE = timedelta(days=1)


def render(message: Any) -> dict[str, Any]:
    """One received message as a JSON-ready dict."""
    attributes = dict(message.attributes)
    line: dict[str, Any] = {
        "type": attributes.get(ce.TYPE, ""),
        "id": attributes.get(ce.ID, ""),
        "subject": attributes.get(ce.SUBJECT, ""),
        "ordering_key": message.ordering_key,
        "message_id": message.message_id,
        "publish_time": message.publish_time.isoformat() if message.publish_time else None,
        "attributes": attributes,
    }
    try:
        event = decode(attributes.get(ce.TYPE, ""), bytes(message.data))
    except UndecodableEvent as error:
        line["error"] = f"{error.reason}: {error.detail}"
        line["data_hex"] = bytes(message.data)[:256].hex()
    else:
        line["event"] = MessageToDict(event, preserving_proto_field_name=True)
    return line


def _topic_name(argument: str) -> str:
    # A bare context name ("ledger") means that context's topic.
    if "/" in argument or "-" in argument or "." in argument:
        return argument
    return context_topic(argument)


def tail(
    topic: str,
    *,
    project: str,
    count: int | None,
    timeout: float | None,
    out: TextIO,
    stop: threading.Event | None = None,
    on_ready: Callable[[str, str], None] | None = None,
    ordered: bool = False,
    max_outstanding: int = DEFAULT_MAX_OUTSTANDING,
) -> int:
    """Print events until ``count`` arrived, ``timeout`` passed or ``stop``; how many printed."""
    import_contract_events()
    client = subscriber_client()
    full_topic = topic_path(project, _topic_name(topic))
    path = subscription_path(project, f"astra-events-{uuid.uuid4().hex[:12]}")
    ensure_subscription(
        client,
        path,
        full_topic,
        ordering=ordered,
        retention=_RETENTION,
        expires_after_idle=_EXPIRES_AFTER_IDLE,
    )
    done = threading.Event()
    lock = threading.Lock()
    printed = 0

    def on_message(message: Any) -> None:
        nonlocal printed
        line = json.dumps(render(message), sort_keys=True) + "\n"
        with lock:
            if done.is_set():
                message.nack()
                return
            try:
                out.write(line)
                out.flush()
            except OSError:  # the reader went away (e.g. a closed pipe): nothing more to do
                done.set()
                message.nack()
                return
            printed += 1
            if count is not None and printed >= count:
                done.set()
        message.ack()

    future = client.subscribe(
        path,
        callback=on_message,
        flow_control=pubsub_v1.types.FlowControl(max_messages=max_outstanding),
    )
    if on_ready is not None:
        on_ready(full_topic, path)
    deadline = None if timeout is None else time.monotonic() + timeout
    stop = stop or threading.Event()
    try:
        while not done.wait(0.2) and not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        future.cancel()
        # The stream ends with the cancellation; nothing to report.
        with contextlib.suppress(Exception):
            future.result(timeout=10)
        delete_subscription(client, path)
        client.close()
    return printed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="astra-events", description=__doc__.split("\n")[0])
    parser.add_argument(
        "topic", help="a context (ledger), a topic id (astra-ledger-events) or a full topic path"
    )
    parser.add_argument("--count", type=int, default=None, help="exit after this many events")
    parser.add_argument("--timeout", type=float, default=None, help="exit after so many seconds")
    parser.add_argument("--project", default=None, help="default: ASTRA_PUBSUB_PROJECT")
    parser.add_argument(
        "--ordered",
        action="store_true",
        help="an ordered subscription: each aggregate's events print in order",
    )
    parser.add_argument(
        "--max-outstanding",
        type=int,
        default=DEFAULT_MAX_OUTSTANDING,
        help="most messages held unprinted at once (flow control)",
    )
    args = parser.parse_args(argv)
    if args.max_outstanding < 1:
        parser.error("--max-outstanding must be at least 1")
    project = args.project or PubSubSettings().project
    if not os.environ.get("PUBSUB_EMULATOR_HOST"):
        print(
            "astra-events: using Google Cloud Pub/Sub (PUBSUB_EMULATOR_HOST unset)", file=sys.stderr
        )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    tail(
        args.topic,
        project=project,
        count=args.count,
        timeout=args.timeout,
        out=sys.stdout,
        stop=stop,
        ordered=args.ordered,
        max_outstanding=args.max_outstanding,
        on_ready=lambda topic, subscription: print(
            f"astra-events: tailing {topic} through {subscription}", file=sys.stderr, flush=True
        ),
    )


if __name__ == "__main__":
    main()
