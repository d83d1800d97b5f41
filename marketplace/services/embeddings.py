"""Stored listing embeddings and the change sequence that keeps every worker's index current.

Both are written in the transaction of the listing write that causes them (no commit here).
"""

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlmodel import Session, col, func, select

from marketplace.listing_facts import listing_document_facts
from marketplace.models import IndexChange, Listing, ListingEmbedding, utc_now
from matching.documents import semantic_document
from matching.embedding import Embedder
from matching.listing_vectors import ListingVectors, embed_documents


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


@dataclass(frozen=True)
class PreparedEmbeddings:
    """Vectors computed for listings ahead of their write (see `prepare`).

    Attributes:
        model_name: the model that embedded them.
        dimension: the length of its vectors.
        listings: the listings, in order; their row ids are read when stored.
        hashes: the hash of each listing's embedded text.
        stored: the listings' stored embedding rows, by row id (none for new listings).
        stale: positions of the listings that were embedded (new or changed text).
        vectors: their vectors, in the order of `stale`.
    """

    model_name: str
    dimension: int
    listings: Sequence[Listing]
    hashes: list[str]
    stored: dict[int, ListingEmbedding]
    stale: list[int]
    vectors: ListingVectors


def prepare(
    session: Session, listings: Sequence[Listing], *, embedder: Embedder
) -> PreparedEmbeddings:
    """Embed the listings whose embedded text (or model) changed, writing nothing.

    Embedding takes tens of milliseconds a listing, so writers call this before their first
    write: on SQLite the write lock is then held only for the writes, and concurrent requests
    reach the model together, where their texts share one forward pass. New listings (no row id
    yet) are all embedded; pending changes in the session are not flushed.
    """
    model_name = embedder.model_name
    documents = [semantic_document(listing_document_facts(listing)) for listing in listings]
    hashes = [text_hash(model_name, document.text) for document in documents]
    row_ids = [listing.row_id for listing in listings if listing.row_id is not None]
    stored: dict[int, ListingEmbedding] = {}
    if row_ids:
        with session.no_autoflush:
            stored = {
                row.listing_row_id: row
                for row in session.exec(
                    select(ListingEmbedding).where(
                        col(ListingEmbedding.listing_row_id).in_(row_ids)
                    )
                )
            }
    stale = []
    for i, (listing, digest) in enumerate(zip(listings, hashes, strict=True)):
        row = stored.get(listing.row_id) if listing.row_id is not None else None
        if row is None or row.text_hash != digest or row.sentence_vectors is None:
            stale.append(i)
    vectors = embed_documents(embedder, [documents[i] for i in stale])
    return PreparedEmbeddings(
        model_name, embedder.dimension, listings, hashes, stored, stale, vectors
    )


def store(session: Session, prepared: PreparedEmbeddings) -> int:
    """Write prepared embeddings and record the index changes; the listings must be flushed.

    Returns how many listings were embedded.
    """
    row_ids = []
    for listing in prepared.listings:
        if listing.row_id is None:
            raise ValueError("store embeddings of flushed listings only")
        row_ids.append(listing.row_id)
    for position, i in enumerate(prepared.stale):
        fields: dict[str, Any] = {
            "model_name": prepared.model_name,
            "text_hash": prepared.hashes[i],
            "dimension": prepared.dimension,
            "vector": as_bytes(prepared.vectors.listings[position]),
            "sentence_vectors": sentences_as_bytes(prepared.vectors.sentences[position]),
            "updated_at": utc_now(),
        }
        row = prepared.stored.get(row_ids[i])
        if row is None:
            row = ListingEmbedding(listing_row_id=row_ids[i], **fields)
        else:
            row.sqlmodel_update(fields)
        session.add(row)
    record_changes(session, row_ids)
    return len(prepared.stale)


def refresh(session: Session, listings: Sequence[Listing], *, embedder: Embedder) -> int:
    """`prepare` and `store` in one step, for flushed listings.

    Returns how many listings were embedded.
    """
    if not listings:
        return 0
    return store(session, prepare(session, listings, embedder=embedder))


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
