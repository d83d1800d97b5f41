"""Webhooks: an organization's endpoints (owners and admins), their deliveries and replays."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from marketplace.api import problems
from marketplace.deps import (
    DEFAULT_LIMIT,
    CurrentMember,
    Cursor,
    Limit,
    OptionalVersion,
    RequiredVersion,
    SessionDep,
    SettingsDep,
    etag,
)
from marketplace.mappers import delivery_read, webhook_endpoint_created, webhook_endpoint_read
from marketplace.services import webhooks
from schemas.pagination import Page
from schemas.webhooks import (
    DeliveryRead,
    DeliveryStatus,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointRead,
    WebhookEndpointUpdate,
)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookEndpointCreated,
    responses=problems(401, 403, 409),
)
def create_endpoint(
    body: WebhookEndpointCreate,
    member: CurrentMember,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> WebhookEndpointCreated:
    """Register an endpoint for your organization's events; the secret is shown only here."""
    endpoint = webhooks.create(
        session,
        actor=member,
        data=body,
        allow_private=settings.webhook_allow_private_addresses,
    )
    response.headers["ETag"] = etag(endpoint.version)
    response.headers["Location"] = f"/api/v1/webhooks/{endpoint.id}"
    return webhook_endpoint_created(endpoint)


@router.get("", response_model=Page[WebhookEndpointRead], responses=problems(401, 403))
def list_endpoints(
    member: CurrentMember, session: SessionDep, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Page[WebhookEndpointRead]:
    """Your organization's endpoints, oldest first."""
    rows, next_cursor = webhooks.list_for(session, actor=member, limit=limit, cursor=cursor)
    return Page(items=[webhook_endpoint_read(row) for row in rows], next_cursor=next_cursor)


@router.get("/{endpoint_id}", response_model=WebhookEndpointRead, responses=problems(401, 403, 404))
def read_endpoint(
    endpoint_id: uuid.UUID, member: CurrentMember, session: SessionDep, response: Response
) -> WebhookEndpointRead:
    """One endpoint; its ETag comes in the ETag header."""
    endpoint = webhooks.get(session, actor=member, endpoint_id=endpoint_id)
    response.headers["ETag"] = etag(endpoint.version)
    return webhook_endpoint_read(endpoint)


@router.patch(
    "/{endpoint_id}",
    response_model=WebhookEndpointRead,
    responses=problems(401, 403, 404, 412, 428),
)
def update_endpoint(
    endpoint_id: uuid.UUID,
    body: WebhookEndpointUpdate,
    expected_version: RequiredVersion,
    member: CurrentMember,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> WebhookEndpointRead:
    """Change the URL, event types, description, secret or enabled flag; send If-Match."""
    endpoint = webhooks.update(
        session,
        actor=member,
        endpoint_id=endpoint_id,
        data=body,
        expected_version=expected_version,
        allow_private=settings.webhook_allow_private_addresses,
    )
    response.headers["ETag"] = etag(endpoint.version)
    return webhook_endpoint_read(endpoint)


@router.delete(
    "/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problems(401, 403, 404, 412),
)
def delete_endpoint(
    endpoint_id: uuid.UUID,
    expected_version: OptionalVersion,
    member: CurrentMember,
    session: SessionDep,
) -> None:
    """Remove an endpoint and its delivery history (If-Match optional, checked when sent)."""
    webhooks.delete(
        session, actor=member, endpoint_id=endpoint_id, expected_version=expected_version
    )


@router.get(
    "/{endpoint_id}/deliveries",
    response_model=Page[DeliveryRead],
    responses=problems(401, 403, 404),
)
def list_deliveries(
    endpoint_id: uuid.UUID,
    member: CurrentMember,
    session: SessionDep,
    delivery_status: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[DeliveryRead]:
    """The endpoint's deliveries, newest first: status, attempts, last error."""
    rows, next_cursor = webhooks.deliveries(
        session,
        actor=member,
        endpoint_id=endpoint_id,
        status=delivery_status,
        limit=limit,
        cursor=cursor,
    )
    return Page(items=[delivery_read(row) for row in rows], next_cursor=next_cursor)


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryRead,
    responses=problems(401, 403, 404, 409),
)
def replay_delivery(
    endpoint_id: uuid.UUID, delivery_id: uuid.UUID, member: CurrentMember, session: SessionDep
) -> DeliveryRead:
    """Queue a finished delivery's event again (a new delivery, the same webhook-id)."""
    return delivery_read(
        webhooks.replay(session, actor=member, endpoint_id=endpoint_id, delivery_id=delivery_id)
    )
