"""One vector index per partition, searched as one: checked against numpy brute force."""

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from matching.id_set import IdSet
from matching.index import IndexKind, VectorIndex
from matching.partitioned_index import PartitionedIndex
from tests.matching.test_index import DIMENSION, SCORE_TOLERANCE, _brute_force, _clustered

SIDES = ("need", "offer")


@pytest.fixture(params=["flat", "hnsw"])
def kind(request: pytest.FixtureRequest) -> IndexKind:
    return request.param  # type: ignore[no-any-return]


class TestSearch:
    vectors = _clustered(4000, seed=21)
    ids = np.arange(4000, dtype=np.int64) * 2 + 5  # sparse: ids are not positions
    sides = np.where(np.random.default_rng(22).random(4000) < 0.5, "need", "offer")
    queries = _clustered(20, seed=23)

    def _index(self, kind: IndexKind) -> PartitionedIndex:
        index = PartitionedIndex(DIMENSION, SIDES, kind=kind)
        index.upsert(self.ids, self.vectors, self.sides.tolist())
        return index

    def _expected(
        self, query: npt.NDArray[np.float32], rows: npt.NDArray[np.bool_], k: int = 10
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        scores, ids = _brute_force(self.vectors[rows], self.ids[rows], query[None], k)
        return scores[0], ids[0]

    def _check(self, kind: IndexKind, found: tuple, expected: tuple) -> None:  # type: ignore[type-arg]
        hits = len(set(found[1].tolist()) & set(expected[1].tolist()))
        assert hits >= (10 if kind == "flat" else 9)
        if kind == "flat":
            assert found[1].tolist() == expected[1].tolist()
        np.testing.assert_allclose(found[0][:9], expected[0][:9], atol=SCORE_TOLERANCE[kind])

    def test_one_partition_returns_only_its_own_ids(self, kind: IndexKind) -> None:
        index = self._index(kind)
        for query in self.queries:
            found = index.search(query, 10, partitions={"offer"})
            self._check(kind, found, self._expected(query, self.sides == "offer"))

    def test_every_partition_merges_into_the_union_ranking(self, kind: IndexKind) -> None:
        index = self._index(kind)
        everything = np.ones(self.ids.size, dtype=bool)
        for query in self.queries:
            self._check(kind, index.search(query, 10), self._expected(query, everything))

    def test_allowed_ids_filter_each_partition(self, kind: IndexKind) -> None:
        index = self._index(kind)
        allowed_rows = np.random.default_rng(24).random(self.ids.size) < 0.3
        mask = np.zeros(int(self.ids.max()) + 1, dtype=bool)
        mask[self.ids[allowed_rows]] = True
        for allowed in (IdSet(mask), self.ids[allowed_rows].tolist(), self.ids[allowed_rows]):
            for query in self.queries[:5]:
                found = index.search(query, 10, partitions={"need"}, allowed_ids=allowed)
                rows = allowed_rows & (self.sides == "need")
                self._check(kind, found, self._expected(query, rows))

    def test_fewer_qualifying_than_k_pads_with_minus_one(self, kind: IndexKind) -> None:
        index = self._index(kind)
        allowed = [int(self.ids[0]), int(self.ids[1]), 999_999]
        scores, ids = index.search(self.queries[0], 5, allowed_ids=allowed)
        assert sorted(ids[:2].tolist()) == sorted(allowed[:2])
        assert ids[2:].tolist() == [-1, -1, -1]
        assert np.isneginf(scores[2:]).all()

    def test_an_empty_partition_or_allowed_set_finds_nothing(self, kind: IndexKind) -> None:
        index = PartitionedIndex(DIMENSION, SIDES, kind=kind)
        index.upsert(self.ids[:50], self.vectors[:50], ["need"] * 50)
        assert index.search(self.queries[0], 3, partitions={"offer"})[1].tolist() == [-1] * 3
        assert index.search(self.queries[0], 3, allowed_ids=[])[1].tolist() == [-1] * 3


class TestWrites:
    vectors = _clustered(200, seed=31)

    def test_an_id_moved_to_another_partition_leaves_the_first(self, kind: IndexKind) -> None:
        index = PartitionedIndex(DIMENSION, SIDES, kind=kind)
        index.upsert(np.arange(200), self.vectors, ["need"] * 100 + ["offer"] * 100)
        index.upsert([7], self.vectors[7:8], ["offer"])
        assert index.partition_of(7) == "offer"
        assert (len(index.parts["need"]), len(index.parts["offer"]), len(index)) == (99, 101, 200)
        assert 7 not in index.search(self.vectors[7], 5, partitions={"need"})[1].tolist()
        assert index.search(self.vectors[7], 1, partitions={"offer"})[1].tolist() == [7]

    def test_remove_drops_ids_from_their_partition(self, kind: IndexKind) -> None:
        index = PartitionedIndex(DIMENSION, SIDES, kind=kind)
        index.upsert(np.arange(200), self.vectors, ["need"] * 100 + ["offer"] * 100)
        assert index.remove([3, 150, 150, 10_000]) == 2
        assert (3 in index, 150 in index, len(index)) == (False, False, 198)
        assert index.partition_of(3) is None
        assert index.search(self.vectors[150], 1)[1].tolist() != [150]

    def test_vectors_come_from_each_id_s_partition_in_the_order_asked(
        self, kind: IndexKind
    ) -> None:
        index = PartitionedIndex(DIMENSION, SIDES, kind=kind)
        index.upsert(np.arange(200), self.vectors, ["need"] * 100 + ["offer"] * 100)
        rows = [150, 2, 199, 40]
        found = index.vectors(rows)
        np.testing.assert_allclose(found, self.vectors[rows], atol=SCORE_TOLERANCE[kind])

    def test_vectors_refuse_ids_not_held(self, kind: IndexKind) -> None:
        index = PartitionedIndex(DIMENSION, SIDES, kind=kind)
        index.upsert(np.arange(10), self.vectors[:10], ["need"] * 5 + ["offer"] * 5)
        index.remove([7])
        for absent in (7, 10, 10_000):
            with pytest.raises(KeyError):
                index.vectors([1, absent])

    @pytest.mark.parametrize(
        ("ids", "partitions", "message"),
        [
            ([1, 1], ["need", "offer"], "distinct"),
            ([-1], ["need"], "non-negative"),
            ([1], ["seller"], "unknown partitions"),
            ([1, 2], ["need"], "partitions"),
        ],
    )
    def test_bad_writes_are_refused_and_change_nothing(
        self, ids: list[int], partitions: list[str], message: str
    ) -> None:
        index = PartitionedIndex(DIMENSION, SIDES)
        index.upsert([1], self.vectors[:1], ["need"])
        with pytest.raises(ValueError, match=message):
            index.upsert(ids, self.vectors[: len(ids)], partitions)
        assert index.ids().tolist() == [1]
        assert index.partition_of(1) == "need"


class TestPersistence:
    vectors = _clustered(600, seed=41)

    def test_round_trip_keeps_partitions_metadata_and_results(
        self, kind: IndexKind, tmp_path: Path
    ) -> None:
        index = PartitionedIndex(DIMENSION, SIDES, kind=kind, metadata={"model": "m"})
        index.upsert(np.arange(600) * 3, self.vectors, ["need", "offer"] * 300)
        index.remove([0, 3])
        index.save(tmp_path / "listings.index")

        loaded = PartitionedIndex.load(tmp_path / "listings.index")
        assert (loaded.kind, loaded.dimension, loaded.metadata) == (kind, DIMENSION, {"model": "m"})
        assert loaded.ids().tolist() == index.ids().tolist()
        assert loaded.partition_of(9) == "offer" and loaded.partition_of(3) is None
        for partitions in (None, {"need"}):
            for query in self.vectors[:10]:
                expected = index.search(query, 10, partitions=partitions)
                found = loaded.search(query, 10, partitions=partitions)
                np.testing.assert_array_equal(found[1], expected[1])

    def test_a_plain_vector_index_file_is_refused(self, tmp_path: Path) -> None:
        VectorIndex(DIMENSION).save(tmp_path / "old.index")
        with pytest.raises(ValueError, match="not a saved PartitionedIndex"):
            PartitionedIndex.load(tmp_path / "old.index")

    def test_vector_indexes_written_back_to_back_read_back_in_order(
        self, kind: IndexKind, tmp_path: Path
    ) -> None:
        first, second = VectorIndex(DIMENSION, kind=kind), VectorIndex(DIMENSION, kind=kind)
        first.upsert([1, 2], self.vectors[:2])
        second.upsert([5], self.vectors[2:3])
        with (tmp_path / "two").open("wb") as file:
            first.write(file)
            second.write(file)
        with (tmp_path / "two").open("rb") as file:
            read = [VectorIndex.read(file), VectorIndex.read(file)]
            assert file.read() == b""
        assert [index.ids().tolist() for index in read] == [[1, 2], [5]]
