"""Agreements: proposals, the state machine, signatures, deadlines, terms versions, the trail,
and parties acting at once (PostgreSQL, real concurrent requests)."""

import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, func, update
from sqlmodel import Session, select

from marketplace.app import create_app
from marketplace.models import Agreement, AgreementTerms, Event, IdempotencyKey
from marketplace.services import agreements as agreement_service
from marketplace.services.events import event_hash
from marketplace.settings import Settings
from marketplace.worker import BackgroundWorker
from tests.factories import (
    Actor,
    Party,
    act,
    acted,
    add_member,
    agreement_body,
    assert_problem,
    party,
    platform_admin,
    propose,
    terms_body,
)
from tests.servers import serve

URL = "/api/v1/agreements"
ALL_ACTIONS = {"counter", "sign", "withdraw", "reject", "terminate", "confirm_completion"}
# The state table, written out independently of the code's.
ALLOWED_ACTIONS = {
    "proposed": {"counter", "sign", "withdraw", "reject"},
    "countered": {"counter", "sign", "withdraw", "reject"},
    "signed": {"terminate"},
    "active": {"terminate", "confirm_completion"},
    "completed": set(),
    "withdrawn": set(),
    "rejected": set(),
    "expired": set(),
    "terminated": set(),
}


@pytest.fixture(scope="module")
def app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """One app per backend for the module (building its routes is the slow part); no background
    worker: deadlines here pass when a test moves the clock."""
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path_factory.mktemp("data"),
        worker_interval_seconds=0,
        onnx=False,  # no ONNX export into each data dir (tests/e2e cover it)
    )
    return create_app(settings)


@pytest.fixture
def settings(app: FastAPI) -> Settings:
    return app.state.settings  # type: ignore[no-any-return]


@pytest.fixture
def client(engine: Engine, app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


class Clock:
    """The agreements service's clock, moved forward by tests."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(agreement_service, "utc_now", clock.now)
    return clock


@pytest.fixture
def admin(client: TestClient, engine: Engine) -> Actor:
    return platform_admin(client, engine)


@pytest.fixture
def university(client: TestClient, admin: Actor) -> Party:
    return party(client, admin, kind="university", listing_kind="dataset")


@pytest.fixture
def company(client: TestClient, admin: Actor) -> Party:
    return party(client, admin, kind="company", listing_kind="compute")


@pytest.fixture
def proposal(client: TestClient, university: Party, company: Party) -> dict[str, Any]:
    """A compute rental the university proposed to the company."""
    return propose(client, university.actor, agreement_body(university, company))


def read(client: TestClient, actor: Actor, agreement: dict[str, Any]) -> dict[str, Any]:
    response = client.get(f"{URL}/{agreement['id']}", headers=actor.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def counter(
    client: TestClient, actor: Actor, agreement: dict[str, Any], terms: dict[str, Any]
) -> httpx.Response:
    version = agreement["version"]
    return client.post(
        f"{URL}/{agreement['id']}/counter",
        json={"terms": terms},
        headers={**actor.headers, "If-Match": "*" if version == "*" else f'"{version}"'},
    )


def countered(
    client: TestClient, actor: Actor, agreement: dict[str, Any], terms: dict[str, Any]
) -> dict[str, Any]:
    response = counter(client, actor, agreement, terms)
    assert response.status_code == 200, response.text
    return dict(response.json())


def trail(client: TestClient, actor: Actor, agreement: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.get(f"{URL}/{agreement['id']}/events?limit=100", headers=actor.headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def verification(client: TestClient, actor: Actor, agreement: dict[str, Any]) -> dict[str, Any]:
    response = client.get(f"{URL}/{agreement['id']}/verify", headers=actor.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def signature_of(agreement: dict[str, Any], who: Party) -> dict[str, Any] | None:
    (entry,) = [
        p for p in agreement["parties"] if p["organization"]["id"] == who.actor.organization_id
    ]
    return entry["signature"]  # type: ignore[no-any-return]


def count(engine: Engine, table: type[Any]) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(table)).one()


def canonical_sha256(value: Any) -> str:
    """The documented canonical form: sorted keys, no spaces, UTF-8."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def signed_by_both(
    client: TestClient, university: Party, company: Party, agreement: dict[str, Any]
) -> dict[str, Any]:
    agreement = acted(client, university.actor, agreement, "sign")
    return acted(client, company.actor, agreement, "sign")


def drive_to(
    state: str, client: TestClient, university: Party, company: Party, clock: Clock
) -> dict[str, Any]:
    """A fresh agreement brought into `state` through the API."""
    agreement = propose(client, university.actor, agreement_body(university, company))
    steps: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "countered": lambda a: countered(
            client, company.actor, a, terms_body(company, text="Counter-proposal.")
        ),
        "withdrawn": lambda a: acted(client, university.actor, a, "withdraw"),
        "rejected": lambda a: acted(client, company.actor, a, "reject", reason="Too costly."),
    }
    if state == "proposed":
        return agreement
    if state in steps:
        return steps[state](agreement)
    if state == "expired":
        clock.advance(days=15)
        return read(client, university.actor, agreement)
    agreement = signed_by_both(client, university, company, agreement)
    if state == "terminated":
        return acted(client, university.actor, agreement, "terminate", reason="Budget cut.")
    if state == "signed":
        return agreement
    clock.advance(days=31)
    agreement = read(client, university.actor, agreement)
    if state == "active":
        return agreement
    agreement = acted(client, university.actor, agreement, "confirm_completion")
    return acted(client, company.actor, agreement, "confirm_completion")


class TestPropose:
    def test_creates_a_proposed_agreement_with_its_first_terms_version(
        self, client: TestClient, university: Party, company: Party
    ) -> None:
        body = agreement_body(university, company)

        response = client.post(URL, json=body, headers=university.actor.headers)

        assert response.status_code == 201, response.text
        agreement = response.json()
        assert agreement["status"] == "proposed"
        assert agreement["type"] == "compute_rental"
        assert agreement["terms_version"] == 1
        assert set(agreement["allowed_actions"]) == ALLOWED_ACTIONS["proposed"]
        assert [p["organization"]["id"] for p in agreement["parties"]] == [
            university.actor.organization_id,
            company.actor.organization_id,
        ]
        assert [p["is_proposer"] for p in agreement["parties"]] == [True, False]
        assert agreement["parties"][1]["listing_ids"] == [company.listing_id]
        assert response.headers["etag"] == f'"{agreement["version"]}"'
        assert response.headers["location"] == f"{URL}/{agreement['id']}"

    def test_respond_by_defaults_to_fourteen_days(
        self, client: TestClient, proposal: dict[str, Any]
    ) -> None:
        respond_by = datetime.fromisoformat(proposal["respond_by"])
        created_at = datetime.fromisoformat(proposal["created_at"])

        assert abs(respond_by - created_at - timedelta(days=14)) < timedelta(seconds=5)

    def test_a_respond_by_in_the_past_is_invalid(
        self, client: TestClient, university: Party, company: Party
    ) -> None:
        past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        body = agreement_body(university, company, respond_by=past)

        response = client.post(URL, json=body, headers=university.actor.headers)

        assert_problem(response, 422, "invalid_respond_by", field="body.respond_by")

    def test_the_terms_hash_is_the_sha256_of_their_canonical_json(
        self, client: TestClient, university: Party, proposal: dict[str, Any]
    ) -> None:
        response = client.get(f"{URL}/{proposal['id']}/terms/1", headers=university.actor.headers)

        assert response.status_code == 200, response.text
        version = response.json()
        assert version["hash"] == canonical_sha256(version["terms"])
        assert version["hash"] == proposal["terms_hash"]
        assert version["terms"]["price"] == {
            "amount": "9250.00",
            "currency": "CNY",
            "schedule": "per_gpu_hour",
        }
        assert version["author_organization_id"] == university.actor.organization_id

    def test_equal_terms_spelled_differently_hash_the_same(
        self, client: TestClient, university: Party, company: Party
    ) -> None:
        first = agreement_body(university, company)
        second = agreement_body(university, company)
        second["terms"]["price"]["amount"] = 9250.0
        second["terms"]["price"]["currency"] = "cny"

        one = propose(client, university.actor, first)
        two = propose(client, university.actor, second)

        assert one["terms_hash"] == two["terms_hash"]

    def test_a_repeated_idempotency_key_replays_the_first_response(
        self, client: TestClient, engine: Engine, university: Party, company: Party
    ) -> None:
        body = agreement_body(university, company)
        headers = {**university.actor.headers, "Idempotency-Key": "proposal-42"}

        first = client.post(URL, json=body, headers=headers)
        second = client.post(URL, json=body, headers=headers)

        assert first.status_code == second.status_code == 201
        assert second.json() == first.json()
        assert second.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert count(engine, Agreement) == 1

    def test_the_replay_is_the_first_response_even_after_changes(
        self, client: TestClient, university: Party, company: Party
    ) -> None:
        body = agreement_body(university, company)
        headers = {**university.actor.headers, "Idempotency-Key": "proposal-43"}
        first = client.post(URL, json=body, headers=headers).json()
        acted(client, university.actor, first, "withdraw")

        replay = client.post(URL, json=body, headers=headers)

        assert replay.json() == first

    def test_an_expired_idempotency_key_runs_the_request_again(
        self, client: TestClient, engine: Engine, university: Party, company: Party
    ) -> None:
        body = agreement_body(university, company)
        headers = {**university.actor.headers, "Idempotency-Key": "proposal-45"}
        first = client.post(URL, json=body, headers=headers).json()
        _age_idempotency_keys(engine, hours=25)

        again = client.post(URL, json=body, headers=headers)
        replay = client.post(URL, json=body, headers=headers)

        assert again.status_code == 201 and "idempotent-replayed" not in again.headers
        assert again.json()["id"] != first["id"]
        assert replay.json() == again.json() and replay.headers["idempotent-replayed"] == "true"
        assert count(engine, Agreement) == 2

    def test_the_worker_forgets_expired_idempotency_keys_only(
        self,
        client: TestClient,
        engine: Engine,
        settings: Settings,
        university: Party,
        company: Party,
    ) -> None:
        for key in ("old-1", "old-2"):
            headers = {**university.actor.headers, "Idempotency-Key": key}
            client.post(URL, json=agreement_body(university, company, title=key), headers=headers)
        _age_idempotency_keys(engine, hours=24)
        headers = {**university.actor.headers, "Idempotency-Key": "fresh"}
        fresh = client.post(URL, json=agreement_body(university, company), headers=headers)

        BackgroundWorker(engine, settings, client.app.state.search_index).run_once()  # type: ignore[attr-defined]

        with Session(engine) as session:
            assert session.exec(select(IdempotencyKey.key)).all() == ["fresh"]
        assert (
            client.post(URL, json=agreement_body(university, company), headers=headers).json()
            == fresh.json()
        )

    def test_an_idempotency_key_reused_for_another_body_is_refused(
        self, client: TestClient, university: Party, company: Party
    ) -> None:
        headers = {**university.actor.headers, "Idempotency-Key": "proposal-44"}
        client.post(URL, json=agreement_body(university, company), headers=headers)

        response = client.post(
            URL, json=agreement_body(university, company, title="Another one"), headers=headers
        )

        assert_problem(response, 422, "idempotency_key_reused")

    @pytest.mark.parametrize(
        ("path", "value", "code", "field"),
        [
            ("end_date", "2000-01-01", "invalid_terms", "body.terms.end_date"),
            ("price.amount", "-1", "validation_failed", "body.terms.price.amount"),
            ("price.amount", "a lot", "validation_failed", "body.terms.price.amount"),
            ("price.currency", "XYZ", "validation_failed", "body.terms.price.currency"),
            ("compute.gpu_hours", "20000.01", "invalid_terms", "body.terms.compute.gpu_hours"),
            ("compute.window_end", "2000-01-01", "invalid_terms", "body.terms.compute.window_end"),
            (
                "compute.window_start",
                str(date.today() - timedelta(days=60)),
                "invalid_terms",
                "body.terms.compute.window_start",
            ),
            (
                "compute.window_end",
                str(date.today() + timedelta(days=6 * 365)),
                "invalid_terms",
                "body.terms.compute.window_end",
            ),
            ("compute", None, "invalid_terms", "body.terms.compute"),
        ],
        ids=[
            "end-before-start",
            "negative-price",
            "non-numeric-price",
            "unknown-currency",
            "gpu-hours-beyond-the-listing",
            "compute-window-reversed",
            "compute-rented-before-it-is-available",
            "compute-rented-after-it-is-available",
            "compute-rental-without-compute",
        ],
    )
    def test_invalid_terms_name_the_field_and_store_nothing(
        self,
        client: TestClient,
        engine: Engine,
        university: Party,
        company: Party,
        path: str,
        value: Any,
        code: str,
        field: str,
    ) -> None:
        body = agreement_body(university, company)
        *parents, name = path.split(".")
        section = body["terms"]
        for parent in parents:
            section = section[parent]
        section[name] = value

        response = client.post(URL, json=body, headers=university.actor.headers)

        assert_problem(response, 422, code, field=field)
        assert count(engine, Agreement) == 0
        with Session(engine) as session:
            assert session.exec(select(Event).where(Event.subject_type == "agreement")).all() == []

    def test_a_listing_that_is_not_the_partys_own_is_invalid(
        self, client: TestClient, engine: Engine, university: Party, company: Party
    ) -> None:
        body = agreement_body(university, company)
        body["parties"][1]["listing_ids"] = [university.listing_id]

        response = client.post(URL, json=body, headers=university.actor.headers)

        assert_problem(response, 422, "invalid_parties", field="body.parties.1.listing_ids.0")
        assert count(engine, Agreement) == 0

    def test_the_proposer_must_be_a_party(
        self, client: TestClient, admin: Actor, university: Party, company: Party
    ) -> None:
        stranger = party(client, admin, kind="government", listing_kind="scenario")
        body = agreement_body(stranger, company)

        response = client.post(URL, json=body, headers=university.actor.headers)

        assert_problem(response, 422, "invalid_parties", field="body.parties")

    def test_an_unknown_organization_is_invalid(
        self, client: TestClient, university: Party, company: Party
    ) -> None:
        body = agreement_body(university, company)
        body["parties"][1]["organization_id"] = str(uuid.uuid4())

        response = client.post(URL, json=body, headers=university.actor.headers)

        assert_problem(response, 422, "invalid_parties", field="body.parties.1.organization_id")

    def test_three_parties_may_agree(
        self, client: TestClient, admin: Actor, university: Party, company: Party
    ) -> None:
        city = party(client, admin, kind="government", listing_kind="scenario")
        body = agreement_body(university, company, type="scenario_pilot")
        body["parties"].append(
            {"organization_id": city.actor.organization_id, "listing_ids": [city.listing_id]}
        )
        agreement = propose(client, city.actor, body)

        for signer in (university, company):
            agreement = acted(client, signer.actor, agreement, "sign")
            assert agreement["status"] == "proposed"
        agreement = acted(client, city.actor, agreement, "sign")

        assert agreement["status"] == "signed"
        assert len(agreement["parties"]) == 3

    def test_anonymous_callers_are_refused(self, client: TestClient) -> None:
        assert_problem(client.post(URL, json={}), 401, "unauthenticated")


class TestRead:
    @pytest.mark.parametrize(
        ("method", "suffix", "body"),
        [
            ("GET", "", None),
            ("POST", "/transitions", {"action": "sign", "terms_version": 1}),
            ("POST", "/counter", {"terms": None}),
            ("POST", "/comments", {"body": "Hello"}),
            ("GET", "/terms/1", None),
            ("GET", "/terms/1/diff?against=1", None),
            ("GET", "/events", None),
            ("GET", "/verify", None),
        ],
    )
    def test_non_parties_get_404(
        self,
        client: TestClient,
        admin: Actor,
        company: Party,
        proposal: dict[str, Any],
        method: str,
        suffix: str,
        body: dict[str, Any] | None,
    ) -> None:
        outsider = party(client, admin, kind="company", listing_kind="model").actor
        if body == {"terms": None}:
            body = {"terms": terms_body(company)}

        response = client.request(
            method,
            f"{URL}/{proposal['id']}{suffix}",
            json=body,
            headers={**outsider.headers, "If-Match": '"1"'},
        )

        assert_problem(response, 404, "not_found")

    def test_a_party_reads_it_with_its_etag(
        self, client: TestClient, company: Party, proposal: dict[str, Any]
    ) -> None:
        response = client.get(f"{URL}/{proposal['id']}", headers=company.actor.headers)

        assert response.status_code == 200
        assert response.json() == proposal
        assert response.headers["etag"] == f'"{proposal["version"]}"'

    def test_the_list_holds_my_organizations_agreements_filtered_by_state(
        self, client: TestClient, admin: Actor, university: Party, company: Party
    ) -> None:
        other = party(client, admin, kind="company", listing_kind="compute")
        mine = propose(client, university.actor, agreement_body(university, company))
        theirs = propose(client, university.actor, agreement_body(university, other))
        acted(client, university.actor, theirs, "withdraw")

        def ids(actor: Actor, query: str = "") -> list[str]:
            response = client.get(f"{URL}{query}", headers=actor.headers)
            assert response.status_code == 200, response.text
            return [a["id"] for a in response.json()["items"]]

        assert ids(university.actor) == [theirs["id"], mine["id"]]
        assert ids(company.actor) == [mine["id"]]
        assert ids(university.actor, "?status=withdrawn") == [theirs["id"]]
        assert ids(university.actor, "?status=signed") == []

    def test_the_list_pages_with_a_cursor(
        self, client: TestClient, university: Party, company: Party
    ) -> None:
        created = [
            propose(client, university.actor, agreement_body(university, company))["id"]
            for _ in range(3)
        ]

        first = client.get(f"{URL}?limit=2", headers=company.actor.headers).json()
        second = client.get(
            f"{URL}?limit=2&cursor={first['next_cursor']}", headers=company.actor.headers
        ).json()

        assert [a["id"] for a in first["items"] + second["items"]] == created[::-1]
        assert second["next_cursor"] is None


class TestStateMachine:
    @pytest.mark.parametrize("state", sorted(ALLOWED_ACTIONS))
    def test_refused_actions_answer_409_naming_the_allowed_ones(
        self, client: TestClient, university: Party, company: Party, clock: Clock, state: str
    ) -> None:
        agreement = drive_to(state, client, university, company, clock)
        assert agreement["status"] == state
        assert set(agreement["allowed_actions"]) == ALLOWED_ACTIONS[state]

        for action in sorted(ALL_ACTIONS - ALLOWED_ACTIONS[state]):
            if action == "counter":
                response = counter(client, university.actor, agreement, terms_body(company))
            else:
                response = act(client, university.actor, agreement, action, reason="Because.")
            problem = assert_problem(response, 409, "illegal_transition", field="body.action")
            assert problem["errors"][0]["message"].endswith(
                ", ".join(agreement["allowed_actions"]) or "none"
            )
        assert read(client, university.actor, agreement)["status"] == state

    @pytest.mark.parametrize(
        ("state", "action", "who", "after"),
        [
            ("proposed", "counter", "company", "countered"),
            ("proposed", "sign", "company", "proposed"),
            ("proposed", "withdraw", "university", "withdrawn"),
            ("proposed", "reject", "company", "rejected"),
            ("countered", "counter", "university", "countered"),
            ("countered", "sign", "university", "countered"),
            ("countered", "withdraw", "university", "withdrawn"),
            ("countered", "reject", "university", "rejected"),
            ("signed", "terminate", "company", "terminated"),
            ("active", "terminate", "university", "terminated"),
            ("active", "confirm_completion", "company", "active"),
        ],
    )
    def test_allowed_actions_move_the_agreement(
        self,
        client: TestClient,
        university: Party,
        company: Party,
        clock: Clock,
        state: str,
        action: str,
        who: str,
        after: str,
    ) -> None:
        agreement = drive_to(state, client, university, company, clock)
        actor = {"university": university, "company": company}[who].actor

        if action == "counter":
            result = countered(client, actor, agreement, terms_body(company, text="Once more."))
        else:
            result = acted(client, actor, agreement, action, reason="Agreed reason.")

        assert result["status"] == after
        assert result["version"] > agreement["version"]

    def test_only_the_proposer_may_withdraw(
        self, client: TestClient, company: Party, proposal: dict[str, Any]
    ) -> None:
        response = act(client, company.actor, proposal, "withdraw")

        assert_problem(response, 403, "proposer_only")

    def test_the_author_of_the_current_terms_cannot_reject_them(
        self, client: TestClient, university: Party, proposal: dict[str, Any]
    ) -> None:
        response = act(client, university.actor, proposal, "reject", reason="Changed my mind.")

        assert_problem(response, 403, "recipient_only")

    def test_rejecting_needs_a_reason_which_is_kept(
        self, client: TestClient, company: Party, proposal: dict[str, Any]
    ) -> None:
        assert_problem(act(client, company.actor, proposal, "reject"), 422, "reason_required")

        rejected = acted(client, company.actor, proposal, "reject", reason="Too costly.")

        assert rejected["status_reason"] == "Too costly."

    def test_terminating_needs_a_reason(
        self, client: TestClient, university: Party, company: Party, proposal: dict[str, Any]
    ) -> None:
        agreement = signed_by_both(client, university, company, proposal)

        response = act(client, company.actor, agreement, "terminate")

        assert_problem(response, 422, "reason_required", field="body.reason")

    def test_counter_is_not_a_plain_transition(
        self, client: TestClient, company: Party, proposal: dict[str, Any]
    ) -> None:
        response = act(client, company.actor, proposal, "counter")

        assert_problem(response, 422, "counter_needs_terms", field="body.action")

    def test_a_stale_etag_is_412_and_a_missing_one_428(
        self, client: TestClient, university: Party, company: Party, proposal: dict[str, Any]
    ) -> None:
        acted(client, university.actor, proposal, "sign")
        url = f"{URL}/{proposal['id']}/transitions"
        body = {"action": "sign", "terms_version": 1}

        stale = act(client, company.actor, proposal, "sign")
        missing = client.post(url, json=body, headers=company.actor.headers)

        assert_problem(stale, 412, "stale_version")
        assert_problem(missing, 428, "if_match_required")


class TestSigning:
    def test_one_party_signing_records_its_signature(
        self, client: TestClient, university: Party, proposal: dict[str, Any]
    ) -> None:
        agreement = acted(client, university.actor, proposal, "sign")

        assert agreement["status"] == "proposed"
        signature = signature_of(agreement, university)
        assert signature is not None
        assert signature["terms_version"] == 1
        assert signature["terms_hash"] == proposal["terms_hash"]
        assert signature["member_id"] == university.actor.member_id

    def test_every_party_signing_the_same_terms_makes_it_signed(
        self, client: TestClient, university: Party, company: Party, proposal: dict[str, Any]
    ) -> None:
        agreement = signed_by_both(client, university, company, proposal)

        assert agreement["status"] == "signed"
        assert set(agreement["allowed_actions"]) == {"terminate"}

    def test_an_admin_may_sign_and_a_plain_member_may_not(
        self, client: TestClient, company: Party, proposal: dict[str, Any]
    ) -> None:
        member = add_member(client, company.actor, role="member")
        admin = add_member(client, company.actor, role="admin")

        assert_problem(act(client, member, proposal, "sign"), 403, "manager_role_required")
        assert signature_of(acted(client, admin, proposal, "sign"), company) is not None

    def test_an_unverified_organization_cannot_sign(
        self, client: TestClient, university: Party
    ) -> None:
        unverified = party(client, None, kind="company", listing_kind="compute")
        agreement = propose(client, university.actor, agreement_body(university, unverified))

        response = act(client, unverified.actor, agreement, "sign")

        assert_problem(response, 403, "organization_unverified")

    def test_signing_needs_the_terms_version(
        self, client: TestClient, company: Party, proposal: dict[str, Any]
    ) -> None:
        response = act(client, company.actor, proposal, "sign", terms_version=None)

        assert_problem(response, 422, "terms_version_required", field="body.terms_version")

    def test_signing_superseded_terms_is_a_conflict(
        self, client: TestClient, university: Party, company: Party, proposal: dict[str, Any]
    ) -> None:
        agreement = countered(client, company.actor, proposal, terms_body(company, text="v2"))

        response = act(client, university.actor, agreement, "sign", terms_version=1)

        assert_problem(response, 409, "terms_superseded")

    def test_signing_twice_is_a_conflict(
        self, client: TestClient, university: Party, proposal: dict[str, Any]
    ) -> None:
        agreement = acted(client, university.actor, proposal, "sign")

        assert_problem(act(client, university.actor, agreement, "sign"), 409, "already_signed")


class TestCounter:
    def test_a_counter_adds_a_terms_version_and_voids_signatures(
        self, client: TestClient, university: Party, company: Party, proposal: dict[str, Any]
    ) -> None:
        signed_once = acted(client, university.actor, proposal, "sign")
        new_terms = terms_body(
            company, price={"amount": "8000", "currency": "CNY", "schedule": "monthly"}
        )

        agreement = countered(client, company.actor, signed_once, new_terms)

        assert agreement["status"] == "countered"
        assert agreement["terms_version"] == 2
        assert agreement["terms_hash"] != proposal["terms_hash"]
        assert all(p["signature"] is None for p in agreement["parties"])
        (event,) = [
            e for e in trail(client, company.actor, agreement) if e["type"] == "agreement.countered"
        ]
        assert event["data"]["voided_signatures"] == [university.actor.organization_id]
        assert event["terms_hash"] == agreement["terms_hash"]

    def test_signatures_count_only_on_the_same_terms(
        self, client: TestClient, university: Party, company: Party, proposal: dict[str, Any]
    ) -> None:
        agreement = acted(client, university.actor, proposal, "sign")
        agreement = countered(client, company.actor, agreement, terms_body(company, text="v2"))
        agreement = acted(client, company.actor, agreement, "sign")
        assert agreement["status"] == "countered"

        agreement = acted(client, university.actor, agreement, "sign")

        assert agreement["status"] == "signed"
        assert {p["signature"]["terms_version"] for p in agreement["parties"]} == {2}

    def test_the_diff_names_what_changed(
        self, client: TestClient, company: Party, proposal: dict[str, Any]
    ) -> None:
        terms = terms_body(company, text="Revised.")
        terms["price"]["amount"] = "8000"
        terms["data_use"] = None
        agreement = countered(client, company.actor, proposal, terms)

        response = client.get(
            f"{URL}/{agreement['id']}/terms/2/diff?against=1", headers=company.actor.headers
        )

        assert response.status_code == 200, response.text
        changes = {c["path"]: c for c in response.json()["changes"]}
        assert changes["price.amount"] == {
            "path": "price.amount",
            "change": "changed",
            "before": "9250.00",
            "after": "8000.00",
        }
        assert changes["text"]["after"] == "Revised."
        assert changes["data_use"]["change"] == "removed"
        assert set(changes) == {"price.amount", "text", "data_use"}

    def test_unknown_terms_versions_are_404(
        self, client: TestClient, company: Party, proposal: dict[str, Any]
    ) -> None:
        response = client.get(f"{URL}/{proposal['id']}/terms/2", headers=company.actor.headers)

        assert_problem(response, 404, "not_found")

    def test_invalid_counter_terms_change_nothing(
        self, client: TestClient, company: Party, proposal: dict[str, Any]
    ) -> None:
        terms = terms_body(company)
        terms["compute"]["gpu_hours"] = "999999"

        response = counter(client, company.actor, proposal, terms)

        assert_problem(response, 422, "invalid_terms", field="body.terms.compute.gpu_hours")
        assert read(client, company.actor, proposal) == proposal


class TestDeadlines:
    def test_a_passed_response_deadline_expires_the_agreement_on_read(
        self, client: TestClient, university: Party, proposal: dict[str, Any], clock: Clock
    ) -> None:
        clock.advance(days=14, minutes=1)

        agreement = read(client, university.actor, proposal)

        assert agreement["status"] == "expired"
        expired = trail(client, university.actor, agreement)[-1]
        assert expired["type"] == "agreement.expired"
        assert expired["actor_member_id"] is None

    def test_the_list_applies_deadlines_too(
        self, client: TestClient, company: Party, proposal: dict[str, Any], clock: Clock
    ) -> None:
        clock.advance(days=15)

        response = client.get(f"{URL}?status=expired", headers=company.actor.headers)

        assert [a["id"] for a in response.json()["items"]] == [proposal["id"]]

    def test_acting_after_the_deadline_is_refused(
        self, client: TestClient, company: Party, proposal: dict[str, Any], clock: Clock
    ) -> None:
        clock.advance(days=15)

        response = act(client, company.actor, proposal, "sign")

        assert_problem(response, 409, "illegal_transition")
        assert read(client, company.actor, proposal)["status"] == "expired"

    def test_a_counter_sets_a_new_deadline(
        self, client: TestClient, company: Party, proposal: dict[str, Any], clock: Clock
    ) -> None:
        clock.advance(days=10)
        agreement = countered(client, company.actor, proposal, terms_body(company, text="v2"))
        clock.advance(days=10)

        assert read(client, company.actor, agreement)["status"] == "countered"

    def test_the_background_worker_expires_agreements_nobody_reads(
        self,
        engine: Engine,
        settings: Settings,
        client: TestClient,
        proposal: dict[str, Any],
        clock: Clock,
    ) -> None:
        clock.advance(days=15)
        worker_settings = settings.model_copy(update={"worker_interval_seconds": 0.05})

        with TestClient(create_app(worker_settings)):
            for _ in range(200):
                with Session(engine) as session:
                    status = session.exec(
                        select(Agreement.status).where(Agreement.id == uuid.UUID(proposal["id"]))
                    ).one()
                if status == "expired":
                    break
                threading.Event().wait(0.05)

        assert status == "expired"

    def test_signed_becomes_active_on_the_start_date(
        self,
        client: TestClient,
        university: Party,
        company: Party,
        proposal: dict[str, Any],
        clock: Clock,
    ) -> None:
        agreement = signed_by_both(client, university, company, proposal)
        clock.advance(days=29)
        assert read(client, university.actor, agreement)["status"] == "signed"

        clock.advance(days=1)

        assert read(client, university.actor, agreement)["status"] == "active"
        assert trail(client, university.actor, agreement)[-1]["type"] == "agreement.activated"

    def test_signing_after_the_start_date_activates_at_once(
        self, client: TestClient, university: Party, company: Party
    ) -> None:
        body = agreement_body(university, company, terms=terms_body(company, start_in_days=-1))
        agreement = propose(client, university.actor, body)

        agreement = signed_by_both(client, university, company, agreement)

        assert agreement["status"] == "active"
        types = [e["type"] for e in trail(client, university.actor, agreement)]
        assert types[-2:] == ["agreement.signed", "agreement.activated"]

    def test_active_completes_when_the_end_date_passes(
        self, client: TestClient, university: Party, company: Party, clock: Clock
    ) -> None:
        agreement = drive_to("active", client, university, company, clock)

        clock.advance(days=180)

        assert read(client, company.actor, agreement)["status"] == "completed"

    def test_active_completes_when_every_party_confirms(
        self, client: TestClient, university: Party, company: Party, clock: Clock
    ) -> None:
        agreement = drive_to("active", client, university, company, clock)

        agreement = acted(client, company.actor, agreement, "confirm_completion")
        assert agreement["status"] == "active"
        assert_problem(
            act(client, company.actor, agreement, "confirm_completion"), 409, "already_confirmed"
        )
        agreement = acted(client, university.actor, agreement, "confirm_completion")

        assert agreement["status"] == "completed"


class TestComments:
    def test_any_member_of_a_party_may_comment_into_the_trail(
        self, client: TestClient, company: Party, proposal: dict[str, Any]
    ) -> None:
        member = add_member(client, company.actor, role="member")

        response = client.post(
            f"{URL}/{proposal['id']}/comments",
            json={"body": "Can the window start a week later?"},
            headers=member.headers,
        )

        assert response.status_code == 201, response.text
        event = response.json()
        assert event["type"] == "agreement.commented"
        assert event["data"] == {"body": "Can the window start a week later?"}
        assert event["actor_member_id"] == member.member_id
        assert trail(client, company.actor, proposal)[-1] == event

    def test_an_empty_comment_is_invalid(
        self, client: TestClient, company: Party, proposal: dict[str, Any]
    ) -> None:
        response = client.post(
            f"{URL}/{proposal['id']}/comments", json={"body": " "}, headers=company.actor.headers
        )

        assert_problem(response, 422, "validation_failed", field="body.body")


class TestTrail:
    def test_every_change_is_a_chained_event(
        self, client: TestClient, university: Party, company: Party, proposal: dict[str, Any]
    ) -> None:
        agreement = acted(client, university.actor, proposal, "sign")
        agreement = countered(client, company.actor, agreement, terms_body(company, text="v2"))

        events = trail(client, university.actor, agreement)

        assert [e["type"] for e in events] == [
            "agreement.proposed",
            "agreement.party_signed",
            "agreement.countered",
        ]
        assert [e["sequence"] for e in events] == [1, 2, 3]
        assert events[0]["prev_hash"] == "0" * 64
        assert [e["prev_hash"] for e in events[1:]] == [e["hash"] for e in events[:-1]]
        assert events[1]["actor_member_id"] == university.actor.member_id
        assert events[1]["organization_id"] == university.actor.organization_id
        assert events[1]["terms_hash"] == proposal["terms_hash"]
        assert events[2]["terms_hash"] == agreement["terms_hash"]

    def test_the_trail_pages_with_a_cursor(
        self, client: TestClient, university: Party, proposal: dict[str, Any]
    ) -> None:
        url = f"{URL}/{proposal['id']}"
        for n in range(3):
            client.post(f"{url}/comments", json={"body": f"n{n}"}, headers=university.actor.headers)

        first = client.get(f"{url}/events?limit=3", headers=university.actor.headers).json()
        rest = client.get(
            f"{url}/events?cursor={first['next_cursor']}", headers=university.actor.headers
        ).json()

        assert [e["sequence"] for e in first["items"] + rest["items"]] == [1, 2, 3, 4]

    def test_an_untouched_chain_verifies(
        self, client: TestClient, university: Party, company: Party, proposal: dict[str, Any]
    ) -> None:
        signed_by_both(client, university, company, proposal)

        assert verification(client, company.actor, proposal) == {
            "valid": True,
            "events_checked": 4,
            "first_broken": None,
            "terms_versions_checked": 1,
            "broken_terms_versions": [],
        }

    def test_an_edited_event_is_named(
        self,
        client: TestClient,
        engine: Engine,
        university: Party,
        company: Party,
        proposal: dict[str, Any],
    ) -> None:
        signed_by_both(client, university, company, proposal)
        second = trail(client, university.actor, proposal)[1]
        with engine.begin() as connection:
            connection.execute(
                update(Event)
                .where(Event.id == uuid.UUID(second["id"]))
                .values(organization_id=uuid.UUID(company.actor.organization_id))
            )

        result = verification(client, university.actor, proposal)

        assert result["valid"] is False
        assert result["first_broken"]["sequence"] == 2
        assert result["first_broken"]["event_id"] == second["id"]
        assert "hash" in result["first_broken"]["reason"]

    def test_an_edited_event_rehashed_breaks_the_next_link(
        self,
        client: TestClient,
        engine: Engine,
        university: Party,
        company: Party,
        proposal: dict[str, Any],
    ) -> None:
        signed_by_both(client, university, company, proposal)
        second = trail(client, university.actor, proposal)[1]
        with Session(engine) as session:
            event = session.get_one(Event, uuid.UUID(second["id"]))
            event.data = {"terms_version": 7}
            event.hash = event_hash(event)
            session.add(event)
            session.commit()

        result = verification(client, university.actor, proposal)

        assert result["first_broken"]["sequence"] == 3
        assert "link" in result["first_broken"]["reason"]

    def test_a_removed_last_event_is_detected(
        self,
        client: TestClient,
        engine: Engine,
        university: Party,
        company: Party,
        proposal: dict[str, Any],
    ) -> None:
        signed_by_both(client, university, company, proposal)
        last = trail(client, university.actor, proposal)[-1]
        with engine.begin() as connection:
            connection.execute(delete(Event).where(Event.id == uuid.UUID(last["id"])))

        result = verification(client, university.actor, proposal)

        assert result["valid"] is False
        assert result["first_broken"] == {
            "sequence": 4,
            "event_id": None,
            "reason": "the chain head records 4 events; 3 remain",
        }

    def test_edited_terms_are_detected(
        self, client: TestClient, engine: Engine, university: Party, proposal: dict[str, Any]
    ) -> None:
        with Session(engine) as session:
            terms = session.get_one(AgreementTerms, (uuid.UUID(proposal["id"]), 1))
            terms.terms = {**terms.terms, "text": "Nothing is owed."}
            session.add(terms)
            session.commit()

        result = verification(client, university.actor, proposal)

        assert result["valid"] is False
        assert result["broken_terms_versions"] == [1]


def _postgres_only() -> Any:
    return pytest.mark.parametrize(
        "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
    )


@pytest.fixture
def live(engine: Engine, settings: Settings) -> Iterator[httpx.Client]:
    """The app under a real uvicorn server on 127.0.0.1; requests go over TCP."""
    with (
        serve(create_app(settings)) as base_url,
        httpx.Client(base_url=base_url, timeout=30) as http,
    ):
        yield http


def at_once(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Run the calls in threads released together; their responses in call order."""
    barrier = threading.Barrier(len(calls))
    results: list[httpx.Response | None] = [None] * len(calls)

    def run(position: int) -> None:
        barrier.wait()
        results[position] = calls[position]()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for r in results if r is not None]


@_postgres_only()
class TestConcurrentParties:
    """Real concurrent requests against a uvicorn server over PostgreSQL: one outcome each time."""

    ROUNDS = 6

    @pytest.fixture
    def pair(self, live: httpx.Client, engine: Engine) -> tuple[Party, Party]:
        admin = platform_admin(live, engine)
        university = party(live, admin, kind="university", listing_kind="dataset")
        company = party(live, admin, kind="company", listing_kind="compute")
        return university, company

    def test_sign_and_withdraw_at_once_leave_one_outcome(
        self, live: httpx.Client, pair: tuple[Party, Party]
    ) -> None:
        university, company = pair
        for _ in range(self.ROUNDS):
            agreement = propose(live, university.actor, agreement_body(university, company))
            agreement = acted(live, university.actor, agreement, "sign")
            anyone = {**agreement, "version": "*"}

            sign, withdraw = at_once(
                partial(act, live, company.actor, anyone, "sign"),
                partial(act, live, university.actor, anyone, "withdraw"),
            )

            final = read(live, university.actor, agreement)
            assert sorted([sign.status_code, withdraw.status_code]) == [200, 409]
            assert final["status"] == ("signed" if sign.status_code == 200 else "withdrawn")
            types = [e["type"] for e in trail(live, university.actor, agreement)]
            assert ("agreement.signed" in types) != ("agreement.withdrawn" in types)
            assert verification(live, company.actor, agreement)["valid"] is True

    def test_two_counters_with_the_same_etag_leave_one(
        self, live: httpx.Client, pair: tuple[Party, Party]
    ) -> None:
        university, company = pair
        for _ in range(self.ROUNDS):
            agreement = propose(live, university.actor, agreement_body(university, company))

            first, second = at_once(
                partial(counter, live, company.actor, agreement, terms_body(company, text="A")),
                partial(counter, live, university.actor, agreement, terms_body(company, text="B")),
            )

            assert sorted([first.status_code, second.status_code]) == [200, 412]
            final = read(live, company.actor, agreement)
            assert final["terms_version"] == 2
            assert verification(live, company.actor, agreement)["valid"] is True

    def test_two_counters_without_an_etag_both_land_in_order(
        self, live: httpx.Client, pair: tuple[Party, Party]
    ) -> None:
        university, company = pair
        for _ in range(self.ROUNDS):
            agreement = propose(live, university.actor, agreement_body(university, company))
            anyone = {**agreement, "version": "*"}

            responses = at_once(
                partial(counter, live, company.actor, anyone, terms_body(company, text="A")),
                partial(counter, live, university.actor, anyone, terms_body(company, text="B")),
            )

            assert [r.status_code for r in responses] == [200, 200]
            assert sorted(r.json()["terms_version"] for r in responses) == [2, 3]
            events = trail(live, company.actor, agreement)
            assert [e["data"].get("terms_version") for e in events] == [1, 2, 3]
            assert verification(live, company.actor, agreement)["valid"] is True

    def test_sign_against_the_deadline_sweep_leaves_one_outcome(
        self, live: httpx.Client, engine: Engine, pair: tuple[Party, Party]
    ) -> None:
        university, company = pair
        # Deadlines straddle the moment the signatures and the sweep are let go, so that some
        # signatures land before their deadline and some after.
        fire_at = datetime.now(UTC) + timedelta(seconds=2)
        proposals = []
        for n in range(self.ROUNDS):
            deadline = fire_at + timedelta(milliseconds=150 * (n - self.ROUNDS // 2))
            body = agreement_body(university, company, respond_by=deadline.isoformat())
            agreement = propose(live, university.actor, body)
            proposals.append(acted(live, university.actor, agreement, "sign"))
        threading.Event().wait(max(0.0, (fire_at - datetime.now(UTC)).total_seconds()))

        def sweep() -> httpx.Response:
            with Session(engine) as session:
                agreement_service.advance_due(session)
            return httpx.Response(200)

        signs = at_once(
            *[partial(act, live, company.actor, a, "sign") for a in proposals],
            sweep,
        )[:-1]

        for agreement, sign in zip(proposals, signs, strict=True):
            final = read(live, company.actor, agreement)
            types = [e["type"] for e in trail(live, company.actor, agreement)]
            if sign.status_code == 200:
                assert final["status"] == "signed"
                assert "agreement.expired" not in types
            else:
                # Refused: expired before the lock was taken (412, the ETag moved) or after (409).
                assert sign.status_code in {409, 412}, sign.text
                assert final["status"] == "expired"
                assert types.count("agreement.party_signed") == 1
            assert types.count("agreement.expired") <= 1
            assert verification(live, company.actor, agreement)["valid"] is True

    def test_one_idempotency_key_sent_twice_at_once_creates_once(
        self, live: httpx.Client, engine: Engine, pair: tuple[Party, Party]
    ) -> None:
        university, company = pair
        body = agreement_body(university, company)
        headers = {**university.actor.headers, "Idempotency-Key": "double-click"}

        responses = at_once(*[partial(live.post, URL, json=body, headers=headers)] * 2)

        created = [r for r in responses if r.status_code == 201]
        assert created, [r.text for r in responses]
        assert all(r.status_code in {201, 409} for r in responses)
        assert len({r.json()["id"] for r in created}) == 1
        assert count(engine, Agreement) == 1


def _age_idempotency_keys(engine: Engine, *, hours: float) -> None:
    """Move every stored Idempotency-Key `hours` into the past."""
    with Session(engine) as session:
        session.execute(
            update(IdempotencyKey).values(created_at=datetime.now(UTC) - timedelta(hours=hours))
        )
        session.commit()
