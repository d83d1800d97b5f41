"""Query encoding with ONNX Runtime, from an ONNX export of a sentence-transformers model.

A free-text search embeds one short text while its caller waits. On this 2-core machine
ONNX Runtime does that 2-3x faster than PyTorch with the same vectors (cosine 1.0 to fp32 torch,
padded batches included), and it starts in 0.3 s where sentence-transformers needs 3-5 s,
mostly to import torch. Bulk indexing stays with PyTorch, whose bf16 path is faster there.

The export (`SentenceTransformerEmbedder.export_onnx`) holds the transformer with its token
outputs, the tokenizer as `tokenizer.json`, and `encoder.json` with what pooling needs. Only
models whose text vector is the mean of their token vectors are exported.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from matching.embedding import Span, Vectors, normalize_rows, pool_spans, reject_single_string

CONFIG_FILE = "encoder.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
FORMAT = 1
# The most texts in one forward pass (see `OnnxEncoder._encode`).
_MAX_BATCH = 8


class OnnxEncoder:
    """An `Embedder` over an ONNX export: mean pooling of token vectors, then L2 norm.

    Args:
        folder: a folder written by `SentenceTransformerEmbedder.export_onnx`.
        num_threads: ONNX Runtime intra-op threads per query. Measured here at 100,000 listings
            (search over HTTP, HNSW): two threads cut one client's p50 from 15.9 to 13.8 ms, but
            at four concurrent connections they cut throughput from 99 to 81 requests/s (the
            threads spin, taking the cores from concurrent requests). One is the default.

    Raises:
        ValueError: the folder holds no export of a format this code reads.
    """

    def __init__(self, folder: str | Path, *, num_threads: int = 1) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        folder = Path(folder)
        config = read_config(folder)
        if config is None:
            raise ValueError(f"no ONNX export at {folder}")
        self.model_name: str = config["model_name"]
        self.dimension: int = int(config["dimension"])
        self._inputs: list[str] = list(config["inputs"])
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        self._tokenizer.enable_truncation(int(config["max_seq_length"]))
        self._tokenizer.no_padding()  # batches are padded here, after sorting by length
        self._pad_id = int(config["pad_token_id"])

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, bulk: bool = False
    ) -> npt.NDArray[np.float32]:
        """Embed texts (`bulk` is accepted for the protocol; it changes nothing here).

        Returns:
            A C-contiguous float32 array of shape (len(texts), dimension), rows of unit length.
        """
        reject_single_string(texts)
        return self._encode(texts, batch_size, spans=None)[0]

    def encode_spans(
        self,
        texts: Sequence[str],
        spans: Sequence[Sequence[Span]],
        *,
        batch_size: int = 32,
        bulk: bool = False,
    ) -> tuple[Vectors, list[Vectors]]:
        """Embed texts and, from the same pass, parts of them (late chunking), as
        `SentenceTransformerEmbedder.encode_spans` does.

        Returns:
            The texts' vectors and, for each text, the vectors of its first m spans: those
            within the model's input window.
        """
        reject_single_string(texts, "encode_spans")
        if len(spans) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(spans)} lists of spans")
        vectors, pooled = self._encode(texts, batch_size, spans=spans)
        return vectors, cast(list[Vectors], pooled)

    def _encode(
        self, texts: Sequence[str], batch_size: int, spans: Sequence[Sequence[Span]] | None
    ) -> tuple[Vectors, list[Vectors | None]]:
        """Text vectors and, when spans are given, span vectors, in the order of the texts.

        Texts run in batches of similar length (less padding), at most `_MAX_BATCH` at a time:
        the intermediate tensors of a batch of long texts take about 15 MB a text, and the
        allocator keeps its peak for the life of the process.
        """
        encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda n: len(encodings[n].ids))
        step = max(1, min(batch_size, _MAX_BATCH))
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        pooled: list[Vectors | None] = [None] * len(texts)
        for start in range(0, len(order), step):
            batch = order[start : start + step]
            tokens, lengths = self._token_vectors([encodings[n] for n in batch])
            for row, n in enumerate(batch):
                own = tokens[row, : lengths[row]]
                vectors[n] = own.mean(axis=0)
                if spans is not None:
                    offsets = np.asarray(encodings[n].offsets[: lengths[row]], dtype=np.int64)
                    pooled[n] = pool_spans(own, offsets, spans[n])
        return normalize_rows(vectors), pooled

    def _token_vectors(self, encodings: list[Any]) -> tuple[Vectors, list[int]]:
        """The token vectors of a batch, padded to its longest text, and each text's length."""
        lengths = [len(e.ids) for e in encodings]
        longest = max(lengths)
        columns: dict[str, Any] = {
            name: np.full((len(encodings), longest), fill, dtype=np.int64)
            for name, fill in (("input_ids", self._pad_id), ("attention_mask", 0),
                               ("token_type_ids", 0))
        }  # fmt: skip
        for row, encoding in enumerate(encodings):
            length = lengths[row]
            columns["input_ids"][row, :length] = encoding.ids
            columns["attention_mask"][row, :length] = 1
            columns["token_type_ids"][row, :length] = encoding.type_ids
        (tokens,) = self._session.run(None, {name: columns[name] for name in self._inputs})
        return tokens, lengths

    def __repr__(self) -> str:
        return f"OnnxEncoder({self.model_name!r}, dimension={self.dimension})"


def read_config(folder: Path) -> dict[str, Any] | None:
    """The export's settings, or None when the folder holds no complete export of this format."""
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return None
    complete = (folder / MODEL_FILE).is_file() and (folder / TOKENIZER_FILE).is_file()
    if not complete or not isinstance(config, dict) or config.get("format") != FORMAT:
        return None
    return config
