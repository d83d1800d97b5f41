"""Where each id sits in an index's arrays (its slot), for a million ids in a few megabytes.

A dict of a million int ids to int slots takes about 100 MB (the table plus two int objects an
entry). Listing ids are database row ids, small and dense, so an int32 array indexed by id does
the same in 4 bytes a row id; ids too sparse for that (any int64 is allowed) fall back to a dict.
"""

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from matching.arrays import grown

_ABSENT = -1
# An array may hold this many entries per id stored (plus a floor) before a dict is cheaper.
_DENSITY = 8
_FLOOR = 1 << 16


class SlotMap:
    """A mapping of non-negative int ids to non-negative int slots."""

    def __init__(self) -> None:
        self._slots = np.full(0, _ABSENT, dtype=np.int32)
        self._sparse: dict[int, int] | None = None
        self._count = 0

    @classmethod
    def of(cls, ids: npt.NDArray[np.int64], slots: npt.NDArray[np.int64]) -> "SlotMap":
        """The map of ids[i] -> slots[i] (ids distinct)."""
        built = cls()
        built.update(ids, slots)
        return built

    def __len__(self) -> int:
        return self._count if self._sparse is None else len(self._sparse)

    def __contains__(self, item: object) -> bool:
        return isinstance(item, int | np.integer) and self.get(int(item)) is not None

    def get(self, key: int) -> int | None:
        """The slot of an id, or None."""
        if self._sparse is not None:
            return self._sparse.get(key)
        if 0 <= key < self._slots.size and (slot := int(self._slots[key])) != _ABSENT:
            return slot
        return None

    def slots_of(self, ids: Iterable[int]) -> npt.NDArray[np.int64]:
        """The slot of each id, -1 where absent."""
        array = np.fromiter(ids, dtype=np.int64)
        if self._sparse is not None:
            sparse = self._sparse
            return np.array([sparse.get(i, _ABSENT) for i in array.tolist()], dtype=np.int64)
        inside = (array >= 0) & (array < self._slots.size)
        found = np.full(array.shape, _ABSENT, dtype=np.int64)
        found[inside] = self._slots[array[inside]]
        return found

    def update(self, ids: npt.NDArray[np.int64], slots: npt.NDArray[np.int64]) -> None:
        """Map each of ids to the slot at the same position (ids distinct, non-negative)."""
        if ids.size == 0:
            return
        if self._sparse is None and int(ids.max()) >= _DENSITY * (len(self) + ids.size) + _FLOOR:
            self._to_dict()
        if self._sparse is not None:
            self._sparse.update(zip(ids.tolist(), slots.tolist(), strict=True))
            return
        self._slots = grown(self._slots, int(ids.max()) + 1, _ABSENT)
        self._count += int(np.count_nonzero(self._slots[ids] == _ABSENT))
        self._slots[ids] = slots

    def pop(self, key: int) -> int | None:
        """Forget an id; its slot, or None when it was absent."""
        if self._sparse is not None:
            return self._sparse.pop(key, None)
        slot = self.get(key)
        if slot is not None:
            self._slots[key] = _ABSENT
            self._count -= 1
        return slot

    def _to_dict(self) -> None:
        present = np.flatnonzero(self._slots != _ABSENT)
        self._sparse = dict(zip(present.tolist(), self._slots[present].tolist(), strict=True))
        self._slots = np.full(0, _ABSENT, dtype=np.int32)
