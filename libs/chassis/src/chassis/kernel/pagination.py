"""Opaque page tokens (AIP-158).

A token records where the next page starts and a digest of the filters it was
made for: reusing it with other filters is refused rather than silently giving
a wrong page.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from chassis.kernel.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class PageRequest:
    size: int
    after: str | None


def _digest(filters: Mapping[str, object]) -> str:
    canonical = json.dumps(filters, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_page_token(after: str, filters: Mapping[str, object]) -> str:
    raw = json.dumps({"a": after, "f": _digest(filters)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_page(
    page_size: int,
    page_token: str,
    filters: Mapping[str, object],
    *,
    default_size: int = DEFAULT_PAGE_SIZE,
    max_size: int = MAX_PAGE_SIZE,
) -> PageRequest:
    """Validate size and token; 0 means the default size, larger than max is refused."""
    violations: list[FieldViolation] = []
    if page_size < 0 or page_size > max_size:
        violations.append(FieldViolation("page_size", f"must be between 0 and {max_size}"))
    after: str | None = None
    if page_token:
        try:
            padded = page_token + "=" * (-len(page_token) % 4)
            data = json.loads(base64.urlsafe_b64decode(padded.encode()))
            if not isinstance(data, dict) or not isinstance(data.get("a"), str):
                raise ValueError("bad token shape")
            if data.get("f") != _digest(filters):
                violations.append(
                    FieldViolation("page_token", "was issued for a request with other filters")
                )
            after = data["a"]
        except (ValueError, UnicodeDecodeError):
            violations.append(FieldViolation("page_token", "is not a token this service issued"))
    if violations:
        raise InvalidArgument(violations)
    return PageRequest(size=page_size or default_size, after=after)
