"""PostgreSQL array literals for bulk parameters (``= ANY(:ids)``, ``unnest(...)``).

A Python list bound as a parameter is adapted by psycopg element by element;
for thousands of values one literal string is several times cheaper to build.
Only values that need no quoting inside an array literal take that path:
plain tokens (identifiers, type names, fingerprints, reasons). Anything else,
and the bare word NULL (which a literal reads as a null), goes to psycopg as a
list, which quotes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_PLAIN = re.compile(r"(?!(?i:null)\Z)[A-Za-z0-9_.:;-]+")


def text_array(values: Sequence[str | None]) -> str | list[str | None]:
    """A text array: a literal when every value is a plain token (or None), else the list."""
    if all(value is None or _PLAIN.fullmatch(value) for value in values):
        return "{" + ",".join("NULL" if value is None else value for value in values) + "}"
    return list(values)


def int_array(values: Iterable[int]) -> str:
    """An integer array literal."""
    return "{" + ",".join(map(str, values)) + "}"
