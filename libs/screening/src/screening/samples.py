"""A generated sanctions list in the SDN layout, and name variants to evaluate screening with.

Nothing here is copied from OFAC: names are built from syllables by a seeded
random generator, so the same seed always gives the same files. Program codes
and countries are drawn from short lists of real ones (facts, not data).

``sample_list(seed, size)`` gives the entries; ``write_sdn`` writes them as
sdn.csv, alt.csv and add.csv (no header, ``-0-`` nulls, ``A] [B`` programs);
``evaluation_set`` gives, for listed names, variants that must be caught
(transliterated into Cyrillic, romanized another way, words swapped, a typo,
initials, punctuation) and clean names close to listed ones that must not be
(same given names with another surname, a surname grown longer, a listed
surname with other given names).

``astra-sanctions-sample --out DIR [--seed N] [--size N]`` writes a list.
"""

from __future__ import annotations

import argparse
import csv
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from screening.sdn import SdnEntry

_ONSETS = (
    "b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
    "sh", "kh", "ch", "br", "dr", "gr", "kr", "tr", "st", "zh",
)  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "a", "o", "ia", "ei", "ou")
_CODAS = ("", "", "", "n", "r", "l", "m", "s", "v", "d", "k", "t")
_SURNAME_ENDINGS = ("ov", "ev", "in", "ski", "enko", "ani", "i", "adze", "yan", "ez", "")
_ENTITY_WORDS = (
    "TRADING", "SHIPPING", "INVEST", "HOLDING", "INDUSTRIAL", "GROUP", "MARITIME",
    "PETROLEUM", "FINANCE", "ENGINEERING", "TECHNOLOGIES", "LOGISTICS", "BANK",
)  # fmt: skip
_LEGAL_FORMS = ("LLC", "LTD", "JSC", "CO", "FZE", "GMBH", "SA", "")
PROGRAMS = (
    "SDGT", "IRAN", "IRGC", "RUSSIA-EO14024", "UKRAINE-EO13662", "CYBER2", "SDNTK",
    "DPRK3", "SYRIA", "VENEZUELA-EO13850", "GLOMAG", "NPWMD", "BELARUS-EO14038",
)  # fmt: skip
COUNTRIES = (
    ("Iran", "IR"), ("Russia", "RU"), ("Syria", "SY"), ("Korea, North", "KP"),
    ("Venezuela", "VE"), ("Belarus", "BY"), ("United Arab Emirates", "AE"),
    ("Turkey", "TR"), ("China", "CN"), ("Lebanon", "LB"), ("Mexico", "MX"),
    ("Cyprus", "CY"),
)  # fmt: skip
# Latin -> Cyrillic, longest first, for transliterated variants (anyascii reads them back).
_TO_CYRILLIC = (
    ("shch", "щ"), ("sh", "ш"), ("ch", "ч"), ("zh", "ж"), ("kh", "х"), ("ts", "ц"),
    ("ya", "я"), ("yu", "ю"), ("a", "а"), ("b", "б"), ("v", "в"), ("g", "г"), ("d", "д"),
    ("e", "е"), ("z", "з"), ("i", "и"), ("y", "й"), ("k", "к"), ("l", "л"), ("m", "м"),
    ("n", "н"), ("o", "о"), ("p", "п"), ("r", "р"), ("s", "с"), ("t", "т"), ("u", "у"),
    ("f", "ф"), ("h", "х"), ("c", "к"), ("j", "дж"), ("w", "в"), ("x", "кс"), ("q", "к"),
)  # fmt: skip
# Romanizations that disagree: each variant uses one of these the other way.
_RESPELLINGS = (
    ("kh", "h"), ("ou", "u"), ("u", "ou"), ("i", "y"), ("y", "i"), ("f", "ph"),
    ("ia", "ya"), ("e", "i"), ("v", "w"), ("k", "q"), ("sh", "sch"), ("zh", "j"),
)  # fmt: skip


SHORT_SURNAME = 8


@dataclass(frozen=True, slots=True)
class Person:
    given: tuple[str, ...]
    surname: str

    @property
    def listed(self) -> str:
        return f"{self.surname.upper()}, {' '.join(g.capitalize() for g in self.given)}"

    @property
    def written(self) -> str:
        return " ".join([*(g.capitalize() for g in self.given), self.surname.capitalize()])


@dataclass(frozen=True, slots=True)
class Variant:
    """A name to screen, and what screening must say of it."""

    name: str
    kind: str
    # The entry it stands for (a variant of a listed name); empty for a clean name.
    entry_uid: str = ""

    @property
    def listed(self) -> bool:
        return bool(self.entry_uid)


@dataclass(frozen=True, slots=True)
class Sample:
    entries: tuple[SdnEntry, ...]
    # Who each listed individual is, by entry uid (entities are not people).
    people: dict[str, Person]
    surnames: frozenset[str]


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(
        rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables)
    )


def _given(rng: random.Random) -> str:
    return _word(rng, rng.choice((2, 2, 3)))


def _surname(rng: random.Random) -> str:
    return _word(rng, rng.choice((1, 2, 2, 3))) + rng.choice(_SURNAME_ENDINGS)


def _person(rng: random.Random) -> Person:
    given = tuple(_given(rng) for _ in range(rng.choice((1, 1, 2))))
    return Person(given, _surname(rng))


def sample_list(seed: int, size: int) -> Sample:
    """``size`` entries (about four in five individuals), the same for the same seed."""
    rng = random.Random(seed)
    entries: list[SdnEntry] = []
    people: dict[str, Person] = {}
    for number in range(size):
        uid = str(10_000 + number)
        programs = tuple(rng.sample(PROGRAMS, rng.choice((1, 1, 2))))
        places = rng.sample(COUNTRIES, rng.choice((0, 1, 1, 2)))
        countries = frozenset(code for _, code in places)
        if rng.random() < 0.8:
            person = _person(rng)
            people[uid] = person
            aliases = [respelled(rng, person.listed) for _ in range(rng.choice((0, 1, 2)))]
            if rng.random() < 0.2:
                aliases.append(_person(rng).listed)
            entries.append(
                SdnEntry(uid, person.listed, "individual", programs, tuple(aliases), countries)
            )
        else:
            words = [_word(rng, 2).upper(), *rng.sample(_ENTITY_WORDS, rng.choice((1, 2)))]
            name = " ".join([*words, rng.choice(_LEGAL_FORMS)]).strip()
            entries.append(SdnEntry(uid, name, "entity", programs, (), countries))
    surnames = frozenset(p.surname for p in people.values())
    return Sample(tuple(entries), people, surnames)


def respelled(rng: random.Random, name: str) -> str:
    """The name as another romanization might write it (one spelling changed)."""
    lowered = name.lower()
    choices = [(a, b) for a, b in _RESPELLINGS if a in lowered]
    if not choices:
        return name
    written, other = rng.choice(choices)
    at = rng.choice([i for i in range(len(lowered)) if lowered.startswith(written, i)])
    return (name[:at] + other + name[at + len(written) :]).upper()


def cyrillic(name: str) -> str:
    out, text = [], name.lower()
    i = 0
    while i < len(text):
        for latin, letter in _TO_CYRILLIC:
            if text.startswith(latin, i):
                out.append(letter)
                i += len(latin)
                break
        else:
            out.append(text[i])
            i += 1
    return "".join(out).title()


def typo(rng: random.Random, word: str) -> str:
    """One edit: a letter changed, dropped, doubled or swapped with the next (not the first)."""
    if len(word) < 4:
        return word
    at = rng.randrange(1, len(word) - 1)
    edit = rng.choice(("change", "drop", "double", "swap"))
    if edit == "change":
        letter = rng.choice([c for c in "abdefgiklmnorstuv" if c != word[at]])
        return word[:at] + letter + word[at + 1 :]
    if edit == "drop":
        return word[:at] + word[at + 1 :]
    if edit == "double":
        return word[:at] + word[at] + word[at:]
    return word[:at] + word[at + 1] + word[at] + word[at + 2 :]


def evaluation_set(sample: Sample, seed: int, listed: int, clean: int) -> list[Variant]:
    """``listed`` variants of listed individuals (spread over the kinds) and ``clean`` names
    close to listed ones that name nobody on the list."""
    rng = random.Random(seed)
    uids = sorted(sample.people)
    variants: list[Variant] = []
    kinds = ("cyrillic", "respelled", "swapped", "typo", "initials", "punctuation")
    for number in range(listed):
        uid = rng.choice(uids)
        person = sample.people[uid]
        kind = kinds[number % len(kinds)]
        variants.append(Variant(_variant(rng, person, kind), kind, uid))
    clean_kinds = ("other_surname", "longer_surname", "other_given")
    # Smith and Smithson: a short surname grown by a syllable or two is another name; a long
    # one with a few letters more is as close as a typo, and is not asked of the matcher.
    short = [uid for uid in uids if len(sample.people[uid].surname) <= SHORT_SURNAME]
    for number in range(clean):
        kind = clean_kinds[number % len(clean_kinds)]
        person = sample.people[rng.choice(short if kind == "longer_surname" else uids)]
        variants.append(Variant(_clean(rng, sample, person, kind), kind))
    return variants


def _variant(rng: random.Random, person: Person, kind: str) -> str:
    if kind == "cyrillic":
        return cyrillic(person.written)
    if kind == "respelled":
        return respelled(rng, person.written).title()
    if kind == "swapped":
        return f"{person.surname.capitalize()} {' '.join(g.capitalize() for g in person.given)}"
    if kind == "typo":
        words = [*person.given, person.surname]
        at = max(range(len(words)), key=lambda i: len(words[i]))
        words[at] = typo(rng, words[at])
        return " ".join(w.capitalize() for w in words)
    if kind == "initials":
        initials = " ".join(g[0].upper() + "." for g in person.given)
        return f"{initials} {person.surname.capitalize()}"
    # punctuation: hyphens, commas, dots and case as a form might have them
    return f"{person.surname.upper()},{'-'.join(g.upper() for g in person.given)}."


def _fresh_surname(rng: random.Random, sample: Sample) -> str:
    while True:
        surname = _surname(rng)
        if surname not in sample.surnames and len(surname) >= 4:
            return surname


def _clean(rng: random.Random, sample: Sample, person: Person, kind: str) -> str:
    if kind == "other_surname":
        return Person(person.given, _fresh_surname(rng, sample)).written
    if kind == "longer_surname":
        while True:
            longer = person.surname + _word(rng, 2)
            if longer not in sample.surnames:
                return Person(person.given, longer).written
    given = tuple(_given(rng) for _ in person.given)
    return Person(given, person.surname).written


def write_sdn(entries: Sequence[SdnEntry], folder: Path) -> Path:
    """sdn.csv, alt.csv and add.csv in ``folder``, in the SDN layout; returns sdn.csv's path."""
    folder.mkdir(parents=True, exist_ok=True)
    null = "-0-"
    code_names = {code: name for name, code in COUNTRIES}
    with (
        (folder / "sdn.csv").open("w", newline="", encoding="utf-8") as sdn,
        (folder / "alt.csv").open("w", newline="", encoding="utf-8") as alt,
        (folder / "add.csv").open("w", newline="", encoding="utf-8") as add,
    ):
        sdn_rows, alt_rows, add_rows = (
            csv.writer(f, lineterminator="\r\n") for f in (sdn, alt, add)
        )
        alias_number = address_number = 1
        for entry in entries:
            kind = entry.sdn_type if entry.sdn_type != "entity" else null
            sdn_rows.writerow(
                [entry.uid, entry.name, kind, "] [".join(entry.programs), *[null] * 8]
            )
            for alias in entry.aliases:
                alt_rows.writerow([entry.uid, alias_number, "aka", alias, null])
                alias_number += 1
            for code in sorted(entry.countries):
                add_rows.writerow([entry.uid, address_number, null, null, code_names[code], null])
                address_number += 1
    return folder / "sdn.csv"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for the three files")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--size", type=int, default=10_000, help="entries")
    args = parser.parse_args(argv)
    path = write_sdn(sample_list(args.seed, args.size).entries, args.out)
    print(path)


if __name__ == "__main__":
    main()
