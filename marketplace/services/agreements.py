"""Agreements: propose, counter, sign, reject, withdraw, run, complete or terminate.

Every write locks the agreement row first (`SELECT ... FOR UPDATE` on PostgreSQL, so a second
party acting at once waits and then sees the first party's result) and changes it by
compare-and-set on `version` (which also catches the race where the backend has no row locks).
Changes that time makes (a response deadline passing, the start and end dates) are applied by
the background worker's sweep and also whenever an agreement is read or acted on.
"""

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from marketplace.errors import (
    Conflict,
    Forbidden,
    IllegalTransition,
    InvalidInput,
    NotFound,
    PreconditionFailed,
)
from marketplace.mappers import agreement_read
from marketplace.models import (
    Agreement,
    AgreementParty,
    AgreementSignature,
    AgreementTerms,
    Event,
    Listing,
    Member,
    Organization,
    utc_now,
)
from marketplace.services import agreement_terms, events, idempotency
from marketplace.services.listings import visible_to
from marketplace.services.pagination import decode_cursor, next_cursor
from schemas.agreements import (
    ACTION_TARGETS,
    ALLOWED_TRANSITIONS,
    OPEN_STATUSES,
    AgreementAction,
    AgreementCreate,
    AgreementStatus,
    CommentCreate,
    CounterProposal,
    PartyProposal,
    TermsChange,
    TransitionRequest,
    allowed_actions,
)
from schemas.errors import FieldError
from schemas.events import ChainVerification, EventType, SubjectType
from schemas.members import MANAGER_ROLES

MAX_RESPOND_BY = timedelta(days=365)

STATUS_EVENTS: dict[AgreementStatus, EventType] = {
    AgreementStatus.COUNTERED: EventType.AGREEMENT_COUNTERED,
    AgreementStatus.SIGNED: EventType.AGREEMENT_SIGNED,
    AgreementStatus.ACTIVE: EventType.AGREEMENT_ACTIVATED,
    AgreementStatus.COMPLETED: EventType.AGREEMENT_COMPLETED,
    AgreementStatus.WITHDRAWN: EventType.AGREEMENT_WITHDRAWN,
    AgreementStatus.REJECTED: EventType.AGREEMENT_REJECTED,
    AgreementStatus.EXPIRED: EventType.AGREEMENT_EXPIRED,
    AgreementStatus.TERMINATED: EventType.AGREEMENT_TERMINATED,
}


# --- proposing -------------------------------------------------------------------------------


def propose(
    session: Session,
    *,
    actor: Member,
    data: AgreementCreate,
    respond_within: timedelta,
    idempotency_key: str | None = None,
) -> Agreement:
    """Propose an agreement among the listed parties; nothing is stored if anything is invalid."""
    now = utc_now()
    listings = _check_parties(session, actor, data.parties)
    respond_by = _respond_by(data.respond_by, now, respond_within)
    terms = agreement_terms.checked(data.terms, agreement_type=data.type, listings=listings)
    terms_hash = agreement_terms.terms_hash(terms)
    agreement = Agreement(
        type=data.type,
        title=data.title,
        status=AgreementStatus.PROPOSED,
        proposer_organization_id=actor.organization_id,
        terms_version=1,
        terms_hash=terms_hash,
        respond_by=respond_by,
        start_date=data.terms.start_date,
        end_date=data.terms.end_date,
    )
    agreement.parties = [
        AgreementParty(
            agreement_id=agreement.id,
            organization_id=party.organization_id,
            position=position,
            listing_ids=[str(listing_id) for listing_id in party.listing_ids],
        )
        for position, party in enumerate(data.parties)
    ]
    session.add(agreement)
    session.flush()
    session.add(_terms_row(agreement, actor, 1, terms, terms_hash))
    _record(session, agreement, EventType.AGREEMENT_PROPOSED, actor=actor, terms_version=1)
    if idempotency_key is not None:
        session.flush()
        idempotency.remember(
            session,
            member=actor,
            key=idempotency_key,
            request=data,
            response=agreement_read(_reload(session, agreement.id)),
        )
    try:
        session.commit()
    except IntegrityError as exc:  # the same key, sent twice at once, committed first there
        session.rollback()
        raise Conflict(
            "A request with this Idempotency-Key was just processed; send it again to get "
            "its response.",
            code="idempotency_key_in_use",
        ) from exc
    return _reload(session, agreement.id)


def _check_parties(
    session: Session, actor: Member, parties: list[PartyProposal]
) -> dict[uuid.UUID, Listing]:
    """Each party exists once and brings listings of its own that the actor can see."""
    errors: list[FieldError] = []
    listings: dict[uuid.UUID, Listing] = {}
    seen: set[uuid.UUID] = set()
    for position, party in enumerate(parties):
        field = f"body.parties.{position}"
        if party.organization_id in seen:
            errors.append(FieldError(field=f"{field}.organization_id", message="listed twice"))
            continue
        seen.add(party.organization_id)
        if session.get(Organization, party.organization_id) is None:
            errors.append(
                FieldError(field=f"{field}.organization_id", message="no such organization")
            )
            continue
        for index, listing_id in enumerate(party.listing_ids):
            listing = session.exec(
                select(Listing).where(Listing.id == listing_id, visible_to(actor))
            ).first()
            if listing is None or listing.organization_id != party.organization_id:
                message = "not a listing of this organization"
            elif listing.id in listings:
                message = "listed twice"
            else:
                listings[listing.id] = listing
                continue
            errors.append(FieldError(field=f"{field}.listing_ids.{index}", message=message))
    if actor.organization_id not in seen:
        errors.append(
            FieldError(field="body.parties", message="your organization must be one of them")
        )
    if errors:
        raise InvalidInput("The parties are not valid.", code="invalid_parties", errors=errors)
    return listings


def _respond_by(requested: datetime | None, now: datetime, default: timedelta) -> datetime:
    if requested is None:
        return now + default
    if not now < requested <= now + MAX_RESPOND_BY:
        raise InvalidInput(
            "The response deadline must lie in the future, within a year.",
            code="invalid_respond_by",
            errors=[FieldError(field="body.respond_by", message="not within the next year")],
        )
    return requested


def _terms_row(
    agreement: Agreement, actor: Member, version: int, terms: dict[str, Any], terms_hash: str
) -> AgreementTerms:
    return AgreementTerms(
        agreement_id=agreement.id,
        version=version,
        terms=terms,
        hash=terms_hash,
        author_organization_id=actor.organization_id,
        author_member_id=actor.id,
    )


# --- reading ---------------------------------------------------------------------------------


def _party_of(organization_id: uuid.UUID) -> Any:
    return col(Agreement.id).in_(
        select(AgreementParty.agreement_id).where(AgreementParty.organization_id == organization_id)
    )


def _visible(session: Session, viewer: Member, agreement_id: uuid.UUID) -> Agreement:
    """An agreement the viewer's organization is party to; any other is reported missing."""
    agreement = session.exec(
        select(Agreement).where(Agreement.id == agreement_id, _party_of(viewer.organization_id))
    ).first()
    if agreement is None:
        raise NotFound("No such agreement.")
    return agreement


def _reload(session: Session, agreement_id: uuid.UUID) -> Agreement:
    return session.exec(
        select(Agreement)
        .where(Agreement.id == agreement_id)
        .execution_options(populate_existing=True)
    ).one()


def get(session: Session, *, viewer: Member, agreement_id: uuid.UUID) -> Agreement:
    """One agreement of the viewer's organization, with any deadline that passed applied."""
    agreement = _visible(session, viewer, agreement_id)
    if _due_status(agreement, utc_now()) is not None:
        _advance_one(session, agreement.id)
        agreement = _reload(session, agreement.id)
    return agreement


def browse(
    session: Session,
    *,
    viewer: Member,
    status: AgreementStatus | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Agreement], str | None]:
    """The viewer's organization's agreements, newest first, deadlines applied."""
    advance_due(session, organization_id=viewer.organization_id)
    query = select(Agreement).where(_party_of(viewer.organization_id))
    if status is not None:
        query = query.where(Agreement.status == status)
    after = decode_cursor(cursor, int)
    if after is not None:
        query = query.where(col(Agreement.row_id) < after)
    rows = list(
        session.exec(
            query.order_by(col(Agreement.row_id).desc())
            .limit(limit + 1)
            .execution_options(populate_existing=True)
        )
    )
    return rows[:limit], next_cursor([r.row_id or 0 for r in rows], limit, len(rows))


def terms_version(
    session: Session, *, viewer: Member, agreement_id: uuid.UUID, version: int
) -> AgreementTerms:
    agreement = _visible(session, viewer, agreement_id)
    terms = session.get(AgreementTerms, (agreement.id, version))
    if terms is None:
        raise NotFound(f"The agreement has no terms version {version}.")
    return terms


def terms_diff(
    session: Session, *, viewer: Member, agreement_id: uuid.UUID, version: int, against: int
) -> list[TermsChange]:
    """What changed from terms version `against` to `version`."""
    before = terms_version(session, viewer=viewer, agreement_id=agreement_id, version=against)
    after = terms_version(session, viewer=viewer, agreement_id=agreement_id, version=version)
    return agreement_terms.diff(before.terms, after.terms)


def trail(
    session: Session, *, viewer: Member, agreement_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[list[Event], str | None]:
    """The agreement's events, oldest first."""
    agreement = _visible(session, viewer, agreement_id)
    return events.chain_of(
        session,
        subject_type=SubjectType.AGREEMENT,
        subject_id=agreement.id,
        limit=limit,
        cursor=cursor,
    )


def verify(session: Session, *, viewer: Member, agreement_id: uuid.UUID) -> ChainVerification:
    """Recompute the agreement's event chain and the hash of every terms version."""
    agreement = _visible(session, viewer, agreement_id)
    checked, broken = events.verify_chain(
        session, subject_type=SubjectType.AGREEMENT, subject_id=agreement.id
    )
    versions = session.exec(
        select(AgreementTerms)
        .where(AgreementTerms.agreement_id == agreement.id)
        .order_by(col(AgreementTerms.version))
    ).all()
    tampered = [t.version for t in versions if agreement_terms.terms_hash(t.terms) != t.hash]
    return ChainVerification(
        valid=broken is None and not tampered,
        events_checked=checked,
        first_broken=broken,
        terms_versions_checked=len(versions),
        broken_terms_versions=tampered,
    )


# --- acting ----------------------------------------------------------------------------------


def _locked(session: Session, actor: Member, agreement_id: uuid.UUID) -> Agreement:
    """The agreement, row-locked until commit, if the actor's organization is a party."""
    agreement = session.exec(
        select(Agreement)
        .where(Agreement.id == agreement_id, _party_of(actor.organization_id))
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if agreement is None:
        raise NotFound("No such agreement.")
    return agreement


def _locked_current(
    session: Session, actor: Member, agreement_id: uuid.UUID, expected_version: int | None
) -> Agreement:
    """Locked, the caller's ETag checked, and what time has changed applied first."""
    agreement = _locked(session, actor, agreement_id)
    if expected_version is not None and expected_version != agreement.version:
        raise PreconditionFailed(
            f"The agreement changed (now version {agreement.version}); reload and retry.",
            code="stale_version",
        )
    if _advance(session, agreement, utc_now()):
        session.commit()
        agreement = _locked(session, actor, agreement_id)
    return agreement


def _write(session: Session, agreement: Agreement, **values: Any) -> None:
    """Compare-and-set: change the row only if it is still the version read."""
    values |= {"version": agreement.version + 1, "updated_at": utc_now()}
    result = cast(
        CursorResult[Any],
        session.execute(
            update(Agreement)
            .where(col(Agreement.id) == agreement.id, col(Agreement.version) == agreement.version)
            .values(**values)
        ),
    )
    if result.rowcount != 1:
        session.rollback()
        raise PreconditionFailed(
            "The agreement changed meanwhile; reload and retry.", code="stale_version"
        )
    for name, value in values.items():
        set_committed_value(agreement, name, value)


def _record(
    session: Session,
    agreement: Agreement,
    type: EventType,
    *,
    actor: Member | None,
    **data: Any,
) -> Event:
    return events.append(
        session,
        subject_type=SubjectType.AGREEMENT,
        subject_id=agreement.id,
        type=type,
        audience=[party.organization_id for party in agreement.parties],
        actor=actor,
        terms_hash=agreement.terms_hash,
        data=data,
    )


def _move(
    session: Session,
    agreement: Agreement,
    status: AgreementStatus,
    *,
    actor: Member | None,
    reason: str | None = None,
    **values: Any,
) -> None:
    """Change the state (the caller checked it is allowed) and record the event."""
    before = agreement.status
    _write(session, agreement, status=status, status_reason=reason, **values)
    data = {"from": str(before), "to": str(status)}
    if reason is not None:
        data["reason"] = reason
    _record(session, agreement, STATUS_EVENTS[status], actor=actor, **data)


def _require_allowed(agreement: Agreement, action: AgreementAction) -> None:
    if ACTION_TARGETS[action] not in ALLOWED_TRANSITIONS[AgreementStatus(agreement.status)]:
        raise IllegalTransition(
            f"A {agreement.status} agreement cannot take '{action}'.",
            allowed=allowed_actions(AgreementStatus(agreement.status)),
        )


def _require_manager(actor: Member, action: AgreementAction) -> None:
    if actor.role not in MANAGER_ROLES:
        raise Forbidden(
            f"Only an owner or admin of a party may {action.replace('_', ' ')}.",
            code="manager_role_required",
        )


def _require_reason(data: TransitionRequest) -> str:
    if not data.reason:
        raise InvalidInput(
            f"Say why: '{data.action}' needs a reason.",
            code="reason_required",
            errors=[FieldError(field="body.reason", message=f"required to {data.action}")],
        )
    return data.reason


def _current_signatures(agreement: Agreement) -> dict[uuid.UUID, AgreementSignature]:
    return {
        s.organization_id: s
        for s in agreement.signatures
        if s.terms_version == agreement.terms_version and s.voided_at is None
    }


def transition(
    session: Session,
    *,
    actor: Member,
    agreement_id: uuid.UUID,
    data: TransitionRequest,
    expected_version: int | None,
) -> Agreement:
    """Sign, withdraw, reject, terminate or confirm completion, if the state and role allow it."""
    if data.action == AgreementAction.COUNTER:
        raise InvalidInput(
            "A counter-proposal carries terms: POST it to .../counter.",
            code="counter_needs_terms",
            errors=[FieldError(field="body.action", message="use POST .../counter")],
        )
    agreement = _locked_current(session, actor, agreement_id, expected_version)
    _require_allowed(agreement, data.action)
    _ACTIONS[data.action](session, agreement, actor, data)
    session.commit()
    return _reload(session, agreement.id)


def _sign(session: Session, agreement: Agreement, actor: Member, data: TransitionRequest) -> None:
    _require_manager(actor, data.action)
    organization = session.get(Organization, actor.organization_id)
    if organization is None or not organization.verified:
        raise Forbidden(
            "Your organization is not verified by the platform yet, so it cannot sign.",
            code="organization_unverified",
        )
    if data.terms_version is None:
        raise InvalidInput(
            "Name the terms version you sign.",
            code="terms_version_required",
            errors=[FieldError(field="body.terms_version", message="required to sign")],
        )
    if data.terms_version != agreement.terms_version:
        raise Conflict(
            f"Terms version {data.terms_version} is not the current one "
            f"({agreement.terms_version}); read it and sign that.",
            code="terms_superseded",
        )
    signed = _current_signatures(agreement)
    if actor.organization_id in signed:
        raise Conflict("Your organization has already signed these terms.", code="already_signed")
    everyone = {party.organization_id for party in agreement.parties}
    complete = signed.keys() | {actor.organization_id} == everyone
    _write(session, agreement)
    session.add(
        AgreementSignature(
            agreement_id=agreement.id,
            organization_id=actor.organization_id,
            member_id=actor.id,
            terms_version=agreement.terms_version,
            terms_hash=agreement.terms_hash,
        )
    )
    _record(
        session,
        agreement,
        EventType.AGREEMENT_PARTY_SIGNED,
        actor=actor,
        terms_version=agreement.terms_version,
    )
    if complete:
        _move(session, agreement, AgreementStatus.SIGNED, actor=actor)
        _advance(session, agreement, utc_now())


def _withdraw(
    session: Session, agreement: Agreement, actor: Member, data: TransitionRequest
) -> None:
    _require_manager(actor, data.action)
    if actor.organization_id != agreement.proposer_organization_id:
        raise Forbidden("Only the proposing organization may withdraw.", code="proposer_only")
    _move(session, agreement, AgreementStatus.WITHDRAWN, actor=actor, reason=data.reason)


def _reject(session: Session, agreement: Agreement, actor: Member, data: TransitionRequest) -> None:
    _require_manager(actor, data.action)
    reason = _require_reason(data)
    author = session.get(AgreementTerms, (agreement.id, agreement.terms_version))
    if author is not None and author.author_organization_id == actor.organization_id:
        raise Forbidden(
            "Your organization proposed the current terms; withdraw or counter instead.",
            code="recipient_only",
        )
    _move(session, agreement, AgreementStatus.REJECTED, actor=actor, reason=reason)


def _terminate(
    session: Session, agreement: Agreement, actor: Member, data: TransitionRequest
) -> None:
    _require_manager(actor, data.action)
    reason = _require_reason(data)
    _move(session, agreement, AgreementStatus.TERMINATED, actor=actor, reason=reason)


def _confirm_completion(
    session: Session, agreement: Agreement, actor: Member, data: TransitionRequest
) -> None:
    _require_manager(actor, data.action)
    party = next(p for p in agreement.parties if p.organization_id == actor.organization_id)
    if party.completion_confirmed_at is not None:
        raise Conflict(
            "Your organization has already confirmed completion.", code="already_confirmed"
        )
    _write(session, agreement)
    party.completion_confirmed_at = utc_now()
    session.add(party)
    _record(session, agreement, EventType.AGREEMENT_COMPLETION_CONFIRMED, actor=actor)
    if all(p.completion_confirmed_at is not None for p in agreement.parties):
        _move(session, agreement, AgreementStatus.COMPLETED, actor=actor)


_ACTIONS: dict[AgreementAction, Callable[[Session, Agreement, Member, TransitionRequest], None]] = {
    AgreementAction.SIGN: _sign,
    AgreementAction.WITHDRAW: _withdraw,
    AgreementAction.REJECT: _reject,
    AgreementAction.TERMINATE: _terminate,
    AgreementAction.CONFIRM_COMPLETION: _confirm_completion,
}


def counter(
    session: Session,
    *,
    actor: Member,
    agreement_id: uuid.UUID,
    data: CounterProposal,
    expected_version: int | None,
    respond_within: timedelta,
) -> Agreement:
    """Propose new terms (a new version); every earlier signature is voided."""
    agreement = _locked_current(session, actor, agreement_id, expected_version)
    _require_allowed(agreement, AgreementAction.COUNTER)
    listing_ids = [uuid.UUID(i) for party in agreement.parties for i in party.listing_ids]
    listings = {
        listing.id: listing
        for listing in session.exec(select(Listing).where(col(Listing.id).in_(listing_ids)))
    }
    terms = agreement_terms.checked(data.terms, agreement_type=agreement.type, listings=listings)
    now = utc_now()
    respond_by = _respond_by(data.respond_by, now, respond_within)
    voided = sorted(str(org) for org in _current_signatures(agreement))
    version = agreement.terms_version + 1
    terms_hash = agreement_terms.terms_hash(terms)
    before = agreement.status
    _write(
        session,
        agreement,
        status=AgreementStatus.COUNTERED,
        status_reason=None,
        terms_version=version,
        terms_hash=terms_hash,
        respond_by=respond_by,
        start_date=data.terms.start_date,
        end_date=data.terms.end_date,
    )
    session.add(_terms_row(agreement, actor, version, terms, terms_hash))
    session.execute(
        update(AgreementSignature)
        .where(
            col(AgreementSignature.agreement_id) == agreement.id,
            col(AgreementSignature.voided_at).is_(None),
        )
        .values(voided_at=now)
    )
    _record(
        session,
        agreement,
        EventType.AGREEMENT_COUNTERED,
        actor=actor,
        terms_version=version,
        voided_signatures=voided,
        **{"from": str(before), "to": str(AgreementStatus.COUNTERED)},
    )
    session.commit()
    return _reload(session, agreement.id)


def comment(
    session: Session, *, actor: Member, agreement_id: uuid.UUID, data: CommentCreate
) -> Event:
    """Add a comment to the agreement's trail (any member of a party)."""
    agreement = _visible(session, actor, agreement_id)
    event = _record(session, agreement, EventType.AGREEMENT_COMMENTED, actor=actor, body=data.body)
    session.commit()
    return event


# --- time ------------------------------------------------------------------------------------


def _due_status(agreement: Agreement, now: datetime) -> AgreementStatus | None:
    """The state time has moved the agreement into, if any."""
    status = AgreementStatus(agreement.status)
    if status in OPEN_STATUSES and agreement.respond_by <= now:
        return AgreementStatus.EXPIRED
    if status == AgreementStatus.SIGNED and agreement.start_date <= now.date():
        return AgreementStatus.ACTIVE
    if status == AgreementStatus.ACTIVE and agreement.end_date < now.date():
        return AgreementStatus.COMPLETED
    return None


def _advance(session: Session, agreement: Agreement, now: datetime) -> bool:
    """Apply what time has changed (the platform acts); the caller commits. True if anything."""
    moved = False
    while (status := _due_status(agreement, now)) is not None:
        _move(session, agreement, status, actor=None)
        moved = True
    return moved


def _advance_one(session: Session, agreement_id: uuid.UUID) -> None:
    agreement = session.exec(
        select(Agreement)
        .where(Agreement.id == agreement_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    if _advance(session, agreement, utc_now()):
        session.commit()
    else:
        session.rollback()


def advance_due(
    session: Session, *, organization_id: uuid.UUID | None = None, limit: int = 100
) -> int:
    """Expire, activate and complete the agreements whose time has come, one transaction each.

    Returns how many were due. Several workers may sweep at once: each agreement is locked, and
    one that another worker just moved is no longer due.
    """
    now = utc_now()
    today = now.date()
    query = select(Agreement.id).where(
        or_(
            and_(col(Agreement.status).in_(OPEN_STATUSES), col(Agreement.respond_by) <= now),
            and_(
                col(Agreement.status) == AgreementStatus.SIGNED, col(Agreement.start_date) <= today
            ),
            and_(col(Agreement.status) == AgreementStatus.ACTIVE, col(Agreement.end_date) < today),
        )
    )
    if organization_id is not None:
        query = query.where(_party_of(organization_id))
    due = session.exec(query.order_by(col(Agreement.row_id)).limit(limit)).all()
    session.rollback()
    for agreement_id in due:
        try:
            _advance_one(session, agreement_id)
        except PreconditionFailed:  # moved by someone else meanwhile (SQLite has no row locks)
            continue
    return len(due)
