"""An incremental BM25 index over documents keyed by integer ids.

Postings are kept per term and updated in place, so an upsert or a removal costs the size of the
document, not of the corpus; removed documents leave tombstones that are compacted away once they
outnumber the live ones. Scores follow Lucene's BM25 (idf = ln(1 + (N - df + 0.5) / (df + 0.5))),
with statistics over the live documents at query time.
"""

import math
import sys
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from matching.id_set import IdSet
from matching.text import tokenize


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


class _Postings:
    """The slots holding one term and its frequency there; arrays built lazily for scoring."""

    __slots__ = ("_arrays", "frequencies", "slots")

    def __init__(self) -> None:
        self.slots: list[int] = []
        self.frequencies: list[int] = []
        self._arrays: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]] | None = None

    def __getstate__(self) -> tuple[list[int], list[int]]:
        return self.slots, self.frequencies  # the arrays are a cache: rebuilt on first use

    def __setstate__(self, state: tuple[list[int], list[int]]) -> None:
        self.slots, self.frequencies = state
        self._arrays = None

    def append(self, slot: int, frequency: int) -> None:
        self.slots.append(slot)
        self.frequencies.append(frequency)
        self._arrays = None

    def arrays(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        if self._arrays is None:
            self._arrays = (
                np.asarray(self.slots, dtype=np.int64),
                np.asarray(self.frequencies, dtype=np.float64),
            )
        return self._arrays


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
        self._slot_of: dict[int, int] = {}
        self._ids: list[int] = []
        self._ids_cache: npt.NDArray[np.int64] | None = None
        self._terms: list[Counter[str] | None] = []
        self._lengths = np.zeros(0, dtype=np.float64)
        self._alive = np.zeros(0, dtype=bool)
        self._postings: dict[str, _Postings] = {}
        self._document_frequency: Counter[str] = Counter()
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
            # Interned tokens share one string object per term across documents, which keeps
            # memory down and lets pickle write each term once.
            self._add(int(document_id), Counter(map(sys.intern, self._tokenize(text))))

    def remove(self, ids: Iterable[int]) -> None:
        """Drop documents; ids that are not indexed are ignored.

        Args:
            ids: document ids.
        """
        for document_id in ids:
            slot = self._slot_of.pop(int(document_id), None)
            if slot is None:
                continue
            terms = self._terms[slot]
            assert terms is not None
            self._document_frequency.subtract(terms.keys())
            self._total_length -= int(self._lengths[slot])
            self._terms[slot] = None
            self._alive[slot] = False
        if len(self._ids) > 1024 and len(self._ids) > 2 * len(self._slot_of):
            self._compact()

    def search(
        self,
        query: str,
        k: int,
        *,
        allowed_ids: Collection[int] | None = None,
        also: Collection[int] = (),
    ) -> list[LexicalHit]:
        """Rank the documents that share at least one token with the query.

        A long query (a whole listing matched against the others) is cut to its
        `max_query_terms` tokens of highest weight (frequency in the query times idf), as
        "more like this" queries are: the rare terms carry the match, the common ones cost time.

        Args:
            query: free text (English, Chinese or mixed).
            k: the most hits to return.
            allowed_ids: when given, only these ids may be returned.
            also: ids whose hits are wanted besides the top k (e.g. another retriever's
                candidates, for fusion), whether allowed or not; those sharing no token with
                the query have no hit.

        Returns:
            Up to k hits, best first (ties broken by id), then the hits of `also` not among them.
        """
        query_terms = self._query_terms(query)
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
            LexicalHit(self._ids[slot], float(scores[slot]), self._matched(query_terms, slot))
            for slot in order
        ]

    def _query_terms(self, query: str) -> list[str]:
        """The query's distinct tokens, the `max_query_terms` of highest tf x idf, in order."""
        counts = Counter(self._tokenize(query))
        if self.max_query_terms is None or len(counts) <= self.max_query_terms:
            return list(counts)
        total = len(self._slot_of) + 1
        weight = {
            term: tf * math.log(total / (self._document_frequency.get(term, 0) + 1))
            for term, tf in counts.items()
        }
        kept = set(sorted(counts, key=lambda term: -weight[term])[: self.max_query_terms])
        return [term for term in counts if term in kept]

    def _id_array(self) -> npt.NDArray[np.int64]:
        """The id at each slot, as an array (cached until the slots change)."""
        if self._ids_cache is None or self._ids_cache.size != len(self._ids):
            self._ids_cache = np.asarray(self._ids, dtype=np.int64)
        return self._ids_cache

    def _scores(self, query_terms: list[str]) -> npt.NDArray[np.float64]:
        scores = np.zeros(len(self._ids), dtype=np.float64)
        count = len(self._slot_of)
        if count == 0:
            return scores
        lengths = self._lengths[: scores.size]
        norm = self.k1 * (1 - self.b + self.b * lengths / (self._total_length / count))
        for term in query_terms:
            frequency = self._document_frequency.get(term, 0)
            if frequency <= 0:
                continue
            idf = math.log(1 + (count - frequency + 0.5) / (frequency + 0.5))
            slots, tf = self._postings[term].arrays()
            scores[slots] += idf * tf * (self.k1 + 1) / (tf + norm[slots])
        return scores

    def _matched(self, query_terms: list[str], slot: int) -> tuple[str, ...]:
        terms = self._terms[slot]
        assert terms is not None
        return tuple(term for term in query_terms if term in terms)

    def _add(self, document_id: int, terms: Counter[str]) -> None:
        slot = len(self._ids)
        self._ids.append(document_id)
        self._terms.append(terms)
        self._slot_of[document_id] = slot
        length = sum(terms.values())
        self._lengths[slot] = length
        self._alive[slot] = True
        self._total_length += length
        self._document_frequency.update(terms.keys())
        for term, frequency in terms.items():
            postings = self._postings.get(term)
            if postings is None:
                postings = self._postings[term] = _Postings()
            postings.append(slot, frequency)

    def _grow(self, size: int) -> None:
        if size <= self._lengths.size:
            return
        capacity = max(size, 2 * self._lengths.size, 64)
        self._lengths = np.resize(self._lengths, capacity)
        alive = np.zeros(capacity, dtype=bool)
        alive[: self._alive.size] = self._alive
        self._alive = alive

    def _compact(self) -> None:
        """Rebuild the postings from the live documents, dropping tombstones."""
        live = [(self._ids[s], t) for s, t in enumerate(self._terms) if t is not None]
        self._slot_of, self._ids, self._terms = {}, [], []
        self._ids_cache = None
        self._postings, self._document_frequency, self._total_length = {}, Counter(), 0
        self._lengths = np.zeros(0, dtype=np.float64)
        self._alive = np.zeros(0, dtype=bool)
        self._grow(len(live))
        for document_id, terms in live:
            self._add(document_id, terms)
