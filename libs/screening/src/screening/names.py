"""Names as the matcher compares them: ASCII tokens, a spelling skeleton, a consonant key.

Sanctions lists and payment instructions write one name many ways: in another
script (Cyrillic, Arabic), romanized by another convention (Mohammed,
Muhammad, Mokhammed), in another order ("PUTIN, Vladimir"), with other
punctuation. Each token is reduced in three steps, each forgiving more:

- ``tokens``: transliterated to ASCII (anyascii), lower case, split on anything
  that is not a letter or digit; legal forms (LLC, GmbH, ...) dropped;
- ``skeleton``: spellings that romanizations disagree on made one (kh -> h,
  ph -> f, c -> k, ou -> u, y -> i, doubled letters once);
- ``consonant_key``: the skeleton's first letter and its other consonants
  (mhmd for Mohammed, Muhammad and the Arabic script's own محمد).
"""

from __future__ import annotations

import re

from anyascii import anyascii

# Legal forms and joining words: they tell nothing about whom a name names.
NOISE = frozenset(
    {
        "ltd", "llc", "inc", "co", "corp", "corporation", "company", "limited", "jsc",
        "ojsc", "cjsc", "pjsc", "ooo", "zao", "oao", "gmbh", "sa", "ag", "plc", "bv", "nv",
        "srl", "spa", "sarl", "fze", "fzco", "the", "of", "and", "mr", "mrs", "ms", "dr",
    }
)  # fmt: skip
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
# Applied in order: longer spellings first, so "sch" is not read as "s" + "ch".
_SPELLINGS = (
    ("sch", "sh"),
    ("tch", "ch"),
    ("dzh", "j"),
    ("dj", "j"),
    ("zh", "j"),
    ("kh", "h"),
    ("ph", "f"),
    ("gh", "g"),
    ("ck", "k"),
    ("q", "k"),
    ("x", "ks"),
    ("ch", "\x01"),  # c is k, but ch stays ch
    ("c", "k"),
    ("\x01", "ch"),
    ("ou", "u"),
    ("oo", "u"),
    ("ee", "i"),
    ("y", "i"),
    ("w", "v"),
)
_REPEATED = re.compile(r"(.)\1+")
_VOWELS = re.compile(r"[aeiouh]")


def tokens(text: str) -> tuple[str, ...]:
    """The name's words in ASCII lower case, legal forms left out (unless nothing else is left)."""
    words = _NOT_ALNUM.sub(" ", anyascii(text).lower()).split()
    kept = tuple(w for w in words if w not in NOISE)
    return kept or tuple(words)


def skeleton(token: str) -> str:
    """The token with the spellings romanizations disagree on made one."""
    for written, said in _SPELLINGS:
        token = token.replace(written, said)
    return _REPEATED.sub(r"\1", token)


def consonant_key(skeleton_token: str) -> str:
    """The first letter and the consonants after it: what survives most romanizations."""
    if len(skeleton_token) < 2:
        return skeleton_token
    return skeleton_token[0] + _VOWELS.sub("", skeleton_token[1:])


def prepared(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The skeletons of a name's tokens (what is compared and indexed), and the tokens as
    written (an initial is one letter as written, and compared with the first letter as
    written: "K." is Khaled's, whose skeleton begins with h)."""
    words = tokens(text)
    return tuple(skeleton(t) for t in words), words
