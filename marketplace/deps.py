"""Named FastAPI dependencies: settings, database session, caller identity, ETags."""

import re
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from marketplace.errors import BadRequest, PreconditionRequired, Unauthenticated
from marketplace.models import Member
from marketplace.search_index import SearchIndex
from marketplace.services import tokens
from marketplace.settings import Settings
from schemas.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

# Dependencies that never block are `async def`: FastAPI runs a plain `def` dependency in its
# thread pool, and each such hop costs a request tens of microseconds under load.


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session for the request; opening one does no I/O, closing it (which may return a
    connection to the pool with a rollback) runs in the thread pool."""
    session = Session(request.app.state.engine, expire_on_commit=False)
    try:
        yield session
    finally:
        await run_in_threadpool(session.close)


async def get_search_index(request: Request) -> SearchIndex:
    return request.app.state.search_index  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]
SearchIndexDep = Annotated[SearchIndex, Depends(get_search_index)]
SessionDep = Annotated[Session, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="An API token from POST /api/v1/auth/tokens.")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def get_optional_member(session: SessionDep, credentials: BearerDep) -> Member | None:
    if credentials is None:
        return None
    return await run_in_threadpool(tokens.authenticate, session, credentials.credentials)


async def get_current_member(
    member: Annotated[Member | None, Depends(get_optional_member)],
) -> Member:
    if member is None:
        raise Unauthenticated()
    return member


OptionalMember = Annotated[Member | None, Depends(get_optional_member)]
CurrentMember = Annotated[Member, Depends(get_current_member)]


async def get_client_address(request: Request, settings: SettingsDep) -> str:
    """The caller's address; X-Forwarded-For only when a trusted proxy sets it."""
    forwarded = request.headers.get("x-forwarded-for")
    if settings.trust_forwarded_for and forwarded:
        return forwarded.split(",")[0].strip()
    return request.client.host if request.client else "unknown"


ClientAddress = Annotated[str, Depends(get_client_address)]

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size.")]
Cursor = Annotated[
    str | None, Query(max_length=200, description="`next_cursor` from the previous page.")
]
DEFAULT_LIMIT = DEFAULT_PAGE_SIZE

_ETAG = re.compile(r'^(?:W/)?"?(\d{1,18})"?$')


def etag(version: int) -> str:
    return f'"{version}"'


def _parse_if_match(if_match: str | None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    match = _ETAG.match(if_match.strip())
    if match is None:
        raise BadRequest("If-Match must be an ETag this API issued.", code="invalid_if_match")
    return int(match.group(1))


async def required_if_match(
    if_match: Annotated[str | None, Header(description="The ETag you last read.")] = None,
) -> int | None:
    if if_match is None:
        raise PreconditionRequired(
            "Send If-Match with the ETag you last read.", code="if_match_required"
        )
    return _parse_if_match(if_match)


async def optional_if_match(
    if_match: Annotated[str | None, Header(description="The ETag you last read.")] = None,
) -> int | None:
    return _parse_if_match(if_match)


RequiredVersion = Annotated[int | None, Depends(required_if_match)]
OptionalVersion = Annotated[int | None, Depends(optional_if_match)]

IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Any unique printable string; a retry with the same key within 24 hours "
        "(the server's setting) gets the first response instead of creating again.",
    ),
]
