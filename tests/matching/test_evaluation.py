"""Evaluation: metrics, the bench loader, and a bench run through the Matcher.

Expected values are computed by hand for the tiny bench under data/bench, whose lexical rankings
are unambiguous (see each subset's files).
"""

import importlib.util
import math
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from matching.evaluation import (
    evaluate_bench,
    load_bench,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
    record_to_facts,
    score_rankings,
)
from matching.facts import DatasetFacts, ModelFacts
from tests.matching.conftest import HashingEmbedder

BENCH = Path(__file__).parent / "data" / "bench"
REFERENCE = Path(__file__).parents[3] / "shared" / "tools" / "bm25_reference.py"
LOG3 = math.log2(3)


class TestNdcgAtK:
    def test_is_one_for_the_ideal_ranking(self) -> None:
        assert ndcg_at_k(["a", "b", "x"], {"a": 2, "b": 1}) == pytest.approx(1.0)

    def test_uses_linear_gains_and_log_discounts(self) -> None:
        expected = (1 + 2 / LOG3) / (2 + 1 / LOG3)
        assert ndcg_at_k(["b", "a"], {"a": 2, "b": 1}) == pytest.approx(expected)

    def test_takes_the_ideal_from_every_judged_item(self) -> None:
        assert ndcg_at_k(["a"], {"a": 1, "unranked": 1}) == pytest.approx(1 / (1 + 1 / LOG3))

    def test_ignores_ranks_below_the_cutoff(self) -> None:
        assert ndcg_at_k(["x", "a"], {"a": 1}, k=1) == 0.0

    def test_is_zero_without_judgements(self) -> None:
        assert ndcg_at_k(["a"], {}) == 0.0


class TestRecallAtK:
    def test_is_the_share_of_relevant_items_found(self) -> None:
        assert recall_at_k(["a", "x", "b"], {"a", "b", "c", "d"}) == 0.5


class TestMrrAtK:
    def test_is_the_reciprocal_rank_of_the_first_hit(self) -> None:
        assert mrr_at_k(["x", "y", "b", "a"], {"a", "b"}) == pytest.approx(1 / 3)

    def test_is_zero_without_a_hit_in_the_top_k(self) -> None:
        assert mrr_at_k(["x", "a"], {"a"}, k=1) == 0.0


class TestScoreRankings:
    def test_adds_grade_two_metrics_over_the_needs_that_have_grade_two(self) -> None:
        metrics = score_rankings(
            {"n1": ["a", "b"], "n2": ["c"]}, {"n1": {"a": 2, "b": 1}, "n2": {"x": 1}}
        )
        assert metrics == pytest.approx(
            {
                "ndcg@10": 0.5,
                "recall@10": 0.5,
                "mrr@10": 0.5,
                "recall@10(rel>=2)": 1.0,
                "mrr@10(rel>=2)": 1.0,
            }
        )

    def test_counts_unjudged_needs_in_ndcg_only(self) -> None:
        metrics = score_rankings({"n1": ["a"], "n2": ["a"]}, {"n1": {"a": 1}})
        assert metrics == pytest.approx({"ndcg@10": 0.5, "recall@10": 1.0, "mrr@10": 1.0})


class TestRecordToFacts:
    def test_maps_a_model_card_to_tasks_modality_and_tags(self) -> None:
        record = {
            "id": "m",
            "title": "acme/vit",
            "description": "An image classifier.",
            "kind": "pretrained_model",
            "meta": {
                "domain": "Computer Vision Image Classification",
                "pipeline_tag": "image-classification",
                "framework": "Hugging Face Transformers",
            },
        }
        facts = record_to_facts(record, 7)
        assert (facts.id, facts.kind, facts.title) == (7, "model", "acme/vit")
        assert facts.tags == ("Computer Vision Image Classification",)
        assert facts.attributes == ModelFacts(tasks=("image_classification",), modality="image")

    def test_maps_a_research_need_to_a_scenario_tagged_with_its_keywords(self) -> None:
        record = {
            "id": "q",
            "title": "face detection image",
            "description": "We propose a detector.",
            "kind": "research_need",
            "meta": {"task": "face detection", "domain": "", "modality": "Image", "language": ""},
        }
        facts = record_to_facts(record, 1)
        assert (facts.kind, facts.tags, facts.languages) == (
            "scenario",
            ("face detection", "Image"),
            (),
        )

    def test_maps_a_dataset_card_with_its_languages_and_licence(self) -> None:
        record = {
            "id": "d",
            "title": "Allociné",
            "description": "French movie reviews.",
            "kind": "dataset_seeking_model",
            "meta": {"language": ["fr"], "license": ["mit"]},
        }
        facts = record_to_facts(record, 2)
        assert (facts.kind, facts.languages) == ("dataset", ("fr",))
        assert facts.attributes == DatasetFacts(licence="mit")

    def test_rejects_an_unknown_kind(self) -> None:
        with pytest.raises(ValueError, match="unknown kind 'recipe'"):
            record_to_facts({"id": "r", "title": "Bread", "kind": "recipe"}, 1)


class TestLoadBench:
    def test_reads_every_subset_with_distinct_ids(self) -> None:
        subsets = load_bench(BENCH)
        assert [s.name for s in subsets] == ["datafinder", "dataset_to_model", "scenario_to_model"]
        datafinder = subsets[0]
        ids = [f.id for f in datafinder.offers + datafinder.needs]
        assert ids == [0, 1, 2, 3, 4]
        assert datafinder.keys[2] == "q:streets"
        assert datafinder.qrels["q:digits"] == {"d:cityscapes": 1, "d:mnist": 1}

    def test_rejects_a_folder_without_subsets(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError, match="no bench subsets"):
            load_bench(tmp_path)


class TestEvaluateBench:
    def test_lexical_metrics_equal_the_values_computed_by_hand(self) -> None:
        results = evaluate_bench(load_bench(BENCH), HashingEmbedder(), ["lexical"])
        two_of_three = 2 / (2 + 1 / LOG3)
        assert results["datafinder"]["lexical"] == pytest.approx(
            {
                # q:streets finds its one relevant offer second, q:digits one of two first,
                # q:unjudged has no judgements (counted 0 in nDCG only).
                "ndcg@10": (1 / LOG3 + 1 / (1 + 1 / LOG3)) / 3,
                "recall@10": (1 + 0.5) / 2,
                "mrr@10": (0.5 + 1) / 2,
            }
        )
        model_subset = {
            "ndcg@10": (1 + two_of_three) / 2,
            "recall@10": (0.5 + 1) / 2,
            "mrr@10": 1.0,
            "recall@10(rel>=2)": 1.0,
            "mrr@10(rel>=2)": 1.0,
        }
        assert results["dataset_to_model"]["lexical"] == pytest.approx(model_subset)
        assert results["scenario_to_model"]["lexical"] == pytest.approx(model_subset)

    def test_scores_every_method(self) -> None:
        results = evaluate_bench(load_bench(BENCH), HashingEmbedder())
        for by_method in results.values():
            assert set(by_method) == {"dense", "lexical", "hybrid"}
            assert all(0.0 <= value <= 1.0 for m in by_method.values() for value in m.values())

    def test_reports_progress_per_need(self) -> None:
        counted: list[int] = []
        evaluate_bench(load_bench(BENCH), HashingEmbedder(), ["dense"], progress=counted.append)
        assert sum(counted) == 7


@pytest.mark.skipif(not REFERENCE.is_file(), reason="the shared reference script is not here")
class TestAgreementWithTheReferenceScript:
    def test_metrics_of_the_reference_ranking_equal_the_reference_figures(self) -> None:
        printed = subprocess.run(
            [sys.executable, str(REFERENCE), "--bench", str(BENCH)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        spec = importlib.util.spec_from_file_location("bm25_reference", REFERENCE)
        assert spec is not None and spec.loader is not None
        reference = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(reference)
        for subset in load_bench(BENCH):
            pool = [(subset.keys[o.id], f"{o.title} {o.description}") for o in subset.offers]
            bm25 = reference.BM25(pool)
            rankings = {
                subset.keys[n.id]: bm25.search(f"{n.title} {n.description}", 10)
                for n in subset.needs
            }
            ours = score_rankings(rankings, subset.qrels)
            line = next(x for x in printed.splitlines() if x.startswith(f"{subset.name}:"))
            theirs: dict[str, float] = defaultdict(float)
            for name, value in re.findall(r"(\S+@10(?:\(rel>=\d\))?)=([\d.]+)", line):
                theirs[name.lower().replace("(rel>=1)", "")] = float(value)
            assert {k: round(v, 3) for k, v in ours.items()} == dict(theirs)
