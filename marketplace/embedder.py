"""The process's embedding model, loaded once per model name (it costs seconds and ~500 MB).

The app embeds with an ONNX export of the model kept under the data directory, made by the first
start that finds none once the model has loaded. Queries always use it: 2-3x faster, ready 0.3 s
after the start instead of 3-5 s. Writes use it too where the CPU has no native bf16 (there it
encodes as fast as torch fp32 or faster, in about 300 MB less memory, and the process never
imports torch); elsewhere writes use the model under bf16 autocast (twice as fast as the export
there: 43 against 22 listings/s on 200-word listings), once it has loaded, and the export until
then, so that writes never wait for the model's seconds of loading.
"""

import functools
import gc
import hashlib
import logging
import os
import re
from pathlib import Path

from marketplace.settings import Settings
from matching.embedding import (
    BackgroundLoadedEmbedder,
    Embedder,
    SentenceTransformerEmbedder,
    bf16_supported,
    stored_model_name,
)
from matching.onnx_encoder import OnnxEncoder, read_config

log = logging.getLogger(__name__)


@functools.cache
def shared_embedder(model: str | None) -> SentenceTransformerEmbedder:
    """The embedder for `model` (a sentence-transformers name or path; None for the default)."""
    return SentenceTransformerEmbedder(model)


def service_embedder(settings: Settings) -> BackgroundLoadedEmbedder:
    """The app's embedder, not loading yet (call `start()`, or the first use does).

    With `settings.onnx` on and an export of the model there, queries are embedded by it from
    the start, and on a CPU without native bf16 so are writes, once `start()` opens it.
    """
    model_name = stored_model_name(settings.embedding_model)
    folder = onnx_folder(settings, model_name)
    query_threads = settings.query_threads
    queries = _saved_export(folder, model_name, query_threads) if settings.onnx else None
    writes_on_onnx = settings.onnx and not bf16_supported()

    def load() -> Embedder:
        writes = None
        if queries is not None and writes_on_onnx:
            # Writes run on every core; queries on `query_threads` each, so that concurrent
            # queries do not wait on each other's threads: one session each, unless they agree.
            threads = os.cpu_count() or 1
            writes = (
                queries if threads == query_threads else _saved_export(folder, model_name, threads)
            )
        loaded = writes or load_model()
        gc.freeze()  # the model's objects live as long as the process (see create_app)
        return loaded

    def load_model() -> Embedder:
        model = shared_embedder(settings.embedding_model)
        if settings.onnx and queries is None:
            # Another worker of the same data dir may have written it meanwhile.
            exported = _saved_export(folder, model_name, query_threads) or _export(
                model, folder, query_threads
            )
            if exported is not None:
                embedder.use_for_queries(exported)
        return model

    embedder = BackgroundLoadedEmbedder(load, model_name=model_name, queries=queries)
    return embedder


def onnx_folder(settings: Settings, model_name: str) -> Path:
    """Where the ONNX export of a model is kept: a readable name, made unique by a hash."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", model_name).strip("-.")[-60:]
    digest = hashlib.sha256(model_name.encode()).hexdigest()[:12]
    return settings.data_dir / "models" / f"{readable}-{digest}"


def _saved_export(folder: Path, model_name: str, threads: int) -> OnnxEncoder | None:
    config = read_config(folder)
    if config is None or config.get("model_name") != model_name:
        return None
    try:
        return OnnxEncoder(folder, num_threads=threads)
    except Exception:  # a damaged export: queries use the model, and the export is made again
        log.warning("the ONNX export at %s is unusable", folder, exc_info=True)
        return None


def _export(model: SentenceTransformerEmbedder, folder: Path, threads: int) -> OnnxEncoder | None:
    try:
        if not model.export_onnx(folder):
            log.info("model %s is not exportable to ONNX; queries use it", model.model_name)
            return None
        log.info("exported model %s to ONNX at %s for queries", model.model_name, folder)
        return OnnxEncoder(folder, num_threads=threads)
    except Exception:  # queries keep using the model: slower, never wrong
        log.warning("exporting model %s to ONNX failed", model.model_name, exc_info=True)
        return None
