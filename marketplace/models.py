"""Storage truth: SQLModel tables only. Never returned from an endpoint (see `schemas/`)."""

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, MetaData, String, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, Relationship, SQLModel

from schemas.listings import ListingKind, ListingStatus, Sector, Visibility
from schemas.members import Role
from schemas.organizations import OrganizationKind

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
