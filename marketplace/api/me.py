"""The signed-in member, and their tokens."""

import uuid

from fastapi import APIRouter, Response, status

from marketplace.api import problems
from marketplace.deps import CurrentMember, SessionDep
from marketplace.mappers import member_read, organization_read, token_read
from marketplace.services import organizations, tokens
from schemas.auth import Me, TokenRead

router = APIRouter(prefix="/me", tags=["me"])


@router.get("", response_model=Me, responses=problems(401))
def read_me(member: CurrentMember, session: SessionDep) -> Me:
    """The signed-in member and their organization."""
    organization = organizations.get(session, member.organization_id)
    return Me(member=member_read(member), organization=organization_read(organization))


@router.get("/tokens", response_model=list[TokenRead], responses=problems(401))
def list_tokens(member: CurrentMember, session: SessionDep) -> list[TokenRead]:
    """The member's tokens (never the secrets), newest first."""
    return [token_read(token) for token in tokens.list_for(session, member=member)]


@router.delete(
    "/tokens/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problems(401, 404),
)
def revoke_token(token_id: uuid.UUID, member: CurrentMember, session: SessionDep) -> None:
    """Revoke one of the member's tokens; it stops working at once."""
    tokens.revoke(session, member=member, token_id=token_id)
