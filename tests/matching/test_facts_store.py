"""The encoded store of listing facts."""

import pickle
from datetime import date
from decimal import Decimal

import pytest

from matching.facts import ComputeFacts, ListingFacts
from matching.facts_store import FactsStore


def _compute(listing_id: int, title: str = "A100 cluster") -> ListingFacts:
    return ListingFacts(
        id=listing_id,
        kind="compute",
        title=title,
        tags=("gpu",),
        attributes=ComputeFacts(
            accelerator_count=8,
            price_per_gpu_hour=Decimal("2.50"),
            available_from=date(2026, 1, 1),
        ),
    )


class TestFactsStore:
    def test_gives_back_what_was_put(self) -> None:
        store = FactsStore()
        store.put(_compute(1))
        assert store[1] == _compute(1)
        assert store.get(2) is None
        assert 1 in store and 2 not in store and len(store) == 1
        with pytest.raises(KeyError):
            store[2]

    def test_decodes_facts_evicted_from_the_cache(self) -> None:
        store = FactsStore(cache_size=2)
        for n in range(5):
            store.put(_compute(n, f"cluster {n}"))
        assert [store[n].title for n in range(5)] == [f"cluster {n}" for n in range(5)]

    def test_put_replaces_and_pop_forgets(self) -> None:
        store = FactsStore()
        store.put(_compute(1))
        store.put(_compute(1, "H100 cluster"))
        assert store[1].title == "H100 cluster"
        assert store.pop(1) and not store.pop(1)
        assert store.get(1) is None and len(store) == 0

    def test_a_pickled_store_holds_the_same_facts(self) -> None:
        store = FactsStore()
        for n in range(3):
            store.put(_compute(n, f"cluster {n}"))
        loaded = pickle.loads(pickle.dumps(store))
        assert sorted(loaded) == [0, 1, 2]
        assert [loaded[n] for n in range(3)] == [store[n] for n in range(3)]

    def test_a_copy_is_independent(self) -> None:
        store = FactsStore()
        store.put(_compute(1))
        copy = store.copy()
        store.pop(1)
        assert copy[1] == _compute(1)
