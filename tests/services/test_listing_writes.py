"""Listing writes embed before they write, so no transaction holds a lock while the model runs."""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import TypeAdapter
from sqlalchemy import Engine, event
from sqlmodel import Session, select

from marketplace.listing_facts import listing_document_facts
from marketplace.models import ListingEmbedding, Member
from marketplace.services import embeddings, listings
from matching.documents import semantic_document
from matching.embedding import Embedder, Span, encode_spans
from schemas.listings import ListingCreate, ListingUpdate
from tests.factories import listing_body, owner_of_new_organization

parse = TypeAdapter(ListingCreate).validate_python
WRITES = ("INSERT", "UPDATE", "DELETE")


class WatchedEmbedder:
    """An embedder that notes, at each call, the writes its database had executed so far."""

    def __init__(self, embedder: Embedder, statements: list[str]) -> None:
        self.model_name = embedder.model_name
        self.dimension = embedder.dimension
        self._embedder = embedder
        self._statements = statements
        self.writes_before_calls: list[list[str]] = []

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, bulk: bool = False
    ) -> npt.NDArray[np.float32]:
        self._note()
        return self._embedder.encode(texts, batch_size=batch_size, bulk=bulk)

    def encode_spans(
        self, texts: Sequence[str], spans: Sequence[Sequence[Span]], *, bulk: bool = False
    ) -> Any:
        self._note()
        return encode_spans(self._embedder, texts, spans, bulk=bulk)

    def _note(self) -> None:
        self.writes_before_calls.append(
            [s for s in self._statements if s.lstrip().upper().startswith(WRITES)]
        )


@contextmanager
def statements_of(engine: Engine) -> Iterator[list[str]]:
    executed: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        executed.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield executed
    finally:
        event.remove(engine, "before_cursor_execute", note)


@pytest.fixture
def owner(engine: Engine) -> Member:
    return owner_of_new_organization(engine, "Write Order Lab", kind="university")


@pytest.mark.slow
class TestListingWritesEmbedFirst:
    def test_create_and_batch_embed_before_any_write(
        self, engine: Engine, owner: Member, embedder: Embedder
    ) -> None:
        with statements_of(engine) as executed, Session(engine, expire_on_commit=False) as session:
            watched = WatchedEmbedder(embedder, executed)
            one = listings.create(
                session,
                actor=owner,
                data=parse(listing_body()),
                embedder=watched,
            )
            executed.clear()
            many = listings.create_many(
                session,
                actor=owner,
                items=[parse(listing_body("model")) for _ in range(3)],
                embedder=watched,
            )

        assert watched.writes_before_calls == [[], []]
        with Session(engine, expire_on_commit=False) as session:
            stored = session.exec(
                select(ListingEmbedding).where(
                    ListingEmbedding.listing_row_id.in_([one.row_id] + [m.row_id for m in many])  # type: ignore[union-attr]
                )
            ).all()
        assert len(stored) == 4

    def test_an_update_embeds_its_new_text_before_any_write(
        self, engine: Engine, owner: Member, embedder: Embedder
    ) -> None:
        with Session(engine, expire_on_commit=False) as session:
            listing = listings.create(
                session,
                actor=owner,
                data=parse(listing_body()),
                embedder=embedder,
            )
        new_text = "Hourly traffic counts from 400 road sensors in Hefei, 2019 to 2024."
        with statements_of(engine) as executed, Session(engine, expire_on_commit=False) as session:
            watched = WatchedEmbedder(embedder, executed)
            listings.update(
                session,
                actor=owner,
                listing_id=listing.id,
                data=ListingUpdate(summary=new_text, status="published"),
                expected_version=listing.version,
                embedder=watched,
            )

        assert watched.writes_before_calls == [[]]
        with Session(engine, expire_on_commit=False) as session:
            updated = listings.get_visible(session, viewer=owner, listing_id=listing.id)
            row = session.get(ListingEmbedding, updated.row_id)
            assert row is not None
            prepared = embeddings.prepare(session, [updated], embedder=embedder)
        assert prepared.stale == []  # the stored vector is that of the new text
        assert new_text in semantic_document(listing_document_facts(updated)).text
