"""Matches: counterparts for a listing, free-text search, partner organizations, feedback."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from marketplace.api import model_response, problems
from marketplace.deps import CurrentMember, OptionalMember, SearchIndexDep, SessionDep
from marketplace.services import matches
from schemas.listings import ListingKind
from schemas.matches import (
    MAX_MATCHES,
    FeedbackCreate,
    FeedbackRead,
    MatchList,
    PartnerList,
    SearchRequest,
)

router = APIRouter(tags=["matches"])


@router.get(
    "/listings/{listing_id}/matches", response_model=MatchList, responses=problems(401, 404)
)
def list_matches(
    listing_id: uuid.UUID,
    session: SessionDep,
    viewer: OptionalMember,
    index: SearchIndexDep,
    kind: Annotated[ListingKind | None, Query(description="Only this counterpart kind.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_MATCHES)] = 10,
    strict: Annotated[bool, Query(description="Drop counterparts failing a hard check.")] = False,
    min_score: Annotated[float, Query(ge=0.0, le=1.0)] = 0.0,
) -> Response:
    """Ranked counterparts from the other side, each with its score, reasons and checks."""
    items = matches.for_listing(
        session,
        viewer=viewer,
        listing_id=listing_id,
        index=index,
        kind=kind,
        limit=limit,
        strict=strict,
        min_score=min_score,
    )
    return model_response(MatchList(items=items))


@router.post("/search", response_model=MatchList, responses=problems(401))
def search(
    body: SearchRequest, session: SessionDep, viewer: OptionalMember, index: SearchIndexDep
) -> Response:
    """Free-text search (English or Chinese) over the listings you may see, with filters."""
    found = matches.search(session, viewer=viewer, request=body, index=index)
    return model_response(MatchList(items=found))


@router.get(
    "/organizations/{organization_id}/partners",
    response_model=PartnerList,
    responses=problems(401, 403),
)
def list_partners(
    organization_id: uuid.UUID,
    session: SessionDep,
    member: CurrentMember,
    index: SearchIndexDep,
    limit: Annotated[int, Query(ge=1, le=MAX_MATCHES)] = 10,
) -> PartnerList:
    """Recommended partner organizations, with the listing pairs that justify each."""
    items = matches.partners(
        session, viewer=member, organization_id=organization_id, index=index, limit=limit
    )
    return PartnerList(items=items)


@router.post(
    "/listings/{listing_id}/matches/{counterpart_id}/feedback",
    status_code=status.HTTP_200_OK,
    response_model=FeedbackRead,
    responses=problems(401, 404, 409),
)
def give_feedback(
    listing_id: uuid.UUID,
    counterpart_id: uuid.UUID,
    body: FeedbackCreate,
    session: SessionDep,
    member: CurrentMember,
) -> FeedbackRead:
    """Mark a proposed counterpart relevant or dismissed; dismissed ones leave your results."""
    row = matches.give_feedback(
        session, viewer=member, listing_id=listing_id, counterpart_id=counterpart_id, data=body
    )
    return FeedbackRead(
        listing_id=row.listing_id,
        counterpart_id=row.counterpart_id,
        verdict=row.verdict,
        reason=row.reason,
    )
