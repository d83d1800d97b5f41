"""An incremental BM25 index over documents keyed by integer ids.

Terms get integer ids. Each document's distinct term ids and frequencies are appended to flat
arrays (slot after slot), and each term's postings (slots holding it, with frequencies) are
updated in place, so an upsert or a removal costs the size of the document, not of the corpus.
Removed documents leave tombstones that are compacted away once they outnumber the live ones.
Everything is kept in arrays, so a snapshot of 100,000 documents pickles and loads as a few
buffers instead of millions of objects. Scores follow Lucene's BM25
(idf = ln(1 + (N - df + 0.5) / (df + 0.5))), with statistics over the live documents at query
time.
"""

import itertools
import math
import pickle
import sys
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import IO, cast

import numpy as np
import numpy.typing as npt

from matching.arrays import find_sorted, grown, read_array, write_array
from matching.id_set import IdSet
from matching.slot_map import SlotMap
from matching.text import tokenize

Ints = npt.NDArray[np.int32]
# A token's count in one document; a description holds at most 20,000 characters, so 65,535
# is never reached (the column would clip, not wrap).
Frequencies = npt.NDArray[np.uint16]
_FREQUENCY = np.uint16
_SLOT_BYTES, _FREQUENCY_BYTES = "<i4", "<u2"  # as `write` stores them


@dataclass(frozen=True, slots=True)
class LexicalHit:
    """One document found by a lexical search.

    Attributes:
        id: the document id.
        score: its BM25 score for the query (> 0).
        matched_terms: the query's tokens that the document contains, in query order.
    """

    id: int
    score: float
    matched_terms: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class LexicalQuery:
    """A query's scored terms, from `LexicalIndex.query`: tokenized once, used for ranking and
    then for the matched terms of the few hits shown.

    Attributes:
        terms: the ids of the query's distinct indexed tokens that are scored, in query order.
    """

    terms: Ints


class _Column:
    """An int32 array that grows by appending, with spare capacity like a list."""

    __slots__ = ("_data", "size")

    def __init__(self, data: Ints | None = None) -> None:
        self._data: Ints = np.zeros(0, np.int32) if data is None else data
        self.size = self._data.size

    def extend(self, values: Sequence[int] | Ints) -> None:
        end = self.size + len(values)
        self._data = grown(self._data, end)
        self._data[self.size : end] = values
        self.size = end

    def view(self) -> Ints:
        return self._data[: self.size]


Statistics = tuple[int, int]  # (total length, live documents): what document norms depend on
# float32: one cached weight per posting adds up to 4 bytes a token a document once every term
# has been queried (about 200 MB at a million listings); scores still sum in float64.
Weights = npt.NDArray[np.float32]


# Appended postings wait in lists of Python ints (about 26 bytes each, against 6 in arrays)
# until a read merges them; a bulk load (a million listings add ~40 million) merges every this
# many, so its peak stays near the size of the arrays.
_MERGE_EVERY = 1_000_000


class _Postings:
    """The slots holding one term and its frequency in each: arrays, plus appends not yet
    merged into them (merged on the next read), and the BM25 weights of the slots as last
    computed, with the corpus statistics they were computed for."""

    __slots__ = ("_pending_frequencies", "_pending_slots", "_weights", "frequencies", "slots")

    def __init__(self, slots: Ints | None = None, frequencies: Frequencies | None = None) -> None:
        self.slots: Ints = np.zeros(0, np.int32) if slots is None else slots
        self.frequencies: Frequencies = (
            np.zeros(0, _FREQUENCY) if frequencies is None else frequencies
        )
        self._pending_slots: list[int] = []
        self._pending_frequencies: list[int] = []
        self._weights: tuple[Statistics, Weights] | None = None

    def append(self, slot: int, frequency: int) -> None:
        self._pending_slots.append(slot)
        self._pending_frequencies.append(frequency)

    def arrays(self) -> tuple[Ints, Frequencies]:
        if self._pending_slots:
            self.slots = np.concatenate([self.slots, np.asarray(self._pending_slots, np.int32)])
            self.frequencies = np.concatenate(
                [self.frequencies, np.asarray(self._pending_frequencies, _FREQUENCY)]
            )
            self._pending_slots, self._pending_frequencies = [], []
            self._weights = None
        return self.slots, self.frequencies

    def keep(self, alive: npt.NDArray[np.bool_], renumbered: Ints) -> None:
        """Keep the postings of live slots only, under their new numbers."""
        slots, frequencies = self.arrays()
        kept = alive[slots]
        self.slots, self.frequencies = renumbered[slots[kept]], frequencies[kept]
        self._weights = None

    def weights(
        self, statistics: Statistics, compute: Callable[[Ints, Frequencies], Weights]
    ) -> Weights:
        """Each slot's weight for the term: `compute(slots, frequencies)`, cached while the
        statistics stay the same (reads far outnumber writes)."""
        slots, frequencies = self.arrays()
        if self._weights is None or self._weights[0] != statistics:
            self._weights = (statistics, compute(slots, frequencies))
        return self._weights[1]


class LexicalIndex:
    """BM25 over tokenized texts, with upsert, removal and id-filtered search.

    Args:
        k1: term-frequency saturation.
        b: length normalisation (0 = none, 1 = full).
        tokenizer: turns a text into tokens; documents and queries use the same one.
        max_query_terms: the most tokens of one query that are scored (None: all).
    """

    def __init__(
        self,
        *,
        k1: float = 0.9,
        b: float = 0.4,
        tokenizer: Callable[[str], list[str]] = tokenize,
        max_query_terms: int | None = 64,
    ) -> None:
        self.k1 = k1
        self.b = b
        self.max_query_terms = max_query_terms
        self._tokenize = tokenizer
        self._clear()

    def _clear(self) -> None:
        # The vocabulary: term <-> term id, with each term's postings and live document count.
        self._term_ids: dict[str, int] = {}
        self._vocabulary: list[str] = []
        self._postings: list[_Postings] = []
        self._document_frequency = np.zeros(0, np.int64)
        # The documents by slot: id, length, liveness, and their distinct term ids (ascending)
        # at _offsets[slot]:_offsets[slot + 1] of a flat column (their frequencies are in the
        # postings only).
        self._slot_of = SlotMap()
        self._ids: list[int] = []
        self._ids_cache: npt.NDArray[np.int64] | None = None
        self._lengths = np.zeros(0, dtype=np.float64)
        self._alive = np.zeros(0, dtype=bool)
        self._offsets = _Column(np.zeros(1, np.int32))
        self._document_terms = _Column()
        self._total_length = 0
        self._unmerged = 0  # postings appended since the last merge

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, document_id: object) -> bool:
        return document_id in self._slot_of

    def upsert(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        """Add documents, replacing any already indexed under the same ids.

        Args:
            ids: document ids.
            texts: their texts, aligned with ids.
        """
        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids but {len(texts)} texts")
        self.remove(ids)
        self._grow(len(self._ids) + len(ids))
        for document_id, text in zip(ids, texts, strict=True):
            counts = Counter(self._term_id(token) for token in self._tokenize(text))
            terms = np.fromiter(sorted(counts), dtype=np.int32, count=len(counts))
            frequencies = np.fromiter((counts[t] for t in terms.tolist()), _FREQUENCY, len(counts))
            self._add(int(document_id), terms, frequencies)
            if self._unmerged >= _MERGE_EVERY:
                self._merge()

    def remove(self, ids: Iterable[int]) -> None:
        """Drop documents; ids that are not indexed are ignored.

        Args:
            ids: document ids.
        """
        for document_id in ids:
            slot = self._slot_of.pop(int(document_id))
            if slot is None:
                continue
            self._document_frequency[self._terms_at(slot)] -= 1
            self._total_length -= int(self._lengths[slot])
            self._alive[slot] = False
        if len(self._ids) > 1024 and len(self._ids) > 2 * len(self._slot_of):
            self._compact()

    def search(
        self,
        query: str | LexicalQuery,
        k: int,
        *,
        allowed_ids: Collection[int] | None = None,
        also: Collection[int] = (),
        with_terms: bool = True,
    ) -> list[LexicalHit]:
        """Rank the documents that share at least one token with the query.

        A long query (a whole listing matched against the others) is cut to its
        `max_query_terms` tokens of highest weight (frequency in the query times idf), as
        "more like this" queries are: the rare terms carry the match, the common ones cost time.

        Args:
            query: free text (English, Chinese or mixed), or its `query`.
            k: the most hits to return.
            allowed_ids: when given, only these ids may be returned.
            also: ids whose hits are wanted besides the top k (e.g. another retriever's
                candidates, for fusion), whether allowed or not; those sharing no token with
                the query have no hit.
            with_terms: fill in each hit's matched terms; False leaves them empty (ask
                `matched_terms` for the hits that are shown: it costs ~10 us a hit).

        Returns:
            Up to k hits, best first (ties broken by id), then the hits of `also` not among them.
        """
        query_terms = self.query(query).terms
        scores = self._scores(query_terms)
        eligible = self._alive[: scores.size] & (scores > 0)
        extra = self._slot_of.slots_of(also)
        extra = extra[extra >= 0]
        extra = extra[eligible[extra]]
        if allowed_ids is not None:
            eligible &= IdSet.of(allowed_ids).members(self._id_array()[: eligible.size])
        candidates = self._top(np.flatnonzero(eligible), scores, k)
        order = sorted(candidates.tolist(), key=lambda s: (-scores[s], self._ids[s]))
        chosen = set(order)
        order += sorted(set(extra.tolist()) - chosen)
        return [
            LexicalHit(
                self._ids[slot],
                float(scores[slot]),
                self._matched(query_terms, slot) if with_terms else (),
            )
            for slot in order
        ]

    def _top(
        self, slots: npt.NDArray[np.intp], scores: npt.NDArray[np.float64], k: int
    ) -> npt.NDArray[np.intp]:
        """The k slots of highest score, ties at the k-th score going to the lowest ids."""
        if k <= 0:
            return slots[:0]
        if slots.size <= k:
            return slots
        values = scores[slots]
        kth = np.partition(values, slots.size - k)[slots.size - k]
        above, tied = slots[values > kth], slots[values == kth]
        by_id = np.argsort(self._id_array()[tied], kind="stable")
        return np.concatenate([above, tied[by_id[: k - above.size]]])

    def query(self, text: str | LexicalQuery) -> LexicalQuery:
        """Tokenize a query: its distinct indexed tokens, the `max_query_terms` of highest
        tf x idf, in query order (tokens no document holds cannot score and are left out).

        Args:
            text: free text; a `LexicalQuery` is returned as it is.

        Returns:
            The query, for `search` and `matched_terms`.
        """
        if isinstance(text, LexicalQuery):
            return text
        counts = Counter(
            term
            for token in self._tokenize(text)
            if (term := self._term_ids.get(token)) is not None
            and self._document_frequency[term] > 0
        )
        terms = np.fromiter(counts, dtype=np.int32, count=len(counts))
        if self.max_query_terms is None or terms.size <= self.max_query_terms:
            return LexicalQuery(terms)
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        idf = np.log((len(self._slot_of) + 1) / (self._document_frequency[terms] + 1))
        kept = np.argsort(-(tf * idf), kind="stable")[: self.max_query_terms]
        return LexicalQuery(terms[np.sort(kept)])

    def matched_terms(self, query: str | LexicalQuery, document_id: int) -> tuple[str, ...]:
        """The query's scored tokens that a document contains, in query order.

        Args:
            query: free text or its `query`.
            document_id: the document.

        Returns:
            The tokens; empty when the document is not indexed.
        """
        slot = self._slot_of.get(int(document_id))
        if slot is None:
            return ()
        return self._matched(self.query(query).terms, slot)

    def _id_array(self) -> npt.NDArray[np.int64]:
        """The id at each slot, as an array (cached until the slots change)."""
        if self._ids_cache is None or self._ids_cache.size != len(self._ids):
            self._ids_cache = np.asarray(self._ids, dtype=np.int64)
        return self._ids_cache

    def _scores(self, query_terms: Ints) -> npt.NDArray[np.float64]:
        size, count = len(self._ids), len(self._slot_of)
        if count == 0 or query_terms.size == 0:
            return np.zeros(size, dtype=np.float64)
        average_length = self._total_length / count

        def term_weights(slots: Ints, tf: Frequencies) -> Weights:
            """tf (k1 + 1) / (tf + k1 (1 - b + b length / average length)): BM25 without idf."""
            norm = self.k1 * (1 - self.b + self.b * self._lengths[slots] / average_length)
            weights: Weights = (tf * (self.k1 + 1) / (tf + norm)).astype(np.float32)
            return weights

        statistics = (self._total_length, count)
        slots, weights = [], []
        for term in query_terms.tolist():
            frequency = int(self._document_frequency[term])
            idf = math.log(1 + (count - frequency + 0.5) / (frequency + 0.5))
            postings = self._postings[term]
            weights.append(postings.weights(statistics, term_weights) * np.float32(idf))
            slots.append(postings.slots)
        # One pass over every term's postings (2-3x faster than adding term by term); with
        # weights, bincount sums in float64.
        totals = np.bincount(np.concatenate(slots), np.concatenate(weights), minlength=size)
        return cast(npt.NDArray[np.float64], totals)

    def _matched(self, query_terms: Ints, slot: int) -> tuple[str, ...]:
        _, held = find_sorted(self._terms_at(slot), query_terms)
        return tuple(self._vocabulary[term] for term in query_terms[held].tolist())

    def _terms_at(self, slot: int) -> Ints:
        offsets = self._offsets.view()
        return self._document_terms.view()[offsets[slot] : offsets[slot + 1]]

    def _term_id(self, token: str) -> int:
        term = self._term_ids.get(token)
        if term is None:
            term = self._term_ids[token] = len(self._vocabulary)
            # Interned: one string object per term however many documents hold it.
            self._vocabulary.append(sys.intern(token))
            self._postings.append(_Postings())
            self._document_frequency = grown(self._document_frequency, term + 1)
        return term

    def _add(self, document_id: int, terms: Ints, frequencies: Frequencies) -> None:
        slot = len(self._ids)
        self._ids.append(document_id)
        self._slot_of.update(np.array([document_id]), np.array([slot]))
        length = int(frequencies.sum())
        self._lengths[slot] = length
        self._alive[slot] = True
        self._total_length += length
        self._document_terms.extend(terms)
        self._offsets.extend([self._document_terms.size])
        self._document_frequency[terms] += 1
        for term, frequency in zip(terms.tolist(), frequencies.tolist(), strict=True):
            self._postings[term].append(slot, frequency)
        self._unmerged += terms.size

    def _merge(self) -> None:
        """Move every term's appended postings into its arrays."""
        for postings in self._postings:
            postings.arrays()
        self._unmerged = 0

    def _grow(self, size: int) -> None:
        self._lengths = grown(self._lengths, size)
        self._alive = grown(self._alive, self._lengths.size, False)

    def _compact(self) -> None:
        """Drop the removed documents' slots: the live ones are renumbered in order, and the
        postings and term column keep only theirs (statistics count live documents already)."""
        count = len(self._ids)
        alive = self._alive[:count]
        live = np.flatnonzero(alive)
        renumbered = np.full(count, -1, np.int32)
        renumbered[live] = np.arange(live.size, dtype=np.int32)
        for postings in self._postings:
            postings.keep(alive, renumbered)
        offsets = self._offsets.view()
        sizes = np.diff(offsets)[live]
        self._document_terms = _Column(
            self._document_terms.view()[np.repeat(alive, np.diff(offsets))]
        )
        self._offsets = _Column(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32))
        self._ids = [self._ids[slot] for slot in live.tolist()]
        self._ids_cache = None
        self._slot_of = SlotMap.of(np.asarray(self._ids, np.int64), np.arange(len(self._ids)))
        self._lengths = self._lengths[live]
        self._alive = np.ones(live.size, dtype=bool)

    def write(self, file: IO[bytes]) -> None:
        """Write the index to an open binary file, from its current position (see `read`).

        A pickle of a few flat arrays, then each term's postings one after another: slots, then
        frequencies. Written term by term, the postings (most of the index, ~6 bytes a token a
        document) are never joined into one array first, a copy of them (~270 MB at a million
        listings) at the peak of a rebuild, which ends by saving.

        Args:
            file: the file; other data may precede and follow the index in it.
        """
        postings = [p.arrays() for p in self._postings]
        state = {
            "parameters": (self.k1, self.b, self.max_query_terms, self._tokenize),
            "vocabulary": self._vocabulary,
            "document_frequency": self._document_frequency[: len(self._vocabulary)],
            "posting_bounds": np.cumsum([0, *(s.size for s, _ in postings)], dtype=np.int64),
            "ids": np.asarray(self._ids, dtype=np.int64),
            "lengths": self._lengths[: len(self._ids)],
            "alive": self._alive[: len(self._ids)],
            "offsets": self._offsets.view(),
            "document_terms": self._document_terms.view(),
            "total_length": self._total_length,
        }
        pickle.dump(state, file, pickle.HIGHEST_PROTOCOL)
        for slots, _ in postings:
            write_array(file, slots, _SLOT_BYTES)
        for _, frequencies in postings:
            write_array(file, frequencies, _FREQUENCY_BYTES)

    @classmethod
    def read(cls, file: IO[bytes]) -> "LexicalIndex":
        """Read an index written by `write`, leaving the file just past it.

        Unpickling runs code: read only files as trusted as the code itself.

        Raises:
            ValueError: the file ends inside the index, or holds no index there.
        """
        state = pickle.load(file)
        if not isinstance(state, dict) or "posting_bounds" not in state:
            raise ValueError("no lexical index here")
        k1, b, max_query_terms, tokenizer = state["parameters"]
        index = cls(k1=k1, b=b, tokenizer=tokenizer, max_query_terms=max_query_terms)
        index._vocabulary = state["vocabulary"]
        index._term_ids = {term: n for n, term in enumerate(index._vocabulary)}
        index._document_frequency = state["document_frequency"]
        bounds = state["posting_bounds"]
        # One array each for all the postings; each term's are a slice of them.
        slots = read_array(file, _SLOT_BYTES, int(bounds[-1]))
        frequencies = read_array(file, _FREQUENCY_BYTES, int(bounds[-1]))
        index._postings = [
            _Postings(slots[start:end], frequencies[start:end])
            for start, end in itertools.pairwise(bounds.tolist())
        ]
        ids = state["ids"]
        index._ids = ids.tolist()
        index._alive = state["alive"]
        live = np.flatnonzero(index._alive)
        index._slot_of = SlotMap.of(ids[live], live)
        index._lengths = state["lengths"]
        index._offsets = _Column(state["offsets"])
        index._document_terms = _Column(state["document_terms"])
        index._total_length = state["total_length"]
        return index
