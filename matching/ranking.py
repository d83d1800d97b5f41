"""The matcher: listings in, ranked and explained counterparts out.

A query (a listing or free text) is answered in seven steps:

1. retrieve candidates from the vector index (dense) and the BM25 index (lexical), each restricted
   to the requested kinds and allowed ids;
2. score every candidate by both retrievers, then keep one score (dense, lexical) or fuse the two
   (hybrid: a weighted blend of the cosine and of BM25 relative to the query's best hit);
3. hybrid only: move each candidate's score towards the best scores among the candidates that
   share a task with it. Which task a need asks for is judged better from several candidates than
   from one, and models of the right task are what a need is looking for;
4. dense and hybrid: pseudo-relevance feedback (Rocchio). Move the query vector towards the mean
   of the best `feedback_depth` candidates' stored vectors, re-score every candidate's cosine with
   it and repeat steps 2-3. A short need ("train a model for fine-grained image classification")
   says little; what its best candidates share fills it in. Vector work over the candidates only:
   no second retrieval (on the bench, retrieving again with the moved query changed nothing);
5. hybrid only: blend in each candidate's prominence, how many others name it by its title
   (`matching.mentions`): of two lookalike datasets, the one others build on is more often wanted;
6. check the constraints between the query listing and the candidates, drop hard failures when
   strict, and blend in the constraint score; candidates are taken by falling score and the
   checks stop once no later candidate could reach the top even passing every check;
7. explain the survivors: matched terms, the counterpart's sentence closest to the query, checks.

The settings were chosen by a coarse sweep on the development bench (benchmarks/quality.py), where
they sit on a plateau: blend weights 0.8-0.9 and facet weights 2-5 score within 0.01 nDCG@10;
feedback from the best 4-6 candidates at weights 1.5-3 scores within 0.01 of the chosen 5 and 2.
Feedback raised hybrid nDCG@10 on datafinder from 0.250 to 0.266 and on the model subsets by
0.003-0.006, at 0.01-0.02 MRR@10 there; deeper feedback helps datafinder more but costs
scenario_to_model, whose best few already share a task. Prominence raised datafinder from 0.265 to
0.329 at weight 0.1 (0.05: 0.298, 0.2: 0.377) and left the model subsets within 0.001 (at 0.2 they
lose 0.002-0.004, and the MRR@10 of grade-2 models 0.14 on dataset_to_model): researchers use the
datasets others build on, while the model a need names is as often a niche one.
"""

import heapq
import pickle
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import IO, Literal

import numpy as np
import numpy.typing as npt

from matching.arrays import grown
from matching.constraints import Check, check_pair, constraint_score, fails_hard
from matching.documents import facets, lexical_text, semantic_text
from matching.embedding import Embedder
from matching.facet_codes import FacetCodes
from matching.facts import KINDS, SIDES, Kind, ListingFacts, Side, counterpart_kinds, side_of
from matching.facts_store import FactsStore
from matching.id_set import IdSet
from matching.index import IndexKind
from matching.lexical import LexicalIndex, LexicalQuery
from matching.listing_vectors import embed_listings, evidence
from matching.mentions import MentionCounts, count_mentions
from matching.partitioned_index import PartitionedIndex
from matching.text import cjk_share

Method = Literal["dense", "lexical", "hybrid"]
_KIND_CODES: dict[Kind, int] = {kind: code for code, kind in enumerate(sorted(KINDS))}
Fusion = Literal["blend", "rrf"]
Vector = npt.NDArray[np.float32]
Scores = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class RankingSettings:
    """The few parameters of ranking, chosen by a coarse sweep on the development bench.

    Attributes:
        candidates: how many candidates each retriever contributes.
        fusion: "blend" adds the weighted cosine and relative BM25 scores; "rrf" adds weighted
            reciprocal ranks, 1 / (rrf_k + rank), scaled to [0, 1].
        dense_weight: the weight of the dense side in the fusion; the lexical side gets the rest.
        cjk_dense_weight: the dense weight for queries written mostly in Chinese (or other CJK
            scripts). The default model was trained on English: on Chinese text its similarities
            follow shared characters more than meaning, while the jieba-segmented BM25 is sound.
        rrf_k: the rank offset of reciprocal-rank fusion.
        facet_weight: how far a hybrid score moves towards the best scores of its facet.
        facet_depth: how many of a facet's best candidates make its score.
        constraint_weight: the share of the total score that comes from the constraints.
        prominence_weight: the share of the total hybrid score that comes from prominence.
        prominent_at: the mention count at which prominence reaches 1; it grows as the
            logarithm of the count up to there.
        feedback_depth: how many of the best candidates the query vector moves towards (dense
            and hybrid; 0: no feedback).
        feedback_weight: the weight of their mean vector against the query's own (Rocchio's
            beta; 0: no feedback).
    """

    candidates: int = 100
    fusion: Fusion = "blend"
    dense_weight: float = 0.85
    cjk_dense_weight: float = 0.5
    rrf_k: int = 60
    facet_weight: float = 3.0
    facet_depth: int = 3
    constraint_weight: float = 0.1
    prominence_weight: float = 0.1
    prominent_at: int = 100
    feedback_depth: int = 5
    feedback_weight: float = 2.0


@dataclass(frozen=True, slots=True)
class ScoreComponents:
    """The parts of a match's score.

    Attributes:
        semantic: the cosine similarity of the query's embedding and the match's (ranking
            uses the query's after pseudo-relevance feedback; this is the query's own).
        lexical: the BM25 score relative to the best BM25 hit among the candidates (0 when no
            term matched).
        relevance: the retrieval score of the method (hybrid: fused and smoothed by task).
        constraints: the constraint score, in [0, 1] (0.5 when nothing could be checked).
        prominence: how widely others name the match, in [0, 1] (see `RankingSettings`).
        mentions: how many other owners name the match by its title (see `matching.mentions`).

    The total is (1 - constraint_weight - prominence_weight) * relevance + constraint_weight *
    constraints + prominence_weight * prominence, the prominence weight 0 outside hybrid ranking.
    """

    semantic: float
    lexical: float
    relevance: float
    constraints: float
    prominence: float
    mentions: int


@dataclass(frozen=True, slots=True)
class Match:
    """A counterpart found for a query, with why it was found.

    Attributes:
        id: the counterpart's id.
        kind: its kind.
        score: the total score the results are ordered by.
        components: the scores it is made of.
        matched_terms: query tokens the counterpart's text contains.
        evidence: the counterpart's sentence closest to the query ("" when not explained).
        checks: every constraint checked between the query listing and the counterpart.
    """

    id: int
    kind: Kind
    score: float
    components: ScoreComponents
    matched_terms: tuple[str, ...]
    evidence: str
    checks: tuple[Check, ...]


@dataclass(slots=True)
class _Candidates:
    """A query's candidates as parallel arrays, by ascending id: arrays, not an object each, so
    that fusion, smoothing and feedback run without Python loops over a couple of hundred of them.

    `semantic` is the cosine ranking uses (after feedback), `cosine` the similarity to the query
    itself, which explanations report.
    """

    ids: npt.NDArray[np.int64]
    vectors: npt.NDArray[np.float32]
    semantic: Scores
    lexical: Scores
    cosine: Scores
    relevance: Scores

    @classmethod
    def scored(
        cls,
        ids: npt.NDArray[np.int64],
        vectors: npt.NDArray[np.float32],
        query_vector: Vector,
        lexical: Mapping[int, float],
    ) -> "_Candidates":
        """Candidates with their stored vectors, their cosines with the query and their relative
        BM25 scores (0 for those sharing no term with it)."""
        cosines = (vectors @ query_vector).astype(np.float64)
        return cls(
            ids=ids,
            vectors=vectors,
            semantic=cosines,
            lexical=np.fromiter(
                (lexical.get(i, 0.0) for i in ids.tolist()), np.float64, count=ids.size
            ),
            cosine=cosines.copy(),
            relevance=np.zeros(ids.size, dtype=np.float64),
        )


@dataclass(frozen=True, slots=True)
class MatcherState:
    """What a matcher holds besides its vector index, for a snapshot (`write`, `read`).

    Attributes:
        facts: the listings' facts by id.
        lexical: the BM25 index over their lexical texts.
        kind_codes: each held id's kind code, -1 at ids not held (saves decoding every fact
            to learn its kind).
        facets: each held id's facets (saves decoding every candidate's facts to smooth).
        mentions: each held id's mention count (saves counting them again at a start).
    """

    facts: FactsStore
    lexical: LexicalIndex
    kind_codes: npt.NDArray[np.int8]
    facets: FacetCodes
    mentions: MentionCounts

    def write(self, file: IO[bytes]) -> None:
        """Write the state to an open binary file, from its current position (see `read`)."""
        parts = (self.facts, self.kind_codes, self.facets, self.mentions)
        pickle.dump(parts, file, pickle.HIGHEST_PROTOCOL)
        self.lexical.write(file)

    @classmethod
    def read(cls, file: IO[bytes]) -> "MatcherState":
        """Read a state written by `write`; unpickling runs code, so only from trusted files.

        Raises:
            ValueError: the file holds no matcher state here.
        """
        parts = pickle.load(file)
        if isinstance(parts, tuple) and len(parts) == 3:  # saved before mentions were counted
            parts = (*parts, MentionCounts())
            parts[3].changed(len(parts[0]))  # so counting them is due at once
        if not (isinstance(parts, tuple) and len(parts) == 4):
            raise ValueError("no matcher state here")
        facts, kind_codes, facets, mentions = parts
        if not (
            isinstance(facts, FactsStore)
            and isinstance(facets, FacetCodes)
            and isinstance(mentions, MentionCounts)
        ):
            raise ValueError("no matcher state here")
        return cls(facts, LexicalIndex.read(file), kind_codes, facets, mentions)


class Matcher:
    """Holds the listings of a marketplace and matches them.

    Safe to share between threads: writes and the index reads of a query take one lock; the
    embedding of queries and of evidence sentences runs outside it.

    Args:
        embedder: turns texts into vectors.
        index: the vector index to use, partitioned by side ("need", "offer"); a new one of
            index_kind when None.
        settings: ranking parameters.
        index_kind: the kind of a new vector index ("flat" exact, "hnsw" approximate).
    """

    def __init__(
        self,
        embedder: Embedder,
        index: PartitionedIndex | None = None,
        *,
        settings: RankingSettings | None = None,
        index_kind: IndexKind = "flat",
    ) -> None:
        self.embedder = embedder
        self._index = index
        self._index_kind: IndexKind = index_kind
        self.settings = settings or RankingSettings()
        self.lexical = LexicalIndex()
        self._facts = FactsStore()
        self._kind_codes = np.full(0, -1, dtype=np.int8)  # by id; -1: not held
        self._facets = FacetCodes()
        self._mentions = MentionCounts()
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._facts)

    @property
    def index(self) -> PartitionedIndex:
        """The vector index; a new one is made on first use, when the embedder's dimension is
        asked (an embedder still loading its model is waited for only then)."""
        with self._lock:
            if self._index is None:
                self._index = PartitionedIndex(
                    self.embedder.dimension, SIDES, kind=self._index_kind
                )
            return self._index

    def state(self) -> MatcherState:
        """The matcher's listings besides the vector index, to restore with `from_state`.

        The state shares the live lexical index and mention counts: serialise it before the
        next write.

        Returns:
            The facts and the lexical index.
        """
        with self._lock:
            return MatcherState(
                self._facts.copy(),
                self.lexical,
                self._kind_codes.copy(),
                self._facets.copy(),
                self._mentions,
            )

    @classmethod
    def from_state(
        cls,
        embedder: Embedder,
        index: PartitionedIndex,
        state: MatcherState,
        *,
        settings: RankingSettings | None = None,
    ) -> "Matcher":
        """A matcher holding a saved state and its vector index, without re-indexing.

        The matcher takes the state over, uncopied (at a million listings a copy of the facts
        alone would add ~100 MB to the peak of a start): do not use the state afterwards.

        Args:
            embedder: the embedder the state was built with (the same `model_name`; its
                dimension is not asked here, so an embedder may still be loading its model).
            index: the vector index saved with the state.
            state: from `state`.
            settings: ranking parameters.

        Returns:
            The matcher.

        Raises:
            ValueError: the index does not hold exactly the state's listings.
        """
        if len(index) != len(state.facts) or len(state.lexical) != len(state.facts):
            raise ValueError("the vector index, lexical index and facts disagree")
        matcher = cls(embedder, index, settings=settings)
        if int(np.count_nonzero(state.kind_codes >= 0)) != len(state.facts):
            raise ValueError("the kinds and facts disagree")
        matcher.lexical = state.lexical
        matcher._facts = state.facts
        matcher._kind_codes = state.kind_codes
        matcher._facets = state.facets
        matcher._mentions = state.mentions
        return matcher

    def __contains__(self, listing_id: object) -> bool:
        return listing_id in self._facts

    def facts(self, listing_id: int) -> ListingFacts | None:
        """The facts held for a listing.

        Args:
            listing_id: the listing's id.

        Returns:
            Its facts, or None when it is not held.
        """
        return self._facts.get(listing_id)

    def embed(self, listings: Sequence[ListingFacts]) -> Vector:
        """Embed listings the way the matcher indexes them (store these with the listing).

        Args:
            listings: the listings.

        Returns:
            An (n, dimension) float32 array of unit rows.
        """
        return self.embedder.encode([semantic_text(listing) for listing in listings], bulk=True)

    def upsert(self, facts: ListingFacts, vector: npt.ArrayLike | None = None) -> None:
        """Add or replace one listing.

        Args:
            facts: the listing.
            vector: its stored embedding (from `embed`, same model); computed when None.
        """
        vectors = None if vector is None else np.asarray(vector, dtype=np.float32).reshape(1, -1)
        self.upsert_many([facts], vectors)

    def upsert_many(
        self, listings: Sequence[ListingFacts], vectors: npt.ArrayLike | None = None
    ) -> None:
        """Add or replace listings in one batch (embedding them together is much faster).

        Args:
            listings: the listings, with distinct ids.
            vectors: their stored embeddings, one row each; computed when None.

        Raises:
            ValueError: the vectors do not fit the listings or the embedder.
        """
        if not listings:
            return
        matrix = self.embed(listings) if vectors is None else np.asarray(vectors, np.float32)
        if matrix.shape != (len(listings), self.index.dimension):
            raise ValueError(f"expected {len(listings)} vectors, got shape {matrix.shape}")
        ids = [listing.id for listing in listings]
        texts = [lexical_text(listing) for listing in listings]
        with self._lock:
            self._forget(ids)
            self.index.upsert(ids, matrix, [side_of(listing.kind) for listing in listings])
            self.lexical.upsert(ids, texts)
            for listing in listings:
                self._facts.put(listing)
            self._set_kinds(listings)
            self._facets.put(ids, [facets(listing) for listing in listings])
            self._mentions.changed(len(ids))

    def remove(self, ids: Iterable[int]) -> None:
        """Drop listings; unknown ids are ignored.

        Args:
            ids: the listings' ids.
        """
        with self._lock:
            held = [i for i in ids if i in self._facts]
            self._forget(held)
            self.index.remove(held)
            self.lexical.remove(held)
            self._mentions.changed(len(held))

    @property
    def mentions_due(self) -> bool:
        """Whether enough listings changed since mentions were last counted to count again."""
        return self._mentions.due(len(self._facts))

    def recount_mentions(
        self, owner_of: Callable[[npt.NDArray[np.int64]], npt.ArrayLike] | None = None
    ) -> None:
        """Count how many owners name each listing (see `matching.mentions`).

        The facts are read outside the lock, so queries and writes go on meanwhile (it takes
        about 0.05 ms a listing); a listing changed meanwhile makes the next count due.

        Args:
            owner_of: the owners (e.g. organizations, as non-negative integers) of listings by
                id, so that an owner naming a title counts once and never for its own
                listings; None: each listing is its own owner.
        """
        with self._lock:
            ids = np.fromiter(self._facts, dtype=np.int64, count=len(self._facts))
            self._mentions.start()

        def held(texts: bool) -> Iterator[ListingFacts | None]:
            return (self._facts.get(listing_id, texts=texts) for listing_id in map(int, ids))

        counts = count_mentions(
            (facts.title if facts else "" for facts in held(texts=False)),
            (lexical_text(facts) if facts else "" for facts in held(texts=True)),
            None if owner_of is None else owner_of(ids),
        )
        with self._lock:
            self._mentions.replace(ids, counts)

    def match(
        self,
        listing: ListingFacts,
        *,
        kinds: Collection[Kind] | None = None,
        limit: int = 10,
        strict: bool = False,
        min_score: float = 0.0,
        allowed_ids: Collection[int] | None = None,
        method: Method = "hybrid",
        vector: npt.ArrayLike | None = None,
        explain: bool = True,
    ) -> list[Match]:
        """Find counterparts for a listing.

        Args:
            listing: the listing to match (held by the matcher or not; never matched to itself).
            kinds: the kinds to return; the other side's kinds when None.
            limit: the most matches to return.
            strict: drop counterparts that fail a hard constraint (fewer than limit may remain:
                the candidates are the best `settings.candidates` of each retriever).
            min_score: drop matches whose total score is below this.
            allowed_ids: when given, only these ids may be returned (e.g. what the caller may see).
            method: "dense", "lexical" or "hybrid".
            vector: the listing's stored embedding (from `embed`); computed when None.
            explain: find evidence sentences (embeds the counterparts' sentences; or pass False
                and call `explain` with their stored sentence vectors for the matches shown).

        Returns:
            Up to limit matches, best first.
        """
        query_vector = (
            self.embed([listing])[0] if vector is None else np.asarray(vector, dtype=np.float32)
        )
        return self._rank(
            lexical_text(listing),
            query_vector.reshape(-1),
            listing=listing,
            kinds=counterpart_kinds(listing.kind) if kinds is None else kinds,
            limit=limit,
            strict=strict,
            min_score=min_score,
            allowed_ids=allowed_ids,
            method=method,
            explain=explain,
        )

    def search(
        self,
        text: str,
        *,
        kinds: Collection[Kind] | None = None,
        allowed_ids: Collection[int] | None = None,
        limit: int = 10,
        method: Method = "hybrid",
        min_score: float = 0.0,
        explain: bool = True,
        vector: npt.ArrayLike | None = None,
    ) -> list[Match]:
        """Find listings for free text (English or Chinese).

        Args:
            text: what to look for.
            kinds: the kinds to return; all when None.
            allowed_ids: when given, only these ids may be returned.
            limit: the most matches to return.
            method: "dense", "lexical" or "hybrid".
            min_score: drop matches whose total score is below this.
            explain: find evidence sentences.
            vector: the text's embedding when the caller already has it; computed when None.

        Returns:
            Up to limit matches, best first; no constraints apply to free text.
        """
        return self._rank(
            text,
            self.embedder.encode([text])[0]
            if vector is None
            else np.asarray(vector, dtype=np.float32).reshape(-1),
            listing=None,
            kinds=KINDS if kinds is None else kinds,
            limit=limit,
            strict=False,
            min_score=min_score,
            allowed_ids=allowed_ids,
            method=method,
            explain=explain,
        )

    def explain(
        self,
        matches: Sequence[Match],
        vector: npt.ArrayLike,
        sentence_vectors: Mapping[int, Vector] | None = None,
    ) -> list[Match]:
        """Add evidence to matches found with explain=False, e.g. only to those finally shown.

        Args:
            matches: matches from `match` or `search`.
            vector: the query's vector (the listing's stored embedding, or the embedded text).
            sentence_vectors: the counterparts' stored sentence vectors by id (from
                `matching.listing_vectors.embed_listings`); those missing are computed.

        Returns:
            The matches with their evidence; a match whose listing is no longer held is kept as
            it was.
        """
        query_vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        stored = dict(sentence_vectors or {})
        held = {m.id: facts for m in matches if (facts := self._facts.get(m.id)) is not None}
        missing = [facts for listing_id, facts in held.items() if listing_id not in stored]
        if missing:
            computed = embed_listings(self.embedder, missing).sentences
            stored.update(zip((facts.id for facts in missing), computed, strict=True))
        return [
            replace(m, evidence=evidence(held[m.id], stored[m.id], query_vector))
            if m.id in held
            else m
            for m in matches
        ]

    # -- ranking ------------------------------------------------------------------------------

    def _rank(
        self,
        text: str,
        query_vector: Vector,
        *,
        listing: ListingFacts | None,
        kinds: Collection[Kind],
        limit: int,
        strict: bool,
        min_score: float,
        allowed_ids: Collection[int] | None,
        method: Method,
        explain: bool,
    ) -> list[Match]:
        if method not in ("dense", "lexical", "hybrid"):
            raise ValueError(f"unknown method {method!r}")
        settings = self.settings
        weight = settings.constraint_weight
        prominence_weight = settings.prominence_weight if method == "hybrid" else 0.0
        scored: list[tuple[float, int, ListingFacts, tuple[Check, ...]]] = []
        with self._lock:
            allowed = self._allowed(kinds, allowed_ids, listing.id if listing else None)
            if limit <= 0 or (allowed is not None and not allowed):
                return []
            lexical_query = self.lexical.query(text)
            candidates = self._candidates(
                lexical_query,
                query_vector,
                allowed,
                {side_of(kind) for kind in kinds if kind in KINDS},
                method,
                cjk=cjk_share(text) >= 0.5,
            )
            mentions = self._mentions.of(candidates.ids)
            prominence = np.minimum(np.log1p(mentions) / np.log1p(settings.prominent_at), 1.0)
            # The total without its constraint part, which decides the order of the checks.
            unchecked = (
                1 - weight - prominence_weight
            ) * candidates.relevance + prominence_weight * prominence
            ids, before_checks = candidates.ids.tolist(), unchecked.tolist()
            best: list[float] = []  # a min-heap of the `limit` best totals so far
            for at in np.lexsort((candidates.ids, -unchecked)).tolist():
                if len(best) == limit and best[0] > before_checks[at] + weight:
                    break  # even passing every check, no later candidate reaches the top
                counterpart = self._facts.for_ranking(ids[at])
                checks = check_pair(listing, counterpart) if listing is not None else ()
                if strict and fails_hard(checks):
                    continue
                total = before_checks[at] + weight * constraint_score(checks)
                if total >= min_score:
                    scored.append((total, at, counterpart, checks))
                    (heapq.heappush if len(best) < limit else heapq.heappushpop)(best, total)
            scored.sort(key=lambda item: (-item[0], ids[item[1]]))
            top = scored[:limit]
            terms = {at: self.lexical.matched_terms(lexical_query, ids[at]) for _, at, _, _ in top}
        found = [
            Match(
                id=ids[at],
                kind=counterpart.kind,
                score=total,
                components=ScoreComponents(
                    semantic=float(candidates.cosine[at]),
                    lexical=float(candidates.lexical[at]),
                    relevance=float(candidates.relevance[at]),
                    constraints=constraint_score(checks),
                    prominence=float(prominence[at]),
                    mentions=int(mentions[at]),
                ),
                matched_terms=terms[at] if candidates.lexical[at] > 0 else (),
                evidence="",
                checks=checks,
            )
            for total, at, counterpart, checks in top
        ]
        return self.explain(found, query_vector) if explain else found

    def _allowed(
        self, kinds: Collection[Kind], allowed_ids: Collection[int] | None, exclude: int | None
    ) -> IdSet | None:
        """The ids a query may return, or None when that is every held id."""
        wanted = set(kinds)
        if allowed_ids is None and exclude not in self._facts and wanted >= set(KINDS):
            return None
        # One comparison of the int8 codes per wanted kind: 10x faster than a lookup by code
        # (a gather over every id), itself several times faster than np.isin.
        mask = np.zeros(self._kind_codes.size, dtype=bool)
        for kind in wanted & set(KINDS):
            mask |= self._kind_codes == _KIND_CODES[kind]
        if allowed_ids is not None:
            allowed = IdSet.of(allowed_ids).mask
            shared = min(allowed.size, mask.size)
            mask[:shared] &= allowed[:shared]
            mask[shared:] = False
        if exclude is not None and 0 <= exclude < mask.size:
            mask[exclude] = False
        return IdSet(mask)

    def _dense(
        self, vector: Vector, k: int, allowed: Collection[int] | None, sides: Collection[Side]
    ) -> list[int]:
        """The ids of the k stored vectors closest to the query, best first."""
        _, ids = self.index.search(vector, max(k, 1), partitions=sides, allowed_ids=allowed)
        return [i for i in ids.tolist() if i >= 0]

    def _candidates(
        self,
        query: LexicalQuery,
        query_vector: Vector,
        allowed: IdSet | None,
        sides: Collection[Side],
        method: Method,
        *,
        cjk: bool,
    ) -> _Candidates:
        """Retrieve candidates, give each both retrievers' scores, and set their relevance."""
        depth = self.settings.candidates
        dense = self._dense(query_vector, depth, allowed, sides) if method != "lexical" else []
        # Fusion and explanations need both scores of every candidate, not only the retriever's
        # that found it: the lexical side scores the dense candidates too, and every candidate's
        # cosine comes from its stored vector (which feedback needs anyway).
        found = self.lexical.search(
            query,
            depth if method != "dense" else 0,
            allowed_ids=allowed,
            also=dense,
            with_terms=False,
        )
        best = max((hit.score for hit in found), default=0.0)
        ids = np.unique(np.asarray(dense + [hit.id for hit in found], dtype=np.int64))
        candidates = _Candidates.scored(
            ids, self.index.vectors(ids), query_vector, {hit.id: hit.score / best for hit in found}
        )
        self._set_relevance(candidates, method, cjk)
        if method != "lexical" and self._feed_back(candidates, query_vector):
            self._set_relevance(candidates, method, cjk)
        return candidates

    def _feed_back(self, candidates: _Candidates, query_vector: Vector) -> bool:
        """Re-score the candidates' cosines with the query moved towards its best candidates.

        Not when there are no more candidates than `feedback_depth`: the best few would be all of
        them, and their mean no evidence of what the query asks for.

        Returns:
            Whether the cosines changed (so the relevance must be set again).
        """
        depth, weight = self.settings.feedback_depth, self.settings.feedback_weight
        if depth <= 0 or weight <= 0 or candidates.ids.size <= depth:
            return False
        best = np.argsort(-candidates.relevance, kind="stable")[:depth]
        moved = query_vector + weight * candidates.vectors[best].mean(axis=0)
        moved /= max(float(np.linalg.norm(moved)), 1e-12)
        candidates.semantic = (candidates.vectors @ moved).astype(np.float64)
        return True

    def _set_relevance(self, candidates: _Candidates, method: Method, cjk: bool) -> None:
        settings = self.settings
        fused_weight = settings.cjk_dense_weight if cjk else settings.dense_weight
        if method == "hybrid" and settings.fusion == "rrf":
            _fuse_ranks(candidates, settings.rrf_k, fused_weight)
        else:
            weight = {"dense": 1.0, "lexical": 0.0, "hybrid": fused_weight}[method]
            candidates.relevance = weight * candidates.semantic + (1 - weight) * candidates.lexical
        if method == "hybrid":
            self._smooth_by_facets(candidates)

    def _smooth_by_facets(self, candidates: _Candidates) -> None:
        """Move each score towards the mean of the best `facet_depth` scores of its facet."""
        weight, depth = self.settings.facet_weight, self.settings.facet_depth
        if weight <= 0:
            return
        positions, numbers = self._facets.pairs(candidates.ids)
        if positions.size == 0:
            return
        scores = candidates.relevance[positions]
        # Each facet's pairs together, best score first; its first `depth` make its score (summed
        # best first, as a facet's few scores would be by hand).
        order = np.lexsort((-scores, numbers))
        grouped = numbers[order]
        first = np.ones(order.size, dtype=bool)
        np.not_equal(grouped[1:], grouped[:-1], out=first[1:])
        steps = np.arange(order.size)
        rank = steps - np.maximum.accumulate(np.where(first, steps, 0))
        kept = order[rank < depth]
        facet_score = np.bincount(numbers[kept], scores[kept]) / depth
        pooled = np.full(candidates.ids.size, -np.inf)
        np.maximum.at(pooled, positions, facet_score[numbers])
        faceted = pooled > -np.inf  # a score without facets stays as it is
        candidates.relevance[faceted] = (
            candidates.relevance[faceted] + weight * pooled[faceted]
        ) / (1 + weight)

    def _forget(self, ids: Iterable[int]) -> None:
        held = [listing_id for listing_id in ids if self._facts.pop(listing_id)]
        self._kind_codes[held] = -1
        self._facets.forget(held)

    def _set_kinds(self, listings: Iterable[ListingFacts]) -> None:
        held = list(listings)
        if not held:
            return
        ids = np.fromiter((listing.id for listing in held), dtype=np.int64, count=len(held))
        if int(ids.min()) < 0:
            raise ValueError("listing ids must be non-negative")
        self._kind_codes = grown(self._kind_codes, int(ids.max()) + 1, -1)
        self._kind_codes[ids] = [_KIND_CODES[listing.kind] for listing in held]


def _fuse_ranks(candidates: _Candidates, k: int, weight: float) -> None:
    """Reciprocal-rank fusion, scaled so that first in both lists scores 1.

    A candidate sharing no term with the query has no lexical rank.
    """
    relevance = np.empty(candidates.ids.size, dtype=np.float64)
    ranks = np.arange(candidates.ids.size)
    relevance[np.argsort(-candidates.semantic, kind="stable")] = weight * (k + 1) / (k + 1 + ranks)
    matched = np.flatnonzero(candidates.lexical > 0)
    by_lexical = matched[np.argsort(-candidates.lexical[matched], kind="stable")]
    relevance[by_lexical] += (1 - weight) * (k + 1) / (k + 1 + ranks[: by_lexical.size])
    candidates.relevance = relevance
