"""Vector indexes split by partition (the two sides of the marketplace), searched as one.

A listing is matched only with the other side, so one graph over both sides made every match a
filtered search whose nearest neighbours were mostly filtered out: at 100k listings the HNSW walk
came back short for 64% of matches and each of those fell back to an exact scan. One index per
partition holds only what a query may return; a search over several partitions merges their
results, so the answer is the same as one index's over the union.
"""

import json
import os
import struct
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from matching.arrays import grown
from matching.atomic_file import atomic_file
from matching.id_set import IdSet
from matching.index import IndexKind, VectorIndex

_MAGIC = b"SCXPIDX1"


class PartitionedIndex:
    """One `VectorIndex` per partition name, with one id space and one file.

    Args:
        dimension: the length of every vector.
        partitions: the partition names, fixed for the life of the index.
        kind: "flat" (exact) or "hnsw" (approximate), for every partition.
        metadata: free-form strings kept with the index through save and load.
        **settings: further `VectorIndex` settings (hnsw_m, ef_search, ...).
    """

    def __init__(
        self,
        dimension: int,
        partitions: Sequence[str],
        *,
        kind: IndexKind = "flat",
        metadata: Mapping[str, str] | None = None,
        **settings: Any,
    ) -> None:
        if not partitions or len(set(partitions)) != len(partitions):
            raise ValueError(f"partitions must be distinct and at least one, got {partitions!r}")
        self.dimension = dimension
        self.kind: IndexKind = kind
        self.metadata: dict[str, str] = dict(metadata or {})
        self.parts: dict[str, VectorIndex] = {
            name: VectorIndex(dimension, kind=kind, **settings) for name in partitions
        }
        self._names = list(partitions)
        self._partition_of = np.full(0, -1, dtype=np.int8)  # by id; -1: not held

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts.values())

    def __contains__(self, item: object) -> bool:
        return any(item in part for part in self.parts.values())

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={len(part)}" for name, part in self.parts.items())
        return f"PartitionedIndex(dimension={self.dimension}, kind={self.kind!r}, {sizes})"

    def ids(self) -> npt.NDArray[np.int64]:
        """The ids in every partition, ascending."""
        return np.sort(np.concatenate([part.ids() for part in self.parts.values()]))

    def partition_of(self, listing_id: int) -> str | None:
        """The partition holding an id, or None."""
        if not 0 <= listing_id < self._partition_of.size:
            return None
        code = int(self._partition_of[listing_id])
        return self._names[code] if code >= 0 else None

    def vectors(self, ids: Sequence[int] | npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """The stored vectors of ids, from whichever partition holds each.

        Args:
            ids: ids held by the index.

        Returns:
            An (n, dimension) array, one row per id, in the order given.

        Raises:
            KeyError: an id is not in the index.
        """
        id_array = np.asarray(ids, dtype=np.int64).reshape(-1)
        inside = (id_array >= 0) & (id_array < self._partition_of.size)
        codes = np.full(id_array.shape, -1, dtype=np.int8)
        codes[inside] = self._partition_of[id_array[inside]]
        if (codes < 0).any():
            raise KeyError(f"ids not in the index: {id_array[codes < 0][:5].tolist()}")
        found = np.empty((id_array.size, self.dimension), dtype=np.float32)
        for code, name in enumerate(self._names):
            rows = codes == code
            if rows.any():
                found[rows] = self.parts[name].vectors(id_array[rows])
        return found

    # -- writes ---------------------------------------------------------------------------------

    def upsert(
        self,
        ids: Sequence[int] | npt.NDArray[np.int64],
        vectors: npt.ArrayLike,
        partitions: Sequence[str],
    ) -> None:
        """Add vectors, replacing those stored under the same ids (in whichever partition).

        Args:
            ids: distinct non-negative ids, one per vector.
            vectors: an (n, dimension) array, L2-normalised.
            partitions: the partition of each id.

        Raises:
            ValueError: lengths disagree, a partition is unknown, or `VectorIndex.upsert` refuses.
        """
        id_array = np.asarray(ids, dtype=np.int64).reshape(-1)
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.shape != (id_array.size, self.dimension) or len(partitions) != id_array.size:
            raise ValueError(
                f"{id_array.size} ids, {len(partitions)} partitions and vectors of shape "
                f"{matrix.shape} (dimension {self.dimension})"
            )
        unknown = set(partitions) - self.parts.keys()
        if unknown:
            raise ValueError(f"unknown partitions {sorted(unknown)}")
        if id_array.size == 0:
            return
        if int(id_array.min()) < 0 or np.unique(id_array).size != id_array.size:
            raise ValueError("ids must be distinct and non-negative")
        codes = np.array([self._names.index(name) for name in partitions], dtype=np.int8)
        self._partition_of = grown(self._partition_of, int(id_array.max()) + 1, -1)
        previous = self._partition_of[id_array]
        moving = (previous >= 0) & (previous != codes)
        for code, name in enumerate(self._names):
            self.parts[name].remove(id_array[moving & (previous == code)])
            rows = codes == code
            if rows.any():
                self.parts[name].upsert(id_array[rows], matrix[rows])
        self._partition_of[id_array] = codes

    def remove(self, ids: Iterable[int]) -> int:
        """Remove ids; ids not held are ignored.

        Returns:
            How many ids were removed.
        """
        id_array = np.unique(np.fromiter(ids, dtype=np.int64))
        id_array = id_array[(id_array >= 0) & (id_array < self._partition_of.size)]
        codes = self._partition_of[id_array]
        removed = 0
        for code, name in enumerate(self._names):
            removed += self.parts[name].remove(id_array[codes == code])
        self._partition_of[id_array] = -1
        return removed

    # -- search ---------------------------------------------------------------------------------

    def search(
        self,
        query: npt.ArrayLike,
        k: int,
        *,
        partitions: Collection[str] | None = None,
        allowed_ids: Collection[int] | npt.NDArray[np.integer[Any]] | None = None,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Find the k stored vectors with the highest inner product with one query.

        Args:
            query: one (dimension,) vector, L2-normalised.
            k: how many results (at least 1).
            partitions: the partitions to search; every one when None.
            allowed_ids: when given, only these ids may be returned.

        Returns:
            (scores, ids), each (k,), best first (ties to the lower id), padded with id -1 and
            score -inf where fewer than k qualify.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        names = self._names if partitions is None else [n for n in self._names if n in partitions]
        found_scores, found_ids = [], []
        for name in names:
            part = self.parts[name]
            part_allowed = self._within(name, allowed_ids)
            if len(part) == 0 or (part_allowed is not None and len(part_allowed) == 0):
                continue
            scores, ids = part.search(query, k, allowed_ids=part_allowed)
            found_scores.append(scores)
            found_ids.append(ids)
        if not found_ids:
            return np.full(k, -np.inf, dtype=np.float32), np.full(k, -1, dtype=np.int64)
        if len(found_ids) == 1:
            return found_scores[0], found_ids[0]
        scores, ids = np.concatenate(found_scores), np.concatenate(found_ids)
        order = np.lexsort((np.where(ids < 0, np.iinfo(np.int64).max, ids), -scores))[:k]
        return scores[order], ids[order]

    def _within(
        self, name: str, allowed: Collection[int] | npt.NDArray[np.integer[Any]] | None
    ) -> IdSet | npt.NDArray[np.int64] | None:
        """The allowed ids held in one partition; None when that is all of it."""
        if allowed is None:
            return None
        code = self._names.index(name)
        if isinstance(allowed, IdSet):
            size = min(allowed.mask.size, self._partition_of.size)
            within = IdSet(allowed.mask[:size] & (self._partition_of[:size] == code))
            return None if len(within) == len(self.parts[name]) else within
        ids = (
            allowed.astype(np.int64, copy=False).reshape(-1)
            if isinstance(allowed, np.ndarray)
            else np.fromiter(allowed, dtype=np.int64, count=len(allowed))
        )
        ids = ids[(ids >= 0) & (ids < self._partition_of.size)]
        return ids[self._partition_of[ids] == code]

    # -- persistence ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write every partition to one file, atomically (see `VectorIndex.save`)."""
        header = json.dumps(
            {"partitions": self._names, "metadata": self.metadata}, sort_keys=True
        ).encode("utf-8")
        with atomic_file(path) as file:
            file.write(_MAGIC)
            file.write(struct.pack("<Q", len(header)))
            file.write(header)
            for name in self._names:
                self.parts[name].write(file)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "PartitionedIndex":
        """Read an index written by `save`.

        Raises:
            ValueError: the file is not a saved PartitionedIndex, or its partitions disagree.
        """
        with open(path, "rb") as file:
            if file.read(len(_MAGIC)) != _MAGIC:
                raise ValueError(f"{path} is not a saved PartitionedIndex")
            (length,) = struct.unpack("<Q", file.read(8))
            header = json.loads(file.read(length).decode("utf-8"))
            parts = {name: VectorIndex.read(file, str(path)) for name in header["partitions"]}
        first = next(iter(parts.values()))
        if any((p.dimension, p.kind) != (first.dimension, first.kind) for p in parts.values()):
            raise ValueError(f"{path}: partitions of different dimensions or kinds")
        index = cls.__new__(cls)
        index.dimension, index.kind = first.dimension, first.kind
        index.metadata = {str(k): str(v) for k, v in header["metadata"].items()}
        index.parts, index._names = parts, list(parts)
        index._partition_of = np.full(0, -1, dtype=np.int8)
        for code, part in enumerate(parts.values()):
            ids = part.ids()
            if ids.size:
                index._partition_of = grown(index._partition_of, int(ids.max()) + 1, -1)
                if (index._partition_of[ids] >= 0).any():
                    raise ValueError(f"{path}: an id is held in two partitions")
                index._partition_of[ids] = code
        return index
