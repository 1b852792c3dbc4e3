"""Countries: ISO 3166-1 alpha-2 codes, and the country names the SDN list writes."""

from __future__ import annotations

from functools import lru_cache

import pycountry

# Names the SDN list uses that ISO 3166's names (and pycountry's lookup) do not know.
_SDN_NAMES = {
    "burma": "MM",
    "russia": "RU",
    "iran": "IR",
    "syria": "SY",
    "korea, north": "KP",
    "north korea": "KP",
    "korea, south": "KR",
    "south korea": "KR",
    "venezuela": "VE",
    "bolivia": "BO",
    "tanzania": "TZ",
    "vietnam": "VN",
    "laos": "LA",
    "moldova": "MD",
    "congo, democratic republic of the": "CD",
    "congo, republic of the": "CG",
    "turkey": "TR",
    "taiwan": "TW",
    "palestinian": "PS",
    "west bank": "PS",
    "gaza": "PS",
    "kosovo": "XK",
    "macau": "MO",
    "cote d ivoire": "CI",
    "cote d'ivoire": "CI",
}
# Kosovo has no ISO code but the user-assigned XK that banks use for it.
_EXTRA_CODES = frozenset({"XK"})


def is_alpha2(code: str) -> bool:
    """Whether ``code`` is an ISO 3166-1 alpha-2 code, upper case (``DE``, not ``de``)."""
    if len(code) != 2 or not code.isascii() or not code.isupper():
        return False
    return code in _EXTRA_CODES or pycountry.countries.get(alpha_2=code) is not None


@lru_cache(maxsize=4096)
def country_code(name: str) -> str | None:
    """The alpha-2 code of a country as the SDN list names it; None when it names none."""
    cleaned = " ".join(name.split()).strip()
    if not cleaned:
        return None
    known = _SDN_NAMES.get(cleaned.lower())
    if known is not None:
        return known
    if is_alpha2(cleaned):
        return cleaned
    try:
        country = pycountry.countries.lookup(cleaned)
    except LookupError:
        return None
    return str(country.alpha_2)
