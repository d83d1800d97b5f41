"""Saved searches: an organization's standing query and alert threshold.

A saved search looks for new listings either by free text (`text`, like `POST /search`) or as
counterparts of one of the organization's own listings (`listing_id`, like
`GET /listings/{id}/matches`), with the filters of `SearchRequest`. When a listing of another
organization is published and scores at least `min_score` there, the organization gets a
`match.new` event.
"""

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, Field

from schemas.codes import CountryCode
from schemas.listings import ListingKind, Sector, Side
from schemas.matches import QueryText
from schemas.organizations import OrganizationKind
from schemas.partial import Omittable
from schemas.strict import StrictModel
from schemas.text import ShortText

MinScore = Annotated[
    float,
    Field(
        ge=0.0,
        le=1.0,
        description="Alert threshold: a new listing scoring at least this raises `match.new`.",
    ),
]
Kinds = Annotated[list[ListingKind], Field(min_length=1, max_length=4)]

_TEXT = "Free text (English or Chinese) to look for; give this or `listing_id`."
_LISTING = "One of your organization's listings whose new counterparts to look for."


class SavedSearchCreate(StrictModel):
    name: ShortText
    text: QueryText | None = Field(default=None, description=_TEXT)
    listing_id: UUID | None = Field(default=None, description=_LISTING)
    kinds: Kinds | None = None
    side: Side | None = None
    sector: Sector | None = None
    country: CountryCode | None = None
    organization_kind: OrganizationKind | None = None
    min_score: MinScore
    enabled: bool = True


class SavedSearchUpdate(StrictModel):
    """Fields to change; a filter, `text` or `listing_id` sent as null is cleared."""

    name: Omittable[ShortText] = None
    text: QueryText | None = Field(default=None, description=_TEXT)
    listing_id: UUID | None = Field(default=None, description=_LISTING)
    kinds: Kinds | None = None
    side: Side | None = None
    sector: Sector | None = None
    country: CountryCode | None = None
    organization_kind: OrganizationKind | None = None
    min_score: Omittable[MinScore] = None
    enabled: Omittable[bool] = None


class SavedSearchRead(BaseModel):
    id: UUID
    organization_id: UUID
    name: str
    text: str | None
    listing_id: UUID | None
    kinds: list[ListingKind] | None
    side: Side | None
    sector: Sector | None
    country: str | None
    organization_kind: OrganizationKind | None
    min_score: float
    enabled: bool
    created_at: datetime
    updated_at: datetime
    version: int
