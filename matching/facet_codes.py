"""Each held listing's facets by id, readable without decoding the listing's facts.

Hybrid ranking reads the facets of every candidate of every query (a couple of hundred); decoding
the candidates' facts for them took longer than the rest of the smoothing. Listings share few
distinct facet tuples (a model's tasks, a scenario's capabilities), so each id keeps only the
code of its tuple: 4 bytes a listing, plus each distinct tuple once.
"""

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from matching.arrays import grown

Facets = tuple[str, ...]


class FacetCodes:
    """Listing id -> facets, as an int32 code per id into the distinct tuples seen.

    A tuple stays known after its last listing is gone (codes are never reused): the distinct
    tuples are few, and keeping them spares a reference count per tuple.
    """

    def __init__(self) -> None:
        self._codes: npt.NDArray[np.int32] = np.zeros(0, dtype=np.int32)  # 0: no facets
        self._tuples: list[Facets] = [()]
        self._code_of: dict[Facets, int] = {(): 0}

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
        return code

    def __getstate__(self) -> tuple[npt.NDArray[np.int32], list[Facets]]:
        return self._codes, self._tuples

    def __setstate__(self, state: tuple[npt.NDArray[np.int32], list[Facets]]) -> None:
        self._codes, self._tuples = state
        self._code_of = {facets: code for code, facets in enumerate(self._tuples)}
