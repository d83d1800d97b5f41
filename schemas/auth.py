"""Sign-in and API tokens."""

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from schemas.members import MemberRead
from schemas.organizations import OrganizationRead
from schemas.strict import StrictModel
from schemas.text import no_nul

TokenName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(no_nul),
]


class TokenRequest(StrictModel):
    email: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=3, max_length=320),
        AfterValidator(no_nul),
    ]
    password: Annotated[
        str, StringConstraints(min_length=1, max_length=256), AfterValidator(no_nul)
    ]
    name: TokenName = "api"
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class TokenRead(BaseModel):
    id: UUID
    name: str
    prefix: str = Field(description="The first characters of the token, to recognise it.")
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenRead):
    token: str = Field(description="The secret itself; shown only in this response.")


class Me(BaseModel):
    member: MemberRead
    organization: OrganizationRead
