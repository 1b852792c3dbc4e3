"""The shared sanctions screening library: the SDN layout, the matcher, the generated samples."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from screening.countries import country_code, is_alpha2
from screening.matcher import COUNTRY_MISMATCH_PENALTY, Outcome, Screener, score_names
from screening.samples import Person, cyrillic, sample_list, write_sdn
from screening.sdn import SanctionsList, SanctionsListError, SdnEntry, load_sdn, parse_sdn

from bench.sanctions_eval import run

THRESHOLD = 90

# Synthetic rows in the SDN layout (no header, -0- nulls, "A] [B" programs, a trailing 0x1A).
SDN = (
    b'4711,"KORVANI, Dashel Miro","individual","SDGT] [IRGC","-0- ","-0- ","-0- ","-0- ",'
    b'"-0- ","-0- ","-0- ","DOB 1970."\r\n'
    b'4712,"TREMOLA SHIPPING LLC",-0- ,"IRAN",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \r\n'
    b'4713,"STELLA VORNA","vessel","DPRK3",-0- ,"ABCD","Cargo",-0- ,-0- ,'
    b'"Korea, North",-0- ,-0- \r\n'
    b"\x1a"
)
ALT = b'4711,101,"aka","QORVANI, Dashil",-0- \r\n4712,102,"fka","TREMOLA MARINE CO",-0- \r\n'
ADD = (
    b'4711,201,-0- ,"Tehran",Iran,-0- \r\n4712,202,"Street 1",-0- ,"United Arab Emirates",-0- \r\n'
)


def test_the_sdn_layout_is_read_with_aliases_programs_and_countries() -> None:
    sanctions = parse_sdn(SDN, ALT, ADD)
    person, company, vessel = sanctions.entries
    assert person == SdnEntry(
        "4711",
        "KORVANI, Dashel Miro",
        "individual",
        ("SDGT", "IRGC"),
        ("QORVANI, Dashil",),
        frozenset({"IR"}),
    )
    assert (company.sdn_type, company.programs, company.aliases) == (
        "entity",
        ("IRAN",),
        ("TREMOLA MARINE CO",),
    )
    assert company.countries == frozenset({"AE"})
    assert (vessel.sdn_type, vessel.countries) == ("vessel", frozenset({"KP"}))


def test_the_version_is_the_contents_digest() -> None:
    first = parse_sdn(SDN, ALT, ADD).version
    assert first == parse_sdn(SDN, ALT, ADD).version
    assert first.startswith("sdn-")
    assert parse_sdn(SDN, ALT + b'4713,103,"aka","VORNA STAR",-0- \r\n', ADD).version != first
    assert parse_sdn(SDN).version != first


@pytest.mark.parametrize(
    ("sdn", "message"),
    [
        (b'abc,"NAME",-0- ,"SDGT"\r\n', "not a number"),
        (b'1,"A B",-0- ,"SDGT"\r\n1,"C D",-0- ,"SDGT"\r\n', "appears twice"),
        (b'1,-0- ,-0- ,"SDGT"\r\n', "no name"),
        (b"1\r\n", "field"),
        (b"\xff\xfe\x00", "line 1"),
    ],
)
def test_a_malformed_list_is_refused_with_its_line(sdn: bytes, message: str) -> None:
    with pytest.raises(SanctionsListError, match=message):
        parse_sdn(sdn)


def test_files_are_read_from_beside_sdn_csv(tmp_path) -> None:  # type: ignore[no-untyped-def]
    entries = sample_list(3, 50).entries
    sdn_file = write_sdn(entries, tmp_path)
    loaded = load_sdn(sdn_file)
    assert [(e.uid, e.name, e.aliases, e.programs, e.countries) for e in loaded.entries] == [
        (e.uid, e.name, e.aliases, e.programs, e.countries) for e in entries
    ]
    with pytest.raises(SanctionsListError, match=r"missing\.csv"):
        load_sdn(tmp_path / "missing.csv")


def test_countries() -> None:
    assert is_alpha2("DE")
    assert is_alpha2("XK")
    assert not any(is_alpha2(v) for v in ("de", "D", "DEU", "ZZ", "", "\uff24"))
    assert country_code("Korea, North") == "KP"
    assert country_code("Germany") == "DE"
    assert country_code("Atlantis") is None


# --- the matcher -----------------------------------------------------------------------------

names = st.builds(
    Person,
    st.lists(st.from_regex(r"[a-z]{4,9}", fullmatch=True), min_size=1, max_size=2).map(tuple),
    st.from_regex(r"[a-z]{5,10}", fullmatch=True),
)


@settings(max_examples=60, deadline=None)
@given(names)
def test_a_listed_name_is_caught_however_it_is_written(person: Person) -> None:
    for written in (
        person.written,
        person.written.upper(),
        f"{person.surname} {' '.join(person.given)}",
        f"{person.surname.upper()},{'-'.join(person.given)}.",
        cyrillic(person.written),
        " ".join(g[0] + "." for g in person.given) + " " + person.surname,
    ):
        assert score_names(written, person.listed) >= THRESHOLD, written


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400), st.sampled_from(["", "DE", "IR"]))
def test_any_text_is_screened_without_error(text: str, country: str) -> None:
    screener = _screener()
    screening = screener.screen(text, country)
    assert 0 <= screening.score <= 100
    assert screening.hit == (screening.score >= THRESHOLD and screening.match is not None)
    if not text.strip():
        assert screening.outcome is Outcome.NOT_SCREENED


def test_a_hit_names_the_entry_its_alias_and_programs() -> None:
    screener = Screener(parse_sdn(SDN, ALT, ADD), THRESHOLD)
    screening = screener.screen("Dashil Qorvany")
    assert screening.hit
    assert screening.match is not None
    assert (screening.match.entry_uid, screening.match.matched_name) == ("4711", "QORVANI, Dashil")
    assert screening.match.programs == ("SDGT", "IRGC")
    assert screening.list_version == screener.version
    assert screener.screen("Tremola Shipping").match is not None


def test_a_listed_name_inside_a_longer_one_hits() -> None:
    assert score_names("Tremola Shipping Dubai Branch", "TREMOLA SHIPPING LLC") >= THRESHOLD
    assert score_names("Dashel Miro Korvani Holding", "KORVANI, Dashel Miro") >= THRESHOLD
    assert score_names("Tremola Dubai Branch", "TREMOLA SHIPPING LLC") < THRESHOLD


def test_initials_alone_or_a_shared_first_name_do_not_hit() -> None:
    screener = Screener(parse_sdn(SDN, ALT, ADD), THRESHOLD)
    assert screener.screen("D. M. K.").outcome is Outcome.CLEAR
    assert screener.screen("Dashel Miro Smith").outcome is Outcome.CLEAR
    assert score_names("Dashel Korvanisharov", "KORVANI, Dashel") < THRESHOLD


def test_another_country_costs_the_penalty_and_is_recorded() -> None:
    screener = Screener(parse_sdn(SDN, ALT, ADD), 1)
    same, other, unknown = (screener.screen("Dashel Korvani", c) for c in ("IR", "FR", ""))
    assert same.match is not None
    assert other.match is not None
    assert unknown.match is not None
    assert same.match.country_matched is True
    assert other.match.country_matched is False
    assert unknown.match.country_matched is None
    assert other.score == same.score - COUNTRY_MISMATCH_PENALTY


def test_the_threshold_is_a_score() -> None:
    with pytest.raises(ValueError, match="threshold"):
        Screener(SanctionsList("v", ()), 0)


def test_recall_and_false_positives_on_the_generated_set() -> None:
    result = run(seed=20, size=2000, listed=300, clean=300, threshold=THRESHOLD)
    assert (result.listed, result.clean) == (300, 300)
    assert result.recall >= 0.97, result.misses[:10]
    assert result.false_positive_rate <= 0.02, result.false_hits[:10]


def test_samples_are_the_same_for_the_same_seed() -> None:
    assert sample_list(5, 100) == sample_list(5, 100)
    assert sample_list(5, 100).entries != sample_list(6, 100).entries


_SCREENER: list[Screener] = []


def _screener() -> Screener:
    if not _SCREENER:
        _SCREENER.append(Screener(SanctionsList("v", sample_list(1, 500).entries), THRESHOLD))
    return _SCREENER[0]
