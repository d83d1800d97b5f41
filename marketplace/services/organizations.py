"""Organizations: self-service sign-up, the public directory, edits and platform verification."""

import re
import unicodedata
import uuid

from sqlmodel import Session, col, select

from marketplace.errors import Conflict, Forbidden, NotFound
from marketplace.models import Member, Organization, utc_now
from marketplace.services import members, rate_limits
from marketplace.services.pagination import decode_cursor, next_cursor
from schemas.members import MemberCreate, Role
from schemas.organizations import (
    OrganizationFields,
    OrganizationKind,
    OrganizationSignUp,
    OrganizationUpdate,
)


def slugify(name: str) -> str:
    """A URL slug from a name; names without Latin letters (e.g. Chinese) get a random slug."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:50].strip("-")
    return slug if len(slug) >= 2 else f"org-{uuid.uuid4().hex[:8]}"


def _new_organization(
    session: Session, fields: OrganizationFields, *, verified: bool
) -> Organization:
    slug = fields.slug or slugify(fields.name)
    if session.exec(select(Organization.id).where(Organization.slug == slug)).first():
        raise Conflict(f"The slug '{slug}' is taken; choose another.", code="slug_taken")
    return Organization(
        **fields.model_dump(mode="json", exclude={"slug"}), slug=slug, verified=verified
    )


def create(session: Session, *, fields: OrganizationFields, verified: bool = False) -> Organization:
    """Create an organization with no members yet (platform CLI)."""
    organization = _new_organization(session, fields, verified=verified)
    members.commit_new(session, organization)
    return organization


def sign_up(
    session: Session, *, data: OrganizationSignUp, attempts: rate_limits.Limit | None = None
) -> tuple[Organization, Member]:
    """Create an organization and its first owner in one transaction.

    `attempts` bounds sign-ups from one client address, counted whether or not they succeed.
    """
    if attempts is not None:
        rate_limits.enforce(session, [attempts])
        rate_limits.record(session, [attempts.key], keep=attempts.window)
        session.commit()
    if members.email_taken(session, data.owner.email):
        raise Conflict("A member with that email already exists.", code="email_taken")
    organization = _new_organization(session, data.organization, verified=False)
    owner = members.new_member(
        organization_id=organization.id,
        data=MemberCreate(**data.owner.model_dump(), role=Role.OWNER),
    )
    members.commit_new(session, organization, owner)
    return organization, owner


def get(session: Session, organization_id: uuid.UUID) -> Organization:
    organization = session.get(Organization, organization_id)
    if organization is None:
        raise NotFound("No such organization.")
    return organization


def directory(
    session: Session,
    *,
    kind: OrganizationKind | None,
    country: str | None,
    verified: bool | None,
    q: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Organization], str | None]:
    """The public organization directory, ordered by slug."""
    query = select(Organization)
    if kind is not None:
        query = query.where(Organization.kind == kind)
    if country is not None:
        query = query.where(Organization.country == country)
    if verified is not None:
        query = query.where(Organization.verified == verified)
    if q:
        # autoescape: `%` and `_` in a search are literal text, not LIKE wildcards.
        query = query.where(col(Organization.name).icontains(q.strip(), autoescape=True))
    after = decode_cursor(cursor, str)
    if after is not None:
        query = query.where(Organization.slug > after)
    rows = list(session.exec(query.order_by(col(Organization.slug)).limit(limit + 1)))
    return rows[:limit], next_cursor([o.slug for o in rows], limit, len(rows))


def update(
    session: Session, *, actor: Member, organization_id: uuid.UUID, data: OrganizationUpdate
) -> Organization:
    organization = get(session, organization_id)
    members.require_manager(actor, organization_id)
    for field, value in data.model_dump(mode="json", exclude_unset=True).items():
        setattr(organization, field, value)
    organization.updated_at = utc_now()
    session.add(organization)
    session.commit()
    return organization


def set_verified(
    session: Session, *, actor: Member, organization_id: uuid.UUID, verified: bool
) -> Organization:
    """Mark an organization verified or not; platform admins only."""
    if not actor.is_platform_admin:
        raise Forbidden(
            "Only a platform admin may verify organizations.", code="platform_admin_required"
        )
    organization = get(session, organization_id)
    organization.verified = verified
    organization.updated_at = utc_now()
    session.add(organization)
    session.commit()
    return organization


def get_by_slug(session: Session, slug: str) -> Organization:
    organization = session.exec(select(Organization).where(Organization.slug == slug)).first()
    if organization is None:
        raise NotFound(f"No organization with slug '{slug}'.")
    return organization
