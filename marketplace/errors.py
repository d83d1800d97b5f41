"""Domain errors and the one handler that renders every error as RFC 9457 problem details.

DomainError
├── BadRequest (400)            malformed request, e.g. an unreadable cursor or bad JSON
├── Unauthenticated (401)       missing, invalid, expired or revoked credentials
├── Forbidden (403)             signed in, but the role does not allow the action
├── NotFound (404)              absent, or not visible to the caller
├── Conflict (409)              duplicate or illegal state change
│   └── IllegalTransition       a state machine refused the action; names the allowed ones
├── PreconditionFailed (412)    stale If-Match
├── PreconditionRequired (428)  If-Match missing where required
├── PayloadTooLarge (413)
├── InvalidInput (422)          fields that parse but break a rule; carries field errors
└── RateLimited (429)           carries Retry-After
"""

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from matching.embedding import EmbedderUnavailable
from schemas.errors import PROBLEM_MEDIA_TYPE, FieldError, Problem


class DomainError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        errors: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.code
        self.errors = list(errors)
        self.headers = headers or {}


class BadRequest(DomainError):
    status, code = 400, "bad_request"


class Unauthenticated(DomainError):
    status, code = 401, "unauthenticated"

    def __init__(
        self, detail: str = "Sign in with a valid bearer token.", **kwargs: object
    ) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"}, **kwargs)  # type: ignore[arg-type]


class Forbidden(DomainError):
    status, code = 403, "forbidden"


class NotFound(DomainError):
    status, code = 404, "not_found"


class Conflict(DomainError):
    status, code = 409, "conflict"


class IllegalTransition(Conflict):
    code = "illegal_transition"

    def __init__(self, detail: str, *, allowed: Sequence[str]) -> None:
        listed = ", ".join(allowed) or "none"
        super().__init__(
            f"{detail} Allowed now: {listed}.",
            errors=[FieldError(field="body.action", message=f"allowed now: {listed}")],
        )


class PreconditionFailed(DomainError):
    status, code = 412, "precondition_failed"


class PreconditionRequired(DomainError):
    status, code = 428, "precondition_required"


class PayloadTooLarge(DomainError):
    status, code = 413, "payload_too_large"


class InvalidInput(DomainError):
    status, code = 422, "invalid_input"


class RateLimited(DomainError):
    status, code = 429, "rate_limited"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    errors: Sequence[FieldError] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    problem = Problem(
        type=f"urn:scx:problem:{code}",
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        code=code,
        errors=list(errors),
    )
    return JSONResponse(
        problem.model_dump(mode="json"),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


_UNION_TAG_ERRORS = frozenset({"union_tag_invalid", "union_tag_not_found"})


def _field_path(error: Mapping[str, Any], body: object) -> str:
    """The dotted path of the field as the client sent it.

    pydantic puts the tag of a discriminated union into the location (`body.dataset.title`);
    walking the location along the request body tells such tags (a value of the object, not
    one of its keys) from field names, so the path reads `body.title`. An unknown or missing
    tag is blamed on the discriminator field itself (`body.kind`).
    """
    loc = list(error["loc"])
    parts: list[str] = []
    node = body if loc[:1] == ["body"] else None
    for position, part in enumerate(loc):
        is_tag = (
            0 < position < len(loc) - 1
            and isinstance(node, dict)
            and part not in node
            and part in [value for value in node.values() if isinstance(value, str)]
        )
        if not is_tag:
            parts.append(str(part))
            node = _child(node, part) if position > 0 else node
    if error.get("type") in _UNION_TAG_ERRORS:
        parts.append(str(error.get("ctx", {}).get("discriminator", "")).strip("'"))
    return ".".join(part for part in parts if part)


def _child(node: object, key: object) -> object:
    if isinstance(node, dict):
        return node.get(key)
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        return node[key]
    return None


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    raw = exc.errors()
    if any(err.get("type") == "json_invalid" for err in raw):
        return problem_response(400, "malformed_json", "The request body is not valid JSON.")
    errors = [FieldError(field=_field_path(err, exc.body), message=err["msg"]) for err in raw]
    return problem_response(
        422, "validation_failed", "The request has invalid or missing fields.", errors=errors
    )


def install_error_handlers(app: FastAPI) -> None:
    """Render domain errors, validation errors and Starlette's HTTP errors as problem+json."""

    @app.exception_handler(DomainError)
    def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return problem_response(
            exc.status, exc.code, exc.detail, errors=exc.errors, headers=exc.headers
        )

    @app.exception_handler(EmbedderUnavailable)
    def _no_model(_: Request, exc: EmbedderUnavailable) -> JSONResponse:
        return problem_response(503, "model_unavailable", str(exc), headers={"Retry-After": "5"})

    @app.exception_handler(RequestValidationError)
    def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_response(exc)

    @app.exception_handler(StarletteHTTPException)
    def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        headers = dict(exc.headers) if exc.headers else None
        return problem_response(exc.status_code, code, detail, headers=headers)
