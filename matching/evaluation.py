"""Matching quality on a benchmark of needs, offers and graded relevance judgements.

A bench folder holds one subfolder per subset, each with `needs.jsonl`, `offers.jsonl` and
`qrels.jsonl` (see the shared bench README). Records are mapped to `ListingFacts`, the offers go
into a `Matcher`, and every need is matched against them through `Matcher.match`, the code path the
API uses. The metrics are those of the bench README and its reference script, averaged over needs:
nDCG@10 with linear gains (ideal ordering from all judged offers; needs without judgements count
0), Recall@10 and MRR@10 for relevance >= 1 and, where the subset has grade 2, for relevance >= 2
(over the needs that have such offers).
"""

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matching.embedding import Embedder
from matching.facts import DatasetFacts, Kind, ListingFacts, ModelFacts, ScenarioFacts
from matching.ranking import Matcher, Method, RankingSettings

METHODS: tuple[Method, ...] = ("dense", "lexical", "hybrid")
CUTOFF = 10

Metrics = dict[str, float]


def ndcg_at_k(ranked: Sequence[str], grades: Mapping[str, int], k: int = CUTOFF) -> float:
    """nDCG@k with linear gains; the ideal ranking orders all judged items by grade.

    Args:
        ranked: item keys, best first.
        grades: the judged items' grades (unlisted items count 0).
        k: the cutoff.

    Returns:
        A value in [0, 1]; 0 when nothing is judged relevant.
    """
    dcg = sum(grades.get(key, 0) / math.log2(rank + 2) for rank, key in enumerate(ranked[:k]))
    ideal = sorted(grades.values(), reverse=True)[:k]
    ideal_dcg = sum(grade / math.log2(rank + 2) for rank, grade in enumerate(ideal))
    return dcg / ideal_dcg if ideal_dcg else 0.0


def recall_at_k(ranked: Sequence[str], relevant: set[str], k: int = CUTOFF) -> float:
    """The share of the relevant items found in the top k.

    Args:
        ranked: item keys, best first.
        relevant: the relevant items (not empty).
        k: the cutoff.

    Returns:
        A value in [0, 1].
    """
    return sum(key in relevant for key in ranked[:k]) / len(relevant)


def mrr_at_k(ranked: Sequence[str], relevant: set[str], k: int = CUTOFF) -> float:
    """The reciprocal rank of the first relevant item in the top k.

    Args:
        ranked: item keys, best first.
        relevant: the relevant items.
        k: the cutoff.

    Returns:
        1 / rank of the first hit, or 0 without a hit in the top k.
    """
    return next((1 / (rank + 1) for rank, key in enumerate(ranked[:k]) if key in relevant), 0.0)


def score_rankings(
    rankings: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    k: int = CUTOFF,
) -> Metrics:
    """Average the metrics over needs.

    Args:
        rankings: each need's ranked offer keys.
        qrels: each need's graded offers; needs missing here have no relevant offers.
        k: the cutoff.

    Returns:
        "ndcg@10", "recall@10", "mrr@10" (relevance >= 1) and, when some judgement has grade 2
        or more, "recall@10(rel>=2)" and "mrr@10(rel>=2)".
    """
    top_grade = max((g for grades in qrels.values() for g in grades.values()), default=1)
    values: dict[str, list[float]] = defaultdict(list)
    for need, ranked in rankings.items():
        grades = qrels.get(need, {})
        values[f"ndcg@{k}"].append(ndcg_at_k(ranked, grades, k))
        for threshold in sorted({1, top_grade}):
            relevant = {key for key, grade in grades.items() if grade >= threshold}
            if not relevant:
                continue
            suffix = "" if threshold == 1 else f"(rel>={threshold})"
            values[f"recall@{k}{suffix}"].append(recall_at_k(ranked, relevant, k))
            values[f"mrr@{k}{suffix}"].append(mrr_at_k(ranked, relevant, k))
    return {name: sum(v) / len(v) for name, v in values.items()}


@dataclass(frozen=True)
class BenchSubset:
    """One subset of a bench: needs ranked against offers, with judgements.

    Attributes:
        name: the subfolder name.
        needs: the needs as facts.
        offers: the offers as facts (ids distinct from the needs').
        keys: each facts id's record id in the bench files.
        qrels: need record id -> offer record id -> grade.
    """

    name: str
    needs: tuple[ListingFacts, ...]
    offers: tuple[ListingFacts, ...]
    keys: Mapping[int, str]
    qrels: Mapping[str, Mapping[str, int]]


_KINDS: dict[str, Kind] = {
    "dataset": "dataset",
    "dataset_seeking_model": "dataset",
    "research_need": "scenario",
    "application_scenario": "scenario",
    "scenario": "scenario",
    "pretrained_model": "model",
    "model": "model",
}
# The area at the start of a Hugging Face domain ("Computer Vision Image Classification").
_MODALITY_OF_AREA = {
    "natural language processing": "text",
    "computer vision": "image",
    "audio": "audio",
    "multimodal": "multimodal",
    "tabular": "tabular",
}


def _strings(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [str(v).strip() for v in values if isinstance(v, str | int) and str(v).strip()]


def _language_codes(value: Any) -> tuple[str, ...]:
    """Language codes ("en", "pt-BR"); free-text language names are not codes and are dropped."""
    return tuple(code for code in _strings(value) if len(code.split("-")[0]) in (2, 3))


def record_to_facts(record: Mapping[str, Any], listing_id: int) -> ListingFacts:
    """Map a bench record to the facts a poster would give for it.

    Args:
        record: a line of needs.jsonl or offers.jsonl (id, title, description, kind, meta).
        listing_id: the integer id to give the listing.

    Returns:
        The listing's facts; meta fields become tags, tasks, languages or a licence.

    Raises:
        ValueError: the record's kind is not one the bench uses.
    """
    kind = _KINDS.get(str(record.get("kind")))
    if kind is None:
        raise ValueError(f"record {record.get('id')!r} has unknown kind {record.get('kind')!r}")
    meta: Mapping[str, Any] = record.get("meta") or {}
    title = str(record.get("title") or "")
    tags = _strings(meta.get("task")) + _strings(meta.get("domain"))
    attributes: DatasetFacts | ScenarioFacts | ModelFacts
    if kind == "model":
        domain = " ".join(_strings(meta.get("domain"))).casefold()
        modality = next((m for a, m in _MODALITY_OF_AREA.items() if domain.startswith(a)), None)
        tasks = tuple(t.replace("-", "_") for t in _strings(meta.get("pipeline_tag")))
        attributes = ModelFacts(tasks=tasks, modality=modality)
    elif kind == "dataset":
        licence = next((name for name in _strings(meta.get("license"))), None)
        attributes = DatasetFacts(licence=licence)
    else:
        tags += _strings(meta.get("modality"))
        attributes = ScenarioFacts()
    return ListingFacts(
        id=listing_id,
        kind=kind,
        title=title,
        description=str(record.get("description") or ""),
        tags=tuple(dict.fromkeys(tags)),
        languages=_language_codes(meta.get("language")),
        attributes=attributes,
    )


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def load_subset(folder: str | Path) -> BenchSubset:
    """Read one bench subset.

    Args:
        folder: a folder with needs.jsonl, offers.jsonl and qrels.jsonl.

    Returns:
        The subset; offers get ids 0..n-1 and needs the ids after them.
    """
    path = Path(folder)
    offers = _read_jsonl(path / "offers.jsonl")
    needs = _read_jsonl(path / "needs.jsonl")
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for judgement in _read_jsonl(path / "qrels.jsonl"):
        qrels[str(judgement["need_id"])][str(judgement["offer_id"])] = int(judgement["relevance"])
    records = offers + needs
    facts = [record_to_facts(record, number) for number, record in enumerate(records)]
    return BenchSubset(
        name=path.name,
        needs=tuple(facts[len(offers) :]),
        offers=tuple(facts[: len(offers)]),
        keys={number: str(record["id"]) for number, record in enumerate(records)},
        qrels=dict(qrels),
    )


def load_bench(folder: str | Path) -> list[BenchSubset]:
    """Read every subset of a bench folder.

    Args:
        folder: a folder whose subfolders hold needs.jsonl, offers.jsonl and qrels.jsonl.

    Returns:
        The subsets, by name.

    Raises:
        FileNotFoundError: no subfolder is a bench subset.
    """
    files = ("needs.jsonl", "offers.jsonl", "qrels.jsonl")
    folders = sorted(
        sub for sub in Path(folder).iterdir() if all((sub / name).is_file() for name in files)
    )
    if not folders:
        raise FileNotFoundError(f"no bench subsets (needs/offers/qrels.jsonl) under {folder}")
    return [load_subset(sub) for sub in folders]


def evaluate_subset(
    subset: BenchSubset,
    embedder: Embedder,
    methods: Iterable[Method] = METHODS,
    *,
    settings: RankingSettings | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Metrics]:
    """Match every need of a subset against its offers and score the rankings.

    Args:
        subset: the subset.
        embedder: the embedding model.
        methods: the retrieval methods to score.
        settings: ranking parameters (the matcher's defaults when None).
        progress: called with the number of needs just matched, for progress bars.

    Returns:
        method -> metric name -> value.
    """
    matcher = Matcher(embedder, settings=settings)
    matcher.upsert_many(subset.offers)
    matcher.recount_mentions()  # as the service does once it has built its index
    need_vectors = matcher.embed(subset.needs)
    kinds = frozenset(offer.kind for offer in subset.offers)
    results: dict[str, Metrics] = {}
    for method in methods:
        rankings = {}
        for need, vector in zip(subset.needs, need_vectors, strict=True):
            matches = matcher.match(
                need, vector=vector, kinds=kinds, limit=CUTOFF, method=method, explain=False
            )
            rankings[subset.keys[need.id]] = [subset.keys[m.id] for m in matches]
            if progress is not None:
                progress(1)
        results[method] = score_rankings(rankings, subset.qrels)
    return results


def evaluate_bench(
    subsets: Iterable[BenchSubset],
    embedder: Embedder,
    methods: Iterable[Method] = METHODS,
    *,
    settings: RankingSettings | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, dict[str, Metrics]]:
    """Evaluate every subset of a bench.

    Args:
        subsets: from `load_bench`.
        embedder: the embedding model.
        methods: the retrieval methods to score.
        settings: ranking parameters (the matcher's defaults when None).
        progress: called with the number of needs just matched.

    Returns:
        subset name -> method -> metric name -> value.
    """
    chosen = tuple(methods)
    return {
        subset.name: evaluate_subset(subset, embedder, chosen, settings=settings, progress=progress)
        for subset in subsets
    }
