"""FacetCodes: each listing's facets by id, as a code into the distinct tuples."""

import pickle

import numpy as np
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


def test_pairs_give_each_listing_its_facets_as_numbers() -> None:
    table = _table()
    ids = [9, 5, 3, 7, 9]  # 5 is not held; 9 asked twice
    positions, numbers = table.pairs(np.asarray(ids, dtype=np.int64))
    assert positions.tolist() == [0, 0, 2, 3, 4, 4]
    ocr, ner = numbers[0], numbers[1]
    assert ocr != ner
    assert numbers.tolist() == [ocr, ner, ner, ner, ocr, ner]


def test_pairs_number_facets_consistently_across_tuples_and_new_codes() -> None:
    table = _table()
    table.pairs(np.asarray([3], dtype=np.int64))
    table.put([11, 3], [("asr", "ocr"), ()])  # a new tuple after numbering; 3 loses its facets
    positions, numbers = table.pairs(np.asarray([3, 9, 11, 1_000, -1], dtype=np.int64))
    assert positions.tolist() == [1, 1, 2, 2]
    ocr, ner, asr, ocr_again = numbers.tolist()
    assert ocr == ocr_again
    assert len({ocr, ner, asr}) == 3


def test_pairs_of_no_ids_or_no_facets_are_empty() -> None:
    table = _table()
    for ids in ([], [4, 5]):
        positions, numbers = table.pairs(np.asarray(ids, dtype=np.int64))
        assert positions.size == numbers.size == 0
