"""Webhook endpoints (an organization's owners and admins manage them), the outbox of deliveries
written with each event, and the owner's view of those deliveries, replay included."""

import base64
import secrets
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import update as sql_update
from sqlmodel import Session, col, func, select

from marketplace import url_guard
from marketplace.errors import Conflict, InvalidInput, NotFound
from marketplace.models import Event, Member, WebhookDelivery, WebhookEndpoint, utc_now
from marketplace.services import members, versions
from marketplace.services.pagination import decode_cursor, next_cursor
from schemas.errors import FieldError
from schemas.webhooks import (
    SECRET_PREFIX,
    DeliveryStatus,
    WebhookEndpointCreate,
    WebhookEndpointUpdate,
)

MAX_ENDPOINTS_PER_ORGANIZATION = 20


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _check_url(url: str, *, allow_private: bool) -> None:
    try:
        url_guard.resolve(url, allow_private=allow_private)
    except url_guard.UnsafeUrl as exc:
        raise InvalidInput(
            str(exc),
            code="webhook_url_not_allowed",
            errors=[FieldError(field="body.url", message=str(exc))],
        ) from exc


def create(
    session: Session, *, actor: Member, data: WebhookEndpointCreate, allow_private: bool
) -> WebhookEndpoint:
    """Register an endpoint for the actor's organization; its URL must reach public addresses."""
    members.require_manager(actor, actor.organization_id)
    count = session.exec(
        select(func.count()).where(WebhookEndpoint.organization_id == actor.organization_id)
    ).one()
    if count >= MAX_ENDPOINTS_PER_ORGANIZATION:
        raise Conflict(
            f"An organization has at most {MAX_ENDPOINTS_PER_ORGANIZATION} webhook endpoints.",
            code="too_many_endpoints",
        )
    _check_url(str(data.url), allow_private=allow_private)
    endpoint = WebhookEndpoint(
        organization_id=actor.organization_id,
        url=str(data.url),
        description=data.description,
        secret=data.secret or new_secret(),
        event_types=[str(t) for t in data.event_types],
    )
    session.add(endpoint)
    session.commit()
    session.refresh(endpoint)
    return endpoint


def get(session: Session, *, actor: Member, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    """One of the actor's organization's endpoints; another organization's is reported missing."""
    members.require_manager(actor, actor.organization_id)
    endpoint = session.exec(
        select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id,
            WebhookEndpoint.organization_id == actor.organization_id,
        )
    ).first()
    if endpoint is None:
        raise NotFound("No such webhook endpoint.")
    return endpoint


def list_for(
    session: Session, *, actor: Member, limit: int, cursor: str | None
) -> tuple[list[WebhookEndpoint], str | None]:
    """The organization's endpoints, oldest first."""
    members.require_manager(actor, actor.organization_id)
    query = select(WebhookEndpoint).where(WebhookEndpoint.organization_id == actor.organization_id)
    after = decode_cursor(cursor, int)
    if after is not None:
        query = query.where(col(WebhookEndpoint.row_id) > after)
    rows = list(session.exec(query.order_by(col(WebhookEndpoint.row_id)).limit(limit + 1)))
    return rows[:limit], next_cursor([r.row_id or 0 for r in rows], limit, len(rows))


def update(
    session: Session,
    *,
    actor: Member,
    endpoint_id: uuid.UUID,
    data: WebhookEndpointUpdate,
    expected_version: int | None,
    allow_private: bool,
) -> WebhookEndpoint:
    """Change an endpoint if the caller saw its current version."""
    endpoint = get(session, actor=actor, endpoint_id=endpoint_id)
    versions.check_version(endpoint, expected_version, noun="endpoint")
    values: dict[str, Any] = {
        field: value
        for field, value in data.model_dump(mode="json", exclude_unset=True).items()
        if value is not None
    }
    if "url" in values:
        _check_url(values["url"], allow_private=allow_private)
    versions.compare_and_set(
        session,
        endpoint,
        sql_update(WebhookEndpoint).values(
            **values, version=endpoint.version + 1, updated_at=utc_now()
        ),
        noun="endpoint",
    )
    session.commit()
    session.refresh(endpoint)
    return endpoint


def delete(
    session: Session, *, actor: Member, endpoint_id: uuid.UUID, expected_version: int | None
) -> None:
    """Remove an endpoint and its delivery history."""
    endpoint = get(session, actor=actor, endpoint_id=endpoint_id)
    versions.check_version(endpoint, expected_version, noun="endpoint")
    versions.compare_and_set(session, endpoint, sql_delete(WebhookEndpoint), noun="endpoint")
    session.commit()


def enqueue(session: Session, audiences: Sequence[tuple[Event, Iterable[uuid.UUID]]]) -> None:
    """Queue each event for every enabled endpoint of its audience's organizations that
    subscribed to it, in the caller's transaction (the transactional outbox)."""
    wanted = {organization for _, audience in audiences for organization in audience}
    if not wanted:
        return
    endpoints = session.exec(
        select(WebhookEndpoint).where(
            col(WebhookEndpoint.organization_id).in_(sorted(wanted)),
            col(WebhookEndpoint.enabled),
        )
    ).all()
    for event, audience in audiences:
        listeners = set(audience)
        session.add_all(
            WebhookDelivery(
                endpoint_id=endpoint.id,
                event_id=event.id,
                status=DeliveryStatus.PENDING,
                next_attempt_at=event.occurred_at,
            )
            for endpoint in endpoints
            if endpoint.organization_id in listeners and event.type in endpoint.event_types
        )


def deliveries(
    session: Session,
    *,
    actor: Member,
    endpoint_id: uuid.UUID,
    status: DeliveryStatus | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[WebhookDelivery], str | None]:
    """An endpoint's deliveries, newest first."""
    endpoint = get(session, actor=actor, endpoint_id=endpoint_id)
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    after = decode_cursor(cursor, int)
    if after is not None:
        query = query.where(col(WebhookDelivery.row_id) < after)
    rows = list(session.exec(query.order_by(col(WebhookDelivery.row_id).desc()).limit(limit + 1)))
    return rows[:limit], next_cursor([r.row_id or 0 for r in rows], limit, len(rows))


def replay(
    session: Session, *, actor: Member, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> WebhookDelivery:
    """Send a finished delivery's event again, as a new delivery with the same webhook-id."""
    endpoint = get(session, actor=actor, endpoint_id=endpoint_id)
    original = session.exec(
        select(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint.id
        )
    ).first()
    if original is None:
        raise NotFound("No such delivery for this endpoint.")
    if original.status == DeliveryStatus.PENDING:
        raise Conflict("The delivery is still pending; it will be sent.", code="delivery_pending")
    again = WebhookDelivery(
        endpoint_id=endpoint.id,
        event_id=original.event_id,
        status=DeliveryStatus.PENDING,
        next_attempt_at=utc_now(),
    )
    session.add(again)
    session.commit()
    session.refresh(again)
    return again
