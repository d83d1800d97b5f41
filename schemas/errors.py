"""The one error shape of the API: RFC 9457 problem details with a stable `code`."""

from pydantic import BaseModel, Field

PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldError(BaseModel):
    field: str = Field(
        description="Dotted path of the offending field, e.g. `body.attributes.currency`."
    )
    message: str


class Problem(BaseModel):
    type: str = Field(description="A URI naming the problem type.")
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable snake_case identifier of the problem.")
    errors: list[FieldError] = Field(default_factory=list)
