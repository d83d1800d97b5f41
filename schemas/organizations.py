"""Organizations (universities, companies, governments, institutes) and their sign-up."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, StringConstraints

from schemas.codes import CountryCode
from schemas.members import MemberRead, OwnerSignUp


class OrganizationKind(StrEnum):
    UNIVERSITY = "university"
    COMPANY = "company"
    GOVERNMENT = "government"
    RESEARCH_INSTITUTE = "research_institute"
    OTHER = "other"


OrgName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=200)]
Slug = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        to_lower=True,
        min_length=2,
        max_length=60,
        pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$",
    ),
]
Region = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=5_000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrganizationFields(_Strict):
    name: OrgName
    slug: Slug | None = None
    kind: OrganizationKind
    country: CountryCode
    region: Region = ""
    website: AnyHttpUrl | None = None
    description: Description = ""


class OrganizationSignUp(_Strict):
    """Self-service sign-up: the organization and its first owner in one request."""

    organization: OrganizationFields
    owner: OwnerSignUp


class OrganizationUpdate(_Strict):
    name: OrgName | None = None
    kind: OrganizationKind | None = None
    country: CountryCode | None = None
    region: Region | None = None
    website: AnyHttpUrl | None = None
    description: Description | None = None


class VerificationUpdate(_Strict):
    verified: bool


class OrganizationRead(BaseModel):
    id: UUID
    name: str
    slug: str
    kind: OrganizationKind
    country: str
    region: str
    website: str | None
    description: str
    verified: bool
    created_at: datetime
    updated_at: datetime


class OrganizationCreated(BaseModel):
    organization: OrganizationRead
    owner: MemberRead
