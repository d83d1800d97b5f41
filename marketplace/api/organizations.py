"""Organizations: sign-up, the directory, edits and platform verification."""

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, status

from marketplace.api import problems
from marketplace.deps import (
    DEFAULT_LIMIT,
    ClientAddress,
    CurrentMember,
    Cursor,
    Limit,
    SessionDep,
    SettingsDep,
)
from marketplace.mappers import member_read, organization_read
from marketplace.services import organizations, rate_limits
from schemas.codes import CountryCode
from schemas.organizations import (
    OrganizationCreated,
    OrganizationKind,
    OrganizationRead,
    OrganizationSignUp,
    OrganizationUpdate,
    VerificationUpdate,
)
from schemas.pagination import Page

router = APIRouter(prefix="/organizations", tags=["organizations"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=OrganizationCreated,
    responses=problems(409, 429),
)
def sign_up(
    body: OrganizationSignUp, session: SessionDep, settings: SettingsDep, client: ClientAddress
) -> OrganizationCreated:
    """Register an organization together with its first owner (self-service sign-up)."""
    attempts = rate_limits.Limit(
        f"sign-up-client:{client}",
        settings.sign_up_max_per_client,
        timedelta(seconds=settings.sign_in_window_seconds),
    )
    organization, owner = organizations.sign_up(session, data=body, attempts=attempts)
    return OrganizationCreated(
        organization=organization_read(organization), owner=member_read(owner)
    )


@router.get("", response_model=Page[OrganizationRead], responses=problems())
def list_organizations(
    session: SessionDep,
    kind: OrganizationKind | None = None,
    country: CountryCode | None = None,
    verified: bool | None = None,
    # NUL never occurs in a name, and PostgreSQL refuses it in any text parameter.
    q: Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[OrganizationRead]:
    """The public directory of organizations, by slug."""
    rows, next_cursor = organizations.directory(
        session, kind=kind, country=country, verified=verified, q=q, limit=limit, cursor=cursor
    )
    return Page(items=[organization_read(row) for row in rows], next_cursor=next_cursor)


@router.get("/{organization_id}", response_model=OrganizationRead, responses=problems(404))
def read_organization(organization_id: uuid.UUID, session: SessionDep) -> OrganizationRead:
    """One organization's public profile."""
    return organization_read(organizations.get(session, organization_id))


@router.patch(
    "/{organization_id}", response_model=OrganizationRead, responses=problems(401, 403, 404)
)
def update_organization(
    organization_id: uuid.UUID, body: OrganizationUpdate, member: CurrentMember, session: SessionDep
) -> OrganizationRead:
    """Edit the organization's profile (its owners and admins)."""
    return organization_read(
        organizations.update(session, actor=member, organization_id=organization_id, data=body)
    )


@router.put(
    "/{organization_id}/verification",
    response_model=OrganizationRead,
    responses=problems(401, 403, 404),
)
def set_verification(
    organization_id: uuid.UUID, body: VerificationUpdate, member: CurrentMember, session: SessionDep
) -> OrganizationRead:
    """Mark the organization verified or unverified (platform admins)."""
    return organization_read(
        organizations.set_verified(
            session, actor=member, organization_id=organization_id, verified=body.verified
        )
    )
