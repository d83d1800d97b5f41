"""The Matcher: retrieval, fusion, constraints and explanations.

Pure ranking behaviour uses the hashing embedder; the real model only where meaning matters.
"""

import io
import pickle
from decimal import Decimal

import numpy as np
import numpy.typing as npt
import pytest

from matching.embedding import Embedder
from matching.facts import (
    ComputeFacts,
    DatasetFacts,
    ListingFacts,
    ModelFacts,
    ScenarioFacts,
)
from matching.ranking import Matcher, MatcherState, Method, RankingSettings
from tests.matching.conftest import HashingEmbedder


def _model(listing_id: int, text: str, task: str = "time_series_forecasting") -> ListingFacts:
    return ListingFacts(
        id=listing_id,
        kind="model",
        title=f"model {listing_id}",
        description=text,
        attributes=ModelFacts(tasks=(task,)),
    )


def _compute(listing_id: int, text: str, price: str = "2") -> ListingFacts:
    return ListingFacts(
        id=listing_id,
        kind="compute",
        title=f"compute {listing_id}",
        description=text,
        attributes=ComputeFacts(
            price_per_gpu_hour=Decimal(price), currency="USD", gpu_hours_available=10_000.0
        ),
    )


def _dataset(listing_id: int, text: str) -> ListingFacts:
    return ListingFacts(
        id=listing_id,
        kind="dataset",
        title=f"dataset {listing_id}",
        description=text,
        attributes=DatasetFacts(),
    )


_SCENARIO = ListingFacts(
    id=100,
    kind="scenario",
    title="Forecast road traffic",
    description="Forecast road traffic flow at city junctions from loop detector counts.",
    attributes=ScenarioFacts(budget_max=Decimal("5000"), currency="USD", required_gpu_hours=1000.0),
)


def _matcher(listings: list[ListingFacts], embedder: Embedder | None = None) -> Matcher:
    matcher = Matcher(embedder or HashingEmbedder())
    matcher.upsert_many(listings)
    return matcher


def _catalogue() -> list[ListingFacts]:
    return [
        _model(1, "Forecasts road traffic flow at junctions from detector counts."),
        _model(2, "Classifies hotline tickets by topic.", task="text_classification"),
        _compute(3, "GPU cluster for training traffic forecasting models."),
        _dataset(4, "Road traffic flow counts from loop detectors at city junctions."),
    ]


def _forecasters_and_a_detector() -> list[ListingFacts]:
    """Three traffic forecasting models (1-3), and a detector (4) whose text reads like theirs."""
    forecasting = "Forecasts road traffic flow"
    return [
        _model(1, f"{forecasting} at junctions from loop detector counts."),
        _model(2, f"{forecasting} per hour."),
        _model(3, f"{forecasting} for city planners."),
        _model(4, "Detects road traffic flow at city junctions.", task="object_detection"),
    ]


class TestMatcherWrites:
    def test_upsert_holds_the_facts(self) -> None:
        listings = _catalogue()
        matcher = _matcher(listings)
        assert len(matcher) == 4
        assert 3 in matcher
        assert matcher.facts(1) == listings[0]
        assert matcher.facts(42) is None

    def test_upsert_replaces_a_listing_in_both_retrievers(self) -> None:
        matcher = _matcher(_catalogue())
        matcher.upsert(_dataset(4, "Hospital admissions per day."))
        assert [m.id for m in matcher.search("junctions", method="lexical")] == [1]
        assert matcher.search("hospital admissions", limit=1, method="dense")[0].id == 4

    def test_upsert_uses_the_given_vector(self) -> None:
        matcher = _matcher(_catalogue())
        vector = HashingEmbedder().encode(["sourdough bread recipes"])[0]
        matcher.upsert(_model(1, "Forecasts road traffic."), vector)
        assert matcher.search("sourdough bread recipes", limit=1, method="dense")[0].id == 1

    def test_upsert_rejects_vectors_that_do_not_fit(self) -> None:
        matcher = _matcher([])
        with pytest.raises(ValueError, match="expected 2 vectors"):
            matcher.upsert_many(_catalogue()[:2], np.zeros((1, 64), np.float32))

    def test_remove_forgets_listings_everywhere(self) -> None:
        matcher = _matcher(_catalogue())
        matcher.remove([1, 99])
        assert 1 not in matcher
        for method in ("dense", "lexical", "hybrid"):
            found = matcher.search("road traffic junctions", limit=10, method=method)
            assert 1 not in {m.id for m in found}


class TestMatcherMatch:
    def test_returns_counterparts_from_the_other_side(self) -> None:
        found = _matcher(_catalogue()).match(_SCENARIO)
        assert {m.kind for m in found} == {"model", "compute"}
        assert found[0].id == 1

    def test_never_returns_the_listing_itself(self) -> None:
        listings = _catalogue()
        found = _matcher(listings).match(listings[0], kinds=["model"])
        assert [m.id for m in found] == [2]

    def test_kinds_choose_the_counterparts(self) -> None:
        found = _matcher(_catalogue()).match(_SCENARIO, kinds=["dataset"])
        assert [m.id for m in found] == [4]

    def test_allowed_ids_restrict_the_counterparts(self) -> None:
        found = _matcher(_catalogue()).match(_SCENARIO, allowed_ids={2, 3, 4})
        assert {m.id for m in found} == {2, 3}

    def test_strict_drops_counterparts_failing_a_hard_constraint(self) -> None:
        text = "GPU cluster for traffic forecasting."
        matcher = _matcher([_compute(3, text, price="2"), _compute(5, text, price="9")])
        assert {m.id for m in matcher.match(_SCENARIO)} == {3, 5}
        assert [m.id for m in matcher.match(_SCENARIO, strict=True)] == [3]

    def test_failed_constraints_lower_the_score(self) -> None:
        text = "GPU cluster for traffic forecasting."
        matcher = _matcher([_compute(3, text, price="9"), _compute(5, text, price="2")])
        cheap, dear = matcher.match(_SCENARIO)
        assert (cheap.id, dear.id) == (5, 3)
        assert cheap.components.relevance == pytest.approx(dear.components.relevance)
        assert cheap.components.constraints > dear.components.constraints

    def test_min_score_drops_weak_matches(self) -> None:
        matcher = _matcher(_catalogue())
        everything = matcher.match(_SCENARIO)
        threshold = everything[0].score - 1e-6
        assert [m.id for m in matcher.match(_SCENARIO, min_score=threshold)] == [1]

    def test_limit_caps_the_matches(self) -> None:
        assert len(_matcher(_catalogue()).match(_SCENARIO, limit=1)) == 1

    def test_explains_each_match(self) -> None:
        model = _model(1, "Built by a small team. Forecasts road traffic flow at junctions.")
        match = _matcher([model]).match(_SCENARIO)[0]
        assert match.evidence == "Forecasts road traffic flow at junctions."
        assert {"road", "traffic", "flow", "junction"} <= set(match.matched_terms)
        assert match.components.semantic > 0
        assert match.components.lexical == pytest.approx(1.0)
        assert [check.name for check in match.checks] == ["capabilities", "language"]

    def test_explains_nothing_when_not_asked(self) -> None:
        match = _matcher(_catalogue()).match(_SCENARIO, explain=False)[0]
        assert match.evidence == ""
        assert match.matched_terms

    def test_explain_adds_evidence_later(self) -> None:
        model = _model(1, "Built by a small team. Forecasts road traffic flow at junctions.")
        matcher = _matcher([model])
        vector = matcher.embed([_SCENARIO])[0]
        found = matcher.match(_SCENARIO, vector=vector, explain=False)
        assert [m.evidence for m in matcher.explain(found, vector)] == [
            "Forecasts road traffic flow at junctions."
        ]

    def test_uses_the_given_query_vector(self) -> None:
        matcher = _matcher(_catalogue())
        vector = HashingEmbedder().encode(["Classifies hotline tickets by topic."])[0]
        found = matcher.match(_SCENARIO, vector=vector, method="dense", limit=1)
        assert found[0].id == 2

    def test_hybrid_ranks_models_of_the_task_the_best_candidates_share(self) -> None:
        listings = [
            *_forecasters_and_a_detector(),
            _model(5, "Detects pedestrians in images.", task="object_detection"),
        ]
        plain = _matcher(listings)
        plain.settings = RankingSettings(facet_weight=0)
        smoothed = _matcher(listings)
        before = [m.id for m in plain.match(_SCENARIO, kinds=["model"])]
        after = [m.id for m in smoothed.match(_SCENARIO, kinds=["model"])]
        assert before.index(4) < before.index(3)
        assert set(after[:3]) == {1, 2, 3}

    def test_smoothing_follows_a_changed_task(self) -> None:
        matcher = _matcher(_forecasters_and_a_detector())
        before = {m.id: m.components.relevance for m in matcher.match(_SCENARIO, kinds=["model"])}
        matcher.upsert_many([_model(4, "Detects road traffic flow at city junctions.")])
        after = {m.id: m.components.relevance for m in matcher.match(_SCENARIO, kinds=["model"])}
        assert after[4] > before[4]

    def test_a_restored_state_ranks_the_same(self) -> None:
        listings = [
            *_catalogue(),
            _model(5, "Forecasts traffic flow per hour."),
            _model(6, "Detects road traffic at junctions.", task="object_detection"),
        ]
        matcher = _matcher(listings)
        restored = Matcher.from_state(
            matcher.embedder, matcher.index, pickle.loads(pickle.dumps(matcher.state()))
        )
        assert restored.match(_SCENARIO, explain=False) == matcher.match(_SCENARIO, explain=False)

    def test_rejects_an_unknown_method(self) -> None:
        with pytest.raises(ValueError, match="unknown method 'sparse'"):
            _matcher(_catalogue()).match(_SCENARIO, method="sparse")  # type: ignore[arg-type]

    def test_returns_nothing_when_nothing_is_allowed(self) -> None:
        assert _matcher(_catalogue()).match(_SCENARIO, allowed_ids=set()) == []


def _unit(*weights: float) -> npt.NDArray[np.float32]:
    vector = np.zeros(HashingEmbedder().dimension, dtype=np.float32)
    vector[: len(weights)] = weights
    return vector / np.linalg.norm(vector)


class TestPseudoRelevanceFeedback:
    """The query moves towards its best candidates (Rocchio) before the cosines are final."""

    # Five close candidates share a direction besides the query's (axis 1). The target lies
    # along it but is further from the query itself than the distractor, which goes elsewhere.
    query = _unit(1.0)
    close = np.stack([_unit(1.0, 0.8, *([0.0] * (2 + i)), 0.1) for i in range(5)])
    target = _unit(0.5, 1.0)
    distractor = _unit(0.6, 0.0, 1.0)

    def _matcher(self, settings: RankingSettings) -> Matcher:
        vectors = np.vstack([self.close, self.target, self.distractor])
        listings = [_dataset(i + 1, f"listing {i + 1}") for i in range(len(vectors))]
        matcher = Matcher(HashingEmbedder(), settings=settings)
        matcher.upsert_many(listings, vectors)
        return matcher

    def _ranked(self, settings: RankingSettings, method: Method) -> list[int]:
        matcher = self._matcher(settings)
        found = matcher.match(
            _SCENARIO, kinds=["dataset"], vector=self.query, method=method, explain=False
        )
        return [m.id for m in found]

    @pytest.mark.parametrize("method", ["dense", "hybrid"])
    def test_ranks_what_the_best_candidates_share_above_what_only_the_query_shares(
        self, method: Method
    ) -> None:
        plain = self._ranked(RankingSettings(feedback_weight=0), method)
        assert plain.index(7) < plain.index(6)
        moved = self._ranked(RankingSettings(), method)
        assert moved.index(6) < moved.index(7)

    def test_ranks_by_the_moved_query_and_reports_the_query_s_own_cosine(self) -> None:
        settings = RankingSettings(feedback_depth=5, feedback_weight=2.0)
        found = self._matcher(settings).match(
            _SCENARIO, kinds=["dataset"], vector=self.query, method="dense", explain=False
        )
        moved = self.query + 2.0 * self.close.mean(axis=0)
        moved /= np.linalg.norm(moved)
        by_id = {m.id: m.components for m in found}
        for listing_id, vector in ((6, self.target), (7, self.distractor)):
            assert by_id[listing_id].relevance == pytest.approx(float(vector @ moved), abs=1e-5)
            assert by_id[listing_id].semantic == pytest.approx(float(vector @ self.query), abs=1e-5)

    def test_no_more_candidates_than_the_depth_get_no_feedback(self) -> None:
        settings = RankingSettings(feedback_depth=7)
        found = self._matcher(settings).match(
            _SCENARIO, kinds=["dataset"], vector=self.query, method="dense", explain=False
        )
        relevance = {m.id: m.components.relevance for m in found}
        assert relevance[6] == pytest.approx(float(self.target @ self.query), abs=1e-5)


class TestProminence:
    """Hybrid ranking prefers, of two lookalikes, the one other listings name by its title."""

    def _matcher(self, settings: RankingSettings | None = None) -> Matcher:
        text = "Road traffic flow counts from loop detectors at city junctions."
        listings = [
            ListingFacts(id=1, kind="dataset", title="Roadnet", description=text),
            ListingFacts(id=2, kind="dataset", title="Trafficset", description=text),
            *(_model(10 + n, f"Forecasts traffic, trained on Trafficset ({n}).") for n in range(3)),
            _model(20, "Forecasts traffic; not trained on trafficset or TRAFFICSET."),
        ]
        matcher = Matcher(HashingEmbedder(), settings=settings)
        matcher.upsert_many(listings)
        return matcher

    def _ranked(self, matcher: Matcher, method: Method = "hybrid") -> list[int]:
        found = matcher.match(_SCENARIO, kinds=["dataset"], method=method, explain=False)
        return [m.id for m in found]

    def test_ranks_the_named_lookalike_first_once_counted(self) -> None:
        matcher = self._matcher()
        assert self._ranked(matcher) == [1, 2]  # a tie, by id: nothing counted yet
        assert matcher.mentions_due
        matcher.recount_mentions()
        assert not matcher.mentions_due
        assert self._ranked(matcher) == [2, 1]

    @pytest.mark.parametrize("method", ["dense", "lexical"])
    def test_leaves_the_single_retriever_methods_alone(self, method: Method) -> None:
        matcher = self._matcher()
        matcher.recount_mentions()
        assert self._ranked(matcher, method) == [1, 2]

    def test_reports_the_mentions_and_their_share_of_the_score(self) -> None:
        settings = RankingSettings(prominence_weight=0.2, prominent_at=9)
        matcher = self._matcher(settings)
        matcher.recount_mentions()
        named, other = matcher.match(_SCENARIO, kinds=["dataset"], explain=False)
        assert (named.components.mentions, other.components.mentions) == (3, 0)
        assert named.components.prominence == pytest.approx(np.log1p(3) / np.log1p(9))
        assert other.components.prominence == 0.0
        rest = 1 - settings.constraint_weight - settings.prominence_weight
        for match in (named, other):
            parts = match.components
            assert match.score == pytest.approx(
                rest * parts.relevance
                + settings.constraint_weight * parts.constraints
                + settings.prominence_weight * parts.prominence
            )
            assert 0.0 <= match.score <= 1.0

    def test_prominence_is_full_from_the_prominent_count_on(self) -> None:
        matcher = self._matcher(RankingSettings(prominent_at=2))
        matcher.recount_mentions()
        assert matcher.match(_SCENARIO, kinds=["dataset"])[0].components.prominence == 1.0

    def test_a_changed_listing_makes_a_count_due_and_changes_it(self) -> None:
        matcher = self._matcher()
        matcher.recount_mentions()
        matcher.remove([10, 11, 12])
        assert matcher.mentions_due
        matcher.recount_mentions()
        assert self._ranked(matcher) == [1, 2]

    def test_a_restored_state_keeps_the_counts(self) -> None:
        matcher = self._matcher()
        matcher.recount_mentions()
        restored = Matcher.from_state(
            matcher.embedder, matcher.index, pickle.loads(pickle.dumps(matcher.state()))
        )
        assert not restored.mentions_due
        assert self._ranked(restored) == [2, 1]

    def test_a_state_saved_before_mentions_makes_a_count_due(self) -> None:
        matcher = self._matcher()
        state = matcher.state()
        buffer = io.BytesIO()
        pickle.dump((state.facts, state.kind_codes, state.facets), buffer)
        state.lexical.write(buffer)
        buffer.seek(0)
        restored = Matcher.from_state(matcher.embedder, matcher.index, MatcherState.read(buffer))
        assert restored.mentions_due
        restored.recount_mentions()
        assert self._ranked(restored) == [2, 1]


class TestMatcherSearch:
    def test_finds_a_chinese_listing_by_a_chinese_query(self) -> None:
        chinese = ListingFacts(
            id=7,
            kind="dataset",
            title="巢湖流域水质自动监测站时序数据",
            summary="14 个水质自动站每 4 小时一次的监测值。",
            description="可用于水质异常检测、总磷浓度预测、蓝藻水华预警等研究。",
        )
        matcher = _matcher([*_catalogue(), chinese])
        found = matcher.search("水质监测数据", limit=3)
        assert found[0].id == 7
        assert {"水质", "监测"} <= set(found[0].matched_terms)

    def test_returns_every_kind_by_default(self) -> None:
        found = _matcher(_catalogue()).search("road traffic")
        assert {m.kind for m in found} == {"model", "compute", "dataset"}

    @pytest.mark.parametrize("method", ["dense", "lexical", "hybrid"])
    def test_each_method_finds_the_listing_with_the_query_words(self, method: str) -> None:
        found = _matcher(_catalogue()).search("hotline tickets topic", method=method)  # type: ignore[arg-type]
        assert found[0].id == 2

    def test_lexical_method_returns_only_listings_sharing_a_term(self) -> None:
        found = _matcher(_catalogue()).search("hotline", method="lexical")
        assert [m.id for m in found] == [2]

    def test_checks_no_constraints_for_free_text(self) -> None:
        match = _matcher(_catalogue()).search("road traffic")[0]
        assert match.checks == ()
        assert match.components.constraints == 0.5


@pytest.mark.slow
class TestMatcherWithTheRealModel:
    def test_finds_a_counterpart_by_meaning_without_shared_words(self, embedder: Embedder) -> None:
        listings = [
            _dataset(1, "Photographs of skin lesions labelled by dermatologists."),
            _dataset(2, "Hourly electricity consumption of office buildings."),
        ]
        found = _matcher(listings, embedder).search("melanoma images", method="hybrid")
        assert found[0].id == 1

    def test_evidence_is_the_sentence_closest_in_meaning(self, embedder: Embedder) -> None:
        dataset = _dataset(
            1,
            "Collected between 2019 and 2023. Annual reports are published. "
            "Counts of vehicles passing each junction, every five minutes.",
        )
        match = _matcher([dataset], embedder).match(_SCENARIO, kinds=["dataset"])[0]
        assert match.evidence == "Counts of vehicles passing each junction, every five minutes."


class TestEarlyStop:
    """Checks stop once no later candidate can reach the top: results equal checking them all."""

    @pytest.mark.parametrize("strict", [False, True])
    def test_the_top_equals_the_top_of_everything(self, strict: bool) -> None:
        prices = ["0.1", "9", "0.2", "8", "0.3", "7", "0.4", "6", "0.5", "5", "20", "0.05"]
        offers = [
            _compute(n, f"GPU cluster {n} for traffic forecasting models", price=price)
            for n, price in enumerate(prices, start=1)
        ]
        # Models that name some compute offers, so that prominence orders the checks too.
        offers += [
            _model(20 + n, f"traffic model {n} forecasting junctions, trained on compute {n % 3}")
            for n in range(8)
        ]
        matcher = _matcher(offers)
        matcher.recount_mentions()
        assert any(m.components.mentions for m in matcher.match(_SCENARIO, limit=1000))
        everything = matcher.match(_SCENARIO, limit=1000, strict=strict, explain=False)
        for limit in range(1, len(everything) + 1):
            top = matcher.match(_SCENARIO, limit=limit, strict=strict, explain=False)
            assert [(m.id, m.score) for m in top] == [(m.id, m.score) for m in everything[:limit]]
