"""The matching commands of `marketplace`: eval, reindex and match, with the real model.

The commands load the model through `shared_embedder` (SCX_ONNX is off here), which is cached per
process, so they share the one the session's `embedder` fixture loaded.
"""

import json
import math
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter
from sqlalchemy import Engine
from sqlmodel import Session
from typer.testing import CliRunner, Result

from marketplace.cli import app
from marketplace.models import Member
from marketplace.services import listings, members, organizations
from matching.embedding import Embedder, SentenceTransformerEmbedder
from matching.evaluation import evaluate_bench, load_bench
from matching.partitioned_index import PartitionedIndex
from schemas.listings import ListingCreate
from schemas.members import MemberCreate
from schemas.organizations import OrganizationFields
from tests.factories import ATTRIBUTES, PASSWORD, listing_body
from tests.matching.conftest import HashingEmbedder

BENCH = Path(__file__).parents[1] / "matching" / "data" / "bench"
LOG3 = math.log2(3)
# Wide enough that no table cell wraps, so titles can be looked for whole.
WIDE = {"COLUMNS": "200"}

runner = CliRunner()


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args), env=WIDE, catch_exceptions=False)


@pytest.fixture
def database_env(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Engine:
    """The session's migrated database of each backend, emptied, configured through SCX_
    variables as a user would; its engine (for writing the catalogue through the services)."""
    monkeypatch.setenv("SCX_DATABASE_URL", database_url)
    monkeypatch.setenv("SCX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SCX_ONNX", "false")  # no export into each data dir (tests/e2e cover it)
    return engine


# -- the catalogue, written through the services ---------------------------------------------

LISTING = TypeAdapter(ListingCreate)


def member_of_new_organization(session: Session, name: str) -> Member:
    suffix = uuid.uuid4().hex[:8]
    organization = organizations.create(
        session, fields=OrganizationFields(name=name, kind="company", country="CN")
    )
    return members.create(
        session,
        organization_id=organization.id,
        data=MemberCreate(
            email=f"lead-{suffix}@example.org", display_name="Lead", password=PASSWORD
        ),
    )


def traffic_model(**overrides: Any) -> dict[str, Any]:
    return listing_body(
        "model",
        **{
            "title": "Junction traffic flow forecaster",
            "summary": "Forecasts vehicle flow at signalised junctions an hour ahead.",
            "description": "A graph neural network trained on loop detector counts from three "
            "cities. It predicts traffic flow and queue lengths at every junction approach.",
            "tags": ["traffic", "forecasting"],
            "sector": "transport",
            "attributes": {
                **ATTRIBUTES["model"],
                "tasks": ["time_series_forecasting"],
                "modality": "time_series",
                "licence": "Apache-2.0",
            },
            **overrides,
        },
    )


def defect_model(**overrides: Any) -> dict[str, Any]:
    return listing_body(
        "model",
        **{
            "title": "Steel surface defect detector",
            "summary": "Finds scratches and cracks on hot-rolled steel strip in camera images.",
            "description": "Trained on line-scan images from steel mills.",
            "tags": ["steel", "defect detection"],
            **overrides,
        },
    )


def gpu_compute(**overrides: Any) -> dict[str, Any]:
    return listing_body(
        "compute",
        **{
            "title": "H100 GPU cluster in Wuhu",
            "summary": "64 NVIDIA H100 accelerators for model training.",
            **overrides,
        },
    )


def post(session: Session, member: Member, body: dict[str, Any], embedder: Embedder) -> str:
    listing = listings.create(
        session, actor=member, data=LISTING.validate_python(body), embedder=embedder
    )
    return listing.title


def catalogue(engine: Engine, embedder: Embedder) -> dict[str, str]:
    """Two published public models, a public compute offer, a private and a draft model."""
    with Session(engine) as session:
        firm = member_of_new_organization(session, "Anhui Mobility Labs")
        titles = {
            "forecaster": post(session, firm, traffic_model(), embedder),
            "detector": post(session, firm, defect_model(), embedder),
            "compute": post(session, firm, gpu_compute(), embedder),
            "private": post(
                session,
                firm,
                traffic_model(title="Private traffic flow forecaster", visibility="private"),
                embedder,
            ),
            "draft": post(
                session,
                firm,
                traffic_model(title="Draft traffic flow forecaster", status="draft"),
                embedder,
            ),
        }
    return titles | {"organization": "Anhui Mobility Labs"}


# -- eval --------------------------------------------------------------------------------------

TWO_OF_THREE = 2 / (2 + 1 / LOG3)
# Lexical rankings of the tiny bench are unambiguous (see tests/matching/test_evaluation.py, which
# derives the same figures): BM25 only returns offers sharing a word with the need.
LEXICAL_BY_HAND = {
    # q:streets finds its one relevant offer (MNIST) second: nDCG 1/log2(3), MRR 1/2;
    # q:digits finds one of its two relevant offers first: DCG 1, ideal 1 + 1/log2(3), recall 1/2;
    # q:unjudged has no judgements: it counts 0 in nDCG and is left out of recall and MRR.
    "datafinder": {
        "ndcg@10": (1 / LOG3 + 1 / (1 + 1 / LOG3)) / 3,
        "recall@10": (1 + 0.5) / 2,
        "mrr@10": (0.5 + 1) / 2,
    },
    # c:loops finds only the traffic forecaster (grade 2), not the water one (grade 1):
    # nDCG 2 / (2 + 1/log2(3)), recall 1/2; c:hotline finds its one relevant offer first.
    # Grade 2 exists for c:loops only, found first: recall and MRR (rel>=2) 1.
    "dataset_to_model": {
        "ndcg@10": (1 + TWO_OF_THREE) / 2,
        "recall@10": (0.5 + 1) / 2,
        "mrr@10": 1.0,
        "recall@10(rel>=2)": 1.0,
        "mrr@10(rel>=2)": 1.0,
    },
    # n:traffic finds the traffic forecaster (2) but not the water one (1); n:tickets finds the
    # ticket classifier (2) first and the traffic forecaster (1) too.
    "scenario_to_model": {
        "ndcg@10": (TWO_OF_THREE + 1) / 2,
        "recall@10": (0.5 + 1) / 2,
        "mrr@10": 1.0,
        "recall@10(rel>=2)": 1.0,
        "mrr@10(rel>=2)": 1.0,
    },
}
# Hybrid (what the API uses) retrieves every offer of these tiny subsets, so recall is 1. On
# datafinder only the order of q:streets counts (both of q:digits' offers have grade 1): the street
# scenes of Cityscapes come before MNIST, so nDCG = (1/log2(3) + 1 + 0) / 3 and MRR = (1/2 + 1) / 2.
HYBRID_DATAFINDER_BY_HAND = {
    "ndcg@10": (1 / LOG3 + 1 + 0) / 3,
    "recall@10": 1.0,
    "mrr@10": (0.5 + 1) / 2,
}


class TestEval:
    def test_json_gives_the_lexical_metrics_computed_by_hand(self) -> None:
        result = invoke("eval", str(BENCH), "--method", "lexical", "--json")
        assert result.exit_code == 0, result.output
        printed = json.loads(result.stdout)
        assert printed == {
            subset: {"lexical": pytest.approx(metrics)}
            for subset, metrics in LEXICAL_BY_HAND.items()
        }

    def test_json_scores_every_subset_with_every_method(self) -> None:
        result = invoke("eval", str(BENCH), "--json")
        assert result.exit_code == 0, result.output
        printed = json.loads(result.stdout)
        assert {s: set(by_method) for s, by_method in printed.items()} == {
            subset: {"dense", "lexical", "hybrid"} for subset in LEXICAL_BY_HAND
        }
        for subset, metrics in LEXICAL_BY_HAND.items():
            assert printed[subset]["lexical"] == pytest.approx(metrics)
        assert printed["datafinder"]["hybrid"] == pytest.approx(HYBRID_DATAFINDER_BY_HAND)
        for subset in ("dataset_to_model", "scenario_to_model"):
            hybrid = printed[subset]["hybrid"]
            # Every grade-2 offer is the model named after the need's topic; it comes first.
            assert hybrid | {"ndcg@10": None} == {
                "ndcg@10": None,
                "recall@10": 1.0,
                "mrr@10": 1.0,
                "recall@10(rel>=2)": 1.0,
                "mrr@10(rel>=2)": 1.0,
            }
            assert hybrid["ndcg@10"] >= max(
                printed[subset]["dense"]["ndcg@10"], printed[subset]["lexical"]["ndcg@10"]
            )

    def test_json_prints_what_the_library_computes_with_the_same_model(
        self, embedder: SentenceTransformerEmbedder
    ) -> None:
        result = invoke("eval", str(BENCH), "--method", "dense", "--json")
        assert result.exit_code == 0, result.output
        # JSON floats round-trip exactly: the very numbers, not approximately them.
        assert json.loads(result.stdout) == evaluate_bench(load_bench(BENCH), embedder, ["dense"])

    def test_table_shows_each_metric_per_subset_and_method(self) -> None:
        result = invoke("eval", str(BENCH), "--method", "lexical")
        assert result.exit_code == 0, result.output
        assert re.search(r"nDCG@10\s.*Recall@10\s.*MRR@10", result.stdout)
        rows = {
            line.split()[1]: line
            for line in result.stdout.splitlines()
            if re.search(r"\b(datafinder|dataset_to_model|scenario_to_model)\b", line)
        }
        assert set(rows) == set(LEXICAL_BY_HAND)
        for subset, metrics in LEXICAL_BY_HAND.items():
            figures = [f"{metrics[m]:.3f}" for m in ("ndcg@10", "recall@10", "mrr@10")]
            assert re.search(r"\blexical\b.*" + r".*".join(figures), rows[subset]), rows[subset]

    def test_a_folder_without_subsets_is_refused_without_traceback(self, tmp_path: Path) -> None:
        result = invoke("eval", str(tmp_path), "--json")
        assert result.exit_code == 1
        assert "no bench subsets" in result.output
        assert result.stdout == ""  # nothing a JSON reader could mistake for results

    def test_a_missing_folder_is_a_usage_error(self, tmp_path: Path) -> None:
        result = invoke("eval", str(tmp_path / "nowhere"))
        assert result.exit_code == 2
        assert "does not exist" in result.output


# -- reindex -----------------------------------------------------------------------------------


def summary_row(output: str) -> dict[str, str]:
    """The one data row of the reindex summary table, by column."""
    columns = ["listings", "embedded", "unchanged", "indexed (published)", "index build s"]
    rows = [
        cells
        for line in output.splitlines()
        if len(cells := re.findall(r"\d+(?:\.\d+)?", line)) == len(columns) and "│" in line
    ]
    assert len(rows) == 1, output
    assert all(column in output for column in columns), output
    return dict(zip(columns, rows[0], strict=True))


class TestReindex:
    def test_embeds_listings_of_another_model_and_saves_the_index(
        self, database_env: Engine, tmp_path: Path, embedder: SentenceTransformerEmbedder
    ) -> None:
        # Listings embedded by some earlier model: every one needs the current model's vector.
        catalogue(database_env, HashingEmbedder(384))
        result = invoke("reindex")
        assert result.exit_code == 0, result.output
        row = summary_row(result.stdout)
        assert row | {"index build s": ""} == {
            "listings": "5",
            "embedded": "5",
            "unchanged": "0",
            "indexed (published)": "4",  # the draft stays out; the private one is indexed
            "index build s": "",
        }
        path = tmp_path / "data" / "index" / "listings.faiss"
        assert f"Index saved to {path}" in " ".join(result.stdout.split())
        saved = PartitionedIndex.load(path)
        assert len(saved) == 4
        assert saved.metadata["model"] == embedder.model_name

    def test_a_second_reindex_embeds_nothing(self, database_env: Engine) -> None:
        catalogue(database_env, HashingEmbedder(384))
        assert invoke("reindex").exit_code == 0
        result = invoke("reindex")
        assert result.exit_code == 0, result.output
        row = summary_row(result.stdout)
        assert (row["listings"], row["embedded"], row["unchanged"]) == ("5", "0", "5")

    def test_listings_written_with_the_model_need_no_embedding(
        self, database_env: Engine, embedder: SentenceTransformerEmbedder
    ) -> None:
        catalogue(database_env, embedder)
        result = invoke("reindex")
        assert result.exit_code == 0, result.output
        assert summary_row(result.stdout)["embedded"] == "0"


# -- match -------------------------------------------------------------------------------------


def table_rows(output: str) -> list[list[str]]:
    """The cells of each data row of a rich table."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in output.splitlines()
        if line.strip().startswith("│")
    ]


class TestMatch:
    def test_prints_matching_public_listings_with_scores_and_reasons(
        self, database_env: Engine, embedder: SentenceTransformerEmbedder
    ) -> None:
        titles = catalogue(database_env, embedder)
        result = invoke("match", "forecast traffic flow at junctions")
        assert result.exit_code == 0, result.output
        assert "Matches for 'forecast traffic flow at junctions'" in result.stdout
        rows = table_rows(result.stdout)
        score, kind, title, organization, why = rows[0]
        assert (kind, title, organization) == (
            "model",
            titles["forecaster"],
            titles["organization"],
        )
        assert 0.0 < float(score) <= 1.0
        assert {"traffic", "flow", "junction"} <= set(why.split(", "))
        shown = {row[2] for row in rows}
        assert {titles["detector"], titles["compute"]} <= shown
        assert not {titles["private"], titles["draft"]} & shown

    def test_kind_keeps_only_those_kinds(
        self, database_env: Engine, embedder: SentenceTransformerEmbedder
    ) -> None:
        titles = catalogue(database_env, embedder)
        result = invoke("match", "GPU hours for training", "--kind", "compute")
        assert result.exit_code == 0, result.output
        assert [row[1:3] for row in table_rows(result.stdout)] == [["compute", titles["compute"]]]

    def test_chinese_text_finds_a_chinese_listing(
        self, database_env: Engine, embedder: SentenceTransformerEmbedder
    ) -> None:
        catalogue(database_env, embedder)
        with Session(database_env) as session:
            firm = member_of_new_organization(session, "Hefei Traffic AI")
            title = post(
                session,
                firm,
                traffic_model(
                    title="交通流量预测模型",
                    summary="基于图神经网络的城市路网交通流量预测模型。",
                    description="根据路口线圈检测器的历史数据预测未来一小时的交通流量。",
                    tags=["交通流量", "预测"],
                    languages=["zh"],
                ),
                embedder,
            )
        result = invoke("match", "交通流量预测")
        assert result.exit_code == 0, result.output
        assert table_rows(result.stdout)[0][2] == title

    def test_finds_listings_written_after_the_last_reindex(
        self, database_env: Engine, embedder: SentenceTransformerEmbedder
    ) -> None:
        catalogue(database_env, embedder)
        assert invoke("reindex").exit_code == 0  # leaves a saved index behind
        with Session(database_env) as session:
            firm = member_of_new_organization(session, "Hefei Signal Works")
            title = post(
                session,
                firm,
                traffic_model(title="Adaptive traffic signal controller", tags=["signal"]),
                embedder,
            )
        result = invoke("match", "adaptive traffic signal controller", "--kind", "model")
        assert result.exit_code == 0, result.output
        assert table_rows(result.stdout)[0][2] == title

    def test_an_empty_text_is_refused_without_traceback(self, database_env: Engine) -> None:
        result = invoke("match", "   ")
        assert result.exit_code == 1
        assert "text" in result.output
