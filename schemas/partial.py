"""Fields of a partial update (PATCH) that may be left out but not sent as null.

`Omittable[T]` is `T | None` in Python (None: left out), refuses an explicit null with a 422,
and has a JSON schema of T alone, with no null default, so that the OpenAPI document says what
the server accepts.
"""

from typing import Annotated, TypeVar

from pydantic import BeforeValidator, Field
from pydantic.json_schema import JsonDict

T = TypeVar("T")

_NULL = {"type": "null"}


def _refuse_null(value: object) -> object:
    if value is None:
        raise ValueError("may be left out, but not set to null")
    return value


def _not_nullable(schema: JsonDict) -> None:
    schema.pop("default", None)
    options = schema.pop("anyOf", None)
    if not isinstance(options, list):
        return
    kept = [option for option in options if option != _NULL]
    if len(kept) == 1 and isinstance(kept[0], dict):
        schema.update(kept[0])
    else:
        schema["anyOf"] = kept


Omittable = Annotated[
    T | None, BeforeValidator(_refuse_null), Field(json_schema_extra=_not_nullable)
]
"""A field that may be left out (give it the default None) but not be null."""
