"""A set of listing ids as a boolean mask: what a query may return, built in microseconds.

Listing ids are database row ids: small, dense, non-negative integers. A mask indexed by id makes
"these kinds, visible to this caller, not the query itself" a few vectorised operations over
the catalogue instead of unions and intersections of Python sets of 100,000 ints.
"""

from collections.abc import Collection, Iterable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

Mask = npt.NDArray[np.bool_]


class IdSet(Collection[int]):
    """An immutable set of non-negative int ids, held as a boolean mask indexed by id.

    Args:
        mask: True at each id in the set (not copied: do not change it afterwards).
    """

    __slots__ = ("_size", "mask")

    def __init__(self, mask: Mask) -> None:
        self.mask = mask
        self._size: int | None = None

    @classmethod
    def of(cls, ids: "Iterable[int] | IdSet") -> "IdSet":
        """The set of the given ids (the same object when it is already an IdSet).

        Raises:
            ValueError: an id is negative.
        """
        if isinstance(ids, IdSet):
            return ids
        array = np.fromiter(ids, dtype=np.int64)
        if array.size and int(array.min()) < 0:
            raise ValueError("ids must be non-negative")
        mask = np.zeros(int(array.max()) + 1 if array.size else 0, dtype=bool)
        mask[array] = True
        return cls(mask)

    def members(self, ids: npt.NDArray[np.int64]) -> Mask:
        """For each id of an array, whether it is in the set (ids past the mask are not)."""
        inside = ids < self.mask.size
        if inside.all():  # the usual case: a plain gather, twice as fast as the masked one
            return self.mask[ids]
        result = np.zeros(ids.shape, dtype=bool)
        result[inside] = self.mask[ids[inside]]
        return result

    def ids(self) -> npt.NDArray[np.int64]:
        """The ids in the set, ascending."""
        return np.flatnonzero(self.mask)

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, int | np.integer) or not 0 <= item < self.mask.size:
            return False
        return bool(self.mask[item])

    def __iter__(self) -> Iterator[int]:
        return iter(self.ids().tolist())

    def __len__(self) -> int:
        if self._size is None:
            self._size = int(np.count_nonzero(self.mask))
        return self._size

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, IdSet):
            size = max(self.mask.size, other.mask.size)
            return bool(np.array_equal(_padded(self.mask, size), _padded(other.mask, size)))
        if isinstance(other, Collection):
            return set(self) == set(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"IdSet({len(self)} ids)"


def _padded(mask: Mask, size: int) -> Mask:
    return mask if mask.size == size else np.concatenate([mask, np.zeros(size - mask.size, bool)])
