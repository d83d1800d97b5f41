"""Growing id-indexed arrays, and arrays written to and read from files."""

import io

import numpy as np
import pytest

from matching.arrays import find_sorted, grown, read_array, write_array


class TestGrown:
    def test_keeps_an_array_that_is_large_enough(self) -> None:
        array = np.arange(100)
        assert grown(array, 100) is array

    def test_doubles_and_fills_the_new_rows(self) -> None:
        array = np.full(100, 7, dtype=np.int8)
        larger = grown(array, 101, -1)
        assert larger.dtype == np.int8 and larger.size == 200
        assert (larger[:100] == 7).all() and (larger[100:] == -1).all()

    def test_fills_new_rows_with_false(self) -> None:
        larger = grown(np.ones(3, dtype=bool), 4, False)
        assert larger[:3].all() and not larger[3:].any()

    def test_grows_rows_of_a_matrix_to_at_least_the_size_asked(self) -> None:
        larger = grown(np.ones((2, 16), dtype=np.uint8), 500)
        assert larger.shape == (500, 16)
        assert larger[:2].all() and not larger[2:].any()


class TestFindSorted:
    def test_finds_positions_of_present_values(self) -> None:
        positions, found = find_sorted(np.array([2, 5, 9]), np.array([9, 1, 5, 12]))
        assert found.tolist() == [True, False, True, False]
        assert positions[found].tolist() == [2, 1]

    def test_finds_nothing_in_an_empty_array(self) -> None:
        positions, found = find_sorted(np.zeros(0, np.int64), np.array([1, 2]))
        assert not found.any() and positions.shape == (2,)


class TestArrayFiles:
    def test_round_trips_values_in_the_stated_layout(self) -> None:
        file = io.BytesIO()
        write_array(file, np.array([1, -2, 70_000], dtype=np.int64), "<i4")
        write_array(file, np.array([3, 65_535], dtype=np.uint16), "<u2")
        assert file.getvalue()[:4] == (1).to_bytes(4, "little")
        file.seek(0)
        first, second = read_array(file, "<i4", 3), read_array(file, "<u2", 2)
        assert first.tolist() == [1, -2, 70_000] and first.dtype == np.int32
        assert second.tolist() == [3, 65_535] and second.dtype == np.uint16

    def test_reads_into_a_writable_array(self) -> None:
        file = io.BytesIO()
        write_array(file, np.arange(5), "<i8")
        file.seek(0)
        array = read_array(file, "<i8", 5)
        array[0] = 9
        assert array.tolist() == [9, 1, 2, 3, 4]

    def test_reads_an_empty_array(self) -> None:
        assert read_array(io.BytesIO(b""), "<i4", 0).size == 0

    def test_refuses_a_file_that_ends_early(self) -> None:
        with pytest.raises(ValueError, match="ends after 8 of 12 bytes"):
            read_array(io.BytesIO(b"\0" * 8), "<i4", 3)
