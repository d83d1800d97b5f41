"""Stored listing embeddings and the change sequence that keeps every worker's index current.

Both are written in the transaction of the listing write that causes them (no commit here).
"""

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlmodel import Session, col, func, select

from marketplace.listing_facts import listing_facts
from marketplace.models import IndexChange, Listing, ListingEmbedding, utc_now
from matching.documents import semantic_document
from matching.embedding import Embedder
from matching.listing_vectors import embed_documents


def text_hash(model_name: str, text: str) -> str:
    return hashlib.sha256(f"{model_name}\n{text}".encode()).hexdigest()


def as_bytes(vector: npt.NDArray[np.float32]) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def from_bytes(data: bytes) -> npt.NDArray[np.float32]:
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def as_vector(row: ListingEmbedding) -> npt.NDArray[np.float32]:
    return from_bytes(row.vector)


def sentences_as_bytes(vectors: npt.NDArray[np.float32]) -> bytes:
    """Sentence vectors in half precision: they only pick a listing's closest sentence."""
    return np.ascontiguousarray(vectors, dtype="<f2").tobytes()


def sentences_from_bytes(data: bytes, dimension: int) -> npt.NDArray[np.float32]:
    return np.frombuffer(data, dtype="<f2").astype(np.float32).reshape(-1, dimension)


def record_changes(session: Session, row_ids: Sequence[int]) -> None:
    """Note that these listings may have moved in (or out of) the index."""
    session.add_all(IndexChange(listing_row_id=row_id) for row_id in row_ids)


def refresh(session: Session, listings: Sequence[Listing], *, embedder: Embedder) -> int:
    """Embed the listings whose embedded text (or model) changed, store, and record changes.

    The listings must be flushed (have row ids). Unchanged texts keep their stored vectors.
    Returns how many listings were embedded.
    """
    if not listings:
        return 0
    model_name = embedder.model_name
    documents = [semantic_document(listing_facts(listing)) for listing in listings]
    hashes = [text_hash(model_name, document.text) for document in documents]
    row_ids = [listing.row_id or 0 for listing in listings]
    stored = {
        row.listing_row_id: row
        for row in session.exec(
            select(ListingEmbedding).where(col(ListingEmbedding.listing_row_id).in_(row_ids))
        )
    }
    stale = [
        i
        for i, (row_id, digest) in enumerate(zip(row_ids, hashes, strict=True))
        if row_id not in stored
        or stored[row_id].text_hash != digest
        or stored[row_id].sentence_vectors is None
    ]
    embedded = embed_documents(embedder, [documents[i] for i in stale])
    for position, i in enumerate(stale):
        fields: dict[str, Any] = {
            "model_name": model_name,
            "text_hash": hashes[i],
            "dimension": embedder.dimension,
            "vector": as_bytes(embedded.listings[position]),
            "sentence_vectors": sentences_as_bytes(embedded.sentences[position]),
            "updated_at": utc_now(),
        }
        row = stored.get(row_ids[i])
        if row is None:
            row = ListingEmbedding(listing_row_id=row_ids[i], **fields)
        else:
            row.sqlmodel_update(fields)
        session.add(row)
    record_changes(session, row_ids)
    return len(stale)


def listing_count(session: Session) -> int:
    return session.exec(select(func.count()).select_from(Listing)).one()


def refresh_all(
    session: Session, *, embedder: Embedder, batch: int, progress: Callable[[int], None]
) -> int:
    """Bring every listing's stored embedding up to date, committing per batch.

    Returns how many listings were (re-)embedded.
    """
    embedded, after = 0, 0
    query = select(Listing).order_by(col(Listing.row_id))
    while rows := list(
        session.exec(query.where(col(Listing.row_id) > after).limit(batch)).unique()
    ):
        embedded += refresh(session, rows, embedder=embedder)
        session.commit()
        after = rows[-1].row_id or after
        progress(len(rows))
    return embedded
