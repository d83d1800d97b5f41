"""POST /api/v1/auth/tokens: sign-in, its rate limits, and how issued tokens are stored."""

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from marketplace.app import create_app
from marketplace.models import ApiToken, SignInAttempt
from marketplace.settings import Settings
from tests.factories import (
    PASSWORD,
    assert_problem,
    organization_body,
)

URL = "/api/v1/auth/tokens"
WINDOW_SECONDS = 900

ClientFactory = Callable[..., TestClient]


@pytest.fixture
def client_with(engine: Engine, settings: Settings) -> Iterator[ClientFactory]:
    """Clients of apps built with changed settings, over the same (emptied) test database."""
    with ExitStack() as stack:

        def make(**changes: Any) -> TestClient:
            app = create_app(settings.model_copy(update=changes))
            return stack.enter_context(TestClient(app))

        yield make


def register(client: TestClient) -> str:
    """A new organization's owner email; signs nobody in, so no sign-in attempt is counted."""
    body = organization_body()
    response = client.post("/api/v1/organizations", json=body)
    assert response.status_code == 201, response.text
    return str(body["owner"]["email"])


def attempt(
    client: TestClient, email: str, password: str = PASSWORD, *, address: str | None = None
) -> httpx.Response:
    """One sign-in attempt, from `address` when the app trusts X-Forwarded-For."""
    headers = {"X-Forwarded-For": address} if address else {}
    return client.post(URL, json={"email": email, "password": password}, headers=headers)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class TestCreateToken:
    def test_valid_credentials_issue_a_token_with_its_metadata(self, client: TestClient) -> None:
        email = register(client)

        response = client.post(URL, json={"email": email, "password": PASSWORD, "name": "ci"})

        assert response.status_code == 201, response.text
        assert response.headers["content-type"] == "application/json"
        token = response.json()
        assert token["token"].startswith("scx_")
        assert token["prefix"] == token["token"][:12]
        assert token["name"] == "ci"
        assert token["last_used_at"] is None
        assert token["revoked_at"] is None

    def test_issued_token_authenticates_its_member(self, client: TestClient) -> None:
        email = register(client)
        secret = attempt(client, email).json()["token"]

        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})

        assert me.status_code == 200
        assert me.json()["member"]["email"] == email

    def test_email_is_matched_case_insensitively_and_trimmed(self, client: TestClient) -> None:
        email = register(client)

        response = attempt(client, f"  {email.upper()} ")

        assert response.status_code == 201, response.text

    def test_token_expires_after_the_default_days(self, client: TestClient) -> None:
        email = register(client)

        token = attempt(client, email).json()

        lifetime = parse_time(token["expires_at"]) - parse_time(token["created_at"])
        assert abs(lifetime - timedelta(days=90)) < timedelta(minutes=1)

    def test_expires_in_days_sets_the_expiry(self, client: TestClient) -> None:
        email = register(client)

        response = client.post(
            URL, json={"email": email, "password": PASSWORD, "expires_in_days": 7}
        )

        token = response.json()
        lifetime = parse_time(token["expires_at"]) - parse_time(token["created_at"])
        assert abs(lifetime - timedelta(days=7)) < timedelta(minutes=1)

    def test_without_a_default_lifetime_tokens_never_expire(
        self, client_with: ClientFactory
    ) -> None:
        client = client_with(token_default_days=None)
        email = register(client)

        token = attempt(client, email).json()

        assert token["expires_at"] is None

    def test_token_is_stored_only_as_a_hash(self, client: TestClient, engine: Engine) -> None:
        email = register(client)
        secret = attempt(client, email).json()["token"]

        with Session(engine) as session:
            rows = session.exec(select(ApiToken)).all()

        assert len(rows) == 1
        stored = [str(value) for value in rows[0].model_dump().values()]
        assert not any(secret in value for value in stored)
        assert rows[0].token_hash != secret

    def test_missing_password_is_a_validation_problem(self, client: TestClient) -> None:
        response = client.post(URL, json={"email": "someone@example.org"})

        assert_problem(response, 422, "validation_failed", field="body.password")

    def test_expiry_out_of_range_is_a_validation_problem(self, client: TestClient) -> None:
        response = client.post(
            URL, json={"email": "a@example.org", "password": PASSWORD, "expires_in_days": 0}
        )

        assert_problem(response, 422, "validation_failed", field="body.expires_in_days")

    def test_unknown_field_is_a_validation_problem(self, client: TestClient) -> None:
        response = client.post(
            URL, json={"email": "a@example.org", "password": PASSWORD, "scope": "admin"}
        )

        assert_problem(response, 422, "validation_failed", field="body.scope")

    def test_malformed_json_is_a_bad_request(self, client: TestClient) -> None:
        response = client.post(
            URL, content=b'{"email": ', headers={"Content-Type": "application/json"}
        )

        assert_problem(response, 400, "malformed_json")

    def test_nul_in_the_email_is_a_validation_problem(self, client: TestClient) -> None:
        response = attempt(client, "nobody\x00@example.org")

        assert_problem(response, 422, "validation_failed", field="body.email")

    def test_wrong_password_is_refused(self, client: TestClient) -> None:
        email = register(client)

        response = attempt(client, email, "not-the-password")

        assert_problem(response, 401, "invalid_credentials")

    def test_unknown_email_gets_the_same_answer_as_a_wrong_password(
        self, client: TestClient
    ) -> None:
        email = register(client)

        wrong_password = attempt(client, email, "not-the-password")
        unknown_email = attempt(client, "nobody@example.org", "not-the-password")

        assert unknown_email.status_code == wrong_password.status_code == 401
        assert unknown_email.json() == wrong_password.json()
        assert (
            unknown_email.headers["www-authenticate"] == wrong_password.headers["www-authenticate"]
        )


class TestSignInRateLimits:
    def test_email_is_locked_after_its_failures_even_for_the_right_password(
        self, client_with: ClientFactory
    ) -> None:
        client = client_with(sign_in_max_failures_per_email=2)
        email = register(client)
        for _ in range(2):
            assert attempt(client, email, "not-the-password").status_code == 401

        response = attempt(client, email)

        assert_problem(response, 429, "rate_limited")
        assert int(response.headers["retry-after"]) <= WINDOW_SECONDS + 1

    def test_failures_are_counted_case_insensitively(self, client_with: ClientFactory) -> None:
        client = client_with(sign_in_max_failures_per_email=2)
        email = register(client)
        attempt(client, email.upper(), "not-the-password")
        attempt(client, email, "not-the-password")

        response = attempt(client, email)

        assert_problem(response, 429, "rate_limited")

    def test_unknown_emails_are_locked_like_known_ones(self, client_with: ClientFactory) -> None:
        client = client_with(sign_in_max_failures_per_email=2)
        for _ in range(2):
            assert attempt(client, "nobody@example.org", "guess").status_code == 401

        response = attempt(client, "nobody@example.org", "guess")

        assert_problem(response, 429, "rate_limited")

    def test_a_locked_email_does_not_lock_other_emails(self, client_with: ClientFactory) -> None:
        client = client_with(sign_in_max_failures_per_email=2)
        locked, other = register(client), register(client)
        for _ in range(2):
            attempt(client, locked, "not-the-password")

        response = attempt(client, other)

        assert response.status_code == 201, response.text

    def test_successful_sign_ins_do_not_count_as_failures(self, client_with: ClientFactory) -> None:
        client = client_with(sign_in_max_failures_per_email=2)
        email = register(client)
        for _ in range(3):
            assert attempt(client, email).status_code == 201

        response = attempt(client, email, "not-the-password")

        assert_problem(response, 401, "invalid_credentials")

    def test_a_successful_sign_in_forgets_earlier_failures(
        self, client_with: ClientFactory
    ) -> None:
        client = client_with(sign_in_max_failures_per_email=2)
        email = register(client)
        attempt(client, email, "not-the-password")
        assert attempt(client, email).status_code == 201
        attempt(client, email, "not-the-password")

        response = attempt(client, email)

        assert response.status_code == 201, response.text

    def test_lock_lifts_once_the_failures_leave_the_window(
        self, client_with: ClientFactory, engine: Engine
    ) -> None:
        client = client_with(sign_in_max_failures_per_email=2)
        email = register(client)
        for _ in range(2):
            attempt(client, email, "not-the-password")
        with Session(engine) as session:
            for row in session.exec(select(SignInAttempt)):
                row.at = datetime.now(UTC) - timedelta(seconds=WINDOW_SECONDS + 1)
                session.add(row)
            session.commit()

        response = attempt(client, email)

        assert response.status_code == 201, response.text

    def test_client_address_is_limited_across_emails(self, client_with: ClientFactory) -> None:
        client = client_with(sign_in_max_attempts_per_client=3)
        first, second = register(client), register(client)
        assert attempt(client, first).status_code == 201
        assert attempt(client, first, "not-the-password").status_code == 401
        assert attempt(client, second).status_code == 201

        response = attempt(client, second)

        assert_problem(response, 429, "rate_limited")

    def test_client_limit_is_kept_per_address(self, client_with: ClientFactory) -> None:
        client = client_with(sign_in_max_attempts_per_client=2, trust_forwarded_for=True)
        email = register(client)
        for _ in range(2):
            attempt(client, email, address="203.0.113.7")
        assert attempt(client, email, address="203.0.113.7").status_code == 429

        response = attempt(client, email, address="198.51.100.4")

        assert response.status_code == 201, response.text
