"""Saved searches: an organization's standing queries and alert thresholds (any member)."""

import uuid

from fastapi import APIRouter, Response, status

from marketplace.api import problems
from marketplace.deps import (
    DEFAULT_LIMIT,
    CurrentMember,
    Cursor,
    Limit,
    OptionalVersion,
    RequiredVersion,
    SearchIndexDep,
    SessionDep,
    etag,
)
from marketplace.mappers import event_read, saved_search_read
from marketplace.services import saved_searches
from schemas.events import EventRead
from schemas.pagination import Page
from schemas.saved_searches import SavedSearchCreate, SavedSearchRead, SavedSearchUpdate

router = APIRouter(prefix="/saved-searches", tags=["saved searches"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SavedSearchRead,
    responses=problems(401, 409),
)
def create_saved_search(
    body: SavedSearchCreate,
    member: CurrentMember,
    session: SessionDep,
    index: SearchIndexDep,
    response: Response,
) -> SavedSearchRead:
    """Save a search (text or one of your listings) whose new matches raise `match.new`."""
    search = saved_searches.create(
        session, actor=member, data=body, embedder=index.matcher.embedder
    )
    response.headers["ETag"] = etag(search.version)
    response.headers["Location"] = f"/api/v1/saved-searches/{search.id}"
    return saved_search_read(search)


@router.get("", response_model=Page[SavedSearchRead], responses=problems(401))
def list_saved_searches(
    member: CurrentMember, session: SessionDep, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Page[SavedSearchRead]:
    """Your organization's saved searches, oldest first."""
    rows, next_cursor = saved_searches.list_for(session, actor=member, limit=limit, cursor=cursor)
    return Page(items=[saved_search_read(row) for row in rows], next_cursor=next_cursor)


@router.get(
    "/{saved_search_id}/alerts", response_model=Page[EventRead], responses=problems(401, 404)
)
def list_saved_search_alerts(
    saved_search_id: uuid.UUID,
    member: CurrentMember,
    session: SessionDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[EventRead]:
    """The `match.new` events this search raised, oldest first (the same as its webhooks carry,
    hash-chained)."""
    rows, next_cursor = saved_searches.alerts(
        session, actor=member, saved_search_id=saved_search_id, limit=limit, cursor=cursor
    )
    return Page(items=[event_read(row) for row in rows], next_cursor=next_cursor)


@router.get("/{saved_search_id}", response_model=SavedSearchRead, responses=problems(401, 404))
def read_saved_search(
    saved_search_id: uuid.UUID, member: CurrentMember, session: SessionDep, response: Response
) -> SavedSearchRead:
    """One saved search; its ETag comes in the ETag header."""
    search = saved_searches.get(session, actor=member, saved_search_id=saved_search_id)
    response.headers["ETag"] = etag(search.version)
    return saved_search_read(search)


@router.patch(
    "/{saved_search_id}",
    response_model=SavedSearchRead,
    responses=problems(401, 404, 412, 428),
)
def update_saved_search(
    saved_search_id: uuid.UUID,
    body: SavedSearchUpdate,
    expected_version: RequiredVersion,
    member: CurrentMember,
    session: SessionDep,
    index: SearchIndexDep,
    response: Response,
) -> SavedSearchRead:
    """Change the query, filters, threshold, name or enabled flag; send If-Match."""
    search = saved_searches.update(
        session,
        actor=member,
        saved_search_id=saved_search_id,
        data=body,
        expected_version=expected_version,
        embedder=index.matcher.embedder,
    )
    response.headers["ETag"] = etag(search.version)
    return saved_search_read(search)


@router.delete(
    "/{saved_search_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problems(401, 404, 412),
)
def delete_saved_search(
    saved_search_id: uuid.UUID,
    expected_version: OptionalVersion,
    member: CurrentMember,
    session: SessionDep,
) -> None:
    """Remove a saved search (If-Match optional, checked when sent)."""
    saved_searches.delete(
        session, actor=member, saved_search_id=saved_search_id, expected_version=expected_version
    )
