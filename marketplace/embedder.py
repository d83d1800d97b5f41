"""The process's embedding model, loaded once per model name (it costs seconds and ~500 MB).

The app loads it in a background thread. Its free-text queries use an ONNX export of the model
kept under the data directory (2-3x faster, and ready 0.3 s after the start instead of 3-5 s);
the first start that finds none writes one once the model has loaded.
"""

import functools
import gc
import hashlib
import logging
import re
from pathlib import Path

from marketplace.settings import Settings
from matching.embedding import (
    BackgroundLoadedEmbedder,
    Embedder,
    SentenceTransformerEmbedder,
    stored_model_name,
)
from matching.onnx_encoder import OnnxEncoder, read_config

log = logging.getLogger(__name__)


@functools.cache
def shared_embedder(model: str | None) -> SentenceTransformerEmbedder:
    """The embedder for `model` (a sentence-transformers name or path; None for the default)."""
    return SentenceTransformerEmbedder(model)


def service_embedder(settings: Settings) -> BackgroundLoadedEmbedder:
    """The app's embedder, its model not loading yet (call `start()`, or the first use does);
    queries go to the model's ONNX export when one is there (and `settings.onnx_queries` is on).
    """
    model_name = stored_model_name(settings.embedding_model)
    folder = onnx_folder(settings, model_name)
    threads = settings.query_threads
    queries = _saved_export(folder, model_name, threads) if settings.onnx_queries else None

    def load() -> Embedder:
        model = shared_embedder(settings.embedding_model)
        if settings.onnx_queries and queries is None:
            # Another worker of the same data dir may have written it meanwhile.
            exported = _saved_export(folder, model_name, threads) or _export(model, folder, threads)
            if exported is not None:
                embedder.use_for_queries(exported)
        gc.freeze()  # the model's objects live as long as the process (see create_app)
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
