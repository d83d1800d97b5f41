"""Members of an organization: who belongs, with which role, and who may change that."""

import uuid

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from marketplace import security
from marketplace.errors import Conflict, Forbidden, NotFound
from marketplace.models import Member, Organization
from marketplace.services.pagination import decode_cursor, next_cursor
from schemas.members import MANAGER_ROLES, MemberCreate, Role


def new_member(
    *, organization_id: uuid.UUID, data: MemberCreate, is_platform_admin: bool = False
) -> Member:
    """A member row ready to add (the password hashed); the caller commits."""
    return Member(
        email=data.email.strip().lower(),
        display_name=data.display_name,
        password_hash=security.hash_password(data.password),
        organization_id=organization_id,
        role=data.role,
        is_platform_admin=is_platform_admin,
    )


def email_taken(session: Session, email: str) -> bool:
    return (
        session.exec(select(Member.id).where(Member.email == email.strip().lower())).first()
        is not None
    )


def commit_new(session: Session, *rows: object) -> None:
    """Commit new rows in order (parents first), turning a lost unique race into a 409."""
    try:
        for row in rows:
            session.add(row)
            session.flush()
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict("That email or slug is already registered.", code="already_exists") from exc


def require_manager(actor: Member, organization_id: uuid.UUID) -> None:
    if actor.organization_id != organization_id or actor.role not in MANAGER_ROLES:
        raise Forbidden(
            "Only an owner or admin of this organization may do that.", code="not_org_manager"
        )


def add(
    session: Session,
    *,
    actor: Member,
    organization_id: uuid.UUID,
    data: MemberCreate,
    is_platform_admin: bool = False,
) -> Member:
    """Add a member; owners and admins may add, only owners may add another owner."""
    require_manager(actor, organization_id)
    if data.role == Role.OWNER and actor.role != Role.OWNER:
        raise Forbidden("Only an owner may add another owner.", code="owner_required")
    return create(
        session, organization_id=organization_id, data=data, is_platform_admin=is_platform_admin
    )


def create(
    session: Session,
    *,
    organization_id: uuid.UUID,
    data: MemberCreate,
    is_platform_admin: bool = False,
) -> Member:
    """Create a member without an acting member (CLI and sign-up); emails are unique."""
    if email_taken(session, data.email):
        raise Conflict("A member with that email already exists.", code="email_taken")
    member = new_member(
        organization_id=organization_id, data=data, is_platform_admin=is_platform_admin
    )
    commit_new(session, member)
    return member


def list_for(
    session: Session,
    *,
    actor: Member,
    organization_id: uuid.UUID,
    limit: int,
    cursor: str | None,
) -> tuple[list[Member], str | None]:
    """Members of an organization, by email; visible to its own members and platform admins."""
    if actor.organization_id != organization_id and not actor.is_platform_admin:
        raise Forbidden("Only members of this organization may list its members.")
    after = decode_cursor(cursor, str)
    query = select(Member).where(Member.organization_id == organization_id)
    if after is not None:
        query = query.where(Member.email > after)
    rows = list(session.exec(query.order_by(col(Member.email)).limit(limit + 1)))
    return rows[:limit], next_cursor([m.email for m in rows], limit, len(rows))


def remove(
    session: Session, *, actor: Member, organization_id: uuid.UUID, member_id: uuid.UUID
) -> None:
    """Remove a member; anyone may leave, managers may remove others, the last owner stays."""
    leaving = member_id == actor.id
    if not leaving:
        # Before the lookup, so that outsiders cannot probe which ids belong to the organization.
        require_manager(actor, organization_id)
    member = session.get(Member, member_id)
    if member is None or member.organization_id != organization_id:
        raise NotFound("No such member in this organization.")
    if not leaving and member.role == Role.OWNER and actor.role != Role.OWNER:
        raise Forbidden("Only an owner may remove an owner.", code="owner_required")
    if member.role == Role.OWNER:
        # Lock the organization so two owners removing each other cannot both see "one left".
        session.exec(
            select(Organization.id).where(Organization.id == organization_id).with_for_update()
        )
        if _owner_count(session, organization_id) == 1:
            session.rollback()
            raise Conflict("An organization keeps at least one owner.", code="last_owner")
    session.delete(member)
    session.commit()


def _owner_count(session: Session, organization_id: uuid.UUID) -> int:
    return session.exec(
        select(func.count()).where(
            Member.organization_id == organization_id, Member.role == Role.OWNER
        )
    ).one()
