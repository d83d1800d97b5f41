"""Listings: post, browse and filter, read, update with If-Match, delete; visibility everywhere."""

import base64
import json
import uuid
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from schemas.listings import ATTRIBUTES_BY_KIND, ListingKind
from tests.factories import (
    ATTRIBUTES,
    Actor,
    add_member,
    assert_problem,
    create_listing,
    listing_body,
    sign_up,
)

URL = "/api/v1/listings"
KINDS = ("dataset", "scenario", "compute", "model")
# Hidden from members of other organizations; a member of the owning organization sees them all.
HIDDEN = ("private", "draft", "paused", "closed")


def listing_url(listing_id: str) -> str:
    return f"{URL}/{listing_id}"


def headers_of(actor: Actor | None, **extra: str) -> dict[str, str]:
    return {**(actor.headers if actor else {}), **extra}


def browse(client: TestClient, actor: Actor | None = None, **params: Any) -> dict[str, Any]:
    response = client.get(URL, params=params, headers=headers_of(actor))
    assert response.status_code == 200, response.text
    return dict(response.json())


def listed_ids(client: TestClient, actor: Actor | None = None, **params: Any) -> list[str]:
    return [item["id"] for item in browse(client, actor, **params)["items"]]


def read(client: TestClient, listing_id: str, actor: Actor | None = None) -> httpx.Response:
    return client.get(listing_url(listing_id), headers=headers_of(actor))


def stored(client: TestClient, owner: Actor, listing_id: str) -> dict[str, Any]:
    """The listing as its owner reads it now (to prove a refused request changed nothing)."""
    response = read(client, listing_id, owner)
    assert response.status_code == 200, response.text
    return dict(response.json())


def patch(
    client: TestClient, actor: Actor | None, listing_id: str, body: Any, if_match: str | None
) -> httpx.Response:
    extra = {} if if_match is None else {"If-Match": if_match}
    return client.patch(listing_url(listing_id), json=body, headers=headers_of(actor, **extra))


def delete(
    client: TestClient, actor: Actor | None, listing_id: str, if_match: str | None = None
) -> httpx.Response:
    extra = {} if if_match is None else {"If-Match": if_match}
    return client.delete(listing_url(listing_id), headers=headers_of(actor, **extra))


def etag_of(listing: dict[str, Any]) -> str:
    return f'"{listing["version"]}"'


def cursor_of(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def visibility_catalogue(client: TestClient, owner: Actor) -> dict[str, str]:
    """One listing per visibility case, by case name: listing id."""
    return {
        "public": create_listing(client, owner)["id"],
        "registered": create_listing(client, owner, visibility="registered")["id"],
        "private": create_listing(client, owner, visibility="private")["id"],
        "draft": create_listing(client, owner, status="draft")["id"],
        "paused": create_listing(client, owner, status="paused")["id"],
        "closed": create_listing(client, owner, status="closed")["id"],
    }


def with_attributes(kind: str, **changes: Any) -> dict[str, Any]:
    return listing_body(kind, attributes={**ATTRIBUTES[kind], **changes})


def defaults_of(kind: str) -> dict[str, Any]:
    """The kind's optional attributes at their defaults, as the API answers them."""
    fields = ATTRIBUTES_BY_KIND[ListingKind(kind)].model_fields
    return {
        name: field.get_default(call_default_factory=True)
        for name, field in fields.items()
        if not field.is_required()
    }


def expected_attributes(kind: str, sent: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the API answers for `sent` attributes (the factory's by default): defaults filled in."""
    return {**defaults_of(kind), **(ATTRIBUTES[kind] if sent is None else sent)}


INVALID_BODIES: list[Any] = [
    pytest.param(
        with_attributes("dataset", accelerator_model="H100"),
        "body.attributes.accelerator_model",
        id="attribute-of-another-kind",
    ),
    pytest.param(
        with_attributes("dataset", record_count="many"),
        "body.attributes.record_count",
        id="attribute-of-the-wrong-type",
    ),
    pytest.param(
        with_attributes("scenario", currency="XYZ"), "body.attributes.currency", id="currency"
    ),
    pytest.param(
        with_attributes("dataset", licence="Free-For-All-1.0"),
        "body.attributes.licence",
        id="spdx-licence",
    ),
    pytest.param(
        with_attributes("scenario", budget_min="900000", budget_max="100"),
        "body.attributes",
        id="budget-min-over-max",
    ),
    pytest.param(
        with_attributes("compute", available_from="2027-12-31", available_until="2027-01-01"),
        "body.attributes",
        id="availability-window-reversed",
    ),
    pytest.param(
        with_attributes("model", tasks=[]), "body.attributes.tasks", id="model-without-tasks"
    ),
    pytest.param(listing_body(sector="space_tourism"), "body.sector", id="sector"),
    pytest.param(listing_body(country="XX"), "body.country", id="country"),
    pytest.param(listing_body(languages=["xx"]), "body.languages.0", id="language"),
    pytest.param(listing_body(title="ab"), "body.title", id="title-too-short"),
    pytest.param(listing_body(title="nul\x00title"), "body.title", id="nul-in-text"),
    pytest.param(listing_body(verified=True), "body.verified", id="extra-field"),
    pytest.param({**listing_body(), "kind": "robot"}, "body.kind", id="unknown-kind"),
    pytest.param(
        {k: v for k, v in listing_body().items() if k != "attributes"},
        "body.attributes",
        id="attributes-missing",
    ),
]


class TestCreateListing:
    def test_posts_a_listing_for_the_callers_organization(self, client: TestClient) -> None:
        owner = sign_up(client)
        body = listing_body("dataset", title="Hefei traffic camera frames")

        response = client.post(URL, json=body, headers=owner.headers)

        assert response.status_code == 201, response.text
        created = response.json()
        assert response.headers["location"] == listing_url(created["id"])
        assert response.headers["etag"] == '"1"'
        assert created["version"] == 1
        assert created["organization"]["id"] == owner.organization_id
        assert created["side"] == "need"
        for field in ("kind", "title", "summary", "description", "tags", "sector", "country"):
            assert created[field] == body[field]
        assert created["created_at"].endswith("Z")

    def test_a_new_listing_is_a_public_draft_by_default(self, client: TestClient) -> None:
        owner = sign_up(client)
        body = listing_body()
        del body["status"], body["visibility"]

        created = client.post(URL, json=body, headers=owner.headers).json()

        assert (created["status"], created["visibility"]) == ("draft", "public")

    @pytest.mark.parametrize(
        ("kind", "side"),
        [("dataset", "need"), ("scenario", "need"), ("compute", "offer"), ("model", "offer")],
    )
    def test_each_kind_round_trips_its_typed_attributes(
        self, client: TestClient, kind: str, side: str
    ) -> None:
        owner = sign_up(client)

        created = create_listing(client, owner, kind)
        read_back = stored(client, owner, created["id"])

        assert created["attributes"] == expected_attributes(kind)
        assert read_back["attributes"] == expected_attributes(kind)
        assert (read_back["kind"], read_back["side"]) == (kind, side)

    def test_codes_are_stored_in_their_canonical_spelling(self, client: TestClient) -> None:
        owner = sign_up(client)

        created = create_listing(
            client,
            owner,
            "scenario",
            country="cn",
            languages=["ZH"],
            attributes={**ATTRIBUTES["scenario"], "currency": "cny"},
        )

        assert (created["country"], created["languages"]) == ("CN", ["zh"])
        assert created["attributes"]["currency"] == "CNY"

    @pytest.mark.parametrize(("body", "field"), INVALID_BODIES)
    def test_an_invalid_body_is_a_validation_problem_naming_the_field(
        self, client: TestClient, body: dict[str, Any], field: str
    ) -> None:
        owner = sign_up(client)

        response = client.post(URL, json=body, headers=owner.headers)

        assert_problem(response, 422, "validation_failed", field=field)

    def test_a_refused_listing_leaves_nothing_behind(self, client: TestClient) -> None:
        owner = sign_up(client)

        client.post(URL, json=with_attributes("dataset", licence="nope"), headers=owner.headers)

        assert listed_ids(client, owner) == []

    def test_signing_in_is_required(self, client: TestClient) -> None:
        response = client.post(URL, json=listing_body())

        assert_problem(response, 401, "unauthenticated")

    def test_an_invalid_token_is_refused(self, client: TestClient) -> None:
        response = client.post(URL, json=listing_body(), headers={"Authorization": "Bearer nope"})

        assert_problem(response, 401, "invalid_token")

    def test_a_listing_cannot_be_posted_for_another_organization(self, client: TestClient) -> None:
        poster, other = sign_up(client), sign_up(client)
        body = listing_body(organization_id=other.organization_id)

        response = client.post(URL, json=body, headers=poster.headers)

        assert_problem(response, 422, "validation_failed", field="body.organization_id")
        assert listed_ids(client, other, organization_id=other.organization_id) == []

    def test_a_scenario_links_datasets_its_organization_may_see(self, client: TestClient) -> None:
        owner, other = sign_up(client), sign_up(client)
        own_private = create_listing(client, owner, "dataset", visibility="private")["id"]
        others_public = create_listing(client, other, "dataset")["id"]
        links = [own_private, others_public]

        created = create_listing(
            client,
            owner,
            "scenario",
            attributes={**ATTRIBUTES["scenario"], "linked_dataset_ids": links},
        )

        assert created["attributes"]["linked_dataset_ids"] == links

    @pytest.mark.parametrize("target", ["unknown", "others-private-dataset", "compute-listing"])
    def test_a_scenario_cannot_link_what_is_not_a_visible_dataset(
        self, client: TestClient, target: str
    ) -> None:
        owner, other = sign_up(client), sign_up(client)
        linked = {
            "unknown": lambda: str(uuid.uuid4()),
            "others-private-dataset": lambda: create_listing(
                client, other, "dataset", visibility="private"
            )["id"],
            "compute-listing": lambda: create_listing(client, owner, "compute")["id"],
        }[target]()
        before = listed_ids(client, owner)
        body = with_attributes("scenario", linked_dataset_ids=[linked])

        response = client.post(URL, json=body, headers=owner.headers)

        assert_problem(response, 422, "invalid_input", field="body.attributes.linked_dataset_ids.0")
        assert listed_ids(client, owner) == before


BATCH_URL = f"{URL}/batch"


def post_batch(client: TestClient, actor: Actor | None, items: list[Any]) -> httpx.Response:
    return client.post(BATCH_URL, json={"items": items}, headers=headers_of(actor))


class TestCreateListingBatch:
    def test_posts_every_listing_for_the_callers_organization_in_order(
        self, client: TestClient
    ) -> None:
        owner = sign_up(client)
        bodies = [listing_body(kind) for kind in KINDS]

        response = post_batch(client, owner, bodies)

        assert response.status_code == 201, response.text
        created = response.json()["items"]
        assert [item["title"] for item in created] == [body["title"] for body in bodies]
        for item, kind in zip(created, KINDS, strict=True):
            assert item["organization"]["id"] == owner.organization_id
            assert item["version"] == 1
            assert stored(client, owner, item["id"])["attributes"] == expected_attributes(kind)
        assert sorted(listed_ids(client, owner)) == sorted(item["id"] for item in created)

    @pytest.mark.parametrize(("body", "field"), INVALID_BODIES)
    def test_one_invalid_item_refuses_the_batch_naming_it(
        self, client: TestClient, body: dict[str, Any], field: str
    ) -> None:
        owner = sign_up(client)

        response = post_batch(client, owner, [listing_body(), body])

        item_field = field.replace("body.", "body.items.1.", 1)
        assert_problem(response, 422, "validation_failed", field=item_field)
        assert listed_ids(client, owner) == []

    def test_a_scenario_linking_what_is_not_a_visible_dataset_refuses_the_batch(
        self, client: TestClient
    ) -> None:
        owner, other = sign_up(client), sign_up(client)
        hidden = create_listing(client, other, "dataset", visibility="private")["id"]
        linking = with_attributes("scenario", linked_dataset_ids=[hidden])

        response = post_batch(client, owner, [listing_body("dataset"), linking])

        assert_problem(
            response, 422, "invalid_input", field="body.items.1.attributes.linked_dataset_ids.0"
        )
        assert listed_ids(client, owner) == []

    @pytest.mark.parametrize("count", [0, 101])
    def test_a_batch_holds_1_to_100_listings(self, client: TestClient, count: int) -> None:
        owner = sign_up(client)

        response = post_batch(client, owner, [listing_body() for _ in range(count)])

        assert_problem(response, 422, "validation_failed", field="body.items")
        assert listed_ids(client, owner) == []

    def test_signing_in_is_required(self, client: TestClient) -> None:
        response = post_batch(client, None, [listing_body()])

        assert_problem(response, 401, "unauthenticated")

    def test_listings_cannot_be_posted_for_another_organization(self, client: TestClient) -> None:
        poster, other = sign_up(client), sign_up(client)
        body = listing_body(organization_id=other.organization_id)

        response = post_batch(client, poster, [body])

        assert_problem(response, 422, "validation_failed", field="body.items.0.organization_id")
        assert listed_ids(client, other, organization_id=other.organization_id) == []


class TestListListings:
    def test_anonymous_callers_see_only_published_public_listings(self, client: TestClient) -> None:
        catalogue = visibility_catalogue(client, sign_up(client))

        assert listed_ids(client) == [catalogue["public"]]

    def test_other_organizations_see_published_public_and_registered_listings(
        self, client: TestClient
    ) -> None:
        catalogue = visibility_catalogue(client, sign_up(client))
        outsider = sign_up(client)

        assert set(listed_ids(client, outsider)) == {catalogue["public"], catalogue["registered"]}

    def test_members_see_every_listing_of_their_own_organization(self, client: TestClient) -> None:
        owner = sign_up(client)
        catalogue = visibility_catalogue(client, owner)
        colleague = add_member(client, owner)

        assert set(listed_ids(client, colleague)) == set(catalogue.values())

    def test_newest_listings_come_first(self, client: TestClient) -> None:
        owner = sign_up(client)
        created = [create_listing(client, owner)["id"] for _ in range(3)]

        assert listed_ids(client) == created[::-1]

    def test_an_invalid_token_is_refused(self, client: TestClient) -> None:
        response = client.get(URL, headers={"Authorization": "Bearer nope"})

        assert_problem(response, 401, "invalid_token")

    def test_filters_by_kind(self, client: TestClient) -> None:
        owner = sign_up(client)
        ids = {kind: create_listing(client, owner, kind)["id"] for kind in KINDS}

        assert {kind: listed_ids(client, kind=kind) for kind in KINDS} == {
            kind: [listing_id] for kind, listing_id in ids.items()
        }

    def test_filters_by_side(self, client: TestClient) -> None:
        owner = sign_up(client)
        ids = {kind: create_listing(client, owner, kind)["id"] for kind in KINDS}

        assert set(listed_ids(client, side="need")) == {ids["dataset"], ids["scenario"]}
        assert set(listed_ids(client, side="offer")) == {ids["compute"], ids["model"]}

    def test_filters_by_sector(self, client: TestClient) -> None:
        owner = sign_up(client)
        health = create_listing(client, owner, sector="healthcare")["id"]
        create_listing(client, owner, sector="transport")

        assert listed_ids(client, sector="healthcare") == [health]

    def test_filters_by_country(self, client: TestClient) -> None:
        owner = sign_up(client)
        german = create_listing(client, owner, country="DE")["id"]
        create_listing(client, owner, country="CN")

        assert listed_ids(client, country="de") == [german]

    def test_filters_by_organization(self, client: TestClient) -> None:
        first, second = sign_up(client), sign_up(client)
        mine = create_listing(client, first)["id"]
        create_listing(client, second)

        assert listed_ids(client, organization_id=first.organization_id) == [mine]

    def test_filters_by_organization_kind(self, client: TestClient) -> None:
        university, company = sign_up(client, kind="university"), sign_up(client, kind="company")
        create_listing(client, university, "dataset")
        offered = create_listing(client, company, "compute")["id"]

        assert listed_ids(client, organization_kind="company") == [offered]

    def test_filters_by_status_within_what_the_caller_may_see(self, client: TestClient) -> None:
        owner, outsider = sign_up(client), sign_up(client)
        draft = create_listing(client, owner, status="draft")["id"]
        create_listing(client, owner, status="published")
        create_listing(client, outsider, status="draft")

        assert listed_ids(client, owner, status="draft") == [draft]
        assert (
            listed_ids(client, outsider, status="draft", organization_id=owner.organization_id)
            == []
        )

    def test_filters_combine(self, client: TestClient) -> None:
        owner = sign_up(client)
        wanted = create_listing(client, owner, "compute", sector="energy_carbon")["id"]
        create_listing(client, owner, "compute", sector="finance")
        create_listing(client, owner, "dataset", sector="energy_carbon")

        assert listed_ids(client, kind="compute", sector="energy_carbon", side="offer") == [wanted]

    @pytest.mark.parametrize(
        "fields",
        [
            {"title": "Wind turbine telemetry"},
            {"summary": "Vibration telemetry from turbines."},
            {"description": "## Telemetry\n\nTen years of readings."},
            {"tags": ["energy", "telemetry"]},
        ],
        ids=["title", "summary", "description", "tags"],
    )
    def test_keywords_match_title_summary_description_or_tags(
        self, client: TestClient, fields: dict[str, Any]
    ) -> None:
        owner = sign_up(client)
        match = create_listing(client, owner, **fields)["id"]
        create_listing(client, owner, title="Something else entirely")

        assert listed_ids(client, q="TELEMETRY") == [match]

    def test_every_keyword_must_appear(self, client: TestClient) -> None:
        owner = sign_up(client)
        both = create_listing(client, owner, title="Solar forecasting", tags=["hefei"])["id"]
        create_listing(client, owner, title="Solar panels")

        assert listed_ids(client, q="solar  hefei") == [both]

    def test_chinese_keywords_match_chinese_titles_and_descriptions(
        self, client: TestClient
    ) -> None:
        owner = sign_up(client)
        titled = create_listing(client, owner, title="合肥市智慧交通信号优化场景")["id"]
        described = create_listing(
            client, owner, title="Traffic flow", description="利用深度学习预测城市交通流量。"
        )["id"]
        create_listing(client, owner, title="Hefei traffic signals")

        assert listed_ids(client, q="交通") == [described, titled]
        assert listed_ids(client, q="交通流量") == [described]

    def test_chinese_keywords_match_chinese_tags(self, client: TestClient) -> None:
        owner = sign_up(client)
        tagged = create_listing(client, owner, tags=["智慧城市", "traffic"])["id"]
        create_listing(client, owner, tags=["城市"])

        assert listed_ids(client, q="智慧城市") == [tagged]

    def test_like_wildcards_in_keywords_are_literal_text(self, client: TestClient) -> None:
        owner = sign_up(client)
        percent = create_listing(client, owner, title="Recall above 95% on defects")["id"]
        create_listing(client, owner, title="Recall above 95 on defects")

        assert listed_ids(client, q="95%") == [percent]
        assert listed_ids(client, q="_") == []

    def test_blank_keywords_filter_nothing(self, client: TestClient) -> None:
        listing = create_listing(client, sign_up(client))["id"]

        assert listed_ids(client, q="   ") == [listing]

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("kind", "robot"),
            ("side", "middle"),
            ("sector", "space_tourism"),
            ("country", "XX"),
            ("organization_id", "not-a-uuid"),
            ("organization_kind", "guild"),
            ("status", "archived"),
            ("q", "nul\x00byte"),
            ("q", "x" * 201),
        ],
    )
    def test_an_invalid_filter_is_a_validation_problem(
        self, client: TestClient, name: str, value: str
    ) -> None:
        response = client.get(URL, params={name: value})

        assert_problem(response, 422, "validation_failed", field=f"query.{name}")

    def test_pages_through_every_listing_exactly_once(self, client: TestClient) -> None:
        owner = sign_up(client)
        created = [create_listing(client, owner)["id"] for _ in range(7)]
        seen: list[str] = []
        pages = 0
        cursor = None

        while True:
            params = {"limit": 3} if cursor is None else {"limit": 3, "cursor": cursor}
            page = browse(client, **params)
            seen += [item["id"] for item in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break

        assert seen == created[::-1]
        assert pages == 3

    def test_a_full_last_page_has_no_next_cursor(self, client: TestClient) -> None:
        owner = sign_up(client)
        for _ in range(2):
            create_listing(client, owner)

        page = browse(client, limit=2)

        assert (len(page["items"]), page["next_cursor"]) == (2, None)

    def test_the_cursor_keeps_to_the_filters(self, client: TestClient) -> None:
        owner = sign_up(client)
        models = [create_listing(client, owner, "model")["id"] for _ in range(3)]
        create_listing(client, owner, "dataset")

        first = browse(client, kind="model", limit=2)
        second = browse(client, kind="model", limit=2, cursor=first["next_cursor"])

        assert [item["id"] for item in first["items"] + second["items"]] == models[::-1]
        assert second["next_cursor"] is None

    @pytest.mark.parametrize(
        "cursor",
        [
            "not a cursor!",
            cursor_of(["a-slug"]),
            cursor_of({"row": 3}),
            cursor_of([10**30]),
            cursor_of([-1]),
        ],
        ids=["garbage", "wrong-key-type", "not-a-list", "out-of-range", "negative"],
    )
    def test_an_invalid_cursor_is_a_bad_request(self, client: TestClient, cursor: str) -> None:
        response = client.get(URL, params={"cursor": cursor})

        assert_problem(response, 400, "invalid_cursor")

    @pytest.mark.parametrize("limit", [0, 101])
    def test_a_limit_outside_1_to_100_is_a_validation_problem(
        self, client: TestClient, limit: int
    ) -> None:
        response = client.get(URL, params={"limit": limit})

        assert_problem(response, 422, "validation_failed", field="query.limit")


class TestReadListing:
    def test_returns_the_listing_with_its_etag(self, client: TestClient) -> None:
        owner = sign_up(client)
        created = create_listing(client, owner, "compute")

        response = read(client, created["id"])

        assert response.status_code == 200, response.text
        assert response.json() == created
        assert response.headers["etag"] == '"1"'

    def test_anonymous_callers_read_only_published_public_listings(
        self, client: TestClient
    ) -> None:
        catalogue = visibility_catalogue(client, sign_up(client))

        statuses = {
            case: read(client, listing_id).status_code for case, listing_id in catalogue.items()
        }

        assert statuses == {case: 200 if case == "public" else 404 for case in catalogue}

    def test_other_organizations_cannot_read_hidden_listings(self, client: TestClient) -> None:
        catalogue = visibility_catalogue(client, sign_up(client))
        outsider = sign_up(client)

        for case in HIDDEN:
            assert_problem(read(client, catalogue[case], outsider), 404, "not_found")
        for case in ("public", "registered"):
            assert read(client, catalogue[case], outsider).status_code == 200

    def test_members_read_every_listing_of_their_own_organization(self, client: TestClient) -> None:
        owner = sign_up(client)
        catalogue = visibility_catalogue(client, owner)
        colleague = add_member(client, owner)

        for listing_id in catalogue.values():
            assert read(client, listing_id, colleague).status_code == 200

    def test_an_unknown_listing_is_not_found(self, client: TestClient) -> None:
        assert_problem(read(client, str(uuid.uuid4())), 404, "not_found")

    def test_an_invalid_id_is_a_validation_problem(self, client: TestClient) -> None:
        response = read(client, "not-a-uuid")

        assert_problem(response, 422, "validation_failed", field="path.listing_id")

    def test_an_invalid_token_is_refused(self, client: TestClient) -> None:
        listing = create_listing(client, sign_up(client))
        response = client.get(listing_url(listing["id"]), headers={"Authorization": "Bearer x"})

        assert_problem(response, 401, "invalid_token")


class TestUpdateListing:
    def test_updates_with_the_current_etag_and_issues_the_next(self, client: TestClient) -> None:
        owner = sign_up(client)
        listing = create_listing(client, owner)

        response = patch(
            client, owner, listing["id"], {"title": "Renamed", "tags": ["x"]}, etag_of(listing)
        )

        assert response.status_code == 200, response.text
        updated = response.json()
        assert response.headers["etag"] == '"2"'
        assert updated["version"] == 2
        assert (updated["title"], updated["tags"]) == ("Renamed", ["x"])
        assert updated["summary"] == listing["summary"]
        assert updated["updated_at"] > listing["updated_at"]
        assert stored(client, owner, listing["id"]) == updated

    def test_a_member_of_the_owning_organization_may_update(self, client: TestClient) -> None:
        owner = sign_up(client)
        listing = create_listing(client, owner)
        colleague = add_member(client, owner)

        response = patch(client, colleague, listing["id"], {"status": "paused"}, etag_of(listing))

        assert response.json()["status"] == "paused"

    @pytest.mark.parametrize("if_match", ['W/"1"', "*"])
    def test_weak_and_wildcard_etags_are_accepted(self, client: TestClient, if_match: str) -> None:
        owner = sign_up(client)
        listing = create_listing(client, owner)

        response = patch(client, owner, listing["id"], {"region": "Wuhu"}, if_match)

        assert response.status_code == 200, response.text

    def test_if_match_is_required(self, client: TestClient) -> None:
        owner = sign_up(client)
        listing = create_listing(client, owner)

        response = patch(client, owner, listing["id"], {"title": "Renamed"}, None)

        assert_problem(response, 428, "if_match_required")
        assert stored(client, owner, listing["id"]) == listing

    def test_a_stale_etag_is_refused(self, client: TestClient) -> None:
        owner = sign_up(client)
        listing = create_listing(client, owner)
        current = patch(client, owner, listing["id"], {"title": "First"}, etag_of(listing)).json()

        response = patch(client, owner, listing["id"], {"title": "Second"}, etag_of(listing))

        assert_problem(response, 412, "stale_version")
        assert stored(client, owner, listing["id"]) == current

    @pytest.mark.parametrize("if_match", ["abc", '"v1"', '"1", "2"', ""])
    def test_a_malformed_if_match_is_a_bad_request(self, client: TestClient, if_match: str) -> None:
        owner = sign_up(client)
        listing = create_listing(client, owner)

        response = patch(client, owner, listing["id"], {"title": "Renamed"}, if_match)

        assert_problem(response, 400, "invalid_if_match")
        assert stored(client, owner, listing["id"]) == listing

    def test_attributes_are_replaced_as_a_whole(self, client: TestClient) -> None:
        owner = sign_up(client)
        listing = create_listing(client, owner, "dataset")
        attributes = {"modality": "tabular", "licence": "mit"}

        response = patch(client, owner, listing["id"], {"attributes": attributes}, '"1"')

        assert response.status_code == 200, response.text
        assert response.json()["attributes"] == expected_attributes(
            "dataset", {"modality": "tabular", "licence": "MIT"}
        )
        assert response.json()["attributes"]["documentation_url"] is None

    @pytest.mark.parametrize(
        ("kind", "attributes", "field"),
        [
            ("dataset", ATTRIBUTES["compute"], "body.attributes.accelerator_model"),
            ("model", {**ATTRIBUTES["model"], "licence": "Nope-1.0"}, "body.attributes.licence"),
            ("scenario", {**ATTRIBUTES["scenario"], "currency": "XYZ"}, "body.attributes.currency"),
            (
                "scenario",
                {**ATTRIBUTES["scenario"], "budget_min": "9", "budget_max": "1"},
                "body.attributes",
            ),
            (
                "compute",
                {**ATTRIBUTES["compute"], "accelerator_count": 0},
                "body.attributes.accelerator_count",
            ),
        ],
        ids=["other-kind", "licence", "currency", "budget", "count"],
    )
    def test_attributes_are_validated_against_the_listings_kind(
        self, client: TestClient, kind: str, attributes: dict[str, Any], field: str
    ) -> None:
        owner = sign_up(client)
        listing = create_listing(client, owner, kind)

        response = patch(client, owner, listing["id"], {"attributes": attributes}, '"1"')

        assert_problem(response, 422, "validation_failed", field=field)
        assert stored(client, owner, listing["id"]) == listing

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"sector": "space_tourism"}, "body.sector"),
            ({"country": "XX"}, "body.country"),
            ({"title": "ab"}, "body.title"),
            ({"visibility": "secret"}, "body.visibility"),
            ({"kind": "model"}, "body.kind"),
            ({"organization_id": str(uuid.uuid4())}, "body.organization_id"),
            ({"version": 7}, "body.version"),
        ],
        ids=["sector", "country", "title", "visibility", "kind", "organization", "version"],
    )
    def test_an_invalid_field_is_a_validation_problem(
        self, client: TestClient, body: dict[str, Any], field: str
    ) -> None:
        owner = sign_up(client)
        listing = create_listing(client, owner)

        response = patch(client, owner, listing["id"], body, '"1"')

        assert_problem(response, 422, "validation_failed", field=field)
        assert stored(client, owner, listing["id"]) == listing

    @pytest.mark.parametrize("field", ["title", "summary", "tags", "status", "attributes"])
    def test_a_field_cannot_be_cleared_with_null(self, client: TestClient, field: str) -> None:
        owner = sign_up(client)
        listing = create_listing(client, owner)

        response = patch(client, owner, listing["id"], {field: None}, '"1"')

        assert_problem(response, 422, "validation_failed", field=f"body.{field}")
        assert stored(client, owner, listing["id"]) == listing

    def test_the_api_document_admits_no_null_where_null_is_refused(
        self, client: TestClient
    ) -> None:
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
        update = schemas["ListingUpdate"]["properties"]
        assert update["title"] == {
            "type": "string", "minLength": 3, "maxLength": 200, "title": "Title"
        }  # fmt: skip
        for field in ("summary", "tags", "status", "attributes"):
            assert "null" not in str(update[field]) and "default" not in update[field], field
        search = schemas["SavedSearchUpdate"]["properties"]
        assert "null" not in str(search["name"]) and "null" not in str(search["enabled"])
        assert {"type": "null"} in search["sector"]["anyOf"]  # null clears a filter

    def test_a_scenario_may_link_only_visible_datasets(self, client: TestClient) -> None:
        owner, other = sign_up(client), sign_up(client)
        scenario = create_listing(client, owner, "scenario")
        hidden = create_listing(client, other, "dataset", visibility="private")["id"]
        visible = create_listing(client, other, "dataset", visibility="registered")["id"]

        refused = patch(
            client,
            owner,
            scenario["id"],
            {"attributes": {**ATTRIBUTES["scenario"], "linked_dataset_ids": [visible, hidden]}},
            '"1"',
        )
        accepted = patch(
            client,
            owner,
            scenario["id"],
            {"attributes": {**ATTRIBUTES["scenario"], "linked_dataset_ids": [visible]}},
            '"1"',
        )

        assert_problem(refused, 422, "invalid_input", field="body.attributes.linked_dataset_ids.1")
        assert accepted.json()["attributes"]["linked_dataset_ids"] == [visible]

    def test_signing_in_is_required(self, client: TestClient) -> None:
        owner = sign_up(client)
        listing = create_listing(client, owner)

        response = patch(client, None, listing["id"], {"title": "Renamed"}, '"1"')

        assert_problem(response, 401, "unauthenticated")
        assert stored(client, owner, listing["id"]) == listing

    def test_another_organization_is_forbidden_a_listing_it_can_see(
        self, client: TestClient
    ) -> None:
        owner, outsider = sign_up(client), sign_up(client)
        listing = create_listing(client, owner, visibility="registered")

        response = patch(client, outsider, listing["id"], {"title": "Hijacked"}, '"1"')

        assert_problem(response, 403, "forbidden")
        assert stored(client, owner, listing["id"]) == listing

    def test_another_organization_gets_not_found_for_hidden_listings(
        self, client: TestClient
    ) -> None:
        owner, outsider = sign_up(client), sign_up(client)
        catalogue = visibility_catalogue(client, owner)

        for case in HIDDEN:
            before = stored(client, owner, catalogue[case])
            response = patch(client, outsider, catalogue[case], {"title": "Hijacked"}, '"1"')
            assert_problem(response, 404, "not_found")
            assert stored(client, owner, catalogue[case]) == before

    def test_unpublishing_hides_the_listing_from_others(self, client: TestClient) -> None:
        owner, outsider = sign_up(client), sign_up(client)
        listing = create_listing(client, owner)

        patch(client, owner, listing["id"], {"status": "closed"}, '"1"')

        assert read(client, listing["id"], outsider).status_code == 404
        assert listed_ids(client, outsider) == []


class TestDeleteListing:
    def test_deletes_and_afterwards_answers_not_found(self, client: TestClient) -> None:
        owner = sign_up(client)
        listing = create_listing(client, owner)

        response = delete(client, owner, listing["id"], etag_of(listing))

        assert response.status_code == 204
        assert response.content == b""
        assert_problem(read(client, listing["id"], owner), 404, "not_found")
        assert_problem(delete(client, owner, listing["id"]), 404, "not_found")
        assert listed_ids(client, owner) == []

    def test_a_stale_if_match_is_refused_then_the_current_one_deletes(
        self, client: TestClient
    ) -> None:
        owner = sign_up(client)
        listing = create_listing(client, owner)
        current = patch(client, owner, listing["id"], {"title": "Renamed"}, '"1"').json()

        refused = delete(client, owner, listing["id"], etag_of(listing))
        still_there = stored(client, owner, listing["id"])
        accepted = delete(client, owner, listing["id"], etag_of(current))

        assert_problem(refused, 412, "stale_version")
        assert still_there == current
        assert accepted.status_code == 204
        assert read(client, listing["id"], owner).status_code == 404

    def test_if_match_is_optional(self, client: TestClient) -> None:
        owner = sign_up(client)
        listing = create_listing(client, owner)

        assert delete(client, owner, listing["id"]).status_code == 204

    def test_a_malformed_if_match_is_a_bad_request(self, client: TestClient) -> None:
        owner = sign_up(client)
        listing = create_listing(client, owner)

        response = delete(client, owner, listing["id"], "version one")

        assert_problem(response, 400, "invalid_if_match")
        assert stored(client, owner, listing["id"]) == listing

    def test_signing_in_is_required(self, client: TestClient) -> None:
        owner = sign_up(client)
        listing = create_listing(client, owner)

        assert_problem(delete(client, None, listing["id"]), 401, "unauthenticated")
        assert stored(client, owner, listing["id"]) == listing

    def test_another_organization_is_forbidden_a_listing_it_can_see(
        self, client: TestClient
    ) -> None:
        owner, outsider = sign_up(client), sign_up(client)
        listing = create_listing(client, owner)

        assert_problem(delete(client, outsider, listing["id"]), 403, "forbidden")
        assert stored(client, owner, listing["id"]) == listing

    def test_another_organization_gets_not_found_for_hidden_listings(
        self, client: TestClient
    ) -> None:
        owner, outsider = sign_up(client), sign_up(client)
        catalogue = visibility_catalogue(client, owner)

        for case in HIDDEN:
            assert_problem(delete(client, outsider, catalogue[case]), 404, "not_found")
        assert set(listed_ids(client, owner)) == set(catalogue.values())

    def test_an_unknown_listing_is_not_found(self, client: TestClient) -> None:
        owner = sign_up(client)

        assert_problem(delete(client, owner, str(uuid.uuid4())), 404, "not_found")
