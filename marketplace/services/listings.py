"""Listings: create, read under visibility rules, filter, update with optimistic locking, delete."""

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy import ColumnElement, String, and_, or_
from sqlalchemy import cast as sql_cast
from sqlalchemy import delete as sql_delete
from sqlalchemy import update as sql_update
from sqlmodel import Session, col, select

from marketplace.errors import Forbidden, InvalidInput, NotFound
from marketplace.models import Listing, Member, Organization, utc_now
from marketplace.services import embeddings, events, versions
from marketplace.services.pagination import decode_cursor, next_cursor
from matching.embedding import Embedder
from schemas.errors import FieldError
from schemas.listings import (
    ATTRIBUTES_BY_KIND,
    KINDS_BY_SIDE,
    ListingCreate,
    ListingKind,
    ListingStatus,
    ListingUpdate,
    Sector,
    Side,
    Visibility,
)
from schemas.organizations import OrganizationKind


@dataclass(frozen=True)
class ListingFilters:
    kind: ListingKind | None = None
    side: Side | None = None
    sector: Sector | None = None
    country: str | None = None
    organization_id: uuid.UUID | None = None
    organization_kind: OrganizationKind | None = None
    status: ListingStatus | None = None
    q: str | None = None


def visible_to(viewer: Member | None) -> ColumnElement[bool]:
    """Anonymous: published public. Members: their own organization's, plus published
    public or registered listings of others."""
    return visible_to_organization(organization_of(viewer))


def organization_of(viewer: Member | None) -> uuid.UUID | None:
    """The viewer's organization; None for anonymous callers."""
    return viewer.organization_id if viewer else None


def visible_to_organization(organization_id: uuid.UUID | None) -> ColumnElement[bool]:
    """What members of an organization may see (None: anonymous callers), as `visible_to`."""
    published = col(Listing.status) == ListingStatus.PUBLISHED
    if organization_id is None:
        return and_(published, col(Listing.visibility) == Visibility.PUBLIC)
    return or_(
        col(Listing.organization_id) == organization_id,
        and_(published, col(Listing.visibility).in_([Visibility.PUBLIC, Visibility.REGISTERED])),
    )


def create(session: Session, *, actor: Member, data: ListingCreate, embedder: Embedder) -> Listing:
    """Post a listing for the actor's organization, embedded in the same transaction."""
    return _create(session, actor=actor, items=[data], embedder=embedder, field=lambda _: "body")[0]


def create_many(
    session: Session, *, actor: Member, items: Sequence[ListingCreate], embedder: Embedder
) -> list[Listing]:
    """Post several listings in one transaction (all or none), embedded in one batch.

    Embedding texts together is 1.5 to 2.5 times faster than one by one, by CPU (bulk imports).
    A scenario may link only datasets that existed before the call. Errors name the item as
    `body.items.<position>`.
    """
    return _create(
        session, actor=actor, items=items, embedder=embedder, field=lambda n: f"body.items.{n}"
    )


def _create(
    session: Session,
    *,
    actor: Member,
    items: Sequence[ListingCreate],
    embedder: Embedder,
    field: Callable[[int], str],
) -> list[Listing]:
    created = []
    for position, data in enumerate(items):
        attributes = data.attributes.model_dump(mode="json")
        if data.kind == ListingKind.SCENARIO:
            _check_linked_datasets(
                session, actor, attributes["linked_dataset_ids"], field=field(position)
            )
        listing = Listing(
            **data.model_dump(mode="json", exclude={"attributes"}),
            attributes=attributes,
            organization_id=actor.organization_id,
        )
        created.append(listing)
    prepared = embeddings.prepare(session, created, embedder=embedder)
    session.add_all(created)
    session.flush()
    embeddings.store(session, prepared)
    events.listings_published(
        session,
        listings=[listing for listing in created if listing.status == ListingStatus.PUBLISHED],
        actor=actor,
    )
    session.commit()
    # One query reloads them all (their organization, for the response).
    session.exec(
        select(Listing)
        .where(col(Listing.row_id).in_([listing.row_id for listing in created]))
        .execution_options(populate_existing=True)
    ).unique().all()
    return created


def _check_linked_datasets(
    session: Session, actor: Member, ids: list[str], *, field: str = "body"
) -> None:
    """Every id is a dataset the actor may see; errors are located under `field` (the item)."""
    for position, raw_id in enumerate(ids):
        linked = session.exec(
            select(Listing).where(Listing.id == uuid.UUID(raw_id), visible_to(actor))
        ).first()
        if linked is None or linked.kind != ListingKind.DATASET:
            raise InvalidInput(
                "A linked dataset does not exist or is not visible to you.",
                errors=[
                    FieldError(
                        field=f"{field}.attributes.linked_dataset_ids.{position}",
                        message="not a visible dataset listing",
                    )
                ],
            )


def get_visible(session: Session, *, viewer: Member | None, listing_id: uuid.UUID) -> Listing:
    """A listing the viewer may see; anything else is reported missing, never forbidden."""
    listing = session.exec(
        select(Listing).where(Listing.id == listing_id, visible_to(viewer))
    ).first()
    if listing is None:
        raise NotFound("No such listing.")
    return listing


def browse(
    session: Session,
    *,
    viewer: Member | None,
    filters: ListingFilters,
    limit: int,
    cursor: str | None,
) -> tuple[list[Listing], str | None]:
    """Visible listings matching the filters, newest first."""
    query = select(Listing).where(visible_to(viewer))
    if filters.kind is not None:
        query = query.where(Listing.kind == filters.kind)
    if filters.side is not None:
        query = query.where(col(Listing.kind).in_(sorted(KINDS_BY_SIDE[filters.side])))
    if filters.sector is not None:
        query = query.where(Listing.sector == filters.sector)
    if filters.country is not None:
        query = query.where(Listing.country == filters.country)
    if filters.organization_id is not None:
        query = query.where(Listing.organization_id == filters.organization_id)
    if filters.organization_kind is not None:
        query = query.join(Organization).where(Organization.kind == filters.organization_kind)
    if filters.status is not None:
        query = query.where(Listing.status == filters.status)
    if filters.q and filters.q.split():
        query = query.where(_keyword_clause(filters.q))
    after = decode_cursor(cursor, int)
    if after is not None:
        query = query.where(col(Listing.row_id) < after)
    rows = list(session.exec(query.order_by(col(Listing.row_id).desc()).limit(limit + 1)).unique())
    return rows[:limit], next_cursor([r.row_id or 0 for r in rows], limit, len(rows))


def _keyword_clause(q: str) -> ColumnElement[bool]:
    """Every word of `q` appears in the title, summary, description or tags."""
    return and_(
        *(
            or_(
                col(Listing.title).icontains(word, autoescape=True),
                col(Listing.summary).icontains(word, autoescape=True),
                col(Listing.description).icontains(word, autoescape=True),
                # The tags column holds JSON text with non-ASCII characters escaped (`\u667a`),
                # so the word is looked for in that same escaped spelling.
                sql_cast(col(Listing.tags), String).icontains(_json_escaped(word), autoescape=True),
            )
            for word in q.split()
        )
    )


def _json_escaped(word: str) -> str:
    return json.dumps(word)[1:-1]


def _owned(session: Session, *, actor: Member, listing_id: uuid.UUID) -> Listing:
    listing = get_visible(session, viewer=actor, listing_id=listing_id)
    if listing.organization_id != actor.organization_id:
        raise Forbidden("Only members of the owning organization may change a listing.")
    return listing


def update(
    session: Session,
    *,
    actor: Member,
    listing_id: uuid.UUID,
    data: ListingUpdate,
    expected_version: int | None,
    embedder: Embedder,
) -> Listing:
    """Apply a partial update if the caller saw the current version; re-embed changed text."""
    listing = _owned(session, actor=actor, listing_id=listing_id)
    versions.check_version(listing, expected_version, noun="listing")
    changes = data.model_dump(mode="json", exclude_unset=True)
    if "attributes" in changes:
        attributes_model = ATTRIBUTES_BY_KIND[ListingKind(listing.kind)]
        try:
            attributes = attributes_model.model_validate(changes["attributes"])
        except ValidationError as exc:
            raise InvalidInput(
                f"The attributes are not valid for a {listing.kind} listing.",
                code="validation_failed",
                errors=[
                    FieldError(
                        field=".".join(["body", "attributes", *map(str, err["loc"])]),
                        message=err["msg"],
                    )
                    for err in exc.errors()
                ],
            ) from exc
        changes["attributes"] = attributes.model_dump(mode="json")
        if listing.kind == ListingKind.SCENARIO:
            _check_linked_datasets(session, actor, changes["attributes"]["linked_dataset_ids"])
    updated = Listing(**{name: getattr(listing, name) for name in Listing.model_fields} | changes)
    prepared = embeddings.prepare(session, [updated], embedder=embedder)
    if (
        changes.get("status") == ListingStatus.PUBLISHED
        and listing.status != ListingStatus.PUBLISHED
    ):
        events.listings_published(session, listings=[listing], actor=actor)
    versions.compare_and_set(
        session,
        listing,
        sql_update(Listing).values(**changes, version=listing.version + 1, updated_at=utc_now()),
        noun="listing",
    )
    session.refresh(listing)
    embeddings.store(session, prepared)
    session.commit()
    return listing


def delete(
    session: Session, *, actor: Member, listing_id: uuid.UUID, expected_version: int | None
) -> None:
    listing = _owned(session, actor=actor, listing_id=listing_id)
    versions.check_version(listing, expected_version, noun="listing")
    row_id = listing.row_id or 0
    versions.compare_and_set(session, listing, sql_delete(Listing), noun="listing")
    embeddings.record_changes(session, [row_id])
    session.commit()
