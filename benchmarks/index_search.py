"""Single-query search latency of the vector index against numpy brute force, at catalogue sizes.

    .venv/bin/python benchmarks/index_search.py [--sizes 10000,100000,1000000] [--smoke]

For each size: seeded vectors shaped like real embeddings (d=384; see `embedding_like`), 200
held-out queries, k=10. Rows: numpy brute force (a matrix-vector product and argpartition,
measured in the same run), the exact `VectorIndex` (flat), HNSW at several efSearch values, and
both kinds with an allowed-id filter (a random 10% and 1% of the ids). Recall@10 is against
numpy's exact answer (restricted to the allowed ids for filtered rows). RSS is the peak of a
fresh process that loads the saved index and answers queries, i.e. what an API worker holding
that index costs.
`--smoke` runs 10k only, in seconds.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from matching.index import VectorIndex

DIMENSION = 384
K = 10
ROUNDS = 5

Vectors = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]


def embedding_like(count: int, *, seed: int, chunk: int = 100_000) -> Vectors:
    """Unit vectors with the neighbourhood structure of all-MiniLM-L6-v2 embeddings.

    Uniform random vectors have no neighbours worth the name and make every ANN index look
    broken. These come from a two-level mixture (300 topics, one subtopic per 10 vectors) under a
    power-law spectrum around a shared mean direction, with parameters fitted to the 6,066
    benchmark needs and offers: among 6,066 of them, mean cosine to the nearest neighbour 0.756
    (real 0.763), to the 10th 0.593 (real 0.576), between random pairs 0.198 (real 0.201).

    Args:
        count: how many vectors.
        seed: the random seed (the same seed and count give the same vectors).
        chunk: vectors generated per step, to bound temporary memory.

    Returns:
        A (count, 384) float32 array of unit rows.
    """
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((DIMENSION, DIMENSION)))
    spectrum = np.arange(1, DIMENSION + 1) ** -0.9
    scale = np.sqrt(spectrum / spectrum.sum()).astype(np.float32)
    mean = rng.standard_normal(DIMENSION)
    mean *= 0.75 / np.linalg.norm(mean)
    topics = rng.standard_normal((300, DIMENSION)).astype(np.float32) * scale * 0.8
    subtopic_count = max(1, count // 10)
    subtopics = topics[rng.integers(0, 300, subtopic_count)]
    subtopics += rng.standard_normal(subtopics.shape, dtype=np.float32) * scale * 0.9
    basis = rotation.T.astype(np.float32)
    out = np.empty((count, DIMENSION), dtype=np.float32)
    for start in range(0, count, chunk):
        stop = min(count, start + chunk)
        points = subtopics[rng.integers(0, subtopic_count, stop - start)]
        points = points + rng.standard_normal(points.shape, dtype=np.float32) * scale * 0.95
        points = points @ basis + mean.astype(np.float32)
        points /= np.linalg.norm(points, axis=1, keepdims=True)
        out[start:stop] = points
    return out


@dataclass
class Row:
    size: int
    method: str
    latencies: list[float] = field(default_factory=list)
    recall: float | None = None
    build_seconds: float | None = None
    rss_mb: float | None = None

    def percentile(self, q: float) -> float:
        return 1e3 * float(np.percentile(self.latencies, q))


def numpy_top_k(vectors: Vectors, query: Vectors, k: int = K) -> Ids:
    """Exact top k by a matrix-vector product: the baseline the index must keep up with."""
    scores = vectors @ query
    top = np.argpartition(scores, -k)[-k:]
    return top[np.argsort(-scores[top])].astype(np.int64)


def recall(found: list[Ids], truth: list[Ids]) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / (K * len(truth))


# Peak RSS from VmHWM: ru_maxrss would report the parent's size, because Linux carries the
# forking process's high-water mark across fork and exec into the child.
_RSS_PROBE = """
import sys, time
import numpy as np
from matching.index import VectorIndex
began = time.perf_counter()
index = VectorIndex.load(sys.argv[1])
loaded = time.perf_counter() - began
queries = np.random.default_rng(0).standard_normal((50, index.dimension)).astype(np.float32)
queries /= np.linalg.norm(queries, axis=1, keepdims=True)
allowed = index.ids()[::10]
for query in queries:
    index.search(query, 10)
    index.search(query, 10, allowed_ids=allowed)
with open("/proc/self/status") as status:
    peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(peak_kb / 1024, loaded)
"""


def peak_rss_mb(path: Path) -> float:
    """Peak RSS (MB) of a fresh Python process that loads the index and searches it."""
    output = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, str(path)], check=True, capture_output=True, text=True
    ).stdout.split()
    return float(output[0])


def bench_size(
    size: int,
    *,
    query_count: int,
    ef_values: list[int],
    allowed_fractions: list[float],
    folder: Path,
    progress: Progress,
) -> list[Row]:
    """Build both kinds of index at one size, then time every method on every query.

    Queries run in rounds; in each round every method answers the round's queries back to back
    (so one method's spinning BLAS or OpenMP threads do not bill the next), and the order of the
    methods rotates between rounds, so bursts of load from other processes on a shared machine
    fall on all methods alike.
    """
    chunk = 50_000
    chunks = -(-size // chunk)
    total = len(allowed_fractions) + 2 * chunks + 1 + query_count + 2
    task = progress.add_task(f"{size:,}: vectors", total=total)

    def advance(description: str) -> None:
        progress.update(task, advance=1, description=f"{size:,}: {description}")

    data = embedding_like(size + query_count, seed=size)
    vectors, queries = data[:size], data[size:]
    ids = np.arange(1, size + 1, dtype=np.int64)  # like database row ids
    rng = np.random.default_rng(1)
    filters: dict[str, tuple[Ids, list[Ids]]] = {}  # label -> (allowed ids, exact answers)
    for fraction in allowed_fractions:
        advance("exact answers with the filter")
        rows = np.sort(rng.choice(size, max(K, int(size * fraction)), replace=False))
        allowed_vectors = vectors[rows]
        truth = [ids[rows][numpy_top_k(allowed_vectors, q)] for q in queries]
        filters[f"filter {fraction:.0%}"] = (ids[rows], truth)
        del allowed_vectors

    indexes: dict[str, VectorIndex] = {}
    build_seconds: dict[str, float] = {}
    for kind in ("flat", "hnsw"):
        began = time.perf_counter()
        index = indexes[kind] = VectorIndex(DIMENSION, kind=kind)  # type: ignore[arg-type]
        for start in range(0, size, chunk):
            advance(f"{kind}: build")
            index.upsert(ids[start : start + chunk], vectors[start : start + chunk])
        build_seconds[kind] = time.perf_counter() - began
    flat, hnsw = indexes["flat"], indexes["hnsw"]
    default_ef = hnsw.ef_search

    def flat_search(allowed: Ids | None = None) -> Callable[[Vectors], Ids]:
        return lambda query: flat.search(query, K, allowed_ids=allowed)[1]

    def hnsw_search(ef: int, allowed: Ids | None = None) -> Callable[[Vectors], Ids]:
        def search(query: Vectors) -> Ids:
            hnsw.ef_search = ef
            return hnsw.search(query, K, allowed_ids=allowed)[1]

        return search

    methods: dict[str, Callable[[Vectors], Ids]] = {
        "numpy brute force": lambda q: ids[numpy_top_k(vectors, q)],
        "VectorIndex flat (exact)": flat_search(),
        **{f"VectorIndex hnsw ef={ef}": hnsw_search(ef) for ef in ef_values},
    }
    for label, (allowed, _) in filters.items():
        methods[f"VectorIndex flat + {label}"] = flat_search(allowed)
        methods[f"VectorIndex hnsw ef={default_ef} + {label}"] = hnsw_search(default_ef, allowed)
    names = list(methods)
    rows: dict[str, Row] = {name: Row(size, name) for name in names}
    found: dict[str, list[Ids | None]] = {name: [None] * query_count for name in names}
    advance("warm-up")
    for query in queries[:2]:
        for search in methods.values():
            search(query)
    rounds = np.array_split(np.arange(query_count), ROUNDS)
    for number, batch in enumerate(rounds):
        turn = number % len(names)
        for name in names[turn:] + names[:turn]:
            search = methods[name]
            for position in batch:
                began = time.perf_counter()
                found[name][position] = search(queries[position])
                rows[name].latencies.append(time.perf_counter() - began)
            progress.update(task, advance=batch.size / len(names), description=f"{size:,}: {name}")
    hnsw.ef_search = default_ef

    answers = {name: [a for a in results if a is not None] for name, results in found.items()}
    for name, row in rows.items():
        label = name.rpartition(" + ")[2] if " + " in name else None
        row.recall = recall(answers[name], filters[label][1] if label else answers[names[0]])
        kind = "flat" if " flat" in name else "hnsw" if " hnsw" in name else None
        if kind and not label:
            row.build_seconds = build_seconds[kind]
    for kind, index in indexes.items():
        advance(f"{kind}: RSS of a process loading it")
        path = folder / f"{kind}-{size}.index"
        index.save(path)
        rss = peak_rss_mb(path)
        path.unlink()
        for name, row in rows.items():
            if f" {kind}" in name:
                row.rss_mb = rss
    progress.update(task, description=f"{size:,}: done")
    return list(rows.values())


def summary(rows: list[Row], title: str) -> Table:
    table = Table(title=title)
    for column in ("vectors", "method", "build s", "p50 ms", "p99 ms", "p50 / numpy", "recall@10"):
        table.add_column(column, justify="left" if column == "method" else "right")
    table.add_column("RSS MB", justify="right")
    baseline = {row.size: row.percentile(50) for row in rows if row.method.startswith("numpy")}
    for row in rows:
        table.add_row(
            f"{row.size:,}",
            row.method,
            "" if row.build_seconds is None else f"{row.build_seconds:.1f}",
            f"{row.percentile(50):.3f}",
            f"{row.percentile(99):.3f}",
            f"{row.percentile(50) / baseline[row.size]:.2f}x",
            "" if row.recall is None else f"{row.recall:.3f}",
            "" if row.rss_mb is None else f"{row.rss_mb:,.0f}",
        )
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated sizes")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per method")
    parser.add_argument("--ef-search", default="32,64,128", help="HNSW efSearch values to time")
    parser.add_argument(
        "--allowed",
        default="0.1,0.01",
        help="comma-separated shares of ids an allowed-id filter lets through",
    )
    parser.add_argument("--smoke", action="store_true", help="10k vectors and 50 queries only")
    args = parser.parse_args(argv)
    sizes = [10_000] if args.smoke else [int(s) for s in args.sizes.split(",")]
    query_count = 50 if args.smoke else args.queries
    ef_values = [int(e) for e in args.ef_search.split(",")]
    # Wide enough for the table when the output goes to a file (rich assumes 80 columns there).
    console = Console(width=max(Console().width, 120))
    rows: list[Row] = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with (
        tempfile.TemporaryDirectory(prefix="index-bench-") as folder,
        Progress(*columns, console=console) as progress,
    ):
        for size in sizes:
            rows += bench_size(
                size,
                query_count=query_count,
                ef_values=ef_values,
                allowed_fractions=[float(f) for f in args.allowed.split(",")],
                folder=Path(folder),
                progress=progress,
            )
    console.print(
        summary(
            rows,
            f"Single-query search, k={K}, d={DIMENSION}, {query_count} queries per row; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
        )
    )


if __name__ == "__main__":
    main()
