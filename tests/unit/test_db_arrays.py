"""Array literals for bulk parameters: only for values that need no quoting."""

from __future__ import annotations

from chassis.db.arrays import int_array, text_array


def test_plain_tokens_and_nulls_become_one_literal() -> None:
    literal = text_array(
        ["tr_01", "astra.ledger.v1.TransferPosted", None, "a:1:500:EUR;b:2:500:EUR"]
    )
    assert literal == "{tr_01,astra.ledger.v1.TransferPosted,NULL,a:1:500:EUR;b:2:500:EUR}"


def test_anything_that_needs_quoting_goes_as_a_list() -> None:
    for awkward in ("two words", 'a"b', "a,b", "{x}", "it's", "", "back\\slash"):
        assert text_array(["tr_01", awkward]) == ["tr_01", awkward]


def test_the_word_null_is_never_written_bare() -> None:
    # In a literal, a bare NULL (any case) is read as a null, not as the text.
    for word in ("NULL", "null", "Null"):
        assert text_array([word]) == [word]
    assert text_array(["NULLABLE", "null_0"]) == "{NULLABLE,null_0}"


def test_integers() -> None:
    assert int_array([1, -2, 30]) == "{1,-2,30}"
    assert int_array([]) == "{}"
