"""Small factories that create test data through the public API (same validation as production)."""

import itertools
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

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
