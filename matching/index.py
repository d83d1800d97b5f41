"""A vector index over FAISS keyed by int64 ids: exact by default, HNSW for large catalogues.

This is the only module that imports faiss. Vectors are expected L2-normalised, so the inner
product the index ranks by is the cosine similarity.

- ``kind="flat"``: ``IndexIDMap2`` over ``IndexFlatIP``, exact. Adding is O(1) per vector;
  replacing or removing compacts the arrays, O(size of the index) per call (batch them).
- ``kind="hnsw"``: ``IndexHNSWSQ`` over fp16 vectors, approximate, much faster on large
  catalogues. fp16 halves the vectors' memory (1.5 GB -> 0.77 GB at a million) and moves a
  cosine by about 1e-4; recall and speed measured the same as with fp32 storage on clustered
  vectors. HNSW graphs cannot delete, so the index keeps its own slot -> id table: a removed
  or replaced vector's slot becomes a tombstone, skipped at search through an
  ``IDSelectorBitmap``, and the graph is rebuilt from the live vectors once tombstones pass
  ``max_dead_fraction`` (or on ``compact()``).

An allowed-id filter never loses results: up to 1,024 allowed ids are gathered and scored
directly; more go into a FAISS ``IDSelector`` in the search parameters (a bitmap over the ids when
they are dense, as database row ids are, else a hash set), which FAISS tests before computing a
distance. Flat search stays exact. HNSW scans its storage exactly when the allowed share is small
(1/32 or less), else walks the graph with a candidate list widened by the inverse share, and
finishes exactly any row that comes back short of k.

Concurrent searches are safe; a mutation must not run concurrently with anything else on the
same instance (the caller serialises writes, e.g. with a lock or by swapping in a new index).
"""

import json
import math
import os
import struct
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any, Literal, cast

# faiss ships partial stubs (faiss/__init__.pyi); the type ignores below mark what they miss.
import faiss
import numpy as np
import numpy.typing as npt

from matching.arrays import read_array, write_array
from matching.atomic_file import atomic_file
from matching.id_set import IdSet
from matching.slot_map import SlotMap

IndexKind = Literal["flat", "hnsw"]

# Exhaustive search switches to BLAS from this many queries in one call. FAISS 1.15 compares
# nx * d (not nx) with distance_compute_blas_threshold, whose default 128,000 keeps batches of up
# to 333 queries at d=384 off BLAS; PERF-NOTES found BLAS 6-8x faster for such batches. Setting
# the threshold to 20 as older FAISS read it would send even single queries to BLAS, which
# measured 5-20x slower (10k: 7.6 ms against 0.4 ms), so it is set to 20 * d per index.
_BLAS_MIN_QUERIES = 20

_MAGIC = b"SCXVIDX1"
_FORMAT_VERSION = 1
# Allowed sets up to this size are gathered and scored directly: cheaper than any scan.
_GATHER_MAX = 1024
# What a filtered search may return: a mask (from a caller that has one) or the ids themselves.
_Allowed = IdSet | npt.NDArray[np.int64]
# HNSW: allowed sets up to this share of the index are searched exactly (a scan that tests one
# bit per vector and scores only the allowed ones), as the graph walk would visit most nodes.
_HNSW_EXACT_SHARE = 1 / 32
# The most candidates a filtered HNSW search may keep; beyond it the exact fallback is cheaper.
_MAX_FILTERED_EF = 4096


class _Selector:
    """A FAISS IDSelector with the objects it points into (bitmaps, id tables), kept alive.

    SWIG selectors hold raw pointers; dropping the numpy array or vector behind one while FAISS
    still searches with it would read freed memory.
    """

    def __init__(self, selector: Any, keep: object = None) -> None:
        self.selector = selector
        self._keep = keep

    @classmethod
    def of_bitmap(cls, bitmap: npt.NDArray[np.uint8]) -> "_Selector":
        # FAISS bounds the bitmap by its length in bytes.
        return cls(faiss.IDSelectorBitmap(bitmap.size, faiss.swig_ptr(bitmap)), bitmap)

    @classmethod
    def of_ids(cls, ids: npt.NDArray[np.int64], size: int) -> "_Selector":
        """Selects the given ids: a bitmap when they are dense enough, else a hash set.

        Database row ids are dense, so a bitmap (one bit per possible id, built in about a
        millisecond for a million ids) usually fits; IDSelectorBatch builds a hash set instead.

        Args:
            ids: the ids (negative ones are ignored).
            size: how many vectors the index holds; bounds the bitmap at 8 bytes per vector.
        """
        ids = ids[ids >= 0]
        if ids.size and int(ids.max()) < max(64 * size, 1 << 20):
            mask = np.zeros(int(ids.max()) + 1, dtype=bool)
            mask[ids] = True
            return cls.of_bitmap(np.packbits(mask, bitorder="little"))
        return cls(faiss.IDSelectorBatch(ids))

    @classmethod
    def of_allowed(cls, allowed: _Allowed, size: int) -> "_Selector":
        """Selects the allowed ids: an IdSet's own mask as the bitmap (no round trip through
        its ids), else as `of_ids`."""
        if isinstance(allowed, IdSet):
            return cls.of_bitmap(np.packbits(allowed.mask, bitorder="little"))
        return cls.of_ids(allowed, size)


class VectorIndex:
    """Nearest neighbours by inner product over L2-normalised float32 vectors, keyed by int64 ids.

    Args:
        dimension: the length of every vector.
        kind: "flat" (exact) or "hnsw" (approximate, for large catalogues).
        hnsw_m: HNSW graph degree (more: better recall, more memory, slower build).
        ef_construction: HNSW candidate list size while building.
        ef_search: HNSW candidate list size while searching (more: better recall, slower).
        max_dead_fraction: HNSW only: rebuild the graph, inside the write that crosses it, when
            this fraction of its slots are tombstones. A rebuild costs as much as the first build
            (minutes at a million vectors); to keep it off a request path, pass 1.0 and call
            `compact()` (or rebuild from the database) in the background.
        metadata: free-form strings kept with the index through save and load (for example the
            model name and the change sequence the index reflects).
    """

    def __init__(
        self,
        dimension: int,
        *,
        kind: IndexKind = "flat",
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
        max_dead_fraction: float = 0.25,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        if dimension <= 0:
            raise ValueError(f"dimension must be positive, got {dimension}")
        if kind not in ("flat", "hnsw"):
            raise ValueError(f"kind must be 'flat' or 'hnsw', got {kind!r}")
        self.dimension = dimension
        self.kind: IndexKind = kind
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.max_dead_fraction = max_dead_fraction
        self.metadata: dict[str, str] = dict(metadata or {})
        self._flat: Any = None
        self._hnsw: Any = None
        # flat: the ids present (IndexIDMap2 can look ids up, but not from Python).
        self._members: set[int] = set()
        # hnsw: id -> slot, the id at each slot (-1 for a tombstone), and a cached alive bitmap.
        self._slot_of = SlotMap()
        self._slot_ids: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._alive_bitmap: npt.NDArray[np.uint8] | None = None
        self._slot_id_vector: Any = None  # _slot_ids as a FAISS vector, for IDSelectorTranslated
        if kind == "flat":
            self._flat = faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
        else:
            self._hnsw = self._new_hnsw()
        # A process-wide FAISS setting; processes hold indexes of one dimension.
        faiss.cvar.distance_compute_blas_threshold = _BLAS_MIN_QUERIES * dimension

    # -- size and membership -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._members) if self.kind == "flat" else len(self._slot_of)

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, int | np.integer):
            return False
        members = self._members if self.kind == "flat" else self._slot_of
        return int(item) in members

    def __repr__(self) -> str:
        return f"VectorIndex(dimension={self.dimension}, kind={self.kind!r}, size={len(self)})"

    def ids(self) -> npt.NDArray[np.int64]:
        """List the ids in the index.

        Returns:
            The ids, ascending, as an int64 array.
        """
        if self.kind == "flat":
            ids = faiss.vector_to_array(self._flat.id_map).astype(np.int64, copy=False)
        else:
            ids = self._slot_ids[self._slot_ids >= 0]
        return np.sort(ids)

    def vectors(self, ids: Iterable[int] | npt.ArrayLike) -> npt.NDArray[np.float32]:
        """The stored vectors of ids (HNSW: as stored, in fp16 precision).

        Args:
            ids: ids held by the index.

        Returns:
            An (n, dimension) array, one row per id, in the order given.

        Raises:
            KeyError: an id is not in the index.
        """
        id_array = _as_ids(ids)
        if self.kind == "flat":
            missing = [i for i in id_array.tolist() if i not in self._members]
            if missing:
                raise KeyError(f"ids not in the index: {missing[:5]}")
            if id_array.size == 0:
                return np.zeros((0, self.dimension), dtype=np.float32)
            return cast(npt.NDArray[np.float32], self._flat.reconstruct_batch(id_array))
        slots = self._slot_of.slots_of(id_array)
        if (slots < 0).any():
            raise KeyError(f"ids not in the index: {id_array[slots < 0][:5].tolist()}")
        return self._hnsw_vectors(slots)

    @property
    def dead_slots(self) -> int:
        """How many HNSW slots hold a removed or replaced vector (always 0 for flat)."""
        if self.kind == "flat":
            return 0
        return int(self._slot_ids.size - len(self._slot_of))

    # -- writes ---------------------------------------------------------------------------------

    def upsert(self, ids: Iterable[int] | npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Add vectors, replacing those already stored under the same ids.

        Args:
            ids: distinct non-negative int64 ids, one per vector.
            vectors: an (n, dimension) array (or one (dimension,) vector), L2-normalised.

        Raises:
            ValueError: shapes disagree, ids repeat, or an id is negative.
        """
        id_array = _as_ids(ids)
        matrix = self._as_matrix(vectors)
        if matrix.shape[0] != id_array.size:
            raise ValueError(f"{id_array.size} ids but {matrix.shape[0]} vectors")
        if np.unique(id_array).size != id_array.size:
            raise ValueError("ids repeat within one upsert")
        if id_array.size and id_array.min() < 0:
            raise ValueError("ids must be non-negative (-1 marks a missing result)")
        if id_array.size == 0:
            return
        if self.kind == "flat":
            self._flat_upsert(id_array, matrix)
        else:
            self._hnsw_upsert(id_array, matrix)

    def remove(self, ids: Iterable[int] | npt.ArrayLike) -> int:
        """Remove ids; ids not in the index are ignored.

        Args:
            ids: the ids to remove.

        Returns:
            How many ids were removed.
        """
        id_array = np.unique(_as_ids(ids))
        if self.kind == "flat":
            present = np.array([i for i in id_array.tolist() if i in self._members], np.int64)
            if present.size:
                self._flat.remove_ids(faiss.IDSelectorBatch(present))
                self._members.difference_update(present.tolist())
            return int(present.size)
        removed = self._tombstone(id_array)
        self._maybe_compact()
        return removed

    def compact(self) -> None:
        """Rebuild an HNSW graph from its live vectors, dropping tombstones (no-op for flat)."""
        if self.kind == "flat" or self.dead_slots == 0:
            return
        live_slots = np.flatnonzero(self._slot_ids >= 0)
        vectors = self._hnsw_vectors(live_slots)
        live_ids = self._slot_ids[live_slots]
        self._hnsw = self._new_hnsw()
        self._slot_ids = np.zeros(0, dtype=np.int64)
        self._slot_of = SlotMap()
        self._hnsw_append(live_ids, vectors)

    # -- search ---------------------------------------------------------------------------------

    def search(
        self,
        queries: npt.ArrayLike,
        k: int,
        *,
        allowed_ids: Collection[int] | npt.NDArray[np.integer[Any]] | None = None,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Find the k stored vectors with the highest inner product with each query.

        Args:
            queries: one (dimension,) vector or an (n, dimension) batch, L2-normalised.
            k: how many results per query (at least 1).
            allowed_ids: when given, only these ids may be returned (ids not in the index are
                ignored); the result still holds k ids when k allowed ids are stored.

        Returns:
            (scores, ids), each (k,) for one query or (n, k) for a batch, best first. Where fewer
            than k vectors qualify, the rest is padded with id -1 and score -inf.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        single = np.ndim(queries) == 1
        matrix = self._as_matrix(queries)
        with _omp_threads_for(matrix.shape[0]):
            if allowed_ids is None:
                scores, ids = self._search_everything(matrix, k)
            else:
                allowed = allowed_ids if isinstance(allowed_ids, IdSet) else _as_ids(allowed_ids)
                scores, ids = self._search_allowed(matrix, k, allowed)
        scores[ids < 0] = -np.inf
        if single:
            return scores[0], ids[0]
        return scores, ids

    # -- persistence ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to one file, atomically.

        The file is written next to ``path`` under a temporary name, flushed to disk and then
        renamed over ``path``, so a crash leaves either the old file or the new one, never a torn
        one.

        Args:
            path: the file to write.
        """
        with atomic_file(path) as file:
            self.write(file)

    def write(self, file: IO[bytes]) -> None:
        """Write the index to an open binary file, from its current position (see `read`).

        Args:
            file: the file; several indexes may follow one another in it.
        """
        header: dict[str, object] = {
            "format_version": _FORMAT_VERSION,
            "dimension": self.dimension,
            "kind": self.kind,
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "max_dead_fraction": self.max_dead_fraction,
            "metadata": self.metadata,
            "slots": int(self._slot_ids.size),
        }
        header_bytes = json.dumps(header, sort_keys=True).encode("utf-8")
        file.write(_MAGIC)
        file.write(struct.pack("<Q", len(header_bytes)))
        file.write(header_bytes)
        if self.kind == "hnsw":
            write_array(file, self._slot_ids, "<i8")
        _write_faiss(self._flat if self.kind == "flat" else self._hnsw, file)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "VectorIndex":
        """Read an index written by `save`.

        Args:
            path: the file.

        Returns:
            The index, with its kind, settings and metadata.

        Raises:
            ValueError: the file is not a saved VectorIndex or has an unknown format version.
        """
        with open(path, "rb") as file:
            return cls.read(file, str(path))

    @classmethod
    def read(cls, file: IO[bytes], name: str = "file") -> "VectorIndex":
        """Read one index written by `write`, leaving the file just past it.

        Args:
            file: the open binary file, at the index's first byte.
            name: what to call the file in errors.

        Returns:
            The index, with its kind, settings and metadata.

        Raises:
            ValueError: no saved VectorIndex starts here, or it has an unknown format version.
        """
        if file.read(len(_MAGIC)) != _MAGIC:
            raise ValueError(f"{name} is not a saved VectorIndex")
        (header_length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(header_length).decode("utf-8"))
        if header.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"{name} has unknown format {header.get('format_version')!r}")
        index = cls(
            int(header["dimension"]),
            kind=header["kind"],
            hnsw_m=int(header["hnsw_m"]),
            ef_construction=int(header["ef_construction"]),
            ef_search=int(header["ef_search"]),
            max_dead_fraction=float(header["max_dead_fraction"]),
            metadata={str(k): str(v) for k, v in header["metadata"].items()},
        )
        slots = int(header["slots"])
        slot_ids = read_array(file, "<i8", slots)
        stored = _read_faiss(file)
        if stored.d != index.dimension:
            raise ValueError(f"{name}: header says dimension {index.dimension}, FAISS {stored.d}")
        if index.kind == "flat":
            index._flat = stored
            index._members = set(faiss.vector_to_array(stored.id_map).tolist())
        else:
            index._hnsw = stored
            stored.hnsw.efSearch = index.ef_search
            index._slot_ids = slot_ids
            live = np.flatnonzero(slot_ids >= 0)
            index._slot_of = SlotMap.of(slot_ids[live], live)
        return index

    # -- internals: flat ------------------------------------------------------------------------

    def _flat_upsert(self, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        replaced = np.array([i for i in ids.tolist() if i in self._members], dtype=np.int64)
        if replaced.size:
            self._flat.remove_ids(faiss.IDSelectorBatch(replaced))
        self._flat.add_with_ids(vectors, ids)
        self._members.update(ids.tolist())

    # -- internals: hnsw ------------------------------------------------------------------------

    def _new_hnsw(self) -> Any:
        fp16: Any = faiss.ScalarQuantizer.QT_fp16  # the stubs type it as a ScalarQuantizer
        index = faiss.IndexHNSWSQ(self.dimension, fp16, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

    def _hnsw_upsert(self, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        self._tombstone(ids)
        self._hnsw_append(ids, vectors)
        self._maybe_compact()

    def _hnsw_append(self, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        first = int(self._slot_ids.size)
        self._hnsw.add(vectors)
        self._slot_ids = np.concatenate([self._slot_ids, ids])
        self._slot_of.update(ids, np.arange(first, first + ids.size))
        self._slots_changed()

    def _tombstone(self, ids: npt.NDArray[np.int64]) -> int:
        slots = [s for s in map(self._slot_of.pop, ids.tolist()) if s is not None]
        if slots:
            self._slot_ids[np.asarray(slots, dtype=np.int64)] = -1
            self._slots_changed()
        return len(slots)

    def _slots_changed(self) -> None:
        self._alive_bitmap = None
        self._slot_id_vector = None

    def _maybe_compact(self) -> None:
        if self.dead_slots > max(self.max_dead_fraction * self._slot_ids.size, 0):
            self.compact()

    def _hnsw_vectors(self, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        storage: Any = faiss.downcast_index(self._hnsw.storage)
        if slots.size == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # A view of the stored codes: the fancy indexing copies only the requested rows, and one
        # call decodes them (reconstruct_batch decodes row by row, 4x slower for 1,000 rows).
        codes = faiss.rev_swig_ptr(storage.codes.data(), storage.ntotal * storage.code_size)
        wanted = codes.reshape(storage.ntotal, storage.code_size)[slots]
        return cast(npt.NDArray[np.float32], storage.sa_decode(wanted))

    def _ids_at(self, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        if self._slot_ids.size == 0:
            return np.full(slots.shape, -1, dtype=np.int64)
        return np.where(slots >= 0, self._slot_ids[np.maximum(slots, 0)], -1).astype(np.int64)

    def _alive_selector(self) -> _Selector | None:
        """Selects the live slots; None while there are no tombstones."""
        if self.dead_slots == 0:
            return None
        if self._alive_bitmap is None:
            self._alive_bitmap = np.packbits(self._slot_ids >= 0, bitorder="little")
        return _Selector.of_bitmap(self._alive_bitmap)

    def _allowed_slot_selector(self, allowed: _Allowed) -> _Selector:
        """Selects the slots whose id is allowed, by translating slot -> id inside FAISS.

        No Python loop over the allowed ids: FAISS looks each visited slot's id up in our slot
        table (tombstones hold -1, which no selector admits) and tests it against the ids.
        """
        if self._slot_id_vector is None:
            self._slot_id_vector = faiss.Int64Vector()
            faiss.copy_array_to_vector(self._slot_ids, self._slot_id_vector)
        inner = _Selector.of_allowed(allowed, len(self))
        translated = faiss.IDSelectorTranslated(self._slot_id_vector, inner.selector)
        return _Selector(translated, (inner, self._slot_id_vector))

    def _hnsw_search(
        self, queries: npt.NDArray[np.float32], k: int, selector: _Selector | None, ef: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        params = faiss.SearchParametersHNSW(efSearch=max(ef, k))  # type: ignore[attr-defined]
        if selector is not None:
            params.sel = selector.selector
        scores, slots = self._hnsw.search(queries, k, params=params)
        return scores, self._ids_at(slots)

    def _hnsw_exact(
        self, queries: npt.NDArray[np.float32], k: int, selector: _Selector | None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Exact search of the HNSW's own flat storage, over the selected slots.

        FAISS tests the selector before computing a distance, so the cost is one membership test
        per slot plus one inner product per selected slot.
        """
        storage = faiss.downcast_index(self._hnsw.storage)
        params = faiss.SearchParameters()
        if selector is not None:
            params.sel = selector.selector
        scores, slots = storage.search(queries, k, params=params)
        return scores, self._ids_at(slots)

    def _finish_short_rows(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        result: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]],
        eligible: int,
        selector: _Selector | None,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Redo exactly the HNSW rows that found fewer than min(k, eligible) results.

        A graph walk can strand itself among tombstones or filtered-out nodes; this keeps the
        promise that k results come back whenever k vectors qualify. (eligible may overcount,
        e.g. allowed ids that are not stored: that costs an exact pass, never a wrong answer.)
        """
        scores, ids = result
        short = np.flatnonzero((ids >= 0).sum(axis=1) < min(k, eligible))
        if short.size:
            scores[short], ids[short] = self._hnsw_exact(queries[short], k, selector)
        return scores, ids

    # -- internals: search ----------------------------------------------------------------------

    def _search_everything(
        self, queries: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        if self.kind == "flat":
            scores, ids = self._flat.search(queries, k)
            return scores, ids
        selector = self._alive_selector()
        result = self._hnsw_search(queries, k, selector, self.ef_search)
        return self._finish_short_rows(queries, k, result, len(self), selector)

    def _search_allowed(
        self, queries: npt.NDArray[np.float32], k: int, allowed: _Allowed
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        if len(allowed) <= _GATHER_MAX:
            ids, vectors = self._gather(allowed.ids() if isinstance(allowed, IdSet) else allowed)
            if ids.size == 0:
                return (
                    np.full((queries.shape[0], k), -np.inf, dtype=np.float32),
                    np.full((queries.shape[0], k), -1, dtype=np.int64),
                )
            scores, rows = faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
            return scores, np.where(rows >= 0, ids[np.maximum(rows, 0)], -1)
        if self.kind == "flat":
            selector = _Selector.of_allowed(allowed, len(self))
            params = faiss.SearchParameters(sel=selector.selector)  # type: ignore[call-arg]
            scores, found = self._flat.search(queries, k, params=params)
            return scores, found
        eligible = min(len(allowed), len(self))  # an upper bound: allowed may repeat or miss
        selector = self._allowed_slot_selector(allowed)
        if eligible <= _HNSW_EXACT_SHARE * len(self):
            return self._hnsw_exact(queries, k, selector)
        # A graph walk meets allowed nodes in proportion to their share, so widen the candidate
        # list by that share to keep recall.
        ef = min(_MAX_FILTERED_EF, math.ceil(max(self.ef_search, k) * len(self) / eligible))
        result = self._hnsw_search(queries, k, selector, ef)
        return self._finish_short_rows(queries, k, result, eligible, selector)

    def _gather(
        self, allowed: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The stored ids among allowed (each once) and their vectors."""
        if self.kind == "flat":
            ids = np.array(
                [i for i in dict.fromkeys(allowed.tolist()) if i in self._members], np.int64
            )
            if ids.size == 0:
                return ids, np.zeros((0, self.dimension), dtype=np.float32)
            return ids, self._flat.reconstruct_batch(ids)
        slots = self._slot_of.slots_of(dict.fromkeys(allowed.tolist()))
        slots = slots[slots >= 0]
        return self._slot_ids[slots], self._hnsw_vectors(slots)

    def _as_matrix(self, vectors: npt.ArrayLike) -> npt.NDArray[np.float32]:
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        if matrix.ndim == 1:
            matrix = matrix.reshape(1, -1)
        if matrix.ndim != 2 or matrix.shape[1] != self.dimension:
            raise ValueError(
                f"expected vectors of dimension {self.dimension}, got shape {np.shape(vectors)}"
            )
        return matrix


def _as_ids(ids: Iterable[int] | npt.ArrayLike) -> npt.NDArray[np.int64]:
    if isinstance(ids, IdSet):
        return ids.ids()
    if isinstance(ids, np.ndarray):
        array = ids
    elif isinstance(ids, Collection):
        array = np.fromiter(ids, dtype=np.int64, count=len(ids))
    else:
        array = np.fromiter(cast(Iterable[int], ids), dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(f"ids must be one-dimensional, got shape {array.shape}")
    return np.ascontiguousarray(array, dtype=np.int64)


@contextmanager
def _omp_threads_for(query_count: int) -> Iterator[None]:
    """Run a single query on one OpenMP thread; batches keep them all.

    With two threads FAISS 1.15 splits one query's exhaustive scan across the database with BLAS
    blocks: slower on small indexes (10k: 0.48 against 0.23 ms, PERF-NOTES), and on a busy
    2-core machine far slower at every size, as each OpenMP barrier waits for a descheduled
    thread (measured here: 10k 14 against 0.4 ms, 1M 400 against 60-145 ms). One request, one
    core, also leaves the other core to concurrent requests and to the query encoder.
    """
    if query_count > 1:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _write_faiss(index: Any, file: IO[bytes]) -> None:
    faiss.write_index(index, faiss.PyCallbackIOWriter(file.write))  # type: ignore[attr-defined]


def _read_faiss(file: IO[bytes]) -> Any:
    return faiss.read_index(faiss.PyCallbackIOReader(file.read))  # type: ignore[attr-defined]
