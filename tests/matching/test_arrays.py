"""Growing id-indexed arrays."""

import numpy as np

from matching.arrays import grown


class TestGrown:
    def test_keeps_an_array_that_is_large_enough(self) -> None:
        array = np.arange(100)
        assert grown(array, 100) is array

    def test_doubles_and_fills_the_new_rows(self) -> None:
        array = np.full(100, 7, dtype=np.int8)
        larger = grown(array, 101, -1)
        assert larger.dtype == np.int8 and larger.size == 200
        assert (larger[:100] == 7).all() and (larger[100:] == -1).all()

    def test_grows_rows_of_a_matrix_to_at_least_the_size_asked(self) -> None:
        larger = grown(np.ones((2, 16), dtype=np.uint8), 500)
        assert larger.shape == (500, 16)
        assert larger[:2].all() and not larger[2:].any()
