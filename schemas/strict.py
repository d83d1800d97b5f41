"""The base of every request body."""

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A request body that refuses unknown fields: a misspelt field is a 422 naming it, not a
    value silently ignored."""

    model_config = ConfigDict(extra="forbid")
