"""The FAISS vector index, checked against numpy brute force on seeded vectors."""

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

import matching.index
from matching.embedding import Embedder
from matching.index import IndexKind, VectorIndex

KINDS: list[IndexKind] = ["flat", "hnsw"]
DIMENSION = 32
# How far a score may be from the exact cosine: HNSW stores its vectors in fp16.
SCORE_TOLERANCE = {"flat": 1e-5, "hnsw": 1e-3}


def _clustered(
    count: int, *, seed: int, dimension: int = DIMENSION, clusters: int = 40
) -> npt.NDArray[np.float32]:
    """Unit vectors around seeded centres: real embeddings cluster, and ANN recall depends on it."""
    centres = np.random.default_rng(1234).standard_normal((clusters, dimension))
    rng = np.random.default_rng(seed)
    points = centres[rng.integers(0, clusters, count)] + 0.6 * rng.standard_normal(
        (count, dimension)
    )
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32)


def _ids(count: int) -> npt.NDArray[np.int64]:
    # Sparse, shuffled ids: the index must not confuse ids with positions.
    return np.random.default_rng(7).permutation(count).astype(np.int64) * 3 + 11


def _brute_force(
    vectors: npt.NDArray[np.float32],
    ids: npt.NDArray[np.int64],
    queries: npt.NDArray[np.float32],
    k: int,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


def _recall(found: npt.NDArray[np.int64], truth: npt.NDArray[np.int64]) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def _index(
    kind: IndexKind, vectors: npt.NDArray[np.float32], ids: npt.NDArray[np.int64], **options: float
) -> VectorIndex:
    index = VectorIndex(vectors.shape[1], kind=kind, **options)  # type: ignore[arg-type]
    index.upsert(ids, vectors)
    return index


class TestFlatSearch:
    vectors = _clustered(3000, seed=1)
    ids = _ids(3000)
    queries = _clustered(40, seed=2)

    def test_single_queries_equal_numpy_brute_force(self) -> None:
        index = _index("flat", self.vectors, self.ids)
        expected_scores, expected_ids = _brute_force(self.vectors, self.ids, self.queries, 10)
        for query, scores, ids in zip(self.queries, expected_scores, expected_ids, strict=True):
            found_scores, found_ids = index.search(query, 10)
            assert found_ids.tolist() == ids.tolist()
            np.testing.assert_allclose(found_scores, scores, atol=1e-5)

    def test_batch_equals_numpy_brute_force(self) -> None:
        # 40 queries is above the BLAS threshold (20): the batched code path.
        index = _index("flat", self.vectors, self.ids)
        expected_scores, expected_ids = _brute_force(self.vectors, self.ids, self.queries, 10)
        found_scores, found_ids = index.search(self.queries, 10)
        assert found_ids.tolist() == expected_ids.tolist()
        np.testing.assert_allclose(found_scores, expected_scores, atol=1e-5)

    def test_one_query_gives_one_dimensional_results(self) -> None:
        scores, ids = _index("flat", self.vectors, self.ids).search(self.queries[0], 5)
        assert scores.shape == (5,)
        assert ids.shape == (5,)
        assert ids.dtype == np.int64

    def test_batch_gives_one_row_per_query(self) -> None:
        scores, ids = _index("flat", self.vectors, self.ids).search(self.queries[:3], 5)
        assert scores.shape == (3, 5)
        assert ids.shape == (3, 5)

    def test_pads_with_minus_one_and_negative_infinity_when_fewer_than_k(self) -> None:
        index = _index("flat", self.vectors[:3], self.ids[:3])
        scores, ids = index.search(self.queries[0], 5)
        assert sorted(ids[:3].tolist()) == sorted(self.ids[:3].tolist())
        assert ids[3:].tolist() == [-1, -1]
        assert np.isneginf(scores[3:]).all()
        assert np.isfinite(scores[:3]).all()

    def test_rejects_queries_of_the_wrong_dimension(self) -> None:
        with pytest.raises(ValueError, match="dimension"):
            _index("flat", self.vectors, self.ids).search(np.ones(DIMENSION + 1), 3)

    def test_rejects_k_below_one(self) -> None:
        with pytest.raises(ValueError, match="k must be"):
            _index("flat", self.vectors, self.ids).search(self.queries[0], 0)


# How a filtered search runs: small allowed sets are gathered and scored directly; larger ones
# go through a FAISS selector, which HNSW runs as an exact scan when they are a small share of it.
PATHS = {
    "gathered": {"_GATHER_MAX": 10**9, "_HNSW_EXACT_SHARE": 0.0},
    "selector": {"_GATHER_MAX": 0, "_HNSW_EXACT_SHARE": 0.0},
    "selector-exact-scan": {"_GATHER_MAX": 0, "_HNSW_EXACT_SHARE": 1.0},
}


@pytest.fixture(params=list(PATHS))
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in PATHS[request.param].items():
        monkeypatch.setattr(matching.index, name, value)
    return str(request.param)


class TestAllowedIds:
    vectors = _clustered(9000, seed=3)
    ids = _ids(9000)
    queries = _clustered(25, seed=4)

    @pytest.fixture(scope="class", params=KINDS)
    @classmethod
    def index(cls, request: pytest.FixtureRequest) -> VectorIndex:
        # Built once per kind: the tests below only read.
        return _index(request.param, cls.vectors, cls.ids)

    def _check(
        self, index: VectorIndex, allowed_rows: npt.NDArray[np.int64], allowed: object
    ) -> None:
        _, expected = _brute_force(
            self.vectors[allowed_rows], self.ids[allowed_rows], self.queries, 10
        )
        _, found = index.search(self.queries, 10, allowed_ids=allowed)  # type: ignore[arg-type]
        assert set(found.ravel().tolist()) <= set(self.ids[allowed_rows].tolist()) | {-1}
        if index.kind == "flat":
            assert found.tolist() == expected.tolist()
        else:
            assert _recall(found, expected) >= 0.95

    @pytest.mark.parametrize("allowed_count", [40, 4500])
    def test_equals_brute_force_restricted_to_the_allowed_set(
        self, index: VectorIndex, path: str, allowed_count: int
    ) -> None:
        rows = np.random.default_rng(5).choice(self.ids.size, allowed_count, replace=False)
        self._check(index, rows, set(self.ids[rows].tolist()))

    @pytest.mark.parametrize("allowed_count", [10, 12, 4500])
    def test_returns_k_results_when_k_allowed_ids_exist(
        self, index: VectorIndex, path: str, allowed_count: int
    ) -> None:
        _, found = index.search(self.queries, 10, allowed_ids=self.ids[-allowed_count:])
        assert (found >= 0).all()
        assert all(len(set(row.tolist())) == 10 for row in found)

    def test_finds_the_few_stored_ids_among_many_unknown_ones(
        self, index: VectorIndex, path: str
    ) -> None:
        rows = np.arange(12)
        allowed = np.concatenate([self.ids[rows], np.arange(3000) + 10**9])
        self._check(index, rows, allowed)

    def test_ignores_repeated_allowed_ids(self, index: VectorIndex, path: str) -> None:
        rows = np.arange(30)
        self._check(index, rows, np.concatenate([self.ids[rows]] * 3))

    @pytest.mark.parametrize("kind", KINDS)
    def test_filters_ids_too_sparse_for_a_bitmap(self, kind: IndexKind, path: str) -> None:
        # Ids near 10**12 take the hash-set selector instead of a bitmap over all possible ids.
        vectors, ids = self.vectors[:3000], self.ids[:3000] + 10**12
        index = _index(kind, vectors, ids)
        rows = np.arange(2000)
        _, expected = _brute_force(vectors[rows], ids[rows], self.queries, 10)
        _, found = index.search(self.queries, 10, allowed_ids=ids[rows])
        if kind == "flat":
            assert found.tolist() == expected.tolist()
        else:
            assert _recall(found, expected) >= 0.95

    def test_ignores_allowed_ids_that_are_not_in_the_index(self, index: VectorIndex) -> None:
        allowed = [int(self.ids[0]), int(self.ids[1]), 999_999_999]
        _, found = index.search(self.queries[0], 4, allowed_ids=allowed)
        assert sorted(found[:2].tolist()) == sorted(allowed[:2])
        assert found[2:].tolist() == [-1, -1]

    def test_empty_allowed_set_returns_only_padding(self, index: VectorIndex) -> None:
        _, found = index.search(self.queries[0], 3, allowed_ids=[])
        assert found.tolist() == [-1, -1, -1]


@pytest.mark.parametrize("kind", KINDS)
class TestWrites:
    vectors = _clustered(500, seed=6)
    ids = _ids(500)

    def test_upsert_replaces_the_vector_under_an_existing_id(self, kind: IndexKind) -> None:
        index = _index(kind, self.vectors, self.ids)
        moved = -self.vectors[0]
        index.upsert([int(self.ids[0])], moved[None, :])
        scores, found = index.search(moved, 1)
        assert found.tolist() == [int(self.ids[0])]
        assert scores[0] == pytest.approx(1.0, abs=SCORE_TOLERANCE[kind])
        assert len(index) == 500

    def test_replaced_vector_is_no_longer_found(self, kind: IndexKind) -> None:
        index = _index(kind, self.vectors, self.ids)
        index.upsert([int(self.ids[0])], -self.vectors[:1])
        _, found = index.search(self.vectors[0], 1)
        assert found[0] != self.ids[0]

    def test_remove_returns_how_many_ids_were_present(self, kind: IndexKind) -> None:
        index = _index(kind, self.vectors, self.ids)
        assert index.remove([int(self.ids[0]), int(self.ids[1]), 999_999_999]) == 2
        assert len(index) == 498

    def test_removed_ids_are_never_returned(self, kind: IndexKind) -> None:
        index = _index(kind, self.vectors, self.ids, max_dead_fraction=1.0)
        removed = set(self.ids[:100].tolist())
        index.remove(removed)
        _, found = index.search(self.vectors[:100], 10)
        assert not set(found.ravel().tolist()) & removed
        assert (found >= 0).all()

    def test_empty_index_returns_only_padding(self, kind: IndexKind) -> None:
        scores, ids = VectorIndex(DIMENSION, kind=kind).search(self.vectors[0], 3)
        assert ids.tolist() == [-1, -1, -1]
        assert np.isneginf(scores).all()

    def test_an_emptied_index_takes_new_vectors(self, kind: IndexKind) -> None:
        index = _index(kind, self.vectors[:50], self.ids[:50])
        assert index.remove(self.ids[:50]) == 50
        assert len(index) == 0
        assert index.search(self.vectors[0], 2)[1].tolist() == [-1, -1]
        index.upsert(self.ids[:2], self.vectors[:2])
        assert index.search(self.vectors[0], 2)[1].tolist() == [int(self.ids[0]), int(self.ids[1])]

    def test_membership_and_ids_follow_the_writes(self, kind: IndexKind) -> None:
        index = _index(kind, self.vectors[:3], self.ids[:3])
        index.remove([int(self.ids[1])])
        assert int(self.ids[0]) in index
        assert np.int64(self.ids[2]) in index
        assert int(self.ids[1]) not in index
        assert "not an id" not in index
        assert index.ids().tolist() == sorted([int(self.ids[0]), int(self.ids[2])])

    def test_rejects_ids_repeated_within_one_upsert(self, kind: IndexKind) -> None:
        with pytest.raises(ValueError, match="repeat"):
            VectorIndex(DIMENSION, kind=kind).upsert([1, 1], self.vectors[:2])

    def test_rejects_negative_ids(self, kind: IndexKind) -> None:
        with pytest.raises(ValueError, match="non-negative"):
            VectorIndex(DIMENSION, kind=kind).upsert([-1], self.vectors[:1])

    def test_rejects_as_many_vectors_as_ids_mismatch(self, kind: IndexKind) -> None:
        with pytest.raises(ValueError, match="2 ids but 3 vectors"):
            VectorIndex(DIMENSION, kind=kind).upsert([1, 2], self.vectors[:3])


@pytest.mark.parametrize("kind", KINDS)
class TestVectors:
    vectors = _clustered(300, seed=9)
    ids = _ids(300)

    def test_returns_the_stored_vectors_in_the_order_asked(self, kind: IndexKind) -> None:
        index = _index(kind, self.vectors, self.ids)
        rows = [17, 3, 250, 4]
        found = index.vectors(self.ids[rows])
        np.testing.assert_allclose(found, self.vectors[rows], atol=SCORE_TOLERANCE[kind])

    def test_returns_the_latest_vector_of_a_replaced_id(self, kind: IndexKind) -> None:
        index = _index(kind, self.vectors, self.ids)
        index.upsert(self.ids[:1], -self.vectors[:1])
        found = index.vectors([int(self.ids[0])])
        np.testing.assert_allclose(found, -self.vectors[:1], atol=SCORE_TOLERANCE[kind])

    def test_refuses_ids_not_held(self, kind: IndexKind) -> None:
        index = _index(kind, self.vectors, self.ids)
        index.remove([int(self.ids[5])])
        for absent in (int(self.ids[5]), 999_999_999):
            with pytest.raises(KeyError):
                index.vectors([int(self.ids[0]), absent])

    def test_no_ids_give_no_rows(self, kind: IndexKind) -> None:
        assert _index(kind, self.vectors, self.ids).vectors([]).shape == (0, DIMENSION)


class TestHnsw:
    vectors = _clustered(5000, seed=8)
    ids = _ids(5000)
    queries = _clustered(100, seed=9)

    def test_recall_at_10_against_exact_is_at_least_95_percent(self) -> None:
        index = _index("hnsw", self.vectors, self.ids)
        _, expected = _brute_force(self.vectors, self.ids, self.queries, 10)
        _, found = index.search(self.queries, 10)
        assert _recall(found, expected) >= 0.95

    def test_stores_fp16_vectors_that_score_within_a_thousandth_of_exact(self) -> None:
        index = _index("hnsw", self.vectors, self.ids)
        scores, found = index.search(self.queries, 10)
        row_of = {int(i): n for n, i in enumerate(self.ids)}
        exact = np.array([[self.vectors[row_of[int(i)]] @ q for i in ids] for q, ids in
                          zip(self.queries, found, strict=True)])  # fmt: skip
        assert 0 < np.abs(scores - exact).max() <= SCORE_TOLERANCE["hnsw"]

    def test_stays_accurate_after_removals_and_updates(self) -> None:
        index = _index("hnsw", self.vectors, self.ids, max_dead_fraction=1.0)
        index.remove(self.ids[:1000])
        updated = _clustered(500, seed=10)
        index.upsert(self.ids[1000:1500], updated)
        current = np.concatenate([updated, self.vectors[1500:]])
        current_ids = self.ids[1000:]
        _, expected = _brute_force(current, current_ids, self.queries, 10)
        _, found = index.search(self.queries, 10)
        assert index.dead_slots == 1500
        assert not set(found.ravel().tolist()) & set(self.ids[:1000].tolist())
        assert _recall(found, expected) >= 0.95

    def test_finds_an_updated_vector_at_its_new_place(self) -> None:
        index = _index("hnsw", self.vectors[:1000], self.ids[:1000], max_dead_fraction=1.0)
        moved = _clustered(1, seed=11)
        index.upsert(self.ids[:1], moved)
        _, found = index.search(moved[0], 1)
        assert found.tolist() == [int(self.ids[0])]

    def test_compacts_once_tombstones_pass_the_limit(self) -> None:
        index = _index("hnsw", self.vectors[:1000], self.ids[:1000], max_dead_fraction=0.25)
        index.remove(self.ids[:200])
        assert index.dead_slots == 200
        index.remove(self.ids[200:300])
        assert index.dead_slots == 0
        assert len(index) == 700
        _, expected = _brute_force(self.vectors[300:1000], self.ids[300:1000], self.queries, 10)
        _, found = index.search(self.queries, 10)
        assert _recall(found, expected) >= 0.95

    def test_returns_the_last_live_vectors_among_many_tombstones(self) -> None:
        index = _index("hnsw", self.vectors[:300], self.ids[:300], max_dead_fraction=1.0)
        index.remove(self.ids[:290])
        _, found = index.search(self.queries, 10)
        assert all(sorted(row.tolist()) == sorted(self.ids[290:300].tolist()) for row in found)

    def test_explicit_compaction_keeps_every_live_id(self) -> None:
        index = _index("hnsw", self.vectors[:500], self.ids[:500], max_dead_fraction=1.0)
        index.remove(self.ids[:100])
        index.compact()
        assert index.dead_slots == 0
        assert index.ids().tolist() == sorted(self.ids[100:500].tolist())


@pytest.mark.parametrize("kind", KINDS)
class TestPersistence:
    vectors = _clustered(1000, seed=12)
    ids = _ids(1000)
    queries = _clustered(30, seed=13)

    def test_round_trip_gives_identical_results_and_metadata(
        self, kind: IndexKind, tmp_path: Path
    ) -> None:
        index = _index(kind, self.vectors, self.ids, max_dead_fraction=1.0)
        index.remove(self.ids[:10])
        index.metadata.update({"model": "all-MiniLM-L6-v2", "sequence": "42"})
        index.save(tmp_path / "listings.index")

        loaded = VectorIndex.load(tmp_path / "listings.index")
        assert (loaded.kind, loaded.dimension, loaded.metadata) == (
            kind,
            DIMENSION,
            {"model": "all-MiniLM-L6-v2", "sequence": "42"},
        )
        assert loaded.ids().tolist() == index.ids().tolist()
        for allowed in (None, self.ids[::3]):
            expected = index.search(self.queries, 10, allowed_ids=allowed)
            found = loaded.search(self.queries, 10, allowed_ids=allowed)
            np.testing.assert_array_equal(found[1], expected[1])
            np.testing.assert_array_equal(found[0], expected[0])

    def test_loaded_index_takes_further_writes(self, kind: IndexKind, tmp_path: Path) -> None:
        _index(kind, self.vectors[:100], self.ids[:100]).save(tmp_path / "listings.index")
        loaded = VectorIndex.load(tmp_path / "listings.index")
        loaded.upsert(self.ids[:1], -self.vectors[:1])
        loaded.upsert(self.ids[100:101], self.vectors[100:101])
        assert len(loaded) == 101
        assert loaded.search(-self.vectors[0], 1)[1].tolist() == [int(self.ids[0])]

    def test_failed_save_leaves_the_previous_file_intact(
        self, kind: IndexKind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "listings.index"
        old = _index(kind, self.vectors[:100], self.ids[:100])
        old.save(path)
        old_bytes = path.read_bytes()

        def crash_midway(index: object, file: "object") -> None:
            file.write(b"half an index")  # type: ignore[attr-defined]
            raise OSError("disk full")

        monkeypatch.setattr(matching.index, "_write_faiss", crash_midway)
        bigger = _index(kind, self.vectors, self.ids)
        with pytest.raises(OSError, match="disk full"):
            bigger.save(path)

        assert path.read_bytes() == old_bytes
        assert [p.name for p in tmp_path.iterdir()] == ["listings.index"]
        assert len(VectorIndex.load(path)) == 100


class TestLoad:
    def test_rejects_a_file_that_is_not_an_index(self, tmp_path: Path) -> None:
        (tmp_path / "notes.txt").write_text("hello")
        with pytest.raises(ValueError, match="not a saved VectorIndex"):
            VectorIndex.load(tmp_path / "notes.txt")


class TestWithAnEmbedder:
    def test_ranks_the_text_sharing_the_most_words_first(self, hashing_embedder: Embedder) -> None:
        texts = ["city traffic sensor data", "hospital patient records", "traffic camera images"]
        index = VectorIndex(hashing_embedder.dimension)
        index.upsert([1, 2, 3], hashing_embedder.encode(texts))
        _, found = index.search(hashing_embedder.encode(["traffic sensor data"])[0], 3)
        assert found[0] == 1
