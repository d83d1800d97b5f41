"""Members of organizations and their roles."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import AfterValidator, BaseModel, EmailStr, StringConstraints

from schemas.strict import StrictModel
from schemas.text import no_nul

Password = Annotated[str, StringConstraints(min_length=10, max_length=256), AfterValidator(no_nul)]
DisplayName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=120),
    AfterValidator(no_nul),
]


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


MANAGER_ROLES = frozenset({Role.OWNER, Role.ADMIN})


class OwnerSignUp(StrictModel):
    email: EmailStr
    display_name: DisplayName
    password: Password


class MemberCreate(StrictModel):
    email: EmailStr
    display_name: DisplayName
    password: Password
    role: Role = Role.MEMBER


class MemberRead(BaseModel):
    id: UUID
    email: str
    display_name: str
    organization_id: UUID
    role: Role
    is_platform_admin: bool
    created_at: datetime
