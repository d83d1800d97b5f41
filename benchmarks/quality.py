"""Matching quality on the shared bench: nDCG@10, Recall@10 and MRR@10 per subset and method.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/quality.py [BENCH_DIR] [--method all] [--smoke]

Every need is matched against its subset's offers through `Matcher.match`, the code path of the
API, with the default model (all-MiniLM-L6-v2). Embedding the whole bench takes several minutes on
two cores: `--cache DIR` keeps the vectors between runs (keyed by model and text; keep it out of
the repository). `--fusion`, `--dense-weight`, `--facet-weight`, `--feedback-depth`,
`--feedback-weight` and `--prominence-weight` rerun with other settings, for the comparisons in
the matching report.
`--smoke` runs 15 needs per subset against their judged offers plus 150 others, to check the
pipeline quickly (its figures are not comparable).
"""

import argparse
import hashlib
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from matching.embedding import Embedder, SentenceTransformerEmbedder
from matching.evaluation import METHODS, BenchSubset, evaluate_subset, load_bench
from matching.ranking import Method, RankingSettings

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BENCH = ROOT.parent / "shared" / "bench"
METRICS = ("ndcg@10", "recall@10", "mrr@10", "recall@10(rel>=2)", "mrr@10(rel>=2)")


class CachedEmbedder:
    """An embedder that keeps every vector it computes in a folder, one .npy file per text.

    Args:
        inner: the embedder that computes missing vectors.
        folder: where the vectors live.
    """

    def __init__(self, inner: Embedder, folder: Path) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.dimension = inner.dimension
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _path(self, text: str) -> Path:
        digest = hashlib.sha1(f"{self.model_name}\n{text}".encode()).hexdigest()
        return self.folder / f"{digest}.npy"

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, bulk: bool = False
    ) -> npt.NDArray[np.float32]:
        """Embed texts, computing only those not in the folder yet.

        Args:
            texts: the texts.
            batch_size: texts per forward pass of the inner embedder.
            bulk: passed to the inner embedder.

        Returns:
            An (n, dimension) float32 array of unit rows.
        """
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        missing = [i for i, text in enumerate(texts) if not self._path(text).is_file()]
        if missing:
            computed = self.inner.encode(
                [texts[i] for i in missing], batch_size=batch_size, bulk=bulk
            )
            for i, vector in zip(missing, computed, strict=True):
                np.save(self._path(texts[i]), vector)
        for i, text in enumerate(texts):
            vectors[i] = np.load(self._path(text))
        return vectors


def smoke_subset(subset: BenchSubset, needs: int = 15, others: int = 150) -> BenchSubset:
    """A small slice of a subset: its first needs, their judged offers and a few more.

    Args:
        subset: the subset.
        needs: how many needs to keep.
        others: how many unjudged offers to keep besides the judged ones.

    Returns:
        The smaller subset.
    """
    kept_needs = subset.needs[:needs]
    judged = {offer for need in kept_needs for offer in subset.qrels.get(subset.keys[need.id], {})}
    offers = [o for o in subset.offers if subset.keys[o.id] in judged]
    offers += [o for o in subset.offers if subset.keys[o.id] not in judged][:others]
    return replace(subset, needs=kept_needs, offers=tuple(offers))


def results_table(rows: list[tuple[str, str, dict[str, float]]], title: str) -> Table:
    """The metrics as a table, one row per subset and method."""
    table = Table(title=title)
    table.add_column("subset")
    table.add_column("method")
    for metric in METRICS:
        table.add_column(metric.replace("(rel>=2)", " rel>=2"), justify="right")
    for subset, method, metrics in rows:
        values = [f"{metrics[m]:.3f}" if m in metrics else "-" for m in METRICS]
        table.add_row(subset, method, *values)
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", nargs="?", type=Path, default=DEFAULT_BENCH, help="bench folder")
    parser.add_argument("--method", choices=[*METHODS, "all"], default="all")
    parser.add_argument("--smoke", action="store_true", help="a small slice of each subset")
    parser.add_argument("--cache", type=Path, help="a folder that keeps the vectors between runs")
    parser.add_argument("--fusion", choices=["blend", "rrf"], help="hybrid fusion to use")
    parser.add_argument("--dense-weight", type=float, help="hybrid weight of the dense side")
    parser.add_argument("--facet-weight", type=float, help="hybrid smoothing by task (0: none)")
    parser.add_argument("--feedback-depth", type=int, help="candidates the query moves towards")
    parser.add_argument("--feedback-weight", type=float, help="query feedback weight (0: none)")
    parser.add_argument("--prominence-weight", type=float, help="hybrid prior weight (0: none)")
    args = parser.parse_args(argv)

    methods: tuple[Method, ...] = METHODS if args.method == "all" else (args.method,)
    settings = RankingSettings()
    if args.fusion is not None:
        settings = replace(settings, fusion=args.fusion)
    if args.dense_weight is not None:
        settings = replace(settings, dense_weight=args.dense_weight)
    if args.facet_weight is not None:
        settings = replace(settings, facet_weight=args.facet_weight)
    if args.feedback_depth is not None:
        settings = replace(settings, feedback_depth=args.feedback_depth)
    if args.feedback_weight is not None:
        settings = replace(settings, feedback_weight=args.feedback_weight)
    if args.prominence_weight is not None:
        settings = replace(settings, prominence_weight=args.prominence_weight)
    subsets = load_bench(args.bench)
    if args.smoke:
        subsets = [smoke_subset(subset) for subset in subsets]
    # Wide enough for the table when the output goes to a file (rich assumes 80 columns there).
    console = Console(width=max(Console().width, 120))
    started = time.perf_counter()
    embedder: Embedder = SentenceTransformerEmbedder()
    if args.cache is not None:
        embedder = CachedEmbedder(embedder, args.cache)
    rows = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as progress:
        for subset in subsets:
            task = progress.add_task(subset.name, total=len(subset.needs) * len(methods))
            results = evaluate_subset(
                subset,
                embedder,
                methods,
                settings=settings,
                progress=lambda done, task=task: progress.advance(task, done),
            )
            rows += [(subset.name, method, results[method]) for method in methods]
    title = (
        f"Matching quality on {args.bench}{' (smoke)' if args.smoke else ''}: "
        f"hybrid = {settings.fusion}, dense weight {settings.dense_weight}, "
        f"facet weight {settings.facet_weight}, feedback {settings.feedback_depth} x "
        f"{settings.feedback_weight}, prominence weight {settings.prominence_weight}; "
        f"{time.perf_counter() - started:.0f} s"
    )
    console.print(results_table(rows, title))


if __name__ == "__main__":
    main()
