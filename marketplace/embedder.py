"""The process's embedding model, loaded once per model name (it costs seconds and ~500 MB)."""

import functools

from matching.embedding import SentenceTransformerEmbedder


@functools.cache
def shared_embedder(model: str | None) -> SentenceTransformerEmbedder:
    """The embedder for `model` (a sentence-transformers name or path; None for the default)."""
    return SentenceTransformerEmbedder(model)
