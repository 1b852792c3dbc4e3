"""Text a client sends that the suite stores or logs: one rule for every field.

Protobuf strings are valid UTF-8 already (no lone surrogates). What is left to
refuse is what storage or a reader cannot take: NUL, which a PostgreSQL text
value cannot hold at all, and the other control characters (C0 but tab, line
feed and carriage return; DEL; C1), which no name, note or reference needs and
which forge lines and colours in whatever prints them.
"""

from __future__ import annotations

import re

from chassis.kernel.errors import Violations

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
CONTROL_RULE = "must not contain NUL or other control characters (tab and line breaks are fine)"


def has_control(value: str) -> bool:
    """True if ``value`` holds a character the text rule refuses (one regex scan)."""
    return _CONTROL.search(value) is not None


def text_problem(value: str, max_length: int) -> str | None:
    """Why ``value`` is not acceptable text of at most ``max_length`` characters, or None."""
    if len(value) > max_length:
        return f"must be at most {max_length} characters"
    if _CONTROL.search(value) is not None:
        return CONTROL_RULE
    return None


def check_text(
    out: Violations, field: str, value: str, max_length: int, *, required: bool = False
) -> None:
    """Add a violation for ``field`` if ``value`` is blank (when required), too long or unsafe."""
    if required and not value.strip():
        out.add(field, "is required")
        return
    problem = text_problem(value, max_length)
    if problem is not None:
        out.add(field, problem)
