"""Saved searches: an organization's standing queries (free text, or counterparts of one of its
listings) with filters and an alert threshold. Any member of the organization manages them; other
organizations' saved searches are reported missing.

The embedding of a search's text is stored with it, written in the same transaction as the text
and by the embedder the matcher uses, so raising alerts (services/match_alerts.py) never embeds
it again.
"""

import uuid
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import update as sql_update
from sqlmodel import Session, col, func, select

from marketplace.errors import Conflict, InvalidInput, NotFound
from marketplace.models import Event, Listing, Member, SavedSearch, utc_now
from marketplace.services import embeddings, events, versions
from marketplace.services.pagination import decode_cursor, next_cursor
from matching.embedding import Embedder
from schemas.errors import FieldError
from schemas.events import SubjectType
from schemas.listings import KINDS_BY_SIDE, ListingKind, Side, side_of
from schemas.saved_searches import SavedSearchCreate, SavedSearchUpdate

# Every publication ranks each saved search that could match it; this bounds the cost per tenant.
MAX_SAVED_SEARCHES_PER_ORGANIZATION = 100


def wanted_kinds(
    kinds: list[str] | None, side: str | None, *, counterparts_of: str | None
) -> frozenset[ListingKind]:
    """The kinds a search looks for: its `kinds` (all when unset) on its `side`, and only the
    other side's kinds when it looks for counterparts of a listing of kind `counterparts_of`."""
    wanted = set(ListingKind) if kinds is None else {ListingKind(k) for k in kinds}
    if side is not None:
        wanted &= KINDS_BY_SIDE[Side(side)]
    if counterparts_of is not None:
        wanted -= KINDS_BY_SIDE[side_of(ListingKind(counterparts_of))]
    return frozenset(wanted)


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(
        f"Invalid saved search: {field} {message}.",
        errors=[FieldError(field=f"body.{field}", message=message)],
    )


def _check(session: Session, actor: Member, state: dict[str, Any]) -> None:
    """A search has text or a listing of the actor's organization, and some kind to look for."""
    if (state["text"] is None) == (state["listing_id"] is None):
        raise _invalid("text", "give either text or listing_id, not both")
    own_kind = None
    if state["listing_id"] is not None:
        own_kind = session.exec(
            select(Listing.kind).where(
                Listing.id == state["listing_id"],
                Listing.organization_id == actor.organization_id,
            )
        ).first()
        if own_kind is None:
            raise _invalid("listing_id", "is not a listing of your organization")
    if not wanted_kinds(state["kinds"], state["side"], counterparts_of=own_kind):
        raise _invalid("kinds", "leave no kind of listing to look for")


def _embedding(text: str | None, embedder: Embedder) -> dict[str, Any]:
    """The stored columns of the text's embedding, made as `Matcher.search` embeds a query."""
    if text is None:
        return {"model_name": None, "query_vector": None}
    vector = embedder.encode([text])[0]
    return {"model_name": embedder.model_name, "query_vector": embeddings.as_bytes(vector)}


def create(
    session: Session, *, actor: Member, data: SavedSearchCreate, embedder: Embedder
) -> SavedSearch:
    """Save a search for the actor's organization, its text embedded in the same transaction."""
    values = data.model_dump()
    _check(session, actor, values)
    count = session.exec(
        select(func.count()).where(SavedSearch.organization_id == actor.organization_id)
    ).one()
    if count >= MAX_SAVED_SEARCHES_PER_ORGANIZATION:
        raise Conflict(
            f"An organization has at most {MAX_SAVED_SEARCHES_PER_ORGANIZATION} saved searches.",
            code="too_many_saved_searches",
        )
    search = SavedSearch(
        **values, **_embedding(data.text, embedder), organization_id=actor.organization_id
    )
    session.add(search)
    session.commit()
    session.refresh(search)
    return search


def get(session: Session, *, actor: Member, saved_search_id: uuid.UUID) -> SavedSearch:
    """One of the actor's organization's saved searches; another organization's is missing."""
    search = session.exec(
        select(SavedSearch).where(
            SavedSearch.id == saved_search_id,
            SavedSearch.organization_id == actor.organization_id,
        )
    ).first()
    if search is None:
        raise NotFound("No such saved search.")
    return search


def alerts(
    session: Session, *, actor: Member, saved_search_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[list[Event], str | None]:
    """The `match.new` events a saved search raised, oldest first: its alerts, for members who
    take no webhooks (and for those catching up on missed deliveries)."""
    search = get(session, actor=actor, saved_search_id=saved_search_id)
    return events.chain_of(
        session,
        subject_type=SubjectType.SAVED_SEARCH,
        subject_id=search.id,
        limit=limit,
        cursor=cursor,
    )


def list_for(
    session: Session, *, actor: Member, limit: int, cursor: str | None
) -> tuple[list[SavedSearch], str | None]:
    """The organization's saved searches, oldest first."""
    query = select(SavedSearch).where(SavedSearch.organization_id == actor.organization_id)
    after = decode_cursor(cursor, int)
    if after is not None:
        query = query.where(col(SavedSearch.row_id) > after)
    rows = list(session.exec(query.order_by(col(SavedSearch.row_id)).limit(limit + 1)))
    return rows[:limit], next_cursor([r.row_id or 0 for r in rows], limit, len(rows))


def update(
    session: Session,
    *,
    actor: Member,
    saved_search_id: uuid.UUID,
    data: SavedSearchUpdate,
    expected_version: int | None,
    embedder: Embedder,
) -> SavedSearch:
    """Change a saved search if the caller saw its current version; re-embed changed text."""
    search = get(session, actor=actor, saved_search_id=saved_search_id)
    versions.check_version(search, expected_version, noun="saved search")
    changes = data.model_dump(exclude_unset=True)
    state = {
        field: changes.get(field, getattr(search, field))
        for field in ("text", "listing_id", "kinds", "side")
    }
    _check(session, actor, state)
    text = state["text"]
    if text != search.text or (text is not None and search.model_name != embedder.model_name):
        changes |= _embedding(text, embedder)
    versions.compare_and_set(
        session,
        search,
        sql_update(SavedSearch).values(**changes, version=search.version + 1, updated_at=utc_now()),
        noun="saved search",
    )
    session.commit()
    session.refresh(search)
    return search


def delete(
    session: Session, *, actor: Member, saved_search_id: uuid.UUID, expected_version: int | None
) -> None:
    """Remove a saved search; the `match.new` events it raised stay in its trail."""
    search = get(session, actor=actor, saved_search_id=saved_search_id)
    versions.check_version(search, expected_version, noun="saved search")
    versions.compare_and_set(session, search, sql_delete(SavedSearch), noun="saved search")
    session.commit()
