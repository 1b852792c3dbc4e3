"""The journal's export file: JSON lines, streamable both ways (services/ledger/JOURNAL.md).

Line 1, the header: ``{"format":"astra-ledger-journal","head":{"hash":"<hex>",
"sequence":N},"version":1}`` (canonical JSON). Then one line per record, in
sequence order, always with its members in this order and the body last::

    {"sequence":1,"prev_hash":"<hex>","hash":"<hex>","recorded_at":<µs>,"body":<body>}

The body is the stored bytes verbatim (canonical JSON is valid JSON): nothing
is re-encoded, so the hash a reader computes over those bytes is the stored
one. A reader takes the body's bytes from after ``"body":`` to the line's last
``}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from ledger.domain.journal import canonical, instant, micros
from ledger.domain.journal_records import JournalRow
from ledger.domain.replay import kind_of

FORMAT = "astra-ledger-journal"
VERSION = 1
_BODY = b',"body":'

Head = tuple[int, bytes]


class BadExport(ValueError):
    """A file that is not a journal export, or a line that is not a record of one."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line


def header(head: Head) -> bytes:
    sequence, digest = head
    value = {
        "format": FORMAT,
        "version": VERSION,
        "head": {"sequence": sequence, "hash": digest.hex()},
    }
    return canonical(value) + b"\n"


def record_line(record: JournalRow) -> bytes:
    recorded = micros(record.recorded_at) if record.recorded_at is not None else None
    prefix = (
        f'{{"sequence":{record.sequence},"prev_hash":"{record.prev_hash.hex()}",'
        f'"hash":"{record.hash.hex()}","recorded_at":{json.dumps(recorded)}'
    ).encode()
    return prefix + _BODY + record.body + b"}\n"


def write(out: BinaryIO, head: Head, records: Iterable[JournalRow]) -> int:
    """Write the header and every record; returns how many records."""
    out.write(header(head))
    count = 0
    for record in records:
        out.write(record_line(record))
        count += 1
    return count


def _hash(value: object, line: int, what: str) -> bytes:
    try:
        digest = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise BadExport(line, f"{what} is not 32 bytes in hex")
    return digest


def read_head(lines: Iterator[bytes]) -> Head:
    first = next(lines, b"")
    try:
        value = json.loads(first)
        if value["format"] != FORMAT or value["version"] != VERSION:
            raise BadExport(1, f"not {FORMAT} version {VERSION}")
        sequence = int(value["head"]["sequence"])
        return sequence, _hash(value["head"]["hash"], 1, "the head's hash")
    except (ValueError, KeyError, TypeError) as error:
        if isinstance(error, BadExport):
            raise
        raise BadExport(1, f"not a journal export header ({error})") from error


def read_records(lines: Iterator[bytes], first_line: int = 2) -> Iterator[JournalRow]:
    for number, line in enumerate(lines, start=first_line):
        line = line.rstrip(b"\r\n")
        if not line:
            continue
        try:
            value = json.loads(line)
            at = line.index(_BODY)
        except ValueError as error:
            raise BadExport(number, f"not a record line ({error})") from error
        kind = kind_of(value.get("body")) if isinstance(value, dict) else None
        if kind is None:
            raise BadExport(number, "not a record line (no body of a known layout)")
        body = line[at + len(_BODY) : -1]
        try:
            sequence = int(value["sequence"])
            recorded = value.get("recorded_at")
            yield JournalRow(
                sequence=sequence,
                prev_hash=_hash(value["prev_hash"], number, "prev_hash"),
                hash=_hash(value["hash"], number, "hash"),
                body=body,
                kind=kind,
                recorded_at=instant(recorded) if isinstance(recorded, int) else None,
            )
        except (KeyError, TypeError) as error:
            raise BadExport(number, f"not a record line ({error})") from error


def read(source: BinaryIO) -> tuple[Head, Iterator[JournalRow]]:
    """The header's head, and the records as they are read (one line at a time)."""
    lines = iter(source)
    return read_head(lines), read_records(lines)
