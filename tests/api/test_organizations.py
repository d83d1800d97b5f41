"""Organizations: sign-up, the public directory, profile edits and platform verification."""

import base64
import json
import re
import uuid
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from marketplace.app import create_app
from marketplace.models import Member, Organization
from marketplace.settings import Settings
from tests.factories import (
    PASSWORD,
    Actor,
    add_member,
    assert_problem,
    organization_body,
    platform_admin,
    sign_in,
    sign_up,
)

URL = "/api/v1/organizations"


def register(client: TestClient, **fields: Any) -> dict[str, Any]:
    """A new organization (its owner not signed in); the created organization."""
    response = client.post(URL, json=organization_body(**fields))
    assert response.status_code == 201, response.text
    return dict(response.json()["organization"])


def directory(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get(URL, params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def names(page: dict[str, Any]) -> list[str]:
    return [organization["name"] for organization in page["items"]]


def cursor_of(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def count_rows(engine: Engine, table: type[Organization] | type[Member]) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(table)).one()


class TestSignUp:
    def test_creates_an_unverified_organization_with_its_owner(self, client: TestClient) -> None:
        body = organization_body(name="Hefei University of Technology", kind="university")

        response = client.post(URL, json=body)

        assert response.status_code == 201, response.text
        created = response.json()
        organization, owner = created["organization"], created["owner"]
        assert organization["name"] == "Hefei University of Technology"
        assert organization["kind"] == "university"
        assert organization["country"] == "CN"
        assert organization["verified"] is False
        assert owner["email"] == body["owner"]["email"]
        assert owner["role"] == "owner"
        assert owner["is_platform_admin"] is False
        assert owner["organization_id"] == organization["id"]

    def test_the_owner_can_sign_in(self, client: TestClient) -> None:
        body = organization_body()
        client.post(URL, json=body)

        token = sign_in(client, body["owner"]["email"])

        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["member"]["role"] == "owner"

    def test_the_slug_is_derived_from_the_name(self, client: TestClient) -> None:
        organization = register(client, name="Université de Montréal")

        assert organization["slug"] == "universite-de-montreal"

    def test_a_name_without_latin_letters_gets_a_generated_slug(self, client: TestClient) -> None:
        organization = register(client, name="中国科学技术大学")

        assert re.fullmatch(r"org-[0-9a-f]{8}", organization["slug"])

    def test_a_chosen_slug_is_kept(self, client: TestClient) -> None:
        organization = register(client, name="University of Science and Technology", slug="ustc")

        assert organization["slug"] == "ustc"

    def test_a_chosen_slug_is_lower_cased(self, client: TestClient) -> None:
        organization = register(client, name="Hefei Lab", slug="Hefei-Lab")

        assert organization["slug"] == "hefei-lab"

    def test_a_taken_slug_is_a_conflict(self, client: TestClient) -> None:
        register(client, slug="ustc")

        response = client.post(URL, json=organization_body(slug="ustc"))

        assert_problem(response, 409, "slug_taken")

    def test_an_email_taken_in_another_case_is_a_conflict(self, client: TestClient) -> None:
        first = organization_body()
        client.post(URL, json=first)
        second = organization_body()
        second["owner"]["email"] = first["owner"]["email"].upper()

        response = client.post(URL, json=second)

        assert_problem(response, 409, "email_taken")

    def test_a_conflict_creates_nothing(self, client: TestClient, engine: Engine) -> None:
        first = organization_body()
        client.post(URL, json=first)
        second = organization_body()
        second["owner"]["email"] = first["owner"]["email"]

        client.post(URL, json=second)

        assert count_rows(engine, Organization) == 1
        assert count_rows(engine, Member) == 1

    def test_the_password_is_stored_only_as_an_argon2_hash(
        self, client: TestClient, engine: Engine
    ) -> None:
        register(client)

        with Session(engine) as session:
            (owner,) = session.exec(select(Member)).all()

        assert owner.password_hash.startswith("$argon2id$")
        assert not any(
            PASSWORD in str(value) for value in owner.model_dump(warnings=False).values()
        )

    def test_an_invalid_country_is_a_validation_problem(self, client: TestClient) -> None:
        response = client.post(URL, json=organization_body(country="XX"))

        assert_problem(response, 422, "validation_failed", field="body.organization.country")

    def test_a_missing_owner_is_a_validation_problem(self, client: TestClient) -> None:
        body = organization_body()
        del body["owner"]

        response = client.post(URL, json=body)

        assert_problem(response, 422, "validation_failed", field="body.owner")

    def test_a_short_password_is_a_validation_problem(self, client: TestClient) -> None:
        body = organization_body()
        body["owner"]["password"] = "short"

        response = client.post(URL, json=body)

        assert_problem(response, 422, "validation_failed", field="body.owner.password")

    def test_verification_cannot_be_claimed_at_sign_up(self, client: TestClient) -> None:
        response = client.post(URL, json=organization_body(verified=True))

        assert_problem(response, 422, "validation_failed", field="body.organization.verified")

    def test_nul_in_the_name_is_a_validation_problem(self, client: TestClient) -> None:
        response = client.post(URL, json=organization_body(name="Null\x00 University"))

        assert_problem(response, 422, "validation_failed", field="body.organization.name")

    def test_sign_ups_are_limited_per_client_address(
        self, engine: Engine, settings: Settings
    ) -> None:
        limited = settings.model_copy(update={"sign_up_max_per_client": 2})
        with TestClient(create_app(limited)) as client:
            for _ in range(2):
                client.post(URL, json=organization_body())

            response = client.post(URL, json=organization_body())

        assert_problem(response, 429, "rate_limited")


class TestDirectory:
    def test_lists_organizations_by_slug_without_signing_in(self, client: TestClient) -> None:
        for name in ("Beta Institute", "Alpha Institute", "Gamma Institute"):
            register(client, name=name)

        page = directory(client)

        assert names(page) == ["Alpha Institute", "Beta Institute", "Gamma Institute"]
        assert page["next_cursor"] is None

    def test_filters_by_kind(self, client: TestClient) -> None:
        register(client, name="Anhui University", kind="university")
        register(client, name="iFlytek", kind="company")

        page = directory(client, kind="company")

        assert names(page) == ["iFlytek"]

    def test_filters_by_country_in_any_case(self, client: TestClient) -> None:
        register(client, name="Anhui University", country="CN")
        register(client, name="ETH Zurich", country="CH")

        page = directory(client, country="ch")

        assert names(page) == ["ETH Zurich"]

    def test_filters_by_verification(self, client: TestClient, engine: Engine) -> None:
        admin = platform_admin(client, engine)
        verified = register(client, name="Verified University")
        register(client, name="Unverified University")
        client.put(
            f"{URL}/{verified['id']}/verification", json={"verified": True}, headers=admin.headers
        )

        assert names(directory(client, verified="true")) == ["Verified University"]
        assert "Verified University" not in names(directory(client, verified="false"))

    def test_q_matches_part_of_the_name_in_any_case(self, client: TestClient) -> None:
        register(client, name="Hefei University of Technology")
        register(client, name="Anhui Medical College")

        page = directory(client, q="UNIVERSITY of tech")

        assert names(page) == ["Hefei University of Technology"]

    def test_q_treats_wildcard_characters_literally(self, client: TestClient) -> None:
        register(client, name="Alpha_Beta Lab")
        register(client, name="AlphaXBeta Lab")
        register(client, name="Solar 100% Institute")

        assert names(directory(client, q="a_b")) == ["Alpha_Beta Lab"]
        assert names(directory(client, q="%")) == ["Solar 100% Institute"]

    def test_nul_in_q_is_a_validation_problem(self, client: TestClient) -> None:
        response = client.get(URL, params={"q": "Uni\x00versity"})

        assert_problem(response, 422, "validation_failed", field="query.q")

    def test_an_unknown_kind_is_a_validation_problem(self, client: TestClient) -> None:
        response = client.get(URL, params={"kind": "spaceship"})

        assert_problem(response, 422, "validation_failed", field="query.kind")

    def test_an_unknown_country_is_a_validation_problem(self, client: TestClient) -> None:
        response = client.get(URL, params={"country": "XX"})

        assert_problem(response, 422, "validation_failed", field="query.country")

    def test_pages_follow_next_cursor_without_duplicates(self, client: TestClient) -> None:
        created = {register(client)["id"] for _ in range(5)}
        seen: list[dict[str, Any]] = []
        sizes: list[int] = []
        cursor: str | None = None
        while True:
            params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = directory(client, **params)
            seen += page["items"]
            sizes.append(len(page["items"]))
            cursor = page["next_cursor"]
            if cursor is None:
                break

        assert sizes == [2, 2, 1]
        assert [organization["id"] for organization in seen] == list(
            dict.fromkeys(organization["id"] for organization in seen)
        )
        assert {organization["id"] for organization in seen} == created
        slugs = [organization["slug"] for organization in seen]
        assert slugs == sorted(slugs)

    def test_a_full_last_page_has_no_next_cursor(self, client: TestClient) -> None:
        register(client)
        register(client)

        page = directory(client, limit=2)

        assert len(page["items"]) == 2
        assert page["next_cursor"] is None

    def test_filters_hold_across_pages(self, client: TestClient) -> None:
        for n in range(3):
            register(client, name=f"Company {n}", kind="company")
        register(client, name="A University", kind="university")

        first = directory(client, kind="company", limit=2)
        second = directory(client, kind="company", limit=2, cursor=first["next_cursor"])

        assert names(first) + names(second) == ["Company 0", "Company 1", "Company 2"]
        assert second["next_cursor"] is None

    @pytest.mark.parametrize(
        "cursor",
        ["not a cursor!", cursor_of([5]), cursor_of([]), cursor_of("slug")],
        ids=["garbage", "wrong-type", "empty-list", "bare-string"],
    )
    def test_a_cursor_this_api_did_not_issue_is_a_bad_request(
        self, client: TestClient, cursor: str
    ) -> None:
        response = client.get(URL, params={"cursor": cursor})

        assert_problem(response, 400, "invalid_cursor")

    def test_an_overlong_cursor_is_a_validation_problem(self, client: TestClient) -> None:
        response = client.get(URL, params={"cursor": "A" * 201})

        assert_problem(response, 422, "validation_failed", field="query.cursor")

    def test_a_cursor_with_nul_is_a_bad_request(self, client: TestClient) -> None:
        response = client.get(URL, params={"cursor": cursor_of(["a\x00"])})

        assert_problem(response, 400, "invalid_cursor")

    @pytest.mark.parametrize("limit", [0, 101])
    def test_a_limit_out_of_range_is_a_validation_problem(
        self, client: TestClient, limit: int
    ) -> None:
        response = client.get(URL, params={"limit": limit})

        assert_problem(response, 422, "validation_failed", field="query.limit")


class TestReadOrganization:
    def test_returns_the_public_profile_without_signing_in(self, client: TestClient) -> None:
        organization = register(client, name="Anhui University", region="Hefei")

        response = client.get(f"{URL}/{organization['id']}")

        assert response.status_code == 200, response.text
        assert response.json() == organization

    def test_an_unknown_id_is_not_found(self, client: TestClient) -> None:
        response = client.get(f"{URL}/{uuid.uuid4()}")

        assert_problem(response, 404, "not_found")

    def test_a_malformed_id_is_a_validation_problem(self, client: TestClient) -> None:
        response = client.get(f"{URL}/not-a-uuid")

        assert_problem(response, 422, "validation_failed", field="path.organization_id")


class TestUpdateOrganization:
    def patch(self, client: TestClient, actor: Actor, body: dict[str, Any]) -> Any:
        return client.patch(f"{URL}/{actor.organization_id}", json=body, headers=actor.headers)

    def test_the_owner_edits_the_profile(self, client: TestClient) -> None:
        owner = sign_up(client)
        before = client.get(f"{URL}/{owner.organization_id}").json()

        response = self.patch(
            client,
            owner,
            {"name": "Renamed University", "website": "https://renamed.example.org/"},
        )

        assert response.status_code == 200, response.text
        updated = response.json()
        assert updated["name"] == "Renamed University"
        assert updated["website"] == "https://renamed.example.org/"
        assert updated["slug"] == before["slug"]
        assert datetime.fromisoformat(updated["updated_at"]) > datetime.fromisoformat(
            before["updated_at"]
        )
        assert client.get(f"{URL}/{owner.organization_id}").json() == updated

    def test_an_admin_edits_the_profile(self, client: TestClient) -> None:
        admin = add_member(client, sign_up(client), role="admin")

        response = self.patch(client, admin, {"region": "Wuhu, Anhui"})

        assert response.status_code == 200, response.text
        assert response.json()["region"] == "Wuhu, Anhui"

    def test_omitted_fields_are_left_unchanged(self, client: TestClient) -> None:
        owner = sign_up(client, region="Hefei", description="Founded 1958.")

        updated = self.patch(client, owner, {"kind": "research_institute"}).json()

        assert updated["kind"] == "research_institute"
        assert updated["region"] == "Hefei"
        assert updated["description"] == "Founded 1958."

    def test_a_null_website_clears_it(self, client: TestClient) -> None:
        owner = sign_up(client, website="https://example.org/")

        updated = self.patch(client, owner, {"website": None}).json()

        assert updated["website"] is None

    @pytest.mark.parametrize("field", ["name", "kind", "country", "region", "description"])
    def test_null_for_a_required_field_is_a_validation_problem(
        self, client: TestClient, field: str
    ) -> None:
        owner = sign_up(client)

        response = self.patch(client, owner, {field: None})

        assert_problem(response, 422, "validation_failed")
        assert field in response.json()["errors"][0]["message"]

    def test_a_member_is_forbidden(self, client: TestClient) -> None:
        member = add_member(client, sign_up(client), role="member")

        response = self.patch(client, member, {"name": "Taken Over"})

        assert_problem(response, 403, "not_org_manager")

    def test_a_manager_of_another_organization_is_forbidden(self, client: TestClient) -> None:
        owner, outsider = sign_up(client), sign_up(client)

        response = client.patch(
            f"{URL}/{owner.organization_id}", json={"name": "Taken Over"}, headers=outsider.headers
        )

        assert_problem(response, 403, "not_org_manager")
        assert client.get(f"{URL}/{owner.organization_id}").json()["name"] != "Taken Over"

    def test_an_unknown_organization_is_not_found(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = client.patch(f"{URL}/{uuid.uuid4()}", json={}, headers=owner.headers)

        assert_problem(response, 404, "not_found")

    def test_an_invalid_website_is_a_validation_problem(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = self.patch(client, owner, {"website": "not a url"})

        assert_problem(response, 422, "validation_failed", field="body.website")

    @pytest.mark.parametrize("field", ["verified", "slug", "id"])
    def test_protected_fields_cannot_be_set(self, client: TestClient, field: str) -> None:
        owner = sign_up(client)
        value = {"verified": True, "slug": "hijacked", "id": str(uuid.uuid4())}[field]

        response = self.patch(client, owner, {field: value})

        assert_problem(response, 422, "validation_failed", field=f"body.{field}")

    def test_nul_in_a_field_is_a_validation_problem(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = self.patch(client, owner, {"region": "Hefei\x00"})

        assert_problem(response, 422, "validation_failed", field="body.region")

    def test_without_a_token_is_unauthenticated(self, client: TestClient) -> None:
        organization = register(client)

        response = client.patch(f"{URL}/{organization['id']}", json={"name": "Anonymous Edit"})

        assert_problem(response, 401, "unauthenticated")


class TestSetVerification:
    def put(self, client: TestClient, actor: Actor, organization_id: str, body: Any) -> Any:
        return client.put(f"{URL}/{organization_id}/verification", json=body, headers=actor.headers)

    def test_a_platform_admin_verifies_an_organization(
        self, client: TestClient, engine: Engine
    ) -> None:
        admin = platform_admin(client, engine)
        organization = register(client)

        response = self.put(client, admin, organization["id"], {"verified": True})

        assert response.status_code == 200, response.text
        assert response.json()["verified"] is True
        assert client.get(f"{URL}/{organization['id']}").json()["verified"] is True

    def test_a_platform_admin_withdraws_verification(
        self, client: TestClient, engine: Engine
    ) -> None:
        admin = platform_admin(client, engine)
        organization = register(client)
        self.put(client, admin, organization["id"], {"verified": True})

        response = self.put(client, admin, organization["id"], {"verified": False})

        assert response.json()["verified"] is False

    def test_an_owner_cannot_verify_their_own_organization(self, client: TestClient) -> None:
        owner = sign_up(client)

        response = self.put(client, owner, owner.organization_id, {"verified": True})

        assert_problem(response, 403, "platform_admin_required")
        assert client.get(f"{URL}/{owner.organization_id}").json()["verified"] is False

    def test_an_unknown_organization_is_not_found(self, client: TestClient, engine: Engine) -> None:
        admin = platform_admin(client, engine)

        response = self.put(client, admin, str(uuid.uuid4()), {"verified": True})

        assert_problem(response, 404, "not_found")

    @pytest.mark.parametrize("body", [{}, {"verified": "perhaps"}], ids=["missing", "not-bool"])
    def test_an_invalid_flag_is_a_validation_problem(
        self, client: TestClient, engine: Engine, body: dict[str, Any]
    ) -> None:
        admin = platform_admin(client, engine)

        response = self.put(client, admin, admin.organization_id, body)

        assert_problem(response, 422, "validation_failed", field="body.verified")

    def test_without_a_token_is_unauthenticated(self, client: TestClient) -> None:
        organization = register(client)

        response = client.put(f"{URL}/{organization['id']}/verification", json={"verified": True})

        assert_problem(response, 401, "unauthenticated")
