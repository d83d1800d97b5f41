"""Webhook endpoints and their deliveries (Standard Webhooks signatures)."""

import base64
import binascii
from datetime import datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import AfterValidator, AnyHttpUrl, BaseModel, Field, UrlConstraints

from schemas.events import EventType
from schemas.strict import StrictModel
from schemas.text import Paragraph

SECRET_PREFIX = "whsec_"


def _secret(value: str) -> str:
    """A Standard Webhooks secret: `whsec_` and the base64 of 24 to 64 random bytes."""
    if not value.startswith(SECRET_PREFIX):
        raise ValueError(f"a secret starts with '{SECRET_PREFIX}'")
    try:
        key = base64.b64decode(value.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a secret is 'whsec_' followed by base64") from exc
    if not 24 <= len(key) <= 64:
        raise ValueError("a secret carries 24 to 64 bytes")
    return value


def _distinct(values: list[EventType]) -> list[EventType]:
    return sorted(set(values))


WebhookSecret = Annotated[str, Field(max_length=100), AfterValidator(_secret)]
WebhookUrl = Annotated[AnyHttpUrl, UrlConstraints(max_length=2083)]
EventTypes = Annotated[
    list[EventType], Field(min_length=1, max_length=len(EventType)), AfterValidator(_distinct)
]


class WebhookEndpointCreate(StrictModel):
    url: WebhookUrl
    event_types: EventTypes
    description: Paragraph = ""
    secret: WebhookSecret | None = Field(
        default=None, description="Your own `whsec_...` secret; one is generated if unset."
    )


class WebhookEndpointUpdate(StrictModel):
    url: WebhookUrl | None = None
    event_types: EventTypes | None = None
    description: Paragraph | None = None
    enabled: bool | None = None
    secret: WebhookSecret | None = Field(default=None, description="Rotate the secret.")


class WebhookEndpointRead(BaseModel):
    id: UUID
    organization_id: UUID
    url: str
    event_types: list[EventType]
    description: str
    enabled: bool
    created_at: datetime
    updated_at: datetime
    version: int


class WebhookEndpointCreated(WebhookEndpointRead):
    secret: str = Field(description="The signing secret; shown only in this response.")


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class DeliveryRead(BaseModel):
    id: UUID
    endpoint_id: UUID
    event_id: UUID
    event_type: EventType
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None = Field(description="When a pending delivery is tried next.")
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
