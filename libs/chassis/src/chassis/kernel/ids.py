"""Opaque identifiers with a type prefix (``acct_...``, ``tr_...``, ``pay_...``, ``cus_...``)."""

from __future__ import annotations

import re

from ulid import ULID

from chassis.kernel.errors import FieldViolation, InvalidArgument

MAX_ID_BODY = 60
_BODY = re.compile(r"[A-Za-z0-9_-]{1,60}")


def new_id(prefix: str) -> str:
    """A new, time-ordered id such as ``tr_01JD3...`` (ULID body: sortable, 128 bits)."""
    return f"{prefix}_{ULID()}"


def is_valid_id(value: str, prefix: str) -> bool:
    """True for ``<prefix>_`` followed by 1 to 60 of ``[A-Za-z0-9_-]``."""
    head = prefix + "_"
    return (
        isinstance(value, str)
        and value.startswith(head)
        and _BODY.fullmatch(value[len(head) :]) is not None
    )


def id_rule(prefix: str) -> str:
    """The rule, in words, for error messages."""
    return f'must be "{prefix}_" followed by 1 to {MAX_ID_BODY} of [A-Za-z0-9_-]'


def require_id(value: str, prefix: str, field: str, *, optional: bool = False) -> None:
    """Refuse a malformed id before it is looked up (one with NUL cannot even be queried):
    INVALID_ARGUMENT naming ``field``. ``optional``: empty is fine (a list's filter)."""
    if (optional and not value) or is_valid_id(value, prefix):
        return
    raise InvalidArgument([FieldViolation(field, id_rule(prefix))])
