"""CloudEvents over Pub/Sub in binary mode: the event's context travels as message attributes.

The Google Cloud Pub/Sub protocol binding of CloudEvents puts each context
attribute in a message attribute named ``ce-<name>`` and the data's media type
in ``content-type``; the message data is the event data itself (here the
serialized proto, so a subscriber decodes it by ``ce-type``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from chassis.kernel.clock import utc

SPEC_VERSION = "1.0"
CONTENT_TYPE_PROTOBUF = "application/protobuf"

ID = "ce-id"
TYPE = "ce-type"
SOURCE = "ce-source"
SPECVERSION = "ce-specversion"
TIME = "ce-time"
# The aggregate the event is about (a transfer, payment or customer id).
SUBJECT = "ce-subject"
CONTENT_TYPE = "content-type"

REQUIRED = (ID, TYPE, SOURCE, SPECVERSION)


def source_of(context: str) -> str:
    """The ``ce-source`` of a context's events, e.g. ``//astra.ledger``."""
    return f"//astra.{context}"


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, to the microsecond."""
    return utc(value).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    # fromisoformat reads "Z" since Python 3.11.
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def binary_attributes(
    *,
    event_id: str,
    event_type: str,
    source: str,
    time: datetime,
    subject: str = "",
    headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The attributes of one event. Extra ``headers`` (e.g. trace context) never replace ours."""
    attributes = dict(headers) if headers else {}
    attributes.update(
        {
            ID: event_id,
            TYPE: event_type,
            SOURCE: source,
            SPECVERSION: SPEC_VERSION,
            TIME: format_time(time),
            CONTENT_TYPE: CONTENT_TYPE_PROTOBUF,
        }
    )
    if subject:
        attributes[SUBJECT] = subject
    else:
        attributes.pop(SUBJECT, None)
    return attributes
