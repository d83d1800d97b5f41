"""The benchmarks' smoke modes run end to end, so the benchmarks cannot rot unnoticed.

Their figures are not checked here (targets live in the benchmarks, measured on a quiet machine);
what is checked is that each runs through the current code and prints its whole table.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT.parent / "shared" / "bench"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not BENCH.is_dir(), reason="the shared benchmark is not on this machine"),
]


def _run(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _rows(table: str) -> list[list[str]]:
    """The body rows of a rich table, as cells."""
    return [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in table.splitlines()
        if line.startswith("│")
    ]


def test_quality_smoke_prints_every_subset_and_method() -> None:
    rows = _rows(_run("benchmarks/quality.py", "--smoke"))
    subsets = ("datafinder", "dataset_to_model", "scenario_to_model")
    assert [row[:2] for row in rows] == [
        [subset, method] for subset in subsets for method in ("dense", "lexical", "hybrid")
    ]
    assert all(0.0 <= float(row[2]) <= 1.0 for row in rows)  # nDCG@10


def test_ingest_smoke_creates_every_listing_through_every_path() -> None:
    rows = _rows(_run("benchmarks/service.py", "ingest", "--smoke"))
    assert [row[:2] for row in rows] == [
        ["create, one by one", "30"],
        ["create_many, batches of 32", "30"],
        ["POST /listings (HTTP), one by one", "30"],
        ["POST /listings (HTTP), one by one, 4 clients", "30"],
        ["POST /listings/batch (HTTP), 32 each", "30"],
    ]
    assert all(float(row[-1]) > 0 for row in rows)  # listings per second
