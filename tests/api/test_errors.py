"""The one error shape: every refusal is RFC 9457 problem+json, and bad input is never a 500."""

import json
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from marketplace.app import create_app
from marketplace.body_limit import BodySizeLimit
from marketplace.settings import Settings
from tests.factories import assert_problem, listing_body, sign_up

LIMIT = 1024 * 1024
LISTINGS = "/api/v1/listings"


def json_headers(**extra: str) -> dict[str, str]:
    return {"Content-Type": "application/json", **extra}


def padded_to(body: dict[str, Any], size: int) -> bytes:
    """`body` as JSON, padded with trailing spaces (still valid JSON) to exactly `size` bytes."""
    encoded = json.dumps(body).encode()
    assert len(encoded) <= size
    return encoded + b" " * (size - len(encoded))


def streamed(data: bytes, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
    # A generator body makes httpx send it chunked, without a Content-Length header.
    for start in range(0, len(data), chunk_size):
        yield data[start : start + chunk_size]


class TestUnknownRoutesAndMethods:
    @pytest.mark.parametrize("path", ["/nowhere", "/api/v1/nowhere", "/api/v2/listings"])
    def test_an_unknown_route_is_a_404_problem(self, client: TestClient, path: str) -> None:
        assert_problem(client.get(path), 404, "not_found")

    def test_a_method_the_route_lacks_is_a_405_problem(self, client: TestClient) -> None:
        response = client.put(LISTINGS, json={})

        assert_problem(response, 405, "method_not_allowed")
        assert response.headers["allow"]


class TestOversizeBodies:
    def test_a_declared_oversize_body_is_a_413_problem(self, client: TestClient) -> None:
        body = padded_to(listing_body(), LIMIT + 1)

        response = client.post(LISTINGS, content=body, headers=json_headers())

        assert_problem(response, 413, "payload_too_large")
        assert response.headers["connection"] == "close"

    def test_a_streamed_oversize_body_without_content_length_is_a_413_problem(
        self, client: TestClient
    ) -> None:
        owner = sign_up(client)
        body = streamed(padded_to(listing_body(), LIMIT + 1))

        response = client.post(LISTINGS, content=body, headers=json_headers(**owner.headers))

        assert "content-length" not in response.request.headers
        assert_problem(response, 413, "payload_too_large")
        assert client.get(LISTINGS, headers=owner.headers).json()["items"] == []

    def test_a_body_of_exactly_the_limit_is_accepted(self, client: TestClient) -> None:
        owner = sign_up(client)
        body = streamed(padded_to(listing_body(), LIMIT))

        response = client.post(LISTINGS, content=body, headers=json_headers(**owner.headers))

        assert response.status_code == 201, response.text

    @pytest.mark.parametrize(
        ("method", "path"),
        [("POST", "/api/v1/organizations"), ("POST", "/api/v1/auth/tokens"), ("GET", LISTINGS)],
    )
    def test_the_limit_holds_on_every_route(
        self, client: TestClient, method: str, path: str
    ) -> None:
        response = client.request(method, path, content=b" " * (LIMIT + 1))

        assert_problem(response, 413, "payload_too_large")

    def test_chunks_are_counted_as_they_arrive(self) -> None:
        # Below HTTP: a body streamed in many small chunks, none of them over the limit.
        reached_app, sent = anyio.run(_through_body_limit, [b"x" * 400] * 3, 1000)

        assert not reached_app
        assert sent[0]["status"] == 413

    def test_chunks_under_the_limit_reach_the_app_whole(self) -> None:
        reached_app, sent = anyio.run(_through_body_limit, [b"ab", b"cd", b"e"], 5)

        assert reached_app == [b"abcde"]
        assert sent[0]["status"] == 200


async def _through_body_limit(
    chunks: list[bytes], max_bytes: int
) -> tuple[list[bytes], list[Message]]:
    """Send `chunks` as separate ASGI messages; returns what the app read and what was sent."""
    pending = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    reached_app: list[bytes] = []
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        reached_app.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    await BodySizeLimit(app, max_bytes=max_bytes)(scope, receive, send)
    return reached_app, sent


class TestMalformedBodies:
    @pytest.mark.parametrize("body", [b"{", b'{"title": }', b"{'single': 'quotes'}", b"nul"])
    def test_malformed_json_is_a_400_problem(self, client: TestClient, body: bytes) -> None:
        owner = sign_up(client)

        response = client.post(LISTINGS, content=body, headers=json_headers(**owner.headers))

        assert_problem(response, 400, "malformed_json")

    def test_json_that_is_not_utf8_is_a_400_problem(self, client: TestClient) -> None:
        response = client.post(
            "/api/v1/organizations", content=b'{"name": "\xff"}', headers=json_headers()
        )

        assert_problem(response, 400, "bad_request")

    @pytest.mark.parametrize("body", [[listing_body()], "a listing", 42, None, True])
    def test_json_of_the_wrong_type_is_a_422_problem(self, client: TestClient, body: Any) -> None:
        owner = sign_up(client)

        response = client.post(LISTINGS, json=body, headers=owner.headers)

        assert_problem(response, 422, "validation_failed", field="body")

    @pytest.mark.parametrize(
        "content_type",
        ["text/plain", "application/x-www-form-urlencoded", "application/xml", "multipart/mixed"],
    )
    def test_a_body_that_is_not_declared_json_is_a_4xx_problem(
        self, client: TestClient, content_type: str
    ) -> None:
        owner = sign_up(client)

        response = client.post(
            LISTINGS,
            content=json.dumps(listing_body()).encode(),
            headers={**owner.headers, "Content-Type": content_type},
        )

        assert_problem(response, 422, "validation_failed", field="body")

    def test_a_missing_body_is_a_422_problem(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = client.post(LISTINGS, headers=owner.headers)

        assert_problem(response, 422, "validation_failed", field="body")

    def test_deeply_nested_json_is_a_4xx_problem(self, client: TestClient) -> None:
        body = b"[" * 100_000 + b"]" * 100_000

        response = client.post("/api/v1/organizations", content=body, headers=json_headers())

        assert_problem(response, 400, "bad_request")


class TestInvalidParameters:
    @pytest.mark.parametrize(
        ("method", "path", "field"),
        [
            ("GET", f"{LISTINGS}/not-a-uuid", "path.listing_id"),
            ("PATCH", f"{LISTINGS}/12345", "path.listing_id"),
            ("DELETE", f"{LISTINGS}/{'0' * 33}", "path.listing_id"),
            ("GET", "/api/v1/organizations/not-a-uuid", "path.organization_id"),
        ],
    )
    def test_an_invalid_uuid_in_the_path_is_a_422_problem(
        self, client: TestClient, method: str, path: str, field: str
    ) -> None:
        owner = sign_up(client)
        headers = {**owner.headers, "If-Match": '"1"'}

        response = client.request(method, path, json={}, headers=headers)

        assert_problem(response, 422, "validation_failed", field=field)

    def test_an_invalid_query_parameter_is_a_422_problem(self, client: TestClient) -> None:
        response = client.get(LISTINGS, params={"limit": "ten"})

        assert_problem(response, 422, "validation_failed", field="query.limit")


class TestUnexpectedErrors:
    def test_an_unexpected_error_is_a_500_problem_that_reveals_nothing(
        self, settings: Settings, engine: object
    ) -> None:
        app = create_app(settings)

        def explode() -> None:
            raise RuntimeError("secret internals")

        app.add_api_route("/api/v1/explode", explode)
        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.get("/api/v1/explode")

        body = assert_problem(response, 500, "internal_error")
        assert "secret" not in response.text
        assert body["errors"] == []
