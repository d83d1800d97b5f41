"""Members of an organization: add, list, remove."""

import uuid

from fastapi import APIRouter, Response, status

from marketplace.api import problems
from marketplace.deps import DEFAULT_LIMIT, CurrentMember, Cursor, Limit, SessionDep
from marketplace.mappers import member_read
from marketplace.services import members, organizations
from schemas.members import MemberCreate, MemberRead
from schemas.pagination import Page

router = APIRouter(prefix="/organizations/{organization_id}/members", tags=["members"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=MemberRead,
    responses=problems(401, 403, 404, 409),
)
def add_member(
    organization_id: uuid.UUID, body: MemberCreate, member: CurrentMember, session: SessionDep
) -> MemberRead:
    """Add a member with an initial password (owners and admins; only owners add owners)."""
    organizations.get(session, organization_id)
    return member_read(
        members.add(session, actor=member, organization_id=organization_id, data=body)
    )


@router.get(
    "",
    response_model=Page[MemberRead],
    responses=problems(401, 403, 404),
)
def list_members(
    organization_id: uuid.UUID,
    member: CurrentMember,
    session: SessionDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[MemberRead]:
    """The organization's members, by email (visible to its own members)."""
    organizations.get(session, organization_id)
    rows, next_cursor = members.list_for(
        session, actor=member, organization_id=organization_id, limit=limit, cursor=cursor
    )
    return Page(items=[member_read(row) for row in rows], next_cursor=next_cursor)


@router.delete(
    "/{member_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problems(401, 403, 404, 409),
)
def remove_member(
    organization_id: uuid.UUID, member_id: uuid.UUID, member: CurrentMember, session: SessionDep
) -> None:
    """Remove a member (owners and admins), or leave the organization yourself."""
    members.remove(session, actor=member, organization_id=organization_id, member_id=member_id)
