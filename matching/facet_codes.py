"""Each held listing's facets by id, readable without decoding the listing's facts.

Hybrid ranking reads the facets of every candidate of every query (a couple of hundred); decoding
the candidates' facts for them took longer than the rest of the smoothing. Listings share few
distinct facet tuples (a model's tasks, a scenario's capabilities), so each id keeps only the
code of its tuple: 4 bytes a listing, plus each distinct tuple once. `pairs` answers for many ids
at once, as arrays, so that the smoothing runs without a Python loop over the candidates.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from matching.arrays import grown

Facets = tuple[str, ...]
Positions = npt.NDArray[np.intp]
FacetNumbers = npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class _Numbering:
    """Each coded tuple's facets as numbers: tuple c's are flat[starts[c]:starts[c] + counts[c]]."""

    counts: npt.NDArray[np.intp]
    starts: npt.NDArray[np.intp]
    flat: FacetNumbers


class FacetCodes:
    """Listing id -> facets, as an int32 code per id into the distinct tuples seen.

    A tuple stays known after its last listing is gone (codes are never reused): the distinct
    tuples are few, and keeping them spares a reference count per tuple.
    """

    def __init__(self) -> None:
        self._codes: npt.NDArray[np.int32] = np.zeros(0, dtype=np.int32)  # 0: no facets
        self._tuples: list[Facets] = [()]
        self._code_of: dict[Facets, int] = {(): 0}
        self._numbering: _Numbering | None = None  # made by `pairs`, dropped on a new tuple

    def put(self, ids: Sequence[int], facets: Sequence[Facets]) -> None:
        """Set the facets of listings, replacing any they had.

        Args:
            ids: non-negative listing ids.
            facets: each listing's facets, in the order of `ids`.

        Raises:
            ValueError: the lengths differ or an id is negative.
        """
        if len(ids) != len(facets):
            raise ValueError(f"{len(ids)} ids but {len(facets)} facet tuples")
        if not ids:
            return
        rows = np.asarray(ids, dtype=np.int64)
        if int(rows.min()) < 0:
            raise ValueError("listing ids must be non-negative")
        self._codes = grown(self._codes, int(rows.max()) + 1)
        self._codes[rows] = [self._code(tuple(f)) for f in facets]

    def forget(self, ids: Iterable[int]) -> None:
        """Clear the facets of listings; ids never put are ignored."""
        for listing_id in ids:
            if 0 <= listing_id < self._codes.size:
                self._codes[listing_id] = 0

    def of(self, listing_id: int) -> Facets:
        """The facets of a listing; () for a listing without any or not held."""
        if 0 <= listing_id < self._codes.size:
            return self._tuples[self._codes[listing_id]]
        return ()

    def pairs(self, ids: npt.NDArray[np.int64]) -> tuple[Positions, FacetNumbers]:
        """Which listing has which facet, for many listings at once.

        Args:
            ids: listing ids (ids not held have no facets).

        Returns:
            Two arrays of equal length: positions into `ids`, ascending, and for each a number
            standing for one facet of that listing (the same facet has the same number
            throughout the table's life, until a new tuple is coded).
        """
        numbering = self._numbering or self._number_facets()
        held = (ids >= 0) & (ids < self._codes.size)
        codes = np.zeros(ids.shape, dtype=np.int32)
        codes[held] = self._codes[ids[held]]
        counts = numbering.counts[codes]
        positions = np.repeat(np.arange(ids.size), counts)
        # The k-th facet of each listing sits k places after its tuple's start in `flat`.
        first_pair = np.cumsum(counts) - counts
        within = np.arange(positions.size) - np.repeat(first_pair, counts)
        numbers = numbering.flat[np.repeat(numbering.starts[codes], counts) + within]
        return positions, numbers

    def _number_facets(self) -> _Numbering:
        number_of: dict[str, int] = {}
        numbered = [[number_of.setdefault(f, len(number_of)) for f in t] for t in self._tuples]
        counts = np.array([len(t) for t in numbered], dtype=np.intp)
        flat = np.fromiter(
            (number for t in numbered for number in t), dtype=np.int32, count=int(counts.sum())
        )
        self._numbering = _Numbering(counts, np.cumsum(counts) - counts, flat)
        return self._numbering

    def copy(self) -> "FacetCodes":
        """An independent table with the same facets."""
        clone = FacetCodes()
        clone._codes = self._codes.copy()
        clone._tuples = list(self._tuples)
        clone._code_of = dict(self._code_of)
        return clone

    def _code(self, facets: Facets) -> int:
        code = self._code_of.get(facets)
        if code is None:
            code = self._code_of[facets] = len(self._tuples)
            self._tuples.append(facets)
            self._numbering = None
        return code

    def __getstate__(self) -> tuple[npt.NDArray[np.int32], list[Facets]]:
        return self._codes, self._tuples

    def __setstate__(self, state: tuple[npt.NDArray[np.int32], list[Facets]]) -> None:
        self._codes, self._tuples = state
        self._code_of = {facets: code for code, facets in enumerate(self._tuples)}
        self._numbering = None
