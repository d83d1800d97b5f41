"""Does bf16 autocast keep the default model's vectors, and how much faster is it? (fp32 vs bf16)

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/embedding_precision.py [--texts 2000]

Embeds a seeded sample of the benchmark needs and offers (title + description) in both precisions
and prints: the cosine between each text's two vectors (min, 1st percentile, mean), bulk
throughput, single short-query latency, and how much of each text's top-10 neighbours among the
sample survive the change (bf16 on both sides, and fp32 queries against bf16 documents, as when
vectors stored on one machine are queried on another without bf16). Timed work alternates
between the precisions in small chunks, so load from other processes on a shared machine falls on
both alike.
"""

import argparse
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from matching.embedding import Precision, SentenceTransformerEmbedder

ROOT = Path(__file__).resolve().parent.parent

PRECISIONS: tuple[Precision, Precision] = ("fp32", "bf16")


def load_texts(bench: Path) -> tuple[list[str], list[str]]:
    """Read every need and offer of the benchmark.

    Args:
        bench: the folder holding one subfolder per task, each with needs.jsonl and offers.jsonl.

    Returns:
        (title + description texts of needs and offers, need titles as short queries).
    """
    texts: list[str] = []
    titles: list[str] = []
    for path in sorted(bench.glob("*/needs.jsonl")) + sorted(bench.glob("*/offers.jsonl")):
        with path.open(encoding="utf-8") as lines:  # not splitlines(): texts hold U+2028
            records = [json.loads(line) for line in lines if line.strip()]
        for record in records:
            texts.append(f"{record['title']}\n{record['description']}")
            if path.name == "needs.jsonl":
                titles.append(record["title"])
    return texts, titles


def top_k_overlap(
    queries: npt.NDArray[np.float32],
    documents: npt.NDArray[np.float32],
    reference_queries: npt.NDArray[np.float32],
    reference_documents: npt.NDArray[np.float32],
    k: int = 10,
) -> float:
    """Mean share of each row's top-k neighbours (itself excluded) that the reference also has.

    Args:
        queries: (n, d) query vectors under test.
        documents: (n, d) document vectors under test; row i is the same text as query i.
        reference_queries: the fp32 queries.
        reference_documents: the fp32 documents.
        k: neighbours per row.

    Returns:
        The mean overlap in [0, 1].
    """

    def neighbours(
        q: npt.NDArray[np.float32], docs: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.int64]:
        scores = q @ docs.T
        np.fill_diagonal(scores, -np.inf)
        return np.argpartition(-scores, k, axis=1)[:, :k]

    found = neighbours(queries, documents)
    expected = neighbours(reference_queries, reference_documents)
    shared = [len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, expected, strict=True)]
    return float(np.mean(shared)) / k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, default=ROOT.parent / "shared" / "bench")
    parser.add_argument("--texts", type=int, default=2000, help="sampled texts (default 2000)")
    parser.add_argument("--queries", type=int, default=200, help="timed short queries")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=200, help="texts per alternating chunk")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Wide enough for the table when the output goes to a file (rich assumes 80 columns there).
    console = Console(width=max(Console().width, 120))

    texts, titles = load_texts(args.bench)
    rng = random.Random(args.seed)
    sample = rng.sample(texts, min(args.texts, len(texts)))
    queries = rng.sample(titles, min(args.queries, len(titles)))

    started = time.perf_counter()
    embedder = SentenceTransformerEmbedder(num_threads=args.threads)
    load_seconds = time.perf_counter() - started
    import torch

    vectors: dict[Precision, list[npt.NDArray[np.float32]]] = {p: [] for p in PRECISIONS}
    seconds = dict.fromkeys(PRECISIONS, 0.0)
    latencies: dict[Precision, list[float]] = {p: [] for p in PRECISIONS}
    chunks = [sample[i : i + args.chunk] for i in range(0, len(sample), args.chunk)]
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("warm-up", total=2 * len(chunks) + 2 * len(queries))
        for precision in PRECISIONS:
            # oneDNN builds kernels per shape on first use; keep that out of the timings.
            embedder.encode_with(sample[:64], precision=precision, batch_size=args.batch_size)
            embedder.encode_with(queries[:5], precision=precision)
        progress.update(task, description="bulk encoding")
        for number, chunk in enumerate(chunks):
            order = PRECISIONS if number % 2 == 0 else PRECISIONS[::-1]
            for precision in order:
                began = time.perf_counter()
                encoded = embedder.encode_with(
                    chunk, precision=precision, batch_size=args.batch_size
                )
                seconds[precision] += time.perf_counter() - began
                vectors[precision].append(encoded)
                progress.advance(task)
        progress.update(task, description="single queries")
        for number, query in enumerate(queries):
            order = PRECISIONS if number % 2 == 0 else PRECISIONS[::-1]
            for precision in order:
                began = time.perf_counter()
                embedder.encode_with([query], precision=precision)
                latencies[precision].append(time.perf_counter() - began)
                progress.advance(task)

    fp32 = np.concatenate(vectors["fp32"])
    bf16 = np.concatenate(vectors["bf16"])
    cosine = np.einsum("ij,ij->i", fp32, bf16)
    query_cosine = np.einsum(
        "ij,ij->i",
        embedder.encode_with(queries, precision="fp32"),
        embedder.encode_with(queries, precision="bf16"),
    )
    rate = {p: len(sample) / seconds[p] for p in PRECISIONS}
    p50 = {p: 1e3 * float(np.percentile(latencies[p], 50)) for p in PRECISIONS}
    p99 = {p: 1e3 * float(np.percentile(latencies[p], 99)) for p in PRECISIONS}

    table = Table(
        title=f"fp32 vs bf16 autocast: {len(sample)} bench texts, {len(queries)} short queries, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"bf16 native: {embedder.bulk_precision == 'bf16'}"
    )
    table.add_column("measure")
    table.add_column("fp32", justify="right")
    table.add_column("bf16", justify="right")
    table.add_column("bf16 / fp32", justify="right")
    table.add_row(
        "cosine(fp32, bf16) texts: min / p1 / mean",
        "",
        f"{cosine.min():.5f} / {np.percentile(cosine, 1):.5f} / {cosine.mean():.5f}",
        "",
    )
    table.add_row(
        "cosine(fp32, bf16) short queries: min / mean",
        "",
        f"{query_cosine.min():.5f} / {query_cosine.mean():.5f}",
        "",
    )
    table.add_row(
        "bulk texts/s",
        f"{rate['fp32']:.1f}",
        f"{rate['bf16']:.1f}",
        f"{rate['bf16'] / rate['fp32']:.2f}x",
    )
    table.add_row(
        "short query p50 ms",
        f"{p50['fp32']:.2f}",
        f"{p50['bf16']:.2f}",
        f"{p50['bf16'] / p50['fp32']:.2f}x",
    )
    table.add_row(
        "short query p99 ms",
        f"{p99['fp32']:.2f}",
        f"{p99['bf16']:.2f}",
        f"{p99['bf16'] / p99['fp32']:.2f}x",
    )
    table.add_row(
        "top-10 overlap with fp32 (bf16 queries and documents)",
        "1.000",
        f"{top_k_overlap(bf16, bf16, fp32, fp32):.3f}",
        "",
    )
    table.add_row(
        "top-10 overlap with fp32 (fp32 queries, bf16 documents)",
        "1.000",
        f"{top_k_overlap(fp32, bf16, fp32, fp32):.3f}",
        "",
    )
    console.print(table)
    console.print(
        f"model load {load_seconds:.1f} s; machine load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs (a busy shared machine slows both precisions)"
    )


if __name__ == "__main__":
    main()
