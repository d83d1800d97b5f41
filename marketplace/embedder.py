"""The process's embedding model, loaded once per model name (it costs seconds and ~500 MB)."""

import functools

from matching.embedding import (
    BackgroundLoadedEmbedder,
    SentenceTransformerEmbedder,
    stored_model_name,
)


@functools.cache
def shared_embedder(model: str | None) -> SentenceTransformerEmbedder:
    """The embedder for `model` (a sentence-transformers name or path; None for the default)."""
    return SentenceTransformerEmbedder(model)


@functools.cache
def background_embedder(model: str | None) -> BackgroundLoadedEmbedder:
    """The shared embedder for `model`, loading in a background thread from the first call.

    The service starts serving matches from its index snapshot while the model loads.
    """
    return BackgroundLoadedEmbedder(
        functools.partial(shared_embedder, model), model_name=stored_model_name(model)
    )
