"""A listing's vectors: one for the listing, one per sentence, and the evidence they pick.

Both come from one pass over the listing's semantic text (see `matching.documents`): the listing
vector ranks it, its sentence vectors say which of its sentences is closest to a query, so a match
is explained without embedding anything at query time. Store both with the listing.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from matching.documents import SemanticDocument, semantic_document
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
    sentences = semantic_document(listing).sentences
    if not sentences:
        return listing.title
    usable = min(len(sentences), len(sentence_vectors))
    best = int(np.argmax(sentence_vectors[:usable] @ query)) if usable else 0
    return sentences[best][:EVIDENCE_CHARS]
