"""A deterministic embedder double for the pure index and ranking tests."""

import hashlib
import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from matching.embedding import normalize_rows

_WORD = re.compile(r"\w+")


class HashingEmbedder:
    """Bag of hashed words: texts sharing words get similar vectors, identical texts equal ones.

    For pure index and ranking tests only; it knows nothing of meaning.
    """

    def __init__(self, dimension: int = 64) -> None:
        self.model_name = f"test-hashing-{dimension}"
        self.dimension = dimension

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, bulk: bool = False
    ) -> npt.NDArray[np.float32]:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                # blake2b, not hash(): Python salts str hashes per process.
                digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self.dimension
                vectors[row, bucket] += 1.0 if digest[4] & 1 else -1.0
        return normalize_rows(vectors)


@pytest.fixture
def hashing_embedder() -> HashingEmbedder:
    return HashingEmbedder()
