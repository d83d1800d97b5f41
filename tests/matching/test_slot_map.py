"""Ids to slots: an array over dense ids, a dict past them."""

import numpy as np
import pytest

from matching.slot_map import SlotMap


def _ids(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


@pytest.mark.parametrize("far", [False, True], ids=["dense", "sparse"])
class TestSlotMap:
    def _map(self, far: bool) -> SlotMap:
        slots = SlotMap.of(_ids(3, 0, 7), _ids(10, 11, 12))
        if far:  # an id far past the others: the map moves to a dict
            slots.update(_ids(10**12), _ids(13))
        return slots

    def test_gives_each_ids_slot(self, far: bool) -> None:
        slots = self._map(far)
        assert [slots.get(i) for i in (3, 0, 7, 5, 99, -1)] == [10, 11, 12, None, None, None]
        assert 7 in slots and 5 not in slots and "7" not in slots
        assert slots.slots_of([7, 5, 3, 10**15]).tolist() == [12, -1, 10, -1]
        assert len(slots) == (4 if far else 3)

    def test_updates_and_pops(self, far: bool) -> None:
        slots = self._map(far)
        slots.update(_ids(3, 8), _ids(20, 21))
        assert (slots.get(3), slots.get(8)) == (20, 21)
        assert slots.pop(3) == 20 and slots.pop(3) is None and slots.pop(12345) is None
        assert 3 not in slots and len(slots) == (4 if far else 3)


def test_dense_ids_stay_in_an_array_of_four_bytes_each() -> None:
    slots = SlotMap.of(np.arange(100_000, dtype=np.int64), np.arange(100_000, dtype=np.int64))
    assert slots._sparse is None and slots._slots.nbytes <= 4 * 2 * 100_000
