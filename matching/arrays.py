"""Arrays indexed by id or slot that grow as ids are added."""

from typing import IO, Any, TypeVar

import numpy as np
import numpy.typing as npt

Array = TypeVar("Array", bound=npt.NDArray[Any])


def grown(array: Array, size: int, fill: object = 0) -> Array:
    """The array if it holds `size` rows, else a copy with room for at least `size` (doubling,
    so repeated growth costs amortised O(1) a row) whose new rows hold `fill`.

    Args:
        array: an array of one or more dimensions; rows are along the first.
        size: the rows needed.
        fill: the value of the new rows.

    Returns:
        An array of the same dtype and row shape with at least `size` rows.
    """
    rows = array.shape[0]
    if size <= rows:
        return array
    shape = (max(size, 2 * rows, 64), *array.shape[1:])
    # Zeros come from calloc: a large block is mapped lazily, so the spare rows take no memory
    # until written (np.full writes every row: up to a copy's worth at a million listings).
    larger = np.zeros(shape, array.dtype) if fill == 0 else np.full(shape, fill, array.dtype)
    larger[:rows] = array
    return larger  # type: ignore[return-value]


def find_sorted(
    sorted_values: npt.NDArray[Any], values: npt.NDArray[Any]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
    """Where each value sits in a sorted array, and whether it is there at all.

    Args:
        sorted_values: the array to look in, ascending.
        values: the values to look for.

    Returns:
        Each value's position in `sorted_values` (meaningful only where found, and always a
        valid index when `sorted_values` is not empty) and whether it was found.
    """
    if sorted_values.size == 0:
        return np.zeros(values.shape, np.intp), np.zeros(values.shape, bool)
    positions = np.minimum(np.searchsorted(sorted_values, values), sorted_values.size - 1)
    return positions, sorted_values[positions] == values


def write_array(file: IO[bytes], array: npt.NDArray[Any], dtype: str) -> None:
    """Write a 1-d array's values to a binary file as `dtype` (e.g. "<i4"), without a copy
    when the array already has that layout.

    Args:
        file: an open binary file.
        array: the values.
        dtype: the byte order and type to write, as numpy spells it.
    """
    file.write(np.ascontiguousarray(array, dtype=dtype).data)


def read_array(file: IO[bytes], dtype: str, count: int) -> npt.NDArray[Any]:
    """Read `count` values of `dtype` (as written by `write_array`) into a new writable array
    of the native type, read straight into place: no second copy of the bytes.

    Raises:
        ValueError: the file ends before `count` values.
    """
    array = np.empty(count, dtype=np.dtype(dtype).newbyteorder("="))
    view = array.data.cast("B")
    done = 0
    while done < view.nbytes:
        read = file.readinto(view[done:])  # type: ignore[attr-defined]
        if not read:
            raise ValueError(f"the file ends after {done} of {view.nbytes} bytes of an array")
        done += read
    return array
