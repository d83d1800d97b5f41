"""Saved searches: CRUD for an organization's members, and the `match.new` alerts they raise when
a listing of another organization is published, through the event chain to a signed webhook."""

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, update
from sqlmodel import Session, col, select

from marketplace.app import create_app
from marketplace.models import Event, MatchAlertJob, SavedSearch
from marketplace.services import embeddings, events, match_alerts
from marketplace.settings import Settings
from marketplace.worker import BackgroundWorker
from matching.embedding import Embedder
from schemas.events import SubjectType
from tests.api.test_webhooks import verify_standard_webhook
from tests.factories import (
    ATTRIBUTES,
    Actor,
    assert_problem,
    create_listing,
    sign_up,
)
from tests.servers import Receiver, receiver

URL = "/api/v1/saved-searches"
STEEL_QUERY = "steel surface defect detection images"
STEEL_DATASET = {
    "title": "Steel defect inspection image set",
    "summary": "Images of surface defects on cold-rolled steel coils, labelled by inspectors.",
    "tags": ["steel", "inspection"],
}


@pytest.fixture(scope="module")
def _client(
    database_url: str, embedder: Embedder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """One app per backend for the module, without the background worker: the tests raise
    alerts and send webhooks themselves, to a receiver on 127.0.0.1 (private addresses allowed)."""
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path_factory.mktemp("data"),
        worker_interval_seconds=0,
        webhook_allow_private_addresses=True,
    )
    with TestClient(create_app(settings, embedder=embedder)) as test_client:
        yield test_client


@pytest.fixture
def client(engine: Engine, _client: TestClient) -> TestClient:
    """The module's client over emptied tables, its index rebuilt from them."""
    _client.app.state.search_index.reload()  # type: ignore[attr-defined]
    return _client


@pytest.fixture
def settings(client: TestClient) -> Settings:
    return client.app.state.settings  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
def searcher(client: TestClient) -> Actor:
    """A university that saves searches."""
    return sign_up(client)


@pytest.fixture
def publisher(client: TestClient) -> Actor:
    """A company that publishes listings."""
    return sign_up(client, kind="company")


def save(client: TestClient, actor: Actor, **fields: Any) -> dict[str, Any]:
    body = {"name": "Steel defects", "text": STEEL_QUERY, "min_score": 0.45, **fields}
    response = client.post(URL, json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def raise_alerts(client: TestClient) -> int:
    """One round of the worker's alert step."""
    state = client.app.state  # type: ignore[attr-defined]
    with Session(state.engine) as session:
        return match_alerts.process_due(session, index=state.search_index, limit=50)


def alerts(engine: Engine) -> list[dict[str, Any]]:
    """The `match.new` events raised so far, oldest first."""
    with Session(engine) as session:
        rows = session.exec(
            select(Event).where(Event.type == "match.new").order_by(col(Event.occurred_at))
        )
        return [row.data for row in rows]


class TestSavedSearches:
    def test_a_member_saves_a_search_and_reads_it_back(
        self, client: TestClient, searcher: Actor
    ) -> None:
        response = client.post(
            URL,
            json={
                "name": "Defect data",
                "text": STEEL_QUERY,
                "side": "need",
                "sector": "manufacturing",
                "country": "cn",
                "min_score": 0.5,
            },
            headers=searcher.headers,
        )

        assert response.status_code == 201, response.text
        created = response.json()
        assert response.headers["etag"] == '"1"'
        assert response.headers["location"] == f"{URL}/{created['id']}"
        assert created["organization_id"] == searcher.organization_id
        assert (created["text"], created["country"], created["kinds"]) == (STEEL_QUERY, "CN", None)
        assert client.get(f"{URL}/{created['id']}", headers=searcher.headers).json() == created
        listed = client.get(URL, headers=searcher.headers).json()
        assert listed == {"items": [created], "next_cursor": None}

    def test_an_update_needs_the_current_etag_and_may_switch_to_a_listing(
        self, client: TestClient, searcher: Actor
    ) -> None:
        search = save(client, searcher)
        own = create_listing(client, searcher, "dataset", status="draft")
        url = f"{URL}/{search['id']}"
        change = {"text": None, "listing_id": own["id"], "min_score": 0.3}

        missing = client.patch(url, json=change, headers=searcher.headers)
        stale = client.patch(url, json=change, headers={**searcher.headers, "If-Match": '"7"'})
        done = client.patch(url, json=change, headers={**searcher.headers, "If-Match": '"1"'})

        assert_problem(missing, 428, "if_match_required")
        assert_problem(stale, 412, "stale_version")
        assert done.status_code == 200, done.text
        assert (done.json()["text"], done.json()["listing_id"]) == (None, own["id"])
        assert done.headers["etag"] == '"2"'

    def test_deleting_a_search_removes_it(self, client: TestClient, searcher: Actor) -> None:
        search = save(client, searcher)

        response = client.delete(f"{URL}/{search['id']}", headers=searcher.headers)

        assert response.status_code == 204
        assert_problem(
            client.get(f"{URL}/{search['id']}", headers=searcher.headers), 404, "not_found"
        )

    def test_a_search_needs_text_or_a_listing_of_one_s_own_and_a_sane_threshold(
        self, client: TestClient, searcher: Actor, publisher: Actor
    ) -> None:
        theirs = create_listing(client, publisher, "model")
        mine = create_listing(client, searcher, "dataset")
        cases = [
            ({"text": None}, "invalid_input", "body.text"),
            ({"listing_id": mine["id"]}, "invalid_input", "body.text"),
            ({"text": None, "listing_id": theirs["id"]}, "invalid_input", "body.listing_id"),
            (
                {"text": None, "listing_id": mine["id"], "side": "need"},
                "invalid_input",
                "body.kinds",
            ),
            ({"min_score": 1.5}, "validation_failed", "body.min_score"),
            ({"kinds": ["dataset"], "colour": "red"}, "validation_failed", "body.colour"),
        ]
        for fields, code, field in cases:
            body = {"name": "Bad", "text": STEEL_QUERY, "min_score": 0.5, **fields}

            response = client.post(URL, json=body, headers=searcher.headers)

            assert_problem(response, 422, code, field=field)
        assert client.get(URL, headers=searcher.headers).json()["items"] == []

    def test_signed_out_callers_are_401(self, client: TestClient, searcher: Actor) -> None:
        search = save(client, searcher)

        assert_problem(client.get(URL), 401, "unauthenticated")
        assert_problem(client.get(f"{URL}/{search['id']}"), 401, "unauthenticated")
        body = {"name": "x", "text": "x", "min_score": 0.5}
        assert_problem(client.post(URL, json=body), 401, "unauthenticated")

    def test_another_organization_s_search_is_404(
        self, client: TestClient, searcher: Actor, publisher: Actor
    ) -> None:
        search = save(client, searcher)
        url = f"{URL}/{search['id']}"
        match = {**publisher.headers, "If-Match": '"1"'}

        assert_problem(client.get(url, headers=publisher.headers), 404, "not_found")
        assert_problem(client.patch(url, json={"name": "Mine"}, headers=match), 404, "not_found")
        assert_problem(client.delete(url, headers=publisher.headers), 404, "not_found")
        assert client.get(URL, headers=publisher.headers).json()["items"] == []


class TestMatchAlerts:
    def test_a_matching_new_listing_raises_match_new_once(
        self, client: TestClient, engine: Engine, searcher: Actor, publisher: Actor
    ) -> None:
        search = save(client, searcher)

        listing = create_listing(client, publisher, "dataset", **STEEL_DATASET)

        assert raise_alerts(client) == 1
        assert raise_alerts(client) == 0
        (alert,) = alerts(engine)
        assert alert["listing_id"] == listing["id"]
        assert alert["saved_search_id"] == search["id"]
        assert alert["matched_listing_id"] is None
        found = client.post(
            "/api/v1/search", json={"text": STEEL_QUERY}, headers=searcher.headers
        ).json()["items"]
        assert alert["score"] == found[0]["score"] >= search["min_score"]
        with Session(engine) as session:
            assert events.verify_chain(
                session, subject_type=SubjectType.SAVED_SEARCH, subject_id=uuid.UUID(search["id"])
            ) == (1, None)

    def test_a_search_s_alerts_are_listed_to_its_organization_only(
        self, client: TestClient, searcher: Actor, publisher: Actor
    ) -> None:
        search = save(client, searcher)
        url = f"{URL}/{search['id']}/alerts"
        empty = client.get(url, headers=searcher.headers).json()
        assert empty == {"items": [], "next_cursor": None}

        published = []
        for title in ("Steel defect inspection image set", "Cold-rolled steel defect photos"):
            published.append(
                create_listing(client, publisher, "dataset", **{**STEEL_DATASET, "title": title})
            )
            assert raise_alerts(client) == 1

        page = client.get(url, params={"limit": 1}, headers=searcher.headers).json()
        (first,) = page["items"]
        assert (first["type"], first["sequence"]) == ("match.new", 1)
        assert first["subject_id"] == search["id"]
        assert first["data"]["listing_id"] == published[0]["id"]
        assert first["data"]["score"] >= search["min_score"]
        rest = client.get(
            url, params={"cursor": page["next_cursor"]}, headers=searcher.headers
        ).json()
        assert [a["data"]["listing_id"] for a in rest["items"]] == [published[1]["id"]]
        assert rest["items"][0]["prev_hash"] == first["hash"] and rest["next_cursor"] is None
        assert_problem(client.get(url, headers=publisher.headers), 404, "not_found")
        assert_problem(client.get(url), 401, "unauthenticated")

    def test_a_listing_below_the_threshold_raises_nothing(
        self, client: TestClient, engine: Engine, searcher: Actor, publisher: Actor
    ) -> None:
        save(client, searcher)

        create_listing(
            client,
            publisher,
            "dataset",
            title="Rice paddy yield time series",
            summary="Satellite-derived yields of rice paddies in Anhui over ten years.",
            tags=["agriculture", "rice"],
        )

        assert raise_alerts(client) == 1
        assert alerts(engine) == []

    def test_a_draft_raises_nothing_until_it_is_published(
        self, client: TestClient, engine: Engine, searcher: Actor, publisher: Actor
    ) -> None:
        save(client, searcher)
        draft = create_listing(client, publisher, "dataset", status="draft", **STEEL_DATASET)
        assert raise_alerts(client) == 0

        response = client.patch(
            f"/api/v1/listings/{draft['id']}",
            json={"status": "published"},
            headers={**publisher.headers, "If-Match": '"1"'},
        )
        assert response.status_code == 200, response.text

        assert raise_alerts(client) == 1
        assert [a["listing_id"] for a in alerts(engine)] == [draft["id"]]

    def test_a_private_listing_of_another_organization_raises_nothing(
        self, client: TestClient, engine: Engine, searcher: Actor, publisher: Actor
    ) -> None:
        save(client, searcher)

        create_listing(client, publisher, "dataset", visibility="private", **STEEL_DATASET)

        assert raise_alerts(client) == 1
        assert alerts(engine) == []

    def test_an_organization_s_own_listing_raises_nothing(
        self, client: TestClient, engine: Engine, searcher: Actor
    ) -> None:
        save(client, searcher)

        create_listing(client, searcher, "dataset", **STEEL_DATASET)

        assert raise_alerts(client) == 1
        assert alerts(engine) == []

    def test_a_listing_threshold_raises_match_new_for_a_matching_counterpart(
        self, client: TestClient, engine: Engine, searcher: Actor, publisher: Actor
    ) -> None:
        own = create_listing(
            client,
            searcher,
            "dataset",
            title="Steel strip surface defect images",
            summary="Annotated photos of scratches and inclusions on hot-rolled steel strip.",
        )
        search = save(client, searcher, text=None, listing_id=own["id"], min_score=0.3)
        model = create_listing(
            client,
            publisher,
            "model",
            visibility="registered",
            title="Steel surface defect detector",
            summary="A detector for scratches and inclusions on steel strip.",
        )
        create_listing(
            client,
            publisher,
            "model",
            title="Chinese legal text summariser",
            summary="Summarises court judgements written in Chinese.",
            tags=["legal", "nlp"],
            attributes={**ATTRIBUTES["model"], "tasks": ["summarization"], "modality": "text"},
        )

        assert raise_alerts(client) == 3

        (alert,) = alerts(engine)
        assert (alert["listing_id"], alert["saved_search_id"]) == (model["id"], search["id"])
        assert alert["matched_listing_id"] == own["id"]
        matched = client.get(
            f"/api/v1/listings/{own['id']}/matches", headers=searcher.headers
        ).json()["items"]
        assert alert["score"] == matched[0]["score"] >= 0.3

    def test_a_search_saved_under_another_model_is_embedded_again_and_kept(
        self,
        client: TestClient,
        engine: Engine,
        embedder: Embedder,
        searcher: Actor,
        publisher: Actor,
    ) -> None:
        search = save(client, searcher)
        with Session(engine) as session:
            session.execute(
                update(SavedSearch).values(model_name="an-older-model", query_vector=b"\0" * 8)
            )
            session.commit()
        create_listing(client, publisher, "dataset", **STEEL_DATASET)

        assert raise_alerts(client) == 1

        assert len(alerts(engine)) == 1
        with Session(engine) as session:
            stored = session.exec(select(SavedSearch)).one()
        assert stored.model_name == embedder.model_name
        assert stored.query_vector == embeddings.as_bytes(embedder.encode([STEEL_QUERY])[0])
        assert stored.version == search["version"]

    def test_two_workers_at_once_alert_each_publication_once(
        self, client: TestClient, engine: Engine, searcher: Actor, publisher: Actor
    ) -> None:
        save(client, searcher)
        published = {
            create_listing(client, publisher, "dataset", **STEEL_DATASET)["id"] for _ in range(4)
        }
        index = client.app.state.search_index  # type: ignore[attr-defined]

        def work() -> None:
            with Session(engine) as session:
                while match_alerts.process_due(session, index=index, limit=1):
                    pass

        workers = [threading.Thread(target=work) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

        assert raise_alerts(client) == 0
        assert sorted(a["listing_id"] for a in alerts(engine)) == sorted(published)

    def test_a_failed_round_leaves_the_publication_for_the_next(
        self,
        client: TestClient,
        engine: Engine,
        searcher: Actor,
        publisher: Actor,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        save(client, searcher)
        create_listing(client, publisher, "dataset", **STEEL_DATASET)

        def crash(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("the worker died mid-transaction")

        with monkeypatch.context() as patched:
            patched.setattr(events, "append", crash)
            with pytest.raises(RuntimeError):
                raise_alerts(client)
        assert alerts(engine) == []

        assert raise_alerts(client) == 1
        assert len(alerts(engine)) == 1
        with Session(engine) as session:
            assert session.exec(select(func.count()).select_from(MatchAlertJob)).one() == 0


@pytest.fixture(scope="module")
def _receiver() -> Iterator[tuple[Receiver, str]]:
    with receiver() as running:
        yield running


class TestMatchAlertWebhooks:
    def test_the_worker_delivers_match_new_with_a_valid_signature(
        self,
        client: TestClient,
        settings: Settings,
        searcher: Actor,
        publisher: Actor,
        _receiver: tuple[Receiver, str],
    ) -> None:
        hook, url = _receiver
        hook.received.clear()
        endpoint = client.post(
            "/api/v1/webhooks",
            json={"url": url, "event_types": ["match.new"]},
            headers=searcher.headers,
        ).json()
        search = save(client, searcher)
        listing = create_listing(client, publisher, "dataset", **STEEL_DATASET)
        state = client.app.state  # type: ignore[attr-defined]

        BackgroundWorker(state.engine, settings, state.search_index).run_once()

        (request,) = hook.wait_for(1)
        verify_standard_webhook(endpoint["secret"], request.headers, request.body)
        payload = json.loads(request.body)
        assert payload["type"] == "match.new"
        assert payload["data"]["subject_type"] == "saved_search"
        assert payload["data"]["subject_id"] == search["id"]
        details = payload["data"]["details"]
        assert (details["listing_id"], details["saved_search_id"]) == (listing["id"], search["id"])
        assert details["score"] >= search["min_score"]
