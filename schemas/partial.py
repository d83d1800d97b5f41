"""Fields of a partial update (PATCH) that may be left out but not sent as null.

Such a field is `T | None` in Python (None: left out), and a validator on its model refuses an
explicit null with a 422. Its JSON schema should then admit a T alone, with no null default, so
that the OpenAPI document says what the server accepts: `omittable()` rewrites it so.
"""

from typing import Any

from pydantic import Field
from pydantic.json_schema import JsonDict

_NULL = {"type": "null"}


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


def omittable(**kwargs: Any) -> Any:
    """The default of a `T | None` field that may be left out but not be null: None, with a
    JSON schema of T alone.

    Args:
        kwargs: other `Field` arguments (a description).
    """
    return Field(default=None, json_schema_extra=_not_nullable, **kwargs)
