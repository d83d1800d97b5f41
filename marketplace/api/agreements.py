"""Agreements: propose, list, read, act (sign, withdraw, reject, terminate, confirm completion),
counter, comment, terms versions and their diff, the event trail and its verification."""

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from marketplace.api import problems
from marketplace.deps import (
    DEFAULT_LIMIT,
    CurrentMember,
    Cursor,
    IdempotencyKey,
    Limit,
    RequiredVersion,
    SessionDep,
    SettingsDep,
    etag,
)
from marketplace.mappers import agreement_read, event_read, terms_version_read
from marketplace.services import agreements, idempotency
from schemas.agreements import (
    AgreementCreate,
    AgreementRead,
    AgreementStatus,
    CommentCreate,
    CounterProposal,
    TermsDiff,
    TermsVersionRead,
    TransitionRequest,
)
from schemas.events import ChainVerification, EventRead
from schemas.pagination import Page

router = APIRouter(prefix="/agreements", tags=["agreements"])

TermsVersionNumber = Annotated[int, Path(ge=1, le=1_000_000, description="A terms version.")]


def _with_etag(response: Response, agreement: AgreementRead) -> AgreementRead:
    response.headers["ETag"] = etag(agreement.version)
    return agreement


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=AgreementRead,
    responses=problems(401, 409),
)
def propose_agreement(
    body: AgreementCreate,
    member: CurrentMember,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> AgreementRead:
    """Propose an agreement to other organizations; a repeated Idempotency-Key replays."""
    replayed = idempotency.replay(
        session,
        member=member,
        key=idempotency_key,
        request=body,
        kept_for=timedelta(hours=settings.idempotency_key_hours),
    )
    if replayed is not None:
        agreement = AgreementRead.model_validate(replayed)
        response.headers["Idempotent-Replayed"] = "true"
    else:
        agreement = agreement_read(
            agreements.propose(
                session,
                actor=member,
                data=body,
                respond_within=timedelta(days=settings.agreement_respond_by_days),
                idempotency_key=idempotency_key,
            )
        )
    response.headers["Location"] = f"/api/v1/agreements/{agreement.id}"
    return _with_etag(response, agreement)


@router.get("", response_model=Page[AgreementRead], responses=problems(401))
def list_agreements(
    member: CurrentMember,
    session: SessionDep,
    agreement_status: Annotated[AgreementStatus | None, Query(alias="status")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[AgreementRead]:
    """Your organization's agreements, newest first, optionally in one state."""
    rows, next_cursor = agreements.browse(
        session, viewer=member, status=agreement_status, limit=limit, cursor=cursor
    )
    return Page(items=[agreement_read(row) for row in rows], next_cursor=next_cursor)


@router.get("/{agreement_id}", response_model=AgreementRead, responses=problems(401, 404))
def read_agreement(
    agreement_id: uuid.UUID, member: CurrentMember, session: SessionDep, response: Response
) -> AgreementRead:
    """One agreement your organization is party to; its ETag comes in the ETag header."""
    agreement = agreements.get(session, viewer=member, agreement_id=agreement_id)
    return _with_etag(response, agreement_read(agreement))


@router.post(
    "/{agreement_id}/transitions",
    response_model=AgreementRead,
    responses=problems(401, 403, 404, 409, 412, 428),
)
def act_on_agreement(
    agreement_id: uuid.UUID,
    body: TransitionRequest,
    expected_version: RequiredVersion,
    member: CurrentMember,
    session: SessionDep,
    response: Response,
) -> AgreementRead:
    """Sign, withdraw, reject, terminate or confirm completion; send If-Match."""
    agreement = agreements.transition(
        session,
        actor=member,
        agreement_id=agreement_id,
        data=body,
        expected_version=expected_version,
    )
    return _with_etag(response, agreement_read(agreement))


@router.post(
    "/{agreement_id}/counter",
    response_model=AgreementRead,
    responses=problems(401, 404, 409, 412, 428),
)
def counter_agreement(
    agreement_id: uuid.UUID,
    body: CounterProposal,
    expected_version: RequiredVersion,
    member: CurrentMember,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> AgreementRead:
    """Propose new terms (a new version; earlier signatures are voided); send If-Match."""
    agreement = agreements.counter(
        session,
        actor=member,
        agreement_id=agreement_id,
        data=body,
        expected_version=expected_version,
        respond_within=timedelta(days=settings.agreement_respond_by_days),
    )
    return _with_etag(response, agreement_read(agreement))


@router.post(
    "/{agreement_id}/comments",
    status_code=status.HTTP_201_CREATED,
    response_model=EventRead,
    responses=problems(401, 404),
)
def comment_on_agreement(
    agreement_id: uuid.UUID, body: CommentCreate, member: CurrentMember, session: SessionDep
) -> EventRead:
    """Comment on the agreement (any member of a party); the comment joins the trail."""
    return event_read(
        agreements.comment(session, actor=member, agreement_id=agreement_id, data=body)
    )


@router.get(
    "/{agreement_id}/terms/{version}",
    response_model=TermsVersionRead,
    responses=problems(401, 404),
)
def read_terms(
    agreement_id: uuid.UUID, version: TermsVersionNumber, member: CurrentMember, session: SessionDep
) -> TermsVersionRead:
    """One terms version with its SHA-256 hash."""
    return terms_version_read(
        agreements.terms_version(session, viewer=member, agreement_id=agreement_id, version=version)
    )


@router.get(
    "/{agreement_id}/terms/{version}/diff",
    response_model=TermsDiff,
    responses=problems(401, 404),
)
def diff_terms(
    agreement_id: uuid.UUID,
    version: TermsVersionNumber,
    against: Annotated[int, Query(ge=1, le=1_000_000, description="The version to compare with.")],
    member: CurrentMember,
    session: SessionDep,
) -> TermsDiff:
    """What changed from terms version `against` to this one."""
    changes = agreements.terms_diff(
        session, viewer=member, agreement_id=agreement_id, version=version, against=against
    )
    return TermsDiff(agreement_id=agreement_id, version=version, against=against, changes=changes)


@router.get("/{agreement_id}/events", response_model=Page[EventRead], responses=problems(401, 404))
def list_agreement_events(
    agreement_id: uuid.UUID,
    member: CurrentMember,
    session: SessionDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[EventRead]:
    """The agreement's hash-chained trail, oldest first."""
    rows, next_cursor = agreements.trail(
        session, viewer=member, agreement_id=agreement_id, limit=limit, cursor=cursor
    )
    return Page(items=[event_read(row) for row in rows], next_cursor=next_cursor)


@router.get(
    "/{agreement_id}/verify", response_model=ChainVerification, responses=problems(401, 404)
)
def verify_agreement(
    agreement_id: uuid.UUID, member: CurrentMember, session: SessionDep
) -> ChainVerification:
    """Recompute the trail's hash chain and the terms hashes; names the first broken event."""
    return agreements.verify(session, viewer=member, agreement_id=agreement_id)
