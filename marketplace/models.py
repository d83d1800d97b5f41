"""Storage truth: SQLModel tables only. Never returned from an endpoint (see `schemas/`)."""

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Index,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, Relationship, SQLModel

from schemas.agreements import AgreementStatus, AgreementType
from schemas.listings import ListingKind, ListingStatus, Sector, Side, Visibility
from schemas.matches import FeedbackVerdict
from schemas.members import Role
from schemas.organizations import OrganizationKind
from schemas.webhooks import DeliveryStatus

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata: MetaData = SQLModel.metadata


def utc_now() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _timestamp(**kwargs: Any) -> Any:
    return Field(default_factory=utc_now, sa_type=UTCDateTime, **kwargs)


class Organization(SQLModel, table=True):
    __tablename__ = "organizations"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(max_length=200)
    slug: str = Field(max_length=60, unique=True)
    kind: OrganizationKind = Field(sa_type=String(32), index=True)
    country: str = Field(max_length=2, index=True)
    region: str = Field(default="", max_length=200)
    website: str | None = Field(default=None, max_length=2083)
    description: str = Field(default="", max_length=5000)
    verified: bool = False
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class Member(SQLModel, table=True):
    __tablename__ = "members"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    email: str = Field(max_length=320, unique=True, description="Stored lower-cased.")
    display_name: str = Field(max_length=120)
    password_hash: str = Field(max_length=255)
    organization_id: uuid.UUID = Field(
        foreign_key="organizations.id", index=True, ondelete="CASCADE"
    )
    role: Role = Field(sa_type=String(16))
    is_platform_admin: bool = False
    created_at: datetime = _timestamp()


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_tokens"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    member_id: uuid.UUID = Field(foreign_key="members.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=100)
    prefix: str = Field(max_length=16)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = _timestamp()
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SignInAttempt(SQLModel, table=True):
    """Recent sign-in and sign-up attempts, kept in the database so every worker sees them."""

    __tablename__ = "sign_in_attempts"
    __table_args__ = (Index("ix_sign_in_attempts_key_at", "key", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=400)
    at: datetime = _timestamp()


class Listing(SQLModel, table=True):
    """A need (dataset, scenario) or offer (compute, model); `row_id` keys the vector index."""

    __tablename__ = "listings"
    __table_args__ = (
        UniqueConstraint("id"),
        Index("ix_listings_status_visibility", "status", "visibility"),
    )

    row_id: int | None = Field(default=None, primary_key=True)
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    organization_id: uuid.UUID = Field(
        foreign_key="organizations.id", index=True, ondelete="CASCADE"
    )
    kind: ListingKind = Field(sa_type=String(16), index=True)
    title: str = Field(max_length=200)
    summary: str = Field(default="", max_length=500)
    description: str = Field(default="", max_length=20000)
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    sector: Sector = Field(sa_type=String(32), index=True)
    country: str = Field(max_length=2, index=True)
    region: str = Field(default="", max_length=200)
    languages: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: ListingStatus = Field(sa_type=String(16))
    visibility: Visibility = Field(sa_type=String(16))
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()
    version: int = 1

    organization: Organization = Relationship(sa_relationship_kwargs={"lazy": "joined"})


class Agreement(SQLModel, table=True):
    """A negotiation between party organizations; `version` is its ETag (compare-and-set).

    The current terms' hash and dates are copied here from `agreement_terms` so deadlines can be
    found by query; terms versions themselves never change.
    """

    __tablename__ = "agreements"
    __table_args__ = (
        UniqueConstraint("id"),
        Index("ix_agreements_status_respond_by", "status", "respond_by"),
    )

    row_id: int | None = Field(default=None, primary_key=True)
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: AgreementType = Field(sa_type=String(32))
    title: str = Field(max_length=200)
    status: AgreementStatus = Field(sa_type=String(16))
    status_reason: str | None = Field(default=None, max_length=2000)
    proposer_organization_id: uuid.UUID = Field(foreign_key="organizations.id", index=True)
    terms_version: int = 1
    terms_hash: str = Field(max_length=64)
    respond_by: datetime = Field(sa_type=UTCDateTime)
    start_date: date
    end_date: date
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()
    version: int = 1

    parties: list["AgreementParty"] = Relationship(
        sa_relationship_kwargs={"lazy": "selectin", "order_by": "AgreementParty.position"}
    )
    signatures: list["AgreementSignature"] = Relationship(
        sa_relationship_kwargs={"lazy": "selectin"}
    )


class AgreementParty(SQLModel, table=True):
    """An organization in an agreement and the listings (its own) it brings."""

    __tablename__ = "agreement_parties"

    agreement_id: uuid.UUID = Field(
        foreign_key="agreements.id", primary_key=True, ondelete="CASCADE"
    )
    organization_id: uuid.UUID = Field(foreign_key="organizations.id", primary_key=True, index=True)
    position: int
    listing_ids: list[str] = Field(sa_column=Column(JSON, nullable=False))
    completion_confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    organization: Organization = Relationship(sa_relationship_kwargs={"lazy": "joined"})


class AgreementTerms(SQLModel, table=True):
    """One immutable terms version; `hash` is the SHA-256 of the canonical JSON of `terms`.

    Member ids here and below are kept without foreign keys: the record outlives a member.
    """

    __tablename__ = "agreement_terms"

    agreement_id: uuid.UUID = Field(
        foreign_key="agreements.id", primary_key=True, ondelete="CASCADE"
    )
    version: int = Field(primary_key=True)
    terms: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    hash: str = Field(max_length=64)
    author_organization_id: uuid.UUID = Field(foreign_key="organizations.id")
    author_member_id: uuid.UUID
    created_at: datetime = _timestamp()


class AgreementSignature(SQLModel, table=True):
    """A party's signature of one terms version; a counter-proposal voids the earlier ones."""

    __tablename__ = "agreement_signatures"
    __table_args__ = (UniqueConstraint("agreement_id", "organization_id", "terms_version"),)

    id: int | None = Field(default=None, primary_key=True)
    agreement_id: uuid.UUID = Field(foreign_key="agreements.id", index=True, ondelete="CASCADE")
    organization_id: uuid.UUID = Field(foreign_key="organizations.id")
    member_id: uuid.UUID
    terms_version: int
    terms_hash: str = Field(max_length=64)
    signed_at: datetime = _timestamp()
    voided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class EventChain(SQLModel, table=True):
    """The head of one subject's hash chain; appends update it, which serialises them."""

    __tablename__ = "event_chains"

    subject_type: str = Field(max_length=32, primary_key=True)
    subject_id: uuid.UUID = Field(primary_key=True)
    length: int = 0
    head_hash: str = Field(max_length=64)


class Event(SQLModel, table=True):
    """An append-only audit event; `hash` covers its fields and the previous event's hash."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("subject_type", "subject_id", "sequence"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    subject_type: str = Field(max_length=32)
    subject_id: uuid.UUID
    sequence: int
    type: str = Field(max_length=64)
    actor_member_id: uuid.UUID | None = None
    organization_id: uuid.UUID | None = None
    terms_hash: str | None = Field(default=None, max_length=64)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    occurred_at: datetime = _timestamp()
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class WebhookEndpoint(SQLModel, table=True):
    """Where an organization wants events delivered; the secret signs every delivery."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (UniqueConstraint("id"),)

    row_id: int | None = Field(default=None, primary_key=True)
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    organization_id: uuid.UUID = Field(
        foreign_key="organizations.id", index=True, ondelete="CASCADE"
    )
    url: str = Field(max_length=2083)
    description: str = Field(default="", max_length=2000)
    secret: str = Field(max_length=100)
    event_types: list[str] = Field(sa_column=Column(JSON, nullable=False))
    enabled: bool = True
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()
    version: int = 1


class WebhookDelivery(SQLModel, table=True):
    """The outbox: one row per (event, endpoint), written in the event's own transaction.

    A dispatcher claims a due row (`claim_token`, leased until `claimed_until`), sends it, and
    records the outcome only if its claim still holds.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("id"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    row_id: int | None = Field(default=None, primary_key=True)
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    endpoint_id: uuid.UUID = Field(
        foreign_key="webhook_endpoints.id", index=True, ondelete="CASCADE"
    )
    event_id: uuid.UUID = Field(foreign_key="events.id", index=True)
    status: DeliveryStatus = Field(sa_type=String(16))
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    claim_token: uuid.UUID | None = None
    last_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=1000)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = _timestamp()

    event: Event = Relationship(sa_relationship_kwargs={"lazy": "joined"})


class IdempotencyKey(SQLModel, table=True):
    """The first response to a creating POST, replayed when the same key comes again."""

    __tablename__ = "idempotency_keys"

    member_id: uuid.UUID = Field(foreign_key="members.id", primary_key=True, ondelete="CASCADE")
    key: str = Field(max_length=255, primary_key=True)
    fingerprint: str = Field(max_length=64)
    response: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = _timestamp()


class ListingEmbedding(SQLModel, table=True):
    """A listing's stored embedding; the vector index is a cache rebuilt from these rows."""

    __tablename__ = "listing_embeddings"

    listing_row_id: int = Field(foreign_key="listings.row_id", primary_key=True, ondelete="CASCADE")
    model_name: str = Field(max_length=500)
    text_hash: str = Field(max_length=64, description="SHA-256 of the embedded text.")
    dimension: int
    vector: bytes = Field(sa_type=LargeBinary, description="float32, little-endian, unit length.")
    sentence_vectors: bytes | None = Field(
        default=None,
        sa_type=LargeBinary,
        description="float16, little-endian: unit rows for the first sentences (evidence).",
    )
    updated_at: datetime = _timestamp()


class IndexChange(SQLModel, table=True):
    """The change sequence: every write that may alter a listing's place in the index.

    Each API worker applies new rows to its in-memory index, so all workers converge.
    """

    __tablename__ = "index_changes"

    seq: int | None = Field(default=None, primary_key=True)
    listing_row_id: int = Field(index=True)
    at: datetime = _timestamp()


class MatchFeedback(SQLModel, table=True):
    """An organization's verdict on a counterpart proposed for one of its listings."""

    __tablename__ = "match_feedback"
    __table_args__ = (UniqueConstraint("organization_id", "listing_id", "counterpart_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    organization_id: uuid.UUID = Field(
        foreign_key="organizations.id", index=True, ondelete="CASCADE"
    )
    listing_id: uuid.UUID = Field(foreign_key="listings.id", ondelete="CASCADE")
    counterpart_id: uuid.UUID = Field(foreign_key="listings.id", index=True, ondelete="CASCADE")
    member_id: uuid.UUID | None = Field(default=None, foreign_key="members.id", ondelete="SET NULL")
    verdict: FeedbackVerdict = Field(sa_type=String(16))
    reason: str = Field(default="", max_length=1000)
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class SavedSearch(SQLModel, table=True):
    """An organization's standing query, free text or one of its own listings, and the score
    at which a newly published listing raises `match.new` for it.

    A text search stores the embedding of its text (`query_vector`, float32 like
    `listing_embeddings`, of `model_name`), written with the text, so alerts never re-embed it.
    """

    __tablename__ = "saved_searches"
    __table_args__ = (UniqueConstraint("id"),)

    row_id: int | None = Field(default=None, primary_key=True)
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    organization_id: uuid.UUID = Field(
        foreign_key="organizations.id", index=True, ondelete="CASCADE"
    )
    name: str = Field(max_length=200)
    text: str | None = Field(default=None, max_length=2000)
    listing_id: uuid.UUID | None = Field(
        default=None, foreign_key="listings.id", index=True, ondelete="CASCADE"
    )
    kinds: list[str] | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )
    side: Side | None = Field(default=None, sa_type=String(8))
    sector: Sector | None = Field(default=None, sa_type=String(32))
    country: str | None = Field(default=None, max_length=2)
    organization_kind: OrganizationKind | None = Field(default=None, sa_type=String(32))
    min_score: float
    enabled: bool = True
    model_name: str | None = Field(default=None, max_length=500)
    query_vector: bytes | None = Field(default=None, sa_type=LargeBinary)
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()
    version: int = 1


class MatchAlertJob(SQLModel, table=True):
    """A published listing whose `match.new` alerts are still to be raised.

    Written in the transaction of its `listing.published` event; deleted in the transaction that
    appends the alerts (services/match_alerts.py). At most one is pending per listing.
    """

    __tablename__ = "match_alert_jobs"

    listing_id: uuid.UUID = Field(foreign_key="listings.id", primary_key=True, ondelete="CASCADE")
    event_id: uuid.UUID = Field(foreign_key="events.id")
    queued_at: datetime = _timestamp()
