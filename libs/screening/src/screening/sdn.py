"""The OFAC SDN list in its public CSV layout: sdn.csv, with alt.csv and add.csv beside it.

The files have no header row; fields are positional (OFAC's data specification):

- ``sdn.csv``: ent_num, SDN_Name, SDN_Type, Program, Title, Call_Sign, Vess_type,
  Tonnage, GRT, Vess_flag, Vess_owner, Remarks;
- ``alt.csv``: ent_num, alt_num, alt_type (aka, fka, nka), alt_name, alt_remarks;
- ``add.csv``: ent_num, Add_num, Address, City/State/Province/Postal Code,
  Country, Add_remarks.

A null is written ``-0-``; several programs in one field are written
``SDGT] [IRGC`` (the brackets of ``[SDGT] [IRGC]`` without the outer ones); the
files may end with an end-of-file character (0x1A). An individual's name is
``LAST, First Middle``.

The list's version is a digest of the three files' contents: the same files give
the same version wherever they are loaded, and any change gives a new one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from screening.countries import country_code

NULL = "-0-"
ALIAS_FILE = "alt.csv"
ADDRESS_FILE = "add.csv"
_PROGRAM_SPLIT = re.compile(r"\]\s*\[")
# Beyond any name the list writes (its specification allows 350 characters).
MAX_NAME = 350


class SanctionsListError(ValueError):
    """The list's files cannot be read as the SDN layout."""


@dataclass(frozen=True, slots=True)
class SdnEntry:
    uid: str  # ent_num
    name: str
    sdn_type: str  # individual, entity ("-0-" in the file), vessel, aircraft
    programs: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    # ISO 3166-1 alpha-2 codes of its addresses (and a vessel's flag), where known.
    countries: frozenset[str] = frozenset()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True, slots=True)
class SanctionsList:
    version: str
    entries: tuple[SdnEntry, ...]


def _decoded(data: bytes, file: str) -> str:
    # OFAC publishes UTF-8; older copies are Windows-1252.
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise SanctionsListError(f"{file}: neither UTF-8 nor Windows-1252")


def _rows(data: bytes, file: str, width: int) -> Iterator[tuple[int, list[str]]]:
    """The file's records (line number, fields with nulls as ""), each padded to ``width``."""
    text = _decoded(data, file).replace("\x1a", "")
    try:
        for number, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
            if not any(field.strip() for field in row):
                continue
            fields = [_value(field) for field in row]
            if len(fields) < 2:
                raise SanctionsListError(f"{file} line {number}: {len(fields)} field(s)")
            yield number, (fields + [""] * width)[:width]
    except csv.Error as error:
        raise SanctionsListError(f"{file}: {error}") from None


def _value(field: str) -> str:
    value = field.strip()
    return "" if value == NULL else value


def _uid(value: str, file: str, number: int) -> str:
    if not value.isdigit() or len(value) > 18:
        raise SanctionsListError(f"{file} line {number}: ent_num {value[:20]!r} is not a number")
    return str(int(value))


def _name(value: str, file: str, number: int) -> str:
    if not value:
        raise SanctionsListError(f"{file} line {number}: no name")
    return value[:MAX_NAME]


def programs_of(field: str) -> tuple[str, ...]:
    """``SDGT] [IRGC`` (or ``[SDGT] [IRGC]``) -> ("SDGT", "IRGC")."""
    parts = (p.strip().strip("[]").strip() for p in _PROGRAM_SPLIT.split(field))
    return tuple(p for p in parts if p)


def parse_sdn(sdn: bytes, alt: bytes | None = None, add: bytes | None = None) -> SanctionsList:
    """The list from the contents of sdn.csv and, if given, alt.csv and add.csv."""
    digest = hashlib.sha256()
    for part in (sdn, alt or b"", add or b""):
        digest.update(hashlib.sha256(part).digest())
    aliases: dict[str, list[str]] = {}
    for number, row in _rows(alt or b"", ALIAS_FILE, 5):
        uid = _uid(row[0], ALIAS_FILE, number)
        aliases.setdefault(uid, []).append(_name(row[3], ALIAS_FILE, number))
    countries: dict[str, set[str]] = {}
    for number, row in _rows(add or b"", ADDRESS_FILE, 6):
        uid = _uid(row[0], ADDRESS_FILE, number)
        code = country_code(row[4])
        if code is not None:
            countries.setdefault(uid, set()).add(code)
    entries: list[SdnEntry] = []
    seen: set[str] = set()
    for number, row in _rows(sdn, "sdn.csv", 12):
        uid = _uid(row[0], "sdn.csv", number)
        if uid in seen:
            raise SanctionsListError(f"sdn.csv line {number}: ent_num {uid} appears twice")
        seen.add(uid)
        flag = country_code(row[9]) if row[9] else None
        places = countries.get(uid, set()) | ({flag} if flag else set())
        entries.append(
            SdnEntry(
                uid=uid,
                name=_name(row[1], "sdn.csv", number),
                sdn_type=row[2].lower() or "entity",
                programs=programs_of(row[3]),
                aliases=tuple(aliases.get(uid, ())),
                countries=frozenset(places),
            )
        )
    return SanctionsList(f"sdn-{digest.hexdigest()[:16]}", tuple(entries))


def load_sdn(sdn_file: str | Path) -> SanctionsList:
    """The list from ``sdn_file`` and the alt.csv and add.csv beside it (each optional)."""
    path = Path(sdn_file)
    try:
        sdn = path.read_bytes()
    except OSError as error:
        raise SanctionsListError(f"{path}: {error.strerror or error}") from None
    beside = [path.with_name(ALIAS_FILE), path.with_name(ADDRESS_FILE)]
    alt, add = (p.read_bytes() if p.is_file() else None for p in beside)
    return parse_sdn(sdn, alt, add)
