"""The search index's snapshot: a restart loads it and catches up, or rebuilds from the database."""

import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import TypeAdapter
from sqlalchemy import Engine
from sqlmodel import Session

from marketplace.models import Listing, ListingEmbedding, Member
from marketplace.search_index import SearchIndex
from marketplace.services import embeddings, listings, matches
from matching.embedding import BackgroundLoadedEmbedder, Embedder
from schemas.listings import ListingCreate, ListingUpdate
from schemas.matches import MatchRead, SearchRequest
from tests.factories import listing_body, owner_of_new_organization

_parse = TypeAdapter(ListingCreate).validate_python

TEXTS = {
    "dataset": "Hourly traffic counts from 400 road sensors in Hefei, 2019 to 2023.",
    "scenario": "Forecast congestion on urban roads a day ahead to plan bus schedules.",
    "model": "A graph neural network that forecasts traffic flow on road networks.",
    "compute": "Eight A100 GPUs in a Shanghai data centre, rented by the hour.",
}


@pytest.fixture
def owner(engine: Engine) -> Member:
    return owner_of_new_organization(engine, "Snapshot Lab")


def create(engine: Engine, owner: Member, embedder: Embedder, kind: str, **extra: Any) -> Listing:
    body = listing_body(kind, summary=TEXTS[kind], **extra)
    with Session(engine, expire_on_commit=False) as session:
        return listings.create(session, actor=owner, data=_parse(body), embedder=embedder)


@pytest.fixture
def catalogue(engine: Engine, owner: Member, embedder: Embedder) -> list[Listing]:
    return [create(engine, owner, embedder, kind) for kind in TEXTS]


def opened(engine: Engine, embedder: Embedder, path: Path) -> SearchIndex:
    index = SearchIndex(engine, embedder, path=path)
    index.open()
    return index


def anonymous_matches(
    session: Session, index: SearchIndex, listing: Listing, limit: int = 10
) -> list[MatchRead]:
    """What an anonymous `GET /listings/{id}/matches` shows."""
    return matches.for_listing(
        session, viewer=None, listing_id=listing.id, index=index, kind=None,
        limit=limit, strict=False, min_score=0.0,
    )  # fmt: skip


def results(index: SearchIndex, text: str = "road traffic forecasting") -> list[tuple[int, float]]:
    found = index.matcher.search(text, explain=False)
    return [(m.id, round(m.score, 6)) for m in found]


class RenamedEmbedder:
    """The same vectors under another model name: what a model change looks like."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_name = f"{inner.model_name}-renamed"
        self.dimension = inner.dimension

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, bulk: bool = False
    ) -> npt.NDArray[np.float32]:
        return self.inner.encode(texts, batch_size=batch_size, bulk=bulk)


class TestSnapshot:
    def test_restart_loads_the_snapshot_and_gives_the_same_results(
        self, engine: Engine, embedder: Embedder, catalogue: list[Listing], tmp_path: Path
    ) -> None:
        path = tmp_path / "index" / "listings.faiss"
        first = opened(engine, embedder, path)
        before = results(first)
        first.close()

        second = SearchIndex(engine, embedder, path=path)
        report = second.open()

        assert report.from_snapshot
        assert report.embedded == 0
        assert len(second) == len(catalogue)
        assert results(second) == before
        assert second.visible_ids(None) == first.visible_ids(None)
        listing = catalogue[0]
        entry = second.listing(listing.row_id or 0)
        assert entry is not None and entry.id == listing.id

    def test_a_build_is_saved_at_once_so_a_crash_does_not_cost_another(
        self, engine: Engine, embedder: Embedder, catalogue: list[Listing], tmp_path: Path
    ) -> None:
        path = tmp_path / "index" / "listings.faiss"
        built = opened(engine, embedder, path)  # never closed: the process dies here

        after_crash = SearchIndex(engine, embedder, path=path).open()

        assert after_crash.from_snapshot and after_crash.listings == len(catalogue)
        assert built.snapshot_path.exists()

    def test_a_restart_serves_matches_while_the_model_loads(
        self, engine: Engine, embedder: Embedder, catalogue: list[Listing], tmp_path: Path
    ) -> None:
        path = tmp_path / "index" / "listings.faiss"
        opened(engine, embedder, path).close()
        released = threading.Event()

        def load() -> Embedder:
            released.wait(60)
            return embedder

        loading = BackgroundLoadedEmbedder(load, model_name=embedder.model_name).start()
        restarted = SearchIndex(engine, loading, path=path)
        assert restarted.open().from_snapshot
        scenario = next(listing for listing in catalogue if listing.kind == "scenario")
        with Session(engine) as session:
            found = anonymous_matches(session, restarted, scenario)
            assert found and all(m.evidence for m in found)
            assert not loading.ready  # matched from stored vectors alone
            released.set()
            searched = matches.search(
                session, viewer=None, request=SearchRequest(text="road traffic"), index=restarted
            )
        assert loading.ready and searched

    def test_changes_made_while_down_are_applied_after_restart(
        self,
        engine: Engine,
        embedder: Embedder,
        owner: Member,
        catalogue: list[Listing],
        tmp_path: Path,
    ) -> None:
        path = tmp_path / "index" / "listings.faiss"
        opened(engine, embedder, path).close()
        added = create(engine, owner, embedder, "model", title="Bus timetable optimiser")
        dataset, scenario = catalogue[0], catalogue[1]
        with Session(engine, expire_on_commit=False) as session:
            listings.delete(session, actor=owner, listing_id=dataset.id, expected_version=None)
            listings.update(
                session,
                actor=owner,
                listing_id=scenario.id,
                data=ListingUpdate(visibility="registered"),  # type: ignore[arg-type]
                expected_version=None,
                embedder=embedder,
            )

        restarted = SearchIndex(engine, embedder, path=path)
        report = restarted.open()

        assert report.from_snapshot
        assert (added.row_id or 0) in restarted.matcher
        assert (dataset.row_id or 0) not in restarted.matcher
        assert (scenario.row_id or 0) not in restarted.visible_ids(None)
        assert (scenario.row_id or 0) in restarted.visible_ids(owner.organization_id)
        assert results(restarted) == results(opened(engine, embedder, tmp_path / "fresh.faiss"))

    @pytest.mark.parametrize("damage", ["garbage", "truncated", "postings cut short", "foreign"])
    def test_an_unusable_snapshot_falls_back_to_a_rebuild(
        self,
        engine: Engine,
        embedder: Embedder,
        catalogue: list[Listing],
        tmp_path: Path,
        damage: str,
    ) -> None:
        path = tmp_path / "index" / "listings.faiss"
        first = opened(engine, embedder, path)
        before = results(first)
        first.close()
        snapshot = first.snapshot_path
        if damage == "garbage":
            snapshot.write_bytes(b"\x80\x05not a pickle at all")
        elif damage == "truncated":
            snapshot.write_bytes(snapshot.read_bytes()[:100])
        elif damage == "postings cut short":  # the raw arrays at the end of the file
            snapshot.write_bytes(snapshot.read_bytes()[:-10])
        else:  # a snapshot saved with another vector index file
            other = tmp_path / "other" / "listings.faiss"
            opened(engine, embedder, other).close()
            snapshot.write_bytes(other.with_name(snapshot.name).read_bytes())

        restarted = SearchIndex(engine, embedder, path=path)
        report = restarted.open()

        assert not report.from_snapshot
        assert report.listings == len(catalogue)
        assert results(restarted) == before

    def test_a_model_change_rebuilds_and_re_embeds(
        self, engine: Engine, embedder: Embedder, catalogue: list[Listing], tmp_path: Path
    ) -> None:
        path = tmp_path / "index" / "listings.faiss"
        opened(engine, embedder, path).close()

        restarted = SearchIndex(engine, RenamedEmbedder(embedder), path=path)
        report = restarted.open()

        assert not report.from_snapshot
        assert report.embedded == len(catalogue)
        assert restarted.matcher.embedder.model_name.endswith("-renamed")

    def test_reload_ignores_the_snapshot(
        self, engine: Engine, embedder: Embedder, catalogue: list[Listing], tmp_path: Path
    ) -> None:
        path = tmp_path / "index" / "listings.faiss"
        index = opened(engine, embedder, path)
        index.save()

        report = index.reload()

        assert not report.from_snapshot
        assert report.listings == len(catalogue)

    def test_another_index_kind_rebuilds_with_that_kind(
        self, engine: Engine, embedder: Embedder, catalogue: list[Listing], tmp_path: Path
    ) -> None:
        path = tmp_path / "index" / "listings.faiss"
        flat = opened(engine, embedder, path)
        flat.close()

        hnsw = SearchIndex(engine, embedder, path=path, index_kind="hnsw")
        report = hnsw.open()

        assert not report.from_snapshot
        assert hnsw.matcher.index.kind == "hnsw"
        found, expected = results(hnsw), results(flat)
        assert [i for i, _ in found] == [i for i, _ in expected]
        # HNSW stores fp16 vectors: cosines move by about 1e-4.
        assert [s for _, s in found] == pytest.approx([s for _, s in expected], abs=1e-3)
        assert hnsw.visible_ids(None) == flat.visible_ids(None)


class CountingEmbedder:
    """Counts the texts embedded through it."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.dimension = inner.dimension
        self.texts = 0

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, bulk: bool = False
    ) -> npt.NDArray[np.float32]:
        self.texts += len(texts)
        return self.inner.encode(texts, batch_size=batch_size, bulk=bulk)


def _stored(engine: Engine, listing: Listing) -> ListingEmbedding:
    with Session(engine) as session:
        row = session.get(ListingEmbedding, listing.row_id)
        assert row is not None
        return row


class TestStoredSentenceVectors:
    def test_a_write_stores_a_vector_for_each_sentence_the_model_reads(
        self, engine: Engine, owner: Member, embedder: Embedder
    ) -> None:
        listing = create(
            engine, owner, embedder, "model", description="Trained on loop counts. Runs on CPU."
        )
        row = _stored(engine, listing)
        assert row.sentence_vectors is not None
        vectors = embeddings.sentences_from_bytes(row.sentence_vectors, row.dimension)
        assert vectors.shape == (3, 384)  # the summary and the description's two sentences
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-2)

    def test_matches_and_search_are_explained_without_embedding_any_listing(
        self, engine: Engine, catalogue: list[Listing], embedder: Embedder, tmp_path: Path
    ) -> None:
        counting = CountingEmbedder(embedder)
        index = opened(engine, counting, tmp_path / "listings.faiss")  # type: ignore[arg-type]
        scenario = next(listing for listing in catalogue if listing.kind == "scenario")
        with Session(engine) as session:
            found = anonymous_matches(session, index, scenario)
            assert counting.texts == 0
            searched = matches.search(
                session, viewer=None, request=SearchRequest(text="road traffic"), index=index
            )
            assert counting.texts == 1  # the query text, and nothing else
        assert found and all(m.evidence for m in found)
        assert searched and all(m.evidence for m in searched)

    def test_rows_from_before_sentence_vectors_are_explained_and_refreshed(
        self, engine: Engine, catalogue: list[Listing], embedder: Embedder, tmp_path: Path
    ) -> None:
        model = next(listing for listing in catalogue if listing.kind == "model")
        with Session(engine) as session:
            row = session.get(ListingEmbedding, model.row_id)
            assert row is not None
            row.sentence_vectors = None
            session.add(row)
            session.commit()
        index = opened(engine, embedder, tmp_path / "listings.faiss")
        with Session(engine) as session:
            (found,) = matches.search(
                session,
                viewer=None,
                request=SearchRequest(text="graph neural network", kinds=["model"]),
                index=index,
            )
            assert found.evidence == TEXTS["model"]
            listing = session.get(Listing, model.row_id)
            assert listing is not None
            assert embeddings.refresh(session, [listing], embedder=embedder) == 1
            session.commit()
        assert _stored(engine, model).sentence_vectors is not None


class TestStaleIndex:
    def test_matches_fill_the_page_when_the_database_hides_the_best(
        self, engine: Engine, owner: Member, embedder: Embedder, tmp_path: Path
    ) -> None:
        scenario = create(engine, owner, embedder, "scenario")
        models = [
            create(engine, owner, embedder, "model", title=f"Traffic forecaster {n}")
            for n in range(3)
        ]
        index = opened(engine, embedder, tmp_path / "listings.faiss")  # not following changes

        def shown(limit: int) -> list[uuid.UUID]:
            with Session(engine) as session:
                return [m.listing.id for m in anonymous_matches(session, index, scenario, limit)]

        ranked = shown(3)
        assert sorted(ranked) == sorted(model.id for model in models)
        with Session(engine) as session:
            for hidden in ranked[:2]:
                listings.update(
                    session,
                    actor=owner,
                    listing_id=hidden,
                    data=ListingUpdate(visibility="registered"),  # type: ignore[arg-type]
                    expected_version=None,
                    embedder=embedder,
                )
        # The index still ranks the two first; the database hides them from anonymous callers.
        assert index.listing(models[0].row_id or 0) is not None
        assert shown(1) == ranked[2:]


def mentions_by_row(index: SearchIndex, text: str = "Hefei road sensors") -> dict[int, int]:
    return {m.id: m.components.mentions for m in index.matcher.search(text, explain=False)}


class TestMentions:
    """How many other organizations name each listing is counted at a build, kept in the
    snapshot, and counted again in the background once enough has changed."""

    def test_a_build_counts_mentions_and_a_restart_keeps_them(
        self, engine: Engine, owner: Member, embedder: Embedder, tmp_path: Path
    ) -> None:
        named = create(engine, owner, embedder, "dataset", title="Hefei Road Sensors")
        other = owner_of_new_organization(engine, "Model Works")
        for model in range(2):  # one organization naming it twice counts once
            text = f"Model {model}, trained on Hefei Road Sensors."
            create(engine, other, embedder, "model", description=text)
        create(engine, owner, embedder, "model", description="Also on Hefei Road Sensors.")
        path = tmp_path / "index" / "listings.faiss"
        first = opened(engine, embedder, path)
        assert mentions_by_row(first)[named.row_id or 0] == 1
        first.close()

        second = SearchIndex(engine, embedder, path=path)
        assert second.open().from_snapshot
        assert not second.matcher.mentions_due
        assert mentions_by_row(second)[named.row_id or 0] == 1

    def test_the_background_counts_again_once_listings_changed(
        self, engine: Engine, owner: Member, embedder: Embedder, tmp_path: Path
    ) -> None:
        named = create(engine, owner, embedder, "dataset", title="Hefei Road Sensors")
        other = owner_of_new_organization(engine, "Compute Works")
        path = tmp_path / "index" / "listings.faiss"
        index = SearchIndex(engine, embedder, path=path, poll_seconds=0.05, recount_seconds=0.05)
        index.open()
        index.start()
        try:
            assert mentions_by_row(index)[named.row_id or 0] == 0
            create(engine, other, embedder, "compute", description="Hosts Hefei Road Sensors.")
            deadline = time.monotonic() + 10
            while mentions_by_row(index)[named.row_id or 0] == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert mentions_by_row(index)[named.row_id or 0] == 1
        finally:
            index.close()
