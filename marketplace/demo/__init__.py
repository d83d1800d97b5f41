"""The fictional demo catalogue shipped with the package, loaded through the services."""

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from pydantic import TypeAdapter
from rich.console import Console
from rich.progress import track
from sqlmodel import Session, select

from marketplace.models import Member, Organization
from marketplace.services import listings, members, organizations
from matching.embedding import Embedder
from schemas.listings import ListingCreate, ListingKind
from schemas.members import MemberCreate, Role
from schemas.organizations import OrganizationFields

_LISTING = TypeAdapter(ListingCreate)
_LOADER_KEYS = ("organization", "ref", "linked_dataset_refs")
# Datasets first, so scenarios can link to them.
_KIND_ORDER = {
    ListingKind.DATASET: 0,
    ListingKind.SCENARIO: 1,
    ListingKind.COMPUTE: 2,
    ListingKind.MODEL: 3,
}


@dataclass
class DemoSummary:
    organizations_loaded: int = 0
    organizations_present: int = 0
    listings_by_kind: dict[str, int] = field(default_factory=dict)
    example_email: str = ""

    def rows(self) -> list[tuple[str, str, str]]:
        rows = [("organizations", str(self.organizations_loaded), str(self.organizations_present))]
        rows += [
            (f"{kind} listings", str(n), "") for kind, n in sorted(self.listings_by_kind.items())
        ]
        return rows


def _read(name: str) -> list[dict[str, Any]]:
    return json.loads(resources.files(__package__).joinpath("catalogue", name).read_text("utf-8"))  # type: ignore[no-any-return]


def catalogue() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The demo organizations and listings as shipped."""
    folder = resources.files(__package__).joinpath("catalogue")
    listing_files = sorted(p.name for p in folder.iterdir() if p.name.startswith("listings"))
    entries = [entry for name in listing_files for entry in _read(name)]
    entries.sort(key=lambda e: _KIND_ORDER[ListingKind(e["kind"])])
    return _read("organizations.json"), entries


def load(
    session: Session, *, password: str, embedder: Embedder, progress: Console | None = None
) -> DemoSummary:
    """Create the demo organizations, their owners and listings; skip organizations present."""
    org_entries, listing_entries = catalogue()
    summary = DemoSummary(example_email=org_entries[0]["owner"]["email"])
    owners: dict[str, Member] = {}
    for entry in org_entries:
        existing = session.exec(
            select(Organization).where(Organization.slug == entry["slug"])
        ).first()
        if existing is not None:
            summary.organizations_present += 1
            continue
        fields = OrganizationFields.model_validate(
            {k: v for k, v in entry.items() if k not in ("owner", "verified")}
        )
        organization = organizations.create(session, fields=fields, verified=entry["verified"])
        owners[entry["slug"]] = members.create(
            session,
            organization_id=organization.id,
            data=MemberCreate(**entry["owner"], password=password, role=Role.OWNER),
        )
        summary.organizations_loaded += 1
    ids_by_ref: dict[str, str] = {}
    todo = [e for e in listing_entries if e["organization"] in owners]
    for entry in track(
        todo, description="Loading demo listings", console=progress, disable=progress is None
    ):
        body = {k: v for k, v in entry.items() if k not in _LOADER_KEYS}
        if entry.get("linked_dataset_refs"):
            body["attributes"] = {
                **body["attributes"],
                "linked_dataset_ids": [ids_by_ref[ref] for ref in entry["linked_dataset_refs"]],
            }
        listing = listings.create(
            session,
            actor=owners[entry["organization"]],
            data=_LISTING.validate_python(body),
            embedder=embedder,
        )
        if "ref" in entry:
            ids_by_ref[entry["ref"]] = str(listing.id)
        summary.listings_by_kind[listing.kind] = summary.listings_by_kind.get(listing.kind, 0) + 1
    return summary
