"""The encoded store of listing facts."""

import pickle
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from matching.facts import ComputeFacts, ListingFacts, ScenarioFacts
from matching.facts_store import FactsStore


def _scenario(listing_id: int) -> ListingFacts:
    return ListingFacts(
        id=listing_id,
        kind="scenario",
        title="公交客流预测",
        summary="Forecast bus ridership.",
        description="Hefei's bus operator wants next-day ridership per line. " * 20,
        attributes=ScenarioFacts(
            problem_statement="Crowded lines at peak hours.",
            desired_outcome="A forecast per line and hour.",
            budget_max=Decimal("80000.50"),
            deadline=date(2027, 3, 1),
        ),
    )


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

    def test_ranking_reads_every_fact_but_the_long_texts(self) -> None:
        store = FactsStore()
        store.put(_scenario(1))
        ranked = store.for_ranking(1)
        assert ranked == replace(
            _scenario(1),
            summary="",
            description="",
            attributes=replace(_scenario(1).attributes, problem_statement="", desired_outcome=""),  # type: ignore[type-var]
        )
        assert store[1] == _scenario(1)
        with pytest.raises(KeyError):
            store.for_ranking(2)

    def test_keeps_a_long_listing_in_a_fraction_of_its_pickle(self) -> None:
        store = FactsStore()
        store.put(_scenario(1))
        (blob,) = store.__getstate__()[2].values()
        assert len(blob) < len(pickle.dumps(_scenario(1))) / 3

    def test_decodes_facts_evicted_from_the_cache(self) -> None:
        store = FactsStore(cache_size=2)
        for n in range(5):
            store.put(_compute(n, f"cluster {n}"))
        assert [store.for_ranking(n).title for n in range(5)] == [f"cluster {n}" for n in range(5)]
        assert store.for_ranking(4) is store.for_ranking(4)  # cached
        assert [store[n].title for n in range(5)] == [f"cluster {n}" for n in range(5)]

    def test_put_replaces_what_ranking_had_decoded(self) -> None:
        store = FactsStore()
        store.put(_compute(1))
        assert store.for_ranking(1).title == "A100 cluster"
        store.put(_compute(1, "H100 cluster"))
        assert store.for_ranking(1).title == "H100 cluster"

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
        store.put(_scenario(3))
        loaded = pickle.loads(pickle.dumps(store))
        assert sorted(loaded) == [0, 1, 2, 3]
        assert [loaded[n] for n in range(4)] == [store[n] for n in range(4)]

    def test_a_store_encoded_otherwise_is_refused(self) -> None:
        store = FactsStore()
        store.put(_compute(1))
        _, cache_size, encoded = store.__getstate__()
        with pytest.raises(ValueError, match="encoded as"):
            FactsStore().__setstate__(("facts-0", cache_size, encoded))

    def test_a_copy_is_independent(self) -> None:
        store = FactsStore()
        store.put(_compute(1))
        copy = store.copy()
        store.pop(1)
        assert copy[1] == _compute(1)
