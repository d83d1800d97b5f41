"""GET /api/v1/me, GET /api/v1/me/tokens and DELETE /api/v1/me/tokens/{id}."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from marketplace.models import ApiToken
from tests.factories import (
    PASSWORD,
    Actor,
    assert_problem,
    sign_up,
)

ME = "/api/v1/me"
TOKENS = "/api/v1/me/tokens"


def issue_token(client: TestClient, actor: Actor, name: str) -> dict[str, Any]:
    """Another token for the actor (a second sign-in); the response, secret included."""
    response = client.post(
        "/api/v1/auth/tokens", json={"email": actor.email, "password": PASSWORD, "name": name}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def token_row(engine: Engine, secret: str) -> ApiToken:
    with Session(engine) as session:
        rows = session.exec(select(ApiToken).where(ApiToken.prefix == secret[:12])).all()
    assert len(rows) == 1
    return rows[0]


def shift_token_times(engine: Engine, token_id: uuid.UUID, **times: datetime) -> None:
    """Time travel: move a token's timestamps, as if it had been issued or used long ago."""
    with Session(engine) as session:
        token = session.get(ApiToken, token_id)
        assert token is not None
        for field, value in times.items():
            setattr(token, field, value)
        session.add(token)
        session.commit()


class TestReadMe:
    def test_returns_the_member_and_their_organization(self, client: TestClient) -> None:
        owner = sign_up(client, name="Hefei Institute of Physical Science")

        response = client.get(ME, headers=owner.headers)

        assert response.status_code == 200, response.text
        me = response.json()
        assert me["member"]["id"] == owner.member_id
        assert me["member"]["email"] == owner.email
        assert me["member"]["role"] == "owner"
        assert me["organization"]["id"] == owner.organization_id
        assert me["organization"]["name"] == "Hefei Institute of Physical Science"

    def test_never_shows_the_password_hash(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = client.get(ME, headers=owner.headers)

        assert "password" not in response.json()["member"]
        assert "argon2" not in response.text

    def test_without_a_token_is_unauthenticated(self, client: TestClient) -> None:
        response = client.get(ME)

        assert_problem(response, 401, "unauthenticated")

    def test_a_non_bearer_scheme_is_unauthenticated(self, client: TestClient) -> None:
        response = client.get(ME, headers={"Authorization": "Basic b3duZXI6cGFzc3dvcmQ="})

        assert_problem(response, 401, "unauthenticated")

    def test_an_unknown_token_is_unauthenticated(self, client: TestClient) -> None:
        response = client.get(ME, headers=bearer("scx_not-a-token-this-api-issued"))

        assert_problem(response, 401, "invalid_token")

    def test_an_expired_token_is_unauthenticated(self, client: TestClient, engine: Engine) -> None:
        owner = sign_up(client)
        row = token_row(engine, owner.token)
        shift_token_times(engine, row.id, expires_at=datetime.now(UTC) - timedelta(seconds=1))

        response = client.get(ME, headers=owner.headers)

        assert_problem(response, 401, "token_expired")

    def test_use_records_last_used_at(self, client: TestClient, engine: Engine) -> None:
        owner = sign_up(client)
        before = datetime.now(UTC)

        client.get(ME, headers=owner.headers)

        last_used = token_row(engine, owner.token).last_used_at
        assert last_used is not None
        assert before - timedelta(seconds=1) <= last_used <= datetime.now(UTC)

    def test_use_refreshes_a_stale_last_used_at(self, client: TestClient, engine: Engine) -> None:
        owner = sign_up(client)
        row = token_row(engine, owner.token)
        long_ago = datetime.now(UTC) - timedelta(days=3)
        shift_token_times(engine, row.id, last_used_at=long_ago)

        client.get(ME, headers=owner.headers)

        last_used = token_row(engine, owner.token).last_used_at
        assert last_used is not None
        assert last_used > datetime.now(UTC) - timedelta(minutes=1)


class TestListTokens:
    def test_lists_the_members_tokens_newest_first(self, client: TestClient) -> None:
        owner = sign_up(client)
        issue_token(client, owner, "laptop")
        issue_token(client, owner, "ci")

        response = client.get(TOKENS, headers=owner.headers)

        assert response.status_code == 200, response.text
        assert [token["name"] for token in response.json()] == ["ci", "laptop", "api"]

    def test_never_shows_a_secret(self, client: TestClient) -> None:
        owner = sign_up(client)
        second = issue_token(client, owner, "ci")["token"]

        response = client.get(TOKENS, headers=owner.headers)

        assert all("token" not in token for token in response.json())
        assert owner.token not in response.text
        assert second not in response.text

    def test_shows_when_the_token_in_use_was_last_used(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = client.get(TOKENS, headers=owner.headers)

        (token,) = response.json()
        assert token["last_used_at"] is not None

    def test_excludes_other_members_tokens(self, client: TestClient) -> None:
        owner, other = sign_up(client), sign_up(client)

        response = client.get(TOKENS, headers=owner.headers)

        prefixes = [token["prefix"] for token in response.json()]
        assert prefixes == [owner.token[:12]]
        assert other.token[:12] not in prefixes

    def test_without_a_token_is_unauthenticated(self, client: TestClient) -> None:
        response = client.get(TOKENS)

        assert_problem(response, 401, "unauthenticated")


class TestRevokeToken:
    def test_a_revoked_token_stops_working_at_once(self, client: TestClient) -> None:
        owner = sign_up(client)
        spare = issue_token(client, owner, "spare")

        response = client.delete(f"{TOKENS}/{spare['id']}", headers=owner.headers)

        assert response.status_code == 204
        assert response.content == b""
        assert_problem(client.get(ME, headers=bearer(spare["token"])), 401, "invalid_token")
        assert client.get(ME, headers=owner.headers).status_code == 200

    def test_the_token_in_use_can_revoke_itself(self, client: TestClient) -> None:
        owner = sign_up(client)
        (current,) = client.get(TOKENS, headers=owner.headers).json()

        response = client.delete(f"{TOKENS}/{current['id']}", headers=owner.headers)

        assert response.status_code == 204
        assert_problem(client.get(ME, headers=owner.headers), 401, "invalid_token")

    def test_the_list_shows_when_a_token_was_revoked(self, client: TestClient) -> None:
        owner = sign_up(client)
        spare = issue_token(client, owner, "spare")
        client.delete(f"{TOKENS}/{spare['id']}", headers=owner.headers)

        tokens = {token["id"]: token for token in client.get(TOKENS, headers=owner.headers).json()}

        assert tokens[spare["id"]]["revoked_at"] is not None

    def test_revoking_twice_succeeds(self, client: TestClient) -> None:
        owner = sign_up(client)
        spare = issue_token(client, owner, "spare")
        client.delete(f"{TOKENS}/{spare['id']}", headers=owner.headers)

        response = client.delete(f"{TOKENS}/{spare['id']}", headers=owner.headers)

        assert response.status_code == 204

    def test_another_members_token_is_not_found(self, client: TestClient) -> None:
        owner, other = sign_up(client), sign_up(client)
        (others_token,) = client.get(TOKENS, headers=other.headers).json()

        response = client.delete(f"{TOKENS}/{others_token['id']}", headers=owner.headers)

        assert_problem(response, 404, "not_found")
        assert client.get(ME, headers=other.headers).status_code == 200

    def test_an_unknown_token_is_not_found(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = client.delete(f"{TOKENS}/{uuid.uuid4()}", headers=owner.headers)

        assert_problem(response, 404, "not_found")

    def test_a_malformed_id_is_a_validation_problem(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = client.delete(f"{TOKENS}/not-a-uuid", headers=owner.headers)

        assert_problem(response, 422, "validation_failed", field="path.token_id")

    def test_without_a_token_is_unauthenticated(self, client: TestClient) -> None:
        response = client.delete(f"{TOKENS}/{uuid.uuid4()}")

        assert_problem(response, 401, "unauthenticated")
