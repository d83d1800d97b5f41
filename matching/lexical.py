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
import sys
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from matching.arrays import grown
from matching.id_set import IdSet
from matching.text import tokenize

Ints = npt.NDArray[np.int32]


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
Weights = npt.NDArray[np.float64]


class _Postings:
    """The slots holding one term and its frequency in each: arrays, plus appends not yet
    merged into them (merged on the next read), and the BM25 weights of the slots as last
    computed, with the corpus statistics they were computed for."""

    __slots__ = ("_pending_frequencies", "_pending_slots", "_weights", "frequencies", "slots")

    def __init__(self, slots: Ints, frequencies: Ints) -> None:
        self.slots = slots
        self.frequencies = frequencies
        self._pending_slots: list[int] = []
        self._pending_frequencies: list[int] = []
        self._weights: tuple[Statistics, Weights] | None = None

    def append(self, slot: int, frequency: int) -> None:
        self._pending_slots.append(slot)
        self._pending_frequencies.append(frequency)

    def arrays(self) -> tuple[Ints, Ints]:
        if self._pending_slots:
            self.slots = np.concatenate([self.slots, np.asarray(self._pending_slots, np.int32)])
            self.frequencies = np.concatenate(
                [self.frequencies, np.asarray(self._pending_frequencies, np.int32)]
            )
            self._pending_slots, self._pending_frequencies = [], []
            self._weights = None
        return self.slots, self.frequencies

    def weights(self, statistics: Statistics, compute: Callable[[Ints, Ints], Weights]) -> Weights:
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
        # and frequencies at _offsets[slot]:_offsets[slot + 1] of the flat columns.
        self._slot_of: dict[int, int] = {}
        self._ids: list[int] = []
        self._ids_cache: npt.NDArray[np.int64] | None = None
        self._lengths = np.zeros(0, dtype=np.float64)
        self._alive = np.zeros(0, dtype=bool)
        self._offsets = _Column(np.zeros(1, np.int32))
        self._document_terms = _Column()
        self._document_frequencies = _Column()
        self._total_length = 0

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
            frequencies = np.fromiter((counts[t] for t in terms.tolist()), np.int32, len(counts))
            self._add(int(document_id), terms, frequencies)

    def remove(self, ids: Iterable[int]) -> None:
        """Drop documents; ids that are not indexed are ignored.

        Args:
            ids: document ids.
        """
        for document_id in ids:
            slot = self._slot_of.pop(int(document_id), None)
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
        extra = [
            slot for i in also if (slot := self._slot_of.get(int(i))) is not None and eligible[slot]
        ]
        if allowed_ids is not None:
            eligible &= IdSet.of(allowed_ids).members(self._id_array()[: eligible.size])
        candidates = np.flatnonzero(eligible)
        if k > 0 and candidates.size > k:
            top = np.argpartition(-scores[candidates], k - 1)[:k]
            candidates = candidates[top]
        elif k <= 0:
            candidates = candidates[:0]
        order = sorted(candidates.tolist(), key=lambda s: (-scores[s], self._ids[s]))
        chosen = set(order)
        order += sorted({slot for slot in extra if slot not in chosen})
        return [
            LexicalHit(
                self._ids[slot],
                float(scores[slot]),
                self._matched(query_terms, slot) if with_terms else (),
            )
            for slot in order
        ]

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
        scores = np.zeros(len(self._ids), dtype=np.float64)
        count = len(self._slot_of)
        if count == 0:
            return scores
        average_length = self._total_length / count

        def term_weights(slots: Ints, tf: Ints) -> Weights:
            """tf (k1 + 1) / (tf + k1 (1 - b + b length / average length)): BM25 without idf."""
            norm = self.k1 * (1 - self.b + self.b * self._lengths[slots] / average_length)
            weights: Weights = tf * (self.k1 + 1) / (tf + norm)
            return weights

        statistics = (self._total_length, count)
        for term in query_terms.tolist():
            frequency = int(self._document_frequency[term])
            idf = math.log(1 + (count - frequency + 0.5) / (frequency + 0.5))
            postings = self._postings[term]
            weights = postings.weights(statistics, term_weights)
            scores[postings.slots] += idf * weights
        return scores

    def _matched(self, query_terms: Ints, slot: int) -> tuple[str, ...]:
        held = self._terms_at(slot)
        positions = np.minimum(np.searchsorted(held, query_terms), max(held.size - 1, 0))
        found = query_terms[held[positions] == query_terms] if held.size else query_terms[:0]
        return tuple(self._vocabulary[term] for term in found.tolist())

    def _terms_at(self, slot: int) -> Ints:
        offsets = self._offsets.view()
        return self._document_terms.view()[offsets[slot] : offsets[slot + 1]]

    def _term_id(self, token: str) -> int:
        term = self._term_ids.get(token)
        if term is None:
            term = self._term_ids[token] = len(self._vocabulary)
            # Interned: one string object per term however many documents hold it.
            self._vocabulary.append(sys.intern(token))
            self._postings.append(_Postings(np.zeros(0, np.int32), np.zeros(0, np.int32)))
            self._document_frequency = grown(self._document_frequency, term + 1)
        return term

    def _add(self, document_id: int, terms: Ints, frequencies: Ints) -> None:
        slot = len(self._ids)
        self._ids.append(document_id)
        self._slot_of[document_id] = slot
        length = int(frequencies.sum())
        self._lengths[slot] = length
        self._alive[slot] = True
        self._total_length += length
        self._document_terms.extend(terms)
        self._document_frequencies.extend(frequencies)
        self._offsets.extend([self._document_terms.size])
        self._document_frequency[terms] += 1
        for term, frequency in zip(terms.tolist(), frequencies.tolist(), strict=True):
            self._postings[term].append(slot, frequency)

    def _grow(self, size: int) -> None:
        self._lengths = grown(self._lengths, size)
        self._alive = grown(self._alive, self._lengths.size, False)

    def _compact(self) -> None:
        """Rebuild the slots, postings and statistics from the live documents only."""
        offsets = self._offsets.view()
        terms, frequencies = self._document_terms.view(), self._document_frequencies.view()
        live = [
            (self._ids[slot], slice(offsets[slot], offsets[slot + 1]))
            for slot in np.flatnonzero(self._alive[: len(self._ids)]).tolist()
        ]
        vocabulary, term_ids = self._vocabulary, self._term_ids
        self._clear()
        self._vocabulary, self._term_ids = vocabulary, term_ids
        self._postings = [
            _Postings(np.zeros(0, np.int32), np.zeros(0, np.int32)) for _ in vocabulary
        ]
        self._document_frequency = np.zeros(len(vocabulary), np.int64)
        self._grow(len(live))
        for document_id, span in live:
            self._add(document_id, terms[span], frequencies[span])

    def __getstate__(self) -> dict[str, Any]:
        """The index as a few flat arrays: each term's postings one after another."""
        postings = [p.arrays() for p in self._postings]
        bounds = np.cumsum([0, *(slots.size for slots, _ in postings)])
        return {
            "parameters": (self.k1, self.b, self.max_query_terms, self._tokenize),
            "vocabulary": self._vocabulary,
            "document_frequency": self._document_frequency[: len(self._vocabulary)],
            "posting_bounds": bounds,
            "posting_slots": np.concatenate([np.zeros(0, np.int32), *(s for s, _ in postings)]),
            "posting_frequencies": np.concatenate(
                [np.zeros(0, np.int32), *(f for _, f in postings)]
            ),
            "ids": np.asarray(self._ids, dtype=np.int64),
            "lengths": self._lengths[: len(self._ids)],
            "alive": self._alive[: len(self._ids)],
            "offsets": self._offsets.view(),
            "document_terms": self._document_terms.view(),
            "document_frequencies": self._document_frequencies.view(),
            "total_length": self._total_length,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.k1, self.b, self.max_query_terms, self._tokenize = state["parameters"]
        self._clear()
        self._vocabulary = state["vocabulary"]
        self._term_ids = {term: n for n, term in enumerate(self._vocabulary)}
        self._document_frequency = state["document_frequency"].copy()
        bounds = state["posting_bounds"].tolist()
        slots, frequencies = state["posting_slots"], state["posting_frequencies"]
        self._postings = [
            _Postings(slots[start:end], frequencies[start:end])
            for start, end in itertools.pairwise(bounds)
        ]
        ids = state["ids"]
        self._ids = ids.tolist()
        self._alive = state["alive"].copy()
        live = np.flatnonzero(self._alive)
        self._slot_of = dict(zip(ids[live].tolist(), live.tolist(), strict=True))
        self._lengths = state["lengths"].copy()
        self._offsets = _Column(state["offsets"].copy())
        self._document_terms = _Column(state["document_terms"].copy())
        self._document_frequencies = _Column(state["document_frequencies"].copy())
        self._total_length = state["total_length"]
