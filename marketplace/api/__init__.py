"""HTTP routers, one per resource, all under /api/v1."""

from typing import Any

from fastapi import Response
from pydantic import BaseModel

from schemas.errors import PROBLEM_MEDIA_TYPE, Problem

_DESCRIPTIONS = {
    400: "Malformed request",
    401: "Not signed in",
    403: "Not allowed",
    404: "Not found or not visible",
    409: "Conflict",
    412: "Stale If-Match",
    413: "Body too large",
    422: "Invalid fields",
    428: "If-Match required",
    429: "Too many attempts",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem+json responses a route may give (400/413/422 always)."""
    return {
        status: {
            "model": Problem,
            "description": _DESCRIPTIONS[status],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in sorted({400, 413, 422, *statuses})
    }


def model_response(model: BaseModel) -> Response:
    """A response model serialized once, for hot routes (the route keeps its `response_model`
    for the docs): FastAPI would dump it, validate the dump again and then serialize, about
    1 ms for a page of explained matches."""
    return Response(model.model_dump_json(by_alias=True), media_type="application/json")
