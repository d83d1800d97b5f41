"""Small factories that create test data through the public API (same validation as production)."""

import itertools
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from http import HTTPStatus
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from marketplace import security
from marketplace.models import Member
from marketplace.services import members, organizations
from schemas.errors import PROBLEM_MEDIA_TYPE
from schemas.members import MemberCreate, Role
from schemas.organizations import OrganizationFields

PASSWORD = "correct-horse-battery"
_counter = itertools.count(1)


@dataclass(frozen=True)
class Actor:
    organization_id: str
    member_id: str
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> str:
    response = client.post("/api/v1/auth/tokens", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def organization_body(**overrides: Any) -> dict[str, Any]:
    n = next(_counter)
    body: dict[str, Any] = {
        "organization": {
            "name": f"Test University {n} {uuid.uuid4().hex[:6]}",
            "kind": "university",
            "country": "CN",
            "region": "Hefei, Anhui",
        },
        "owner": {
            "email": f"owner{n}-{uuid.uuid4().hex[:6]}@example.org",
            "display_name": f"Owner {n}",
            "password": PASSWORD,
        },
    }
    body["organization"].update(overrides)
    return body


def sign_up(client: TestClient, **organization_overrides: Any) -> Actor:
    """A new organization with its owner, signed in."""
    body = organization_body(**organization_overrides)
    response = client.post("/api/v1/organizations", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    email = body["owner"]["email"]
    return Actor(
        organization_id=created["organization"]["id"],
        member_id=created["owner"]["id"],
        email=email,
        token=sign_in(client, email),
    )


def add_member(client: TestClient, owner: Actor, *, role: str = "member") -> Actor:
    email = f"member{next(_counter)}-{uuid.uuid4().hex[:6]}@example.org"
    response = client.post(
        f"/api/v1/organizations/{owner.organization_id}/members",
        json={"email": email, "display_name": "A Member", "password": PASSWORD, "role": role},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    return Actor(owner.organization_id, response.json()["id"], email, sign_in(client, email))


ATTRIBUTES: dict[str, dict[str, Any]] = {
    "dataset": {
        "modality": "image",
        "record_count": 120000,
        "size_gb": 38.5,
        "licence": "CC-BY-4.0",
        "contains_personal_data": False,
        "access": "open",
        "update_frequency": "monthly",
        "documentation_url": "https://example.org/docs",
    },
    "scenario": {
        "problem_statement": "Detect defects on a steel production line in real time.",
        "desired_outcome": "A deployed detector with over 95% recall.",
        "site": {"city": "Hefei", "facility": "Plant 3"},
        "budget_min": "100000",
        "budget_max": "500000",
        "currency": "CNY",
        "deadline": "2027-06-30",
        "required_gpu_hours": 2000,
        "required_capabilities": ["object_detection"],
    },
    "compute": {
        "accelerator_model": "H100 80GB SXM",
        "accelerator_vendor": "NVIDIA",
        "accelerator_count": 64,
        "memory_per_accelerator_gb": 80,
        "interconnect": "NVLink + InfiniBand NDR 400Gb/s",
        "gpu_hours_available": 20000,
        "price_per_gpu_hour": "18.50",
        "currency": "CNY",
        "available_from": "2026-12-01",
        "available_until": "2027-12-31",
        "data_centre": {"country": "CN", "city": "Wuhu"},
        "certifications": ["ISO 27001"],
    },
    "model": {
        "tasks": ["object_detection", "image_segmentation"],
        "modality": "image",
        "languages": ["en", "zh"],
        "parameter_count": 68000000,
        "licence": "AGPL-3.0-only",
        "deployment": ["api", "on_premises"],
        "fine_tuning_offered": True,
        "pricing_note": "Per-image pricing on request.",
        "model_card_url": "https://example.org/model",
    },
}


def listing_body(kind: str = "dataset", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": kind,
        "title": f"Test {kind} listing {next(_counter)}",
        "summary": f"A {kind} for tests.",
        "description": f"# A {kind}\n\nUsed by the test suite.",
        "tags": ["test", kind],
        "sector": "manufacturing",
        "country": "CN",
        "region": "Anhui",
        "languages": ["zh", "en"],
        "status": "published",
        "visibility": "public",
        "attributes": dict(ATTRIBUTES[kind]),
    }
    body.update(overrides)
    return body


def create_listing(
    client: TestClient, actor: Actor, kind: str = "dataset", **overrides: Any
) -> dict[str, Any]:
    response = client.post(
        "/api/v1/listings", json=listing_body(kind, **overrides), headers=actor.headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at its lowest cost: the same code paths, ~1 ms per hash instead of ~0.2 s."""
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(security, "_hasher", hasher)


def platform_admin(client: TestClient, engine: Engine) -> Actor:
    """A platform admin, signed in; no endpoint grants the flag, so it comes from the service."""
    home = sign_up(client)
    email = f"admin{next(_counter)}-{uuid.uuid4().hex[:6]}@example.org"
    with Session(engine) as session:
        admin = members.create(
            session,
            organization_id=uuid.UUID(home.organization_id),
            data=MemberCreate(email=email, display_name="Platform Admin", password=PASSWORD),
            is_platform_admin=True,
        )
        admin_id = str(admin.id)
    return Actor(home.organization_id, admin_id, email, sign_in(client, email))


def assert_problem(
    response: httpx.Response, status: int, code: str, *, field: str | None = None
) -> dict[str, Any]:
    """Check an RFC 9457 problem answer (and `field` among its errors); returns the body.

    A 401 must challenge for a bearer token and a 429 must say when to retry.
    """
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = response.json()
    assert set(body) == {"type", "title", "status", "detail", "code", "errors"}, body
    assert body["type"] == f"urn:scx:problem:{code}"
    assert body["title"] == HTTPStatus(status).phrase
    assert body["status"] == status
    assert body["code"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    assert all(set(error) == {"field", "message"} for error in body["errors"]), body["errors"]
    if field is not None:
        assert field in [error["field"] for error in body["errors"]], body["errors"]
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    if status == 429:
        assert int(response.headers["retry-after"]) >= 1
    return body


def verify_organization(client: TestClient, admin: Actor, actor: Actor) -> None:
    """Mark the actor's organization verified (what a platform admin does before it may sign)."""
    response = client.put(
        f"/api/v1/organizations/{actor.organization_id}/verification",
        json={"verified": True},
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text


@dataclass(frozen=True)
class Party:
    """An organization's owner and one listing of that organization, ready to agree."""

    actor: Actor
    listing_id: str


def party(
    client: TestClient, admin: Actor | None, *, kind: str, listing_kind: str, **listing: Any
) -> Party:
    """A new organization of `kind` with one `listing_kind` listing, verified when `admin` is
    given."""
    actor = sign_up(client, kind=kind)
    if admin is not None:
        verify_organization(client, admin, actor)
    if listing_kind == "compute" and "attributes" not in listing:
        # Available from a month ago for five years: rental windows relative to today fit.
        today = date.today()
        listing["attributes"] = {
            **ATTRIBUTES["compute"],
            "available_from": str(today - timedelta(days=30)),
            "available_until": str(today + timedelta(days=5 * 365)),
        }
    return Party(actor, create_listing(client, actor, listing_kind, **listing)["id"])


def terms_body(offer: Party, *, start_in_days: int = 30, **overrides: Any) -> dict[str, Any]:
    """Compute-rental terms renting 500 GPU-hours of `offer`'s compute listing."""
    start = date.today() + timedelta(days=start_in_days)
    terms: dict[str, Any] = {
        "purpose": "Train a steel defect detector on the plant's inspection images.",
        "scope": "Training and evaluation only; no production deployment.",
        "deliverables": ["Trained detector weights", "Evaluation report"],
        "milestones": [{"title": "Data transfer", "due": str(start + timedelta(days=7))}],
        "data_use": {
            "allowed_purposes": ["model training", "evaluation"],
            "retention_days": 90,
            "onward_sharing": False,
            "on_premises_only": True,
            "personal_data": "none",
        },
        "compute": {
            "listing_id": offer.listing_id,
            "gpu_hours": "500",
            "accelerator": "H100 80GB SXM",
            "window_start": str(start),
            "window_end": str(start + timedelta(days=60)),
        },
        "price": {"amount": "9250", "currency": "CNY", "schedule": "per_gpu_hour"},
        "results": {"ownership": "proposer", "licence": "CC-BY-4.0"},
        "confidentiality": {"level": "mutual", "years": 3},
        "start_date": str(start),
        "end_date": str(start + timedelta(days=180)),
        "text": "Both parties keep their background IP.",
    }
    terms.update(overrides)
    return terms


def agreement_body(need: Party, offer: Party, **overrides: Any) -> dict[str, Any]:
    """A compute-rental proposal between a need-side and an offer-side party."""
    body: dict[str, Any] = {
        "type": "compute_rental",
        "title": "GPU time for defect detection",
        "parties": [
            {"organization_id": need.actor.organization_id, "listing_ids": [need.listing_id]},
            {"organization_id": offer.actor.organization_id, "listing_ids": [offer.listing_id]},
        ],
        "terms": terms_body(offer),
    }
    body.update(overrides)
    return body


def propose(client: TestClient, proposer: Actor, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/v1/agreements", json=body, headers=proposer.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def act(
    client: TestClient, actor: Actor, agreement: dict[str, Any], action: str, **fields: Any
) -> httpx.Response:
    """POST a transition with the agreement's ETag (`*` for a version of "*", which matches any);
    signing names the current terms version."""
    if action == "sign":
        fields.setdefault("terms_version", agreement["terms_version"])
    version = agreement["version"]
    return client.post(
        f"/api/v1/agreements/{agreement['id']}/transitions",
        json={"action": action, **fields},
        headers={**actor.headers, "If-Match": "*" if version == "*" else f'"{version}"'},
    )


def acted(
    client: TestClient, actor: Actor, agreement: dict[str, Any], action: str, **fields: Any
) -> dict[str, Any]:
    """`act`, which must succeed; the agreement after it."""
    response = act(client, actor, agreement, action, **fields)
    assert response.status_code == 200, response.text
    return dict(response.json())


def owner_of_new_organization(engine: Engine, name: str, kind: str = "company") -> Member:
    """The owner of a new organization, made through the services (no HTTP)."""
    with Session(engine, expire_on_commit=False) as session:
        organization = organizations.create(
            session, fields=OrganizationFields(name=name, kind=kind, country="CN")
        )
        return members.create(
            session,
            organization_id=organization.id,
            data=MemberCreate(
                email=f"{uuid.uuid4().hex[:8]}@example.org",
                display_name="Owner",
                password=PASSWORD,
                role=Role.OWNER,
            ),
        )
