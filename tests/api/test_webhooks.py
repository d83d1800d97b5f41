"""Webhooks: endpoint management, the SSRF guard, signed deliveries to a real local receiver,
retries, replay and the transactional outbox across a restart."""

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update
from sqlmodel import Session, select

from marketplace.app import create_app
from marketplace.models import WebhookDelivery
from marketplace.services import webhook_dispatch
from marketplace.settings import Settings
from tests.factories import (
    Actor,
    Party,
    add_member,
    agreement_body,
    assert_problem,
    create_listing,
    party,
    propose,
    sign_up,
)
from tests.servers import Receiver, receiver

URL = "/api/v1/webhooks"


@pytest.fixture(scope="module")
def app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """One app per backend for the module. The tests run the dispatcher themselves (no
    background worker) and the receiver listens on 127.0.0.1, so private addresses are allowed."""
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path_factory.mktemp("data"),
        worker_interval_seconds=0,
        onnx=False,  # no ONNX export into each data dir (tests/e2e cover it)
        webhook_allow_private_addresses=True,
        webhook_max_attempts=3,
        webhook_retry_base_seconds=0,
        webhook_timeout_seconds=5,
    )
    return create_app(settings)


@pytest.fixture
def settings(app: FastAPI) -> Settings:
    return app.state.settings  # type: ignore[no-any-return]


@pytest.fixture
def client(engine: Engine, app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def _receiver() -> Iterator[tuple[Receiver, str]]:
    with receiver() as running:
        yield running


@pytest.fixture
def hook(_receiver: tuple[Receiver, str]) -> tuple[Receiver, str]:
    """The local stand-in for a customer's endpoint, emptied for each test."""
    app, url = _receiver
    app.received.clear()
    app.failures = 0
    return app, url


@pytest.fixture
def university(client: TestClient) -> Party:
    return party(client, None, kind="university", listing_kind="dataset")


@pytest.fixture
def company(client: TestClient) -> Party:
    return party(client, None, kind="company", listing_kind="compute")


def register(
    client: TestClient, actor: Actor, url: str, *types: str, **fields: Any
) -> dict[str, Any]:
    body = {"url": url, "event_types": list(types or ["agreement.proposed"]), **fields}
    response = client.post(URL, json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def dispatch(engine: Engine, settings: Settings, **policy: Any) -> int:
    """One dispatcher round, as the background worker runs it; `policy` overrides settings."""
    rules = replace(webhook_dispatch.DispatchPolicy.from_settings(settings), **policy)
    with Session(engine) as session:
        return webhook_dispatch.dispatch_due(session, policy=rules, limit=50)


def deliveries(
    client: TestClient, actor: Actor, endpoint: dict[str, Any], query: str = ""
) -> list[dict[str, Any]]:
    response = client.get(f"{URL}/{endpoint['id']}/deliveries{query}", headers=actor.headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


class InvalidSignature(Exception):
    pass


def verify_standard_webhook(
    secret: str, headers: Mapping[str, str], body: bytes, *, tolerance_seconds: int = 300
) -> None:
    """A receiver's check, written from the Standard Webhooks specification (not the app's code):
    the signed content is `{webhook-id}.{webhook-timestamp}.{body}`, the key is the base64 part
    of `whsec_...`, and `webhook-signature` holds space-separated `v1,<base64 HMAC-SHA256>`."""
    message_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance_seconds:
        raise InvalidSignature("timestamp outside the tolerance")
    key = base64.b64decode(secret.split("_", 1)[1])
    content = f"{message_id}.{timestamp}.{body.decode('utf-8')}".encode()
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    offered = [
        signature.split(",", 1)[1]
        for signature in headers["webhook-signature"].split(" ")
        if signature.startswith("v1,")
    ]
    if not any(hmac.compare_digest(expected, signature) for signature in offered):
        raise InvalidSignature("no matching v1 signature")


class TestEndpoints:
    def test_an_owner_registers_an_endpoint_and_sees_the_secret_once(
        self, client: TestClient, university: Party, hook: tuple[Receiver, str]
    ) -> None:
        endpoint = register(
            client, university.actor, hook[1], "agreement.signed", "listing.published"
        )

        assert endpoint["secret"].startswith("whsec_")
        assert len(base64.b64decode(endpoint["secret"][6:])) == 32
        assert endpoint["event_types"] == ["agreement.signed", "listing.published"]
        assert endpoint["enabled"] is True
        read = client.get(f"{URL}/{endpoint['id']}", headers=university.actor.headers).json()
        assert "secret" not in read
        listed = client.get(URL, headers=university.actor.headers).json()["items"]
        assert [e["id"] for e in listed] == [endpoint["id"]]

    def test_a_secret_of_ones_own_is_kept(
        self, client: TestClient, university: Party, hook: tuple[Receiver, str]
    ) -> None:
        secret = "whsec_" + base64.b64encode(b"k" * 32).decode()

        endpoint = register(client, university.actor, hook[1], secret=secret)

        assert endpoint["secret"] == secret

    def test_a_malformed_secret_is_invalid(
        self, client: TestClient, university: Party, hook: tuple[Receiver, str]
    ) -> None:
        body = {"url": hook[1], "event_types": ["agreement.signed"], "secret": "whsec_short"}

        response = client.post(URL, json=body, headers=university.actor.headers)

        assert_problem(response, 422, "validation_failed", field="body.secret")

    def test_an_unknown_event_type_is_invalid(
        self, client: TestClient, university: Party, hook: tuple[Receiver, str]
    ) -> None:
        body = {"url": hook[1], "event_types": ["agreement.eaten"]}

        response = client.post(URL, json=body, headers=university.actor.headers)

        assert_problem(response, 422, "validation_failed", field="body.event_types.0")

    def test_plain_members_may_not_manage_endpoints(
        self, client: TestClient, university: Party, hook: tuple[Receiver, str]
    ) -> None:
        member = add_member(client, university.actor, role="member")
        body = {"url": hook[1], "event_types": ["agreement.signed"]}

        assert_problem(client.post(URL, json=body, headers=member.headers), 403, "not_org_manager")
        assert_problem(client.get(URL, headers=member.headers), 403, "not_org_manager")

    def test_another_organizations_endpoint_is_404(
        self, client: TestClient, university: Party, company: Party, hook: tuple[Receiver, str]
    ) -> None:
        endpoint = register(client, university.actor, hook[1])

        response = client.get(f"{URL}/{endpoint['id']}", headers=company.actor.headers)

        assert_problem(response, 404, "not_found")

    def test_an_update_needs_the_current_etag(
        self, client: TestClient, university: Party, hook: tuple[Receiver, str]
    ) -> None:
        endpoint = register(client, university.actor, hook[1])
        url = f"{URL}/{endpoint['id']}"
        change = {"enabled": False, "event_types": ["agreement.signed"]}

        missing = client.patch(url, json=change, headers=university.actor.headers)
        stale = client.patch(
            url, json=change, headers={**university.actor.headers, "If-Match": '"9"'}
        )
        done = client.patch(
            url, json=change, headers={**university.actor.headers, "If-Match": '"1"'}
        )

        assert_problem(missing, 428, "if_match_required")
        assert_problem(stale, 412, "stale_version")
        assert done.status_code == 200, done.text
        assert done.json()["enabled"] is False
        assert done.json()["event_types"] == ["agreement.signed"]
        assert done.headers["etag"] == '"2"'

    def test_deleting_an_endpoint_removes_it(
        self, client: TestClient, university: Party, hook: tuple[Receiver, str]
    ) -> None:
        endpoint = register(client, university.actor, hook[1])

        response = client.delete(f"{URL}/{endpoint['id']}", headers=university.actor.headers)

        assert response.status_code == 204
        assert_problem(
            client.get(f"{URL}/{endpoint['id']}", headers=university.actor.headers),
            404,
            "not_found",
        )


@pytest.fixture(scope="module")
def guarded_app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """The production default: webhook URLs must reach public addresses only."""
    return create_app(
        Settings(
            database_url=database_url,
            data_dir=tmp_path_factory.mktemp("guarded"),
            worker_interval_seconds=0,
            onnx=False,  # no ONNX export into each data dir (tests/e2e cover it)
        )
    )


class TestAddressGuard:
    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:8080/hooks",
            "http://localhost/hooks",
            "http://10.1.2.3/hooks",
            "https://192.168.0.10/hooks",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.100.100.200/latest/meta-data/",
            "http://[::1]/hooks",
            "http://[fd00:ec2::254]/latest/meta-data/",
            "http://[::ffff:127.0.0.1]/hooks",
            "http://0.0.0.0/hooks",
            "http://does-not-exist.invalid/hooks",
        ],
    )
    def test_urls_reaching_non_public_addresses_are_refused(
        self, engine: Engine, guarded_app: FastAPI, url: str
    ) -> None:
        with TestClient(guarded_app) as client:
            owner = sign_up(client)

            response = client.post(
                URL, json={"url": url, "event_types": ["agreement.signed"]}, headers=owner.headers
            )

        assert_problem(response, 422, "webhook_url_not_allowed", field="body.url")

    def test_an_update_to_a_private_url_is_refused(
        self,
        engine: Engine,
        guarded_app: FastAPI,
        client: TestClient,
        university: Party,
        hook: tuple[Receiver, str],
    ) -> None:
        endpoint = register(client, university.actor, hook[1])

        with TestClient(guarded_app) as guarded:
            response = guarded.patch(
                f"{URL}/{endpoint['id']}",
                json={"url": "http://10.0.0.7/hooks"},
                headers={**university.actor.headers, "If-Match": '"1"'},
            )

        assert_problem(response, 422, "webhook_url_not_allowed", field="body.url")

    def test_the_address_is_checked_again_at_delivery(
        self,
        engine: Engine,
        settings: Settings,
        client: TestClient,
        university: Party,
        company: Party,
        hook: tuple[Receiver, str],
    ) -> None:
        endpoint = register(client, university.actor, hook[1])
        propose(client, university.actor, agreement_body(university, company))

        dispatch(engine, settings, allow_private_addresses=False)

        assert hook[0].received == []
        (delivery,) = deliveries(client, university.actor, endpoint)
        assert delivery["status"] == "failed"  # retried at once here (no backoff), then given up
        assert delivery["attempts"] == settings.webhook_max_attempts
        assert delivery["last_error"].startswith("refused: ")
        assert "not a public address" in delivery["last_error"]


class TestDelivery:
    def test_a_receiver_verifies_the_standard_webhooks_signature(
        self,
        engine: Engine,
        settings: Settings,
        client: TestClient,
        university: Party,
        company: Party,
        hook: tuple[Receiver, str],
    ) -> None:
        endpoint = register(client, university.actor, hook[1])
        agreement = propose(client, university.actor, agreement_body(university, company))

        assert dispatch(engine, settings) == 1

        (request,) = hook[0].wait_for(1)
        verify_standard_webhook(endpoint["secret"], request.headers, request.body)
        payload = json.loads(request.body)
        assert payload["type"] == "agreement.proposed"
        assert payload["data"]["subject_id"] == agreement["id"]
        assert payload["data"]["terms_hash"] == agreement["terms_hash"]
        assert datetime.fromisoformat(payload["timestamp"]).tzinfo is not None
        (event,) = client.get(
            f"/api/v1/agreements/{agreement['id']}/events", headers=university.actor.headers
        ).json()["items"]
        assert request.headers["webhook-id"] == event["id"]
        assert request.headers["content-type"] == "application/json"
        (delivery,) = deliveries(client, university.actor, endpoint)
        assert delivery["status"] == "succeeded"
        assert delivery["attempts"] == 1
        assert delivery["last_status_code"] == 204
        assert delivery["event_type"] == "agreement.proposed"

    def test_a_changed_body_or_another_secret_fails_verification(
        self,
        engine: Engine,
        settings: Settings,
        client: TestClient,
        university: Party,
        company: Party,
        hook: tuple[Receiver, str],
    ) -> None:
        endpoint = register(client, university.actor, hook[1])
        propose(client, university.actor, agreement_body(university, company))
        dispatch(engine, settings)
        (request,) = hook[0].wait_for(1)

        with pytest.raises(InvalidSignature):
            verify_standard_webhook(endpoint["secret"], request.headers, request.body + b" ")
        with pytest.raises(InvalidSignature):
            other = "whsec_" + base64.b64encode(b"x" * 32).decode()
            verify_standard_webhook(other, request.headers, request.body)

    def test_every_party_s_subscribed_endpoints_receive_agreement_events(
        self,
        engine: Engine,
        settings: Settings,
        client: TestClient,
        university: Party,
        company: Party,
        hook: tuple[Receiver, str],
    ) -> None:
        register(client, company.actor, hook[1], "agreement.proposed")
        register(client, university.actor, hook[1], "agreement.signed")
        outsider = sign_up(client)
        register(client, outsider, hook[1], "agreement.proposed")

        propose(client, university.actor, agreement_body(university, company))
        dispatch(engine, settings)

        (request,) = hook[0].wait_for(1)
        assert json.loads(request.body)["type"] == "agreement.proposed"

    def test_a_disabled_endpoint_receives_nothing(
        self,
        engine: Engine,
        settings: Settings,
        client: TestClient,
        university: Party,
        company: Party,
        hook: tuple[Receiver, str],
    ) -> None:
        endpoint = register(client, university.actor, hook[1])
        client.patch(
            f"{URL}/{endpoint['id']}",
            json={"enabled": False},
            headers={**university.actor.headers, "If-Match": '"1"'},
        )

        propose(client, university.actor, agreement_body(university, company))

        assert dispatch(engine, settings) == 0
        assert deliveries(client, university.actor, endpoint) == []

    def test_a_published_listing_raises_listing_published(
        self,
        engine: Engine,
        settings: Settings,
        client: TestClient,
        university: Party,
        hook: tuple[Receiver, str],
    ) -> None:
        endpoint = register(client, university.actor, hook[1], "listing.published")
        draft = create_listing(client, university.actor, "dataset", status="draft")
        published = create_listing(client, university.actor, "dataset")
        client.patch(
            f"/api/v1/listings/{draft['id']}",
            json={"status": "published"},
            headers={**university.actor.headers, "If-Match": f'"{draft["version"]}"'},
        )

        dispatch(engine, settings)

        received = hook[0].wait_for(2)
        assert [json.loads(r.body)["data"]["subject_id"] for r in received] == [
            published["id"],
            draft["id"],
        ]
        for request in received:
            verify_standard_webhook(endpoint["secret"], request.headers, request.body)


class TestRetries:
    def test_failures_are_retried_with_exponential_backoff(
        self,
        engine: Engine,
        settings: Settings,
        client: TestClient,
        university: Party,
        company: Party,
        hook: tuple[Receiver, str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        endpoint = register(client, university.actor, hook[1])
        propose(client, university.actor, agreement_body(university, company))
        hook[0].failures = 2
        backoff = {"retry_base_seconds": 10, "retry_factor": 4}
        later = timedelta()
        monkeypatch.setattr(webhook_dispatch, "utc_now", lambda: datetime.now(UTC) + later)

        delays = []
        for wait in (timedelta(), timedelta(seconds=11), timedelta(seconds=52)):
            later = wait
            assert dispatch(engine, settings, **backoff) == 1
            assert dispatch(engine, settings, **backoff) == 0  # not due again yet
            (delivery,) = deliveries(client, university.actor, endpoint)
            if delivery["next_attempt_at"]:
                next_at = datetime.fromisoformat(delivery["next_attempt_at"])
                delays.append(
                    round(
                        (
                            next_at - datetime.fromisoformat(delivery["last_attempt_at"])
                        ).total_seconds()
                    )
                )

        assert delays == [10, 40]
        assert delivery["status"] == "succeeded"
        assert delivery["attempts"] == 3
        assert delivery["last_error"] is None
        requests = hook[0].wait_for(3)
        assert len({r.headers["webhook-id"] for r in requests}) == 1

    def test_a_delivery_gives_up_after_the_last_attempt(
        self,
        engine: Engine,
        settings: Settings,
        client: TestClient,
        university: Party,
        company: Party,
        hook: tuple[Receiver, str],
    ) -> None:
        endpoint = register(client, university.actor, hook[1])
        propose(client, university.actor, agreement_body(university, company))
        hook[0].failures = 100

        dispatch(engine, settings)

        (delivery,) = deliveries(client, university.actor, endpoint)
        assert delivery["status"] == "failed"
        assert delivery["attempts"] == settings.webhook_max_attempts
        assert delivery["last_status_code"] == 500
        assert delivery["last_error"] == "HTTP 500"
        assert delivery["next_attempt_at"] is None
        assert deliveries(client, university.actor, endpoint, "?status=failed") == [delivery]
        assert deliveries(client, university.actor, endpoint, "?status=succeeded") == []

    def test_an_unreachable_endpoint_records_the_error(
        self,
        engine: Engine,
        settings: Settings,
        client: TestClient,
        university: Party,
        company: Party,
    ) -> None:
        with receiver() as (_, url):
            endpoint = register(client, university.actor, url)
        propose(client, university.actor, agreement_body(university, company))

        dispatch(engine, settings, max_attempts=1)

        (delivery,) = deliveries(client, university.actor, endpoint)
        assert delivery["status"] == "failed"
        assert delivery["last_status_code"] is None
        assert delivery["last_error"].startswith("ConnectError")

    def test_the_owner_replays_a_delivery(
        self,
        engine: Engine,
        settings: Settings,
        client: TestClient,
        university: Party,
        company: Party,
        hook: tuple[Receiver, str],
    ) -> None:
        endpoint = register(client, university.actor, hook[1])
        propose(client, university.actor, agreement_body(university, company))
        dispatch(engine, settings)
        (first,) = deliveries(client, university.actor, endpoint)

        response = client.post(
            f"{URL}/{endpoint['id']}/deliveries/{first['id']}/replay",
            headers=university.actor.headers,
        )
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "pending"
        dispatch(engine, settings)

        original, again = hook[0].wait_for(2)
        assert again.headers["webhook-id"] == original.headers["webhook-id"]
        assert again.body == original.body
        verify_standard_webhook(endpoint["secret"], again.headers, again.body)
        assert [d["status"] for d in deliveries(client, university.actor, endpoint)] == [
            "succeeded",
            "succeeded",
        ]

    def test_a_pending_delivery_is_not_replayed(
        self, client: TestClient, university: Party, company: Party, hook: tuple[Receiver, str]
    ) -> None:
        endpoint = register(client, university.actor, hook[1])
        propose(client, university.actor, agreement_body(university, company))
        (pending,) = deliveries(client, university.actor, endpoint)

        response = client.post(
            f"{URL}/{endpoint['id']}/deliveries/{pending['id']}/replay",
            headers=university.actor.headers,
        )

        assert_problem(response, 409, "delivery_pending")

    def test_another_organization_cannot_replay(
        self, client: TestClient, university: Party, company: Party, hook: tuple[Receiver, str]
    ) -> None:
        endpoint = register(client, university.actor, hook[1])
        propose(client, university.actor, agreement_body(university, company))
        (pending,) = deliveries(client, university.actor, endpoint)

        response = client.post(
            f"{URL}/{endpoint['id']}/deliveries/{pending['id']}/replay",
            headers=company.actor.headers,
        )

        assert_problem(response, 404, "not_found")


class TestOutbox:
    def test_events_committed_before_a_restart_are_delivered_by_the_next_instance(
        self,
        engine: Engine,
        settings: Settings,
        university: Party,
        company: Party,
        client: TestClient,
        hook: tuple[Receiver, str],
    ) -> None:
        with TestClient(create_app(settings)) as first:  # no background worker
            endpoint = register(first, university.actor, hook[1])
            propose(first, university.actor, agreement_body(university, company))
        assert hook[0].received == []  # the first instance stopped before sending anything

        restarted = settings.model_copy(update={"worker_interval_seconds": 0.05})
        with TestClient(create_app(restarted)) as second:
            (request,) = hook[0].wait_for(1)
            verify_standard_webhook(endpoint["secret"], request.headers, request.body)
            assert deliveries(second, university.actor, endpoint)[0]["status"] in {
                "pending",
                "succeeded",
            }

    def test_a_delivery_claimed_by_a_worker_that_died_is_sent_when_the_lease_ends(
        self,
        engine: Engine,
        settings: Settings,
        client: TestClient,
        university: Party,
        company: Party,
        hook: tuple[Receiver, str],
    ) -> None:
        register(client, university.actor, hook[1])
        propose(client, university.actor, agreement_body(university, company))
        with engine.begin() as connection:  # what a worker leaves behind when it dies mid-send
            connection.execute(
                update(WebhookDelivery).values(
                    claimed_until=datetime.now(UTC) + timedelta(seconds=0.5),
                    claim_token=uuid.uuid4(),
                )
            )

        assert dispatch(engine, settings) == 0
        time.sleep(0.6)
        assert dispatch(engine, settings) == 1

        hook[0].wait_for(1)

    @pytest.mark.parametrize(
        "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
    )
    def test_concurrent_dispatchers_send_each_delivery_once(
        self,
        engine: Engine,
        settings: Settings,
        client: TestClient,
        university: Party,
        company: Party,
        hook: tuple[Receiver, str],
    ) -> None:
        register(client, university.actor, hook[1])
        for _ in range(12):
            propose(client, university.actor, agreement_body(university, company))
        barrier = threading.Barrier(4)
        tried: list[int] = []

        def worker() -> None:
            barrier.wait()
            tried.append(dispatch(engine, settings))

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        requests = hook[0].wait_for(12)
        assert sum(tried) == 12
        assert len({r.headers["webhook-id"] for r in requests}) == len(requests) == 12
        with Session(engine) as session:
            rows = session.exec(select(WebhookDelivery)).all()
        assert {(d.status, d.attempts) for d in rows} == {("succeeded", 1)}
