"""FacetCodes: each listing's facets by id, as a code into the distinct tuples."""

import pickle

import pytest

from matching.facet_codes import FacetCodes


def _table() -> FacetCodes:
    table = FacetCodes()
    table.put([3, 7, 9], [("ner",), ("ner",), ("ocr", "ner")])
    return table


def test_gives_each_listing_its_facets() -> None:
    table = _table()
    assert [table.of(i) for i in (3, 7, 9)] == [("ner",), ("ner",), ("ocr", "ner")]


def test_a_listing_without_facets_or_not_held_has_none() -> None:
    table = _table()
    table.put([4], [()])
    assert table.of(4) == ()
    assert table.of(5) == ()
    assert table.of(1_000) == ()
    assert table.of(-1) == ()


def test_put_replaces_and_forget_clears() -> None:
    table = _table()
    table.put([3], [("translation",)])
    table.forget([7, 12_345])
    assert table.of(3) == ("translation",)
    assert table.of(7) == ()
    assert table.of(9) == ("ocr", "ner")


def test_keeps_each_distinct_tuple_once() -> None:
    table = _table()
    table.put(list(range(10, 1_010)), [("ner",)] * 1_000)
    assert table.of(10) is table.of(3)
    assert len(table._tuples) == 3  # (), ("ner",), ("ocr", "ner")


def test_survives_pickling_and_codes_new_tuples_afterwards() -> None:
    restored: FacetCodes = pickle.loads(pickle.dumps(_table()))
    restored.put([11, 12], [("ner",), ("summarization",)])
    assert [restored.of(i) for i in (3, 9, 11, 12)] == [
        ("ner",),
        ("ocr", "ner"),
        ("ner",),
        ("summarization",),
    ]
    assert len(restored._tuples) == 4


def test_a_copy_is_independent() -> None:
    table = _table()
    clone = table.copy()
    clone.put([3], [("ocr",)])
    clone.forget([9])
    assert table.of(3) == ("ner",)
    assert table.of(9) == ("ocr", "ner")


def test_rejects_mismatched_lengths_and_negative_ids() -> None:
    table = FacetCodes()
    with pytest.raises(ValueError, match="2 ids but 1 facet tuples"):
        table.put([1, 2], [("ner",)])
    with pytest.raises(ValueError, match="non-negative"):
        table.put([-1], [("ner",)])
