"""Opaque page tokens (AIP-158).

A token records where the next page starts and a digest of the filters it was
made for: reusing it with other filters is refused rather than silently giving
a wrong page.

The digest is no signature: anyone can make a token that passes it. So a token
is read defensively (bounded length, ASCII base64, a JSON object of exactly the
shape we write), and its position must have the shape the list expects (an id,
a sequence number: ``after_rule``) before it goes anywhere near a query.
Whatever fails is INVALID_ARGUMENT on ``page_token``, never an error of ours.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from chassis.kernel.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# The tokens we issue are about a hundred characters; anything much longer is not ours.
MAX_TOKEN_LENGTH = 512
INT64_MAX = 2**63 - 1
NOT_OURS = "is not a token this service issued"


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class PageRequest:
    """A validated page request: read ``fetch`` items after ``after``, then cut with ``page``."""

    size: int
    after: str | None
    filters: Mapping[str, object] = field(default_factory=dict)

    @property
    def fetch(self) -> int:
        """How many items to read: one more than the page shows whether another page follows."""
        return self.size + 1

    def page(self, fetched: Sequence[T], position: Callable[[T], str]) -> Page[T]:
        """The page of ``fetched`` (read with ``fetch``), and a token for the next one if any;
        ``position`` gives an item's place in the list's order (its id, its sequence)."""
        items = list(fetched[: self.size])
        more = len(fetched) > self.size
        token = encode_page_token(position(items[-1]), self.filters) if more and items else ""
        return Page(items, token)


def _digest(filters: Mapping[str, object]) -> str:
    canonical = json.dumps(filters, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_page_token(after: str, filters: Mapping[str, object]) -> str:
    raw = json.dumps({"a": after, "f": _digest(filters)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def is_sequence(value: str) -> bool:
    """A position that is a positive int64 in plain ASCII digits (``"42"``, not ``"²"``)."""
    return (
        0 < len(value) <= 19 and value.isascii() and value.isdigit() and 0 < int(value) <= INT64_MAX
    )


def _decode(page_token: str) -> tuple[str, str] | None:
    """The token's (position, digest), or None when it is not a token we could have made."""
    if len(page_token) > MAX_TOKEN_LENGTH or not page_token.isascii():
        return None
    try:
        raw = base64.b64decode(
            page_token + "=" * (-len(page_token) % 4), altchars=b"-_", validate=True
        )
        data = json.loads(raw)
    except (ValueError, RecursionError):  # bad base64, bad UTF-8 and bad JSON are ValueErrors
        return None
    if not isinstance(data, dict) or data.keys() != {"a", "f"}:
        return None
    after, digest = data["a"], data["f"]
    if not isinstance(after, str) or not isinstance(digest, str):
        return None
    return after, digest


def parse_page(
    page_size: int,
    page_token: str,
    filters: Mapping[str, object],
    *,
    after_rule: Callable[[str], bool],
    default_size: int = DEFAULT_PAGE_SIZE,
    max_size: int = MAX_PAGE_SIZE,
) -> PageRequest:
    """Validate size and token; 0 means the default size, larger than max is refused.

    ``after_rule`` says whether a decoded position has the shape of the list's
    positions (the ids or sequence numbers it pages by).
    """
    violations: list[FieldViolation] = []
    if page_size < 0 or page_size > max_size:
        violations.append(FieldViolation("page_size", f"must be between 0 and {max_size}"))
    after: str | None = None
    if page_token:
        decoded = _decode(page_token)
        if decoded is None or not after_rule(decoded[0]):
            violations.append(FieldViolation("page_token", NOT_OURS))
        elif decoded[1] != _digest(filters):
            violations.append(
                FieldViolation("page_token", "was issued for a request with other filters")
            )
        else:
            after = decoded[0]
    if violations:
        raise InvalidArgument(violations)
    return PageRequest(size=page_size or default_size, after=after, filters=dict(filters))
