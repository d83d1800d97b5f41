"""The audit trail: append-only events in hash chains, one chain per subject."""

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field


class SubjectType(StrEnum):
    AGREEMENT = "agreement"
    LISTING = "listing"
    SAVED_SEARCH = "saved_search"


class EventType(StrEnum):
    LISTING_PUBLISHED = "listing.published"
    MATCH_NEW = "match.new"
    AGREEMENT_PROPOSED = "agreement.proposed"
    AGREEMENT_COUNTERED = "agreement.countered"
    AGREEMENT_PARTY_SIGNED = "agreement.party_signed"
    AGREEMENT_SIGNED = "agreement.signed"
    AGREEMENT_ACTIVATED = "agreement.activated"
    AGREEMENT_COMPLETION_CONFIRMED = "agreement.completion_confirmed"
    AGREEMENT_COMPLETED = "agreement.completed"
    AGREEMENT_WITHDRAWN = "agreement.withdrawn"
    AGREEMENT_REJECTED = "agreement.rejected"
    AGREEMENT_EXPIRED = "agreement.expired"
    AGREEMENT_TERMINATED = "agreement.terminated"
    AGREEMENT_COMMENTED = "agreement.commented"


class EventRead(BaseModel):
    id: UUID
    type: EventType
    subject_type: SubjectType
    subject_id: UUID
    sequence: int = Field(description="Position in the subject's chain, from 1.")
    actor_member_id: UUID | None = Field(description="None for the platform's own actions.")
    organization_id: UUID | None
    terms_hash: str | None
    data: dict[str, Any]
    occurred_at: datetime
    prev_hash: str
    hash: str = Field(description="SHA-256 over this event's canonical JSON and `prev_hash`.")


class BrokenLink(BaseModel):
    sequence: int
    event_id: UUID | None = Field(description="None when events are missing from the end.")
    reason: str


class ChainVerification(BaseModel):
    valid: bool
    events_checked: int
    first_broken: BrokenLink | None
    terms_versions_checked: int
    broken_terms_versions: list[int] = Field(
        description="Terms versions whose stored text no longer matches their hash."
    )
