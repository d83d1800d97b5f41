"""Members of an organization: add, list (paged), remove or leave."""

import base64
import uuid
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from marketplace.models import Member
from tests.factories import (
    PASSWORD,
    Actor,
    add_member,
    assert_problem,
    platform_admin,
    sign_up,
)


def members_url(organization_id: str) -> str:
    return f"/api/v1/organizations/{organization_id}/members"


def member_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "email": f"new-{uuid.uuid4().hex[:8]}@example.org",
        "display_name": "New Member",
        "password": PASSWORD,
    }
    return body | overrides


def add(client: TestClient, actor: Actor, organization_id: str, **fields: Any) -> httpx.Response:
    return client.post(
        members_url(organization_id), json=member_body(**fields), headers=actor.headers
    )


def remove(
    client: TestClient, actor: Actor, member_id: str, organization_id: str | None = None
) -> httpx.Response:
    organization_id = organization_id or actor.organization_id
    return client.delete(f"{members_url(organization_id)}/{member_id}", headers=actor.headers)


def listed_ids(client: TestClient, actor: Actor) -> list[str]:
    response = client.get(members_url(actor.organization_id), headers=actor.headers)
    assert response.status_code == 200, response.text
    return [member["id"] for member in response.json()["items"]]


class TestAddMember:
    def test_the_owner_adds_a_member_who_can_sign_in(self, client: TestClient) -> None:
        owner = sign_up(client)
        body = member_body(display_name="Li Wei", role="member")

        response = client.post(members_url(owner.organization_id), json=body, headers=owner.headers)

        assert response.status_code == 201, response.text
        member = response.json()
        assert member["email"] == body["email"]
        assert member["display_name"] == "Li Wei"
        assert member["role"] == "member"
        assert member["organization_id"] == owner.organization_id
        assert member["is_platform_admin"] is False
        signed_in = client.post(
            "/api/v1/auth/tokens", json={"email": body["email"], "password": PASSWORD}
        )
        assert signed_in.status_code == 201

    def test_the_role_defaults_to_member(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = add(client, owner, owner.organization_id)

        assert response.json()["role"] == "member"

    def test_the_email_is_stored_lower_cased(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = add(client, owner, owner.organization_id, email="Li.Wei@Example.ORG")

        assert response.json()["email"] == "li.wei@example.org"

    def test_the_owner_adds_another_owner(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = add(client, owner, owner.organization_id, role="owner")

        assert response.status_code == 201, response.text
        assert response.json()["role"] == "owner"

    @pytest.mark.parametrize("role", ["member", "admin"])
    def test_an_admin_adds_members_and_admins(self, client: TestClient, role: str) -> None:
        admin = add_member(client, sign_up(client), role="admin")

        response = add(client, admin, admin.organization_id, role=role)

        assert response.status_code == 201, response.text
        assert response.json()["role"] == role

    def test_an_admin_cannot_add_an_owner(self, client: TestClient) -> None:
        admin = add_member(client, sign_up(client), role="admin")

        response = add(client, admin, admin.organization_id, role="owner")

        assert_problem(response, 403, "owner_required")

    def test_a_member_cannot_add_anyone(self, client: TestClient) -> None:
        member = add_member(client, sign_up(client), role="member")

        response = add(client, member, member.organization_id)

        assert_problem(response, 403, "not_org_manager")

    def test_an_owner_of_another_organization_is_forbidden(self, client: TestClient) -> None:
        owner, outsider = sign_up(client), sign_up(client)

        response = add(client, outsider, owner.organization_id)

        assert_problem(response, 403, "not_org_manager")
        assert len(listed_ids(client, owner)) == 1

    def test_an_unknown_organization_is_not_found(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = add(client, owner, str(uuid.uuid4()))

        assert_problem(response, 404, "not_found")

    def test_an_email_taken_in_another_case_is_a_conflict(self, client: TestClient) -> None:
        owner, other = sign_up(client), sign_up(client)

        response = add(client, owner, owner.organization_id, email=other.email.upper())

        assert_problem(response, 409, "email_taken")

    def test_the_password_is_stored_only_as_an_argon2_hash(
        self, client: TestClient, engine: Engine
    ) -> None:
        owner = sign_up(client)
        email = add(client, owner, owner.organization_id).json()["email"]

        with Session(engine) as session:
            member = session.exec(select(Member).where(Member.email == email)).one()

        assert member.password_hash.startswith("$argon2id$")
        assert not any(
            PASSWORD in str(value) for value in member.model_dump(warnings=False).values()
        )

    def test_an_invalid_email_is_a_validation_problem(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = add(client, owner, owner.organization_id, email="not-an-email")

        assert_problem(response, 422, "validation_failed", field="body.email")

    def test_an_unknown_role_is_a_validation_problem(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = add(client, owner, owner.organization_id, role="superuser")

        assert_problem(response, 422, "validation_failed", field="body.role")

    def test_platform_admin_cannot_be_granted(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = add(client, owner, owner.organization_id, is_platform_admin=True)

        assert_problem(response, 422, "validation_failed", field="body.is_platform_admin")

    def test_nul_in_the_display_name_is_a_validation_problem(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = add(client, owner, owner.organization_id, display_name="Li\x00 Wei")

        assert_problem(response, 422, "validation_failed", field="body.display_name")

    def test_without_a_token_is_unauthenticated(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = client.post(members_url(owner.organization_id), json=member_body())

        assert_problem(response, 401, "unauthenticated")


class TestListMembers:
    def test_lists_the_members_by_email(self, client: TestClient) -> None:
        owner = sign_up(client)
        for email in ("zoe@example.org", "adam@example.org"):
            add(client, owner, owner.organization_id, email=email)

        response = client.get(members_url(owner.organization_id), headers=owner.headers)

        assert response.status_code == 200, response.text
        emails = [member["email"] for member in response.json()["items"]]
        assert emails == sorted(["zoe@example.org", "adam@example.org", owner.email])
        assert response.json()["next_cursor"] is None

    def test_a_member_sees_their_colleagues(self, client: TestClient) -> None:
        owner = sign_up(client)
        member = add_member(client, owner, role="member")

        assert set(listed_ids(client, member)) == {owner.member_id, member.member_id}

    def test_never_shows_password_hashes(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = client.get(members_url(owner.organization_id), headers=owner.headers)

        assert all("password" not in str(member) for member in response.json()["items"])
        assert "argon2" not in response.text

    def test_pages_follow_next_cursor_without_duplicates(self, client: TestClient) -> None:
        owner = sign_up(client)
        for n in range(4):
            add(client, owner, owner.organization_id, email=f"colleague{n}@example.org")
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            response = client.get(
                members_url(owner.organization_id), params=params, headers=owner.headers
            )
            page = response.json()
            seen += [member["email"] for member in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break

        assert pages == 3
        assert len(seen) == len(set(seen)) == 5
        assert seen == sorted(seen)

    def test_an_invalid_cursor_is_a_bad_request(self, client: TestClient) -> None:
        owner = sign_up(client)
        wrong_type = base64.urlsafe_b64encode(b"[7]").decode()

        response = client.get(
            members_url(owner.organization_id),
            params={"cursor": wrong_type},
            headers=owner.headers,
        )

        assert_problem(response, 400, "invalid_cursor")

    def test_a_cursor_with_nul_is_a_bad_request(self, client: TestClient) -> None:
        owner = sign_up(client)
        with_nul = base64.urlsafe_b64encode(b'["a\\u0000"]').decode()

        response = client.get(
            members_url(owner.organization_id), params={"cursor": with_nul}, headers=owner.headers
        )

        assert_problem(response, 400, "invalid_cursor")

    def test_a_limit_out_of_range_is_a_validation_problem(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = client.get(
            members_url(owner.organization_id), params={"limit": 0}, headers=owner.headers
        )

        assert_problem(response, 422, "validation_failed", field="query.limit")

    def test_another_organization_is_forbidden(self, client: TestClient) -> None:
        owner, outsider = sign_up(client), sign_up(client)

        response = client.get(members_url(owner.organization_id), headers=outsider.headers)

        assert_problem(response, 403, "forbidden")

    def test_a_platform_admin_lists_any_organization(
        self, client: TestClient, engine: Engine
    ) -> None:
        owner = sign_up(client)
        admin = platform_admin(client, engine)

        response = client.get(members_url(owner.organization_id), headers=admin.headers)

        assert response.status_code == 200, response.text
        assert [member["id"] for member in response.json()["items"]] == [owner.member_id]

    def test_an_unknown_organization_is_not_found(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = client.get(members_url(str(uuid.uuid4())), headers=owner.headers)

        assert_problem(response, 404, "not_found")

    def test_without_a_token_is_unauthenticated(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = client.get(members_url(owner.organization_id))

        assert_problem(response, 401, "unauthenticated")


class TestRemoveMember:
    def test_the_owner_removes_a_member(self, client: TestClient) -> None:
        owner = sign_up(client)
        member = add_member(client, owner)

        response = remove(client, owner, member.member_id)

        assert response.status_code == 204
        assert response.content == b""
        assert listed_ids(client, owner) == [owner.member_id]

    def test_a_removed_members_token_stops_working(self, client: TestClient) -> None:
        owner = sign_up(client)
        member = add_member(client, owner)

        remove(client, owner, member.member_id)

        assert_problem(client.get("/api/v1/me", headers=member.headers), 401, "invalid_token")

    def test_an_admin_removes_a_member(self, client: TestClient) -> None:
        owner = sign_up(client)
        admin, member = add_member(client, owner, role="admin"), add_member(client, owner)

        response = remove(client, admin, member.member_id)

        assert response.status_code == 204

    def test_an_admin_cannot_remove_an_owner(self, client: TestClient) -> None:
        owner = sign_up(client)
        admin = add_member(client, owner, role="admin")

        response = remove(client, admin, owner.member_id)

        assert_problem(response, 403, "owner_required")

    def test_a_member_cannot_remove_a_colleague(self, client: TestClient) -> None:
        owner = sign_up(client)
        member, colleague = add_member(client, owner), add_member(client, owner)

        response = remove(client, member, colleague.member_id)

        assert_problem(response, 403, "not_org_manager")
        assert colleague.member_id in listed_ids(client, owner)

    def test_a_member_may_leave(self, client: TestClient) -> None:
        owner = sign_up(client)
        member = add_member(client, owner)

        response = remove(client, member, member.member_id)

        assert response.status_code == 204
        assert member.member_id not in listed_ids(client, owner)

    def test_an_owner_removes_another_owner(self, client: TestClient) -> None:
        owner = sign_up(client)
        co_owner = add_member(client, owner, role="owner")

        response = remove(client, owner, co_owner.member_id)

        assert response.status_code == 204

    def test_an_owner_may_leave_while_another_owner_remains(self, client: TestClient) -> None:
        owner = sign_up(client)
        co_owner = add_member(client, owner, role="owner")

        response = remove(client, owner, owner.member_id)

        assert response.status_code == 204
        assert listed_ids(client, co_owner) == [co_owner.member_id]

    def test_the_last_owner_cannot_leave(self, client: TestClient) -> None:
        owner = sign_up(client)
        add_member(client, owner, role="admin")

        response = remove(client, owner, owner.member_id)

        assert_problem(response, 409, "last_owner")
        assert owner.member_id in listed_ids(client, owner)

    def test_a_member_of_another_organization_is_not_found(self, client: TestClient) -> None:
        owner, other = sign_up(client), sign_up(client)

        response = remove(client, owner, other.member_id)

        assert_problem(response, 404, "not_found")
        assert listed_ids(client, other) == [other.member_id]

    def test_a_manager_of_another_organization_is_forbidden(self, client: TestClient) -> None:
        owner, outsider = sign_up(client), sign_up(client)
        member = add_member(client, owner)

        response = remove(client, outsider, member.member_id, owner.organization_id)

        assert_problem(response, 403, "not_org_manager")
        assert member.member_id in listed_ids(client, owner)

    def test_outsiders_cannot_tell_members_from_unknown_ids(self, client: TestClient) -> None:
        owner, outsider = sign_up(client), sign_up(client)

        existing = remove(client, outsider, owner.member_id, owner.organization_id)
        unknown = remove(client, outsider, str(uuid.uuid4()), owner.organization_id)

        assert existing.status_code == unknown.status_code
        assert existing.json() == unknown.json()

    def test_an_unknown_member_is_not_found(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = remove(client, owner, str(uuid.uuid4()))

        assert_problem(response, 404, "not_found")

    def test_a_malformed_member_id_is_a_validation_problem(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = remove(client, owner, "not-a-uuid")

        assert_problem(response, 422, "validation_failed", field="path.member_id")

    def test_without_a_token_is_unauthenticated(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = client.delete(f"{members_url(owner.organization_id)}/{owner.member_id}")

        assert_problem(response, 401, "unauthenticated")
