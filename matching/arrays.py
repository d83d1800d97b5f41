"""Arrays indexed by id or slot that grow as ids are added."""

from typing import Any, TypeVar

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
    larger = np.full((max(size, 2 * rows, 64), *array.shape[1:]), fill, dtype=array.dtype)
    larger[:rows] = array
    return larger  # type: ignore[return-value]
