"""Organizations (universities, companies, governments, institutes) and their sign-up."""

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    StringConstraints,
    model_validator,
)

from schemas.codes import CountryCode
from schemas.members import MemberRead, OwnerSignUp
from schemas.strict import StrictModel
from schemas.text import no_nul


class OrganizationKind(StrEnum):
    UNIVERSITY = "university"
    COMPANY = "company"
    GOVERNMENT = "government"
    RESEARCH_INSTITUTE = "research_institute"
    OTHER = "other"


_SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def _slug(value: str) -> str:
    slug = value.strip().lower()
    if not 2 <= len(slug) <= 60 or not _SLUG.match(slug):
        raise ValueError("a slug is 2-60 letters, digits and single hyphens, e.g. 'hefei-lab'")
    return slug


OrgName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=2, max_length=200),
    AfterValidator(no_nul),
]
Slug = Annotated[str, AfterValidator(_slug)]
Region = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=200), AfterValidator(no_nul)
]
Description = Annotated[str, StringConstraints(max_length=5_000), AfterValidator(no_nul)]


class OrganizationFields(StrictModel):
    name: OrgName
    slug: Slug | None = None
    kind: OrganizationKind
    country: CountryCode
    region: Region = ""
    website: AnyHttpUrl | None = None
    description: Description = ""


class OrganizationSignUp(StrictModel):
    """Self-service sign-up: the organization and its first owner in one request."""

    organization: OrganizationFields
    owner: OwnerSignUp


class OrganizationUpdate(StrictModel):
    """A partial update: omitted fields stay; only `website` may be cleared with null."""

    name: OrgName | None = None
    kind: OrganizationKind | None = None
    country: CountryCode | None = None
    region: Region | None = None
    website: AnyHttpUrl | None = None
    description: Description | None = None

    @model_validator(mode="after")
    def _no_null_for_required(self) -> "OrganizationUpdate":
        nulled = sorted(
            name for name in self.model_fields_set - {"website"} if getattr(self, name) is None
        )
        if nulled:
            raise ValueError(f"these fields cannot be null: {', '.join(nulled)}")
        return self


class VerificationUpdate(StrictModel):
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
