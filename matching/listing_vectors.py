"""A listing's vectors: one for the listing, one per sentence, and the evidence they pick.

Both come from one pass over the listing's semantic text (see `matching.documents`): the listing
vector ranks it, its sentence vectors say which of its sentences is closest to a query, so a match
is explained without embedding anything at query time. Store both with the listing.
"""

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from matching.documents import SemanticDocument, document_sentences, semantic_document
from matching.embedding import Embedder, encode_spans
from matching.facts import ListingFacts

Vectors = npt.NDArray[np.float32]

# Longer sentences are cut to this many characters when shown as evidence.
EVIDENCE_CHARS = 300


@dataclass(frozen=True, slots=True)
class ListingVectors:
    """Vectors of several listings.

    Attributes:
        listings: (n, dimension) unit rows, one per listing.
        sentences: per listing, (m, dimension) unit rows for its first m sentences (those the
            model read; see `matching.embedding.encode_spans`).
    """

    listings: Vectors
    sentences: list[Vectors]


def embed_listings(embedder: Embedder, listings: Sequence[ListingFacts]) -> ListingVectors:
    """Embed listings and their sentences, as bulk work.

    Args:
        embedder: the embedder.
        listings: the listings.

    Returns:
        Their vectors, in order.
    """
    return embed_documents(embedder, [semantic_document(listing) for listing in listings])


def embed_documents(embedder: Embedder, documents: Sequence[SemanticDocument]) -> ListingVectors:
    """Embed listings' semantic documents (from `semantic_document`) and their sentences.

    Args:
        embedder: the embedder.
        documents: the documents.

    Returns:
        Their vectors, in order.
    """
    vectors, sentences = encode_spans(
        embedder, [d.text for d in documents], [d.spans for d in documents], bulk=True
    )
    return ListingVectors(vectors, sentences)


def evidence(listing: ListingFacts, sentence_vectors: Vectors, query: Vectors) -> str:
    """The listing's sentence closest to the query, among those with a vector.

    Args:
        listing: the listing.
        sentence_vectors: its sentence vectors (from `embed_listings`, same model as the query).
        query: the query's unit vector.

    Returns:
        The sentence, cut to `EVIDENCE_CHARS`; the first sentence when none has a vector, and
        the title when the listing has no sentences.
    """
    best = int(np.argmax(sentence_vectors @ query)) if len(sentence_vectors) else 0
    # Sentences are split only up to the one wanted, nearly always before the description's.
    chosen = next(itertools.islice(document_sentences(listing), best, None), None)
    if chosen is None and best > 0:
        # Fewer sentences than vectors (vectors of an earlier text): the best of those left.
        sentences = list(document_sentences(listing))
        usable = sentence_vectors[: len(sentences)]
        chosen = sentences[int(np.argmax(usable @ query))] if sentences else None
    return listing.title if chosen is None else chosen[:EVIDENCE_CHARS]
