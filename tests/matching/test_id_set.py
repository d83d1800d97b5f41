"""IdSet: a set of ids held as a boolean mask."""

import numpy as np
import pytest

from matching.id_set import IdSet


class TestIdSet:
    def test_behaves_as_a_set_of_its_ids(self) -> None:
        ids = IdSet.of([5, 1, 3, 3])
        assert len(ids) == 3
        assert list(ids) == [1, 3, 5]
        assert 3 in ids and 2 not in ids and 99 not in ids and -1 not in ids and "3" not in ids
        assert ids == {1, 3, 5} and ids != {1, 3}

    def test_equal_masks_of_different_lengths_are_equal_sets(self) -> None:
        assert IdSet(np.array([False, True])) == IdSet(np.array([False, True, False, False]))
        assert IdSet.of([]) == IdSet.of(()) == set()

    def test_members_answers_for_an_array_of_ids_past_the_mask_too(self) -> None:
        ids = IdSet.of([0, 2])
        assert IdSet.of(ids) is ids
        assert ids.members(np.array([0, 1, 2, 3, 1000])).tolist() == [
            True,
            False,
            True,
            False,
            False,
        ]

    def test_refuses_negative_ids(self) -> None:
        with pytest.raises(ValueError, match="non-negative"):
            IdSet.of([1, -2])
