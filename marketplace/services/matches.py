"""Matches: counterparts for a listing, free-text search, partner organizations, feedback.

The index proposes candidates; the database has the last word on what the caller may see, so a
listing made private a moment ago never shows even before every worker's index has caught up.
"""

import functools
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, and_, bindparam
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import load_only
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import Select

from marketplace.errors import Conflict, Forbidden, InvalidInput, NotFound
from marketplace.listing_facts import listing_facts
from marketplace.mappers import match_read, organization_ref
from marketplace.models import (
    Listing,
    ListingEmbedding,
    MatchFeedback,
    Member,
    Organization,
    utc_now,
)
from marketplace.search_index import SearchIndex
from marketplace.services import embeddings
from marketplace.services.listings import (
    get_visible,
    organization_of,
    visible_to,
    visible_to_organization,
)
from matching.embedding import Vectors
from matching.facts import Kind, counterpart_kinds
from matching.ranking import Match
from schemas.errors import FieldError
from schemas.listings import KINDS_BY_SIDE, ListingKind, side_of
from schemas.matches import (
    FeedbackCreate,
    FeedbackVerdict,
    MatchRead,
    PartnerPair,
    PartnerRead,
    SearchRequest,
)

# Candidates fetched beyond the limit, so that filters applied afterwards still fill a page.
_OVERFETCH = 4
_PARTNER_SOURCE_LISTINGS = 50
_MATCHES_PER_SOURCE = 20
_PAIRS_PER_PARTNER = 5


def _visible_rows(
    session: Session, viewer: Member | None, row_ids: Sequence[int], *extra: object
) -> dict[int, Listing]:
    """The candidates the caller may still see (and that pass any extra filters), by row id."""
    if not row_ids:
        return {}
    rows = session.exec(
        select(Listing).where(col(Listing.row_id).in_(row_ids), visible_to(viewer), *extra)  # type: ignore[arg-type]
    ).unique()
    return {row.row_id or 0: row for row in rows}


# A shown match needs only what `listing_brief` reads: not the description (up to 20,000
# characters), the attributes (JSON) nor the tags and languages.
_BRIEF_COLUMNS = ("id", "kind", "title", "summary", "sector", "country", "region")
_BRIEF = load_only(*(getattr(Listing, name) for name in _BRIEF_COLUMNS), raiseload=True)


@dataclass
class _Shown:
    """The matches to show, with their rows and stored sentence vectors by row id."""

    matches: list[Match]
    rows: dict[int, Listing]
    sentences: dict[int, Vectors]


def _first_visible(
    session: Session,
    viewer: Member | None,
    index: SearchIndex,
    found: Sequence[Match],
    count: int,
    *extra: object,
    skip: Collection[uuid.UUID] = (),
) -> _Shown:
    """The first `count` matches the caller may see (and that pass the filters), with their rows
    and the sentence vectors that explain them, read together.

    Rows are read `count` candidates at a time: the index's own visibility is nearly always
    current, so one read usually settles it.
    """
    shown = _Shown([], {}, {})
    query = _shown_rows(index.matcher.embedder.model_name, organization_of(viewer))
    if extra:
        query = query.where(*extra)  # type: ignore[arg-type]
    for start in range(0, len(found), max(count, 1)):
        batch = found[start : start + max(count, 1)]
        rows = session.exec(query, params={"row_ids": [m.id for m in batch]})
        for listing, dimension, sentences in rows:
            shown.rows[listing.row_id or 0] = listing
            if sentences is not None and dimension is not None:  # outer joined: both or neither
                shown.sentences[listing.row_id or 0] = embeddings.sentences_from_bytes(
                    sentences, dimension
                )
        shown.matches += [
            m for m in batch if m.id in shown.rows and shown.rows[m.id].id not in skip
        ]
        if len(shown.matches) >= count:
            break
    shown.matches = shown.matches[:count]
    return shown


def _page(
    session: Session,
    viewer: Member | None,
    index: SearchIndex,
    rank: Callable[[int], list[Match]],
    limit: int,
    fetch: int,
    *extra: object,
    skip: Collection[uuid.UUID] = (),
) -> _Shown:
    """The first `limit` ranked results the caller may see: `rank(fetch)` first, then four
    times as many each round while the database hides too many of them (rare: the index's own
    visibility is nearly always current), until the ranking runs out."""
    while True:
        found = rank(fetch)
        shown = _first_visible(session, viewer, index, found, limit, *extra, skip=skip)
        if len(shown.matches) >= limit or len(found) < fetch or fetch >= len(index):
            return shown
        fetch *= 4


def _feedback(
    session: Session, viewer: Member | None, listing: Listing
) -> dict[uuid.UUID, FeedbackVerdict]:
    if viewer is None:
        return {}
    rows = session.exec(
        select(MatchFeedback).where(
            MatchFeedback.organization_id == viewer.organization_id,
            MatchFeedback.listing_id == listing.id,
        )
    )
    return {row.counterpart_id: FeedbackVerdict(row.verdict) for row in rows}


def _dismissed(verdicts: dict[uuid.UUID, FeedbackVerdict]) -> set[uuid.UUID]:
    return {listing for listing, v in verdicts.items() if v == FeedbackVerdict.DISMISSED}


def _embedding_of_model(model_name: str) -> ColumnElement[bool]:
    """Joins a listing to its stored embedding of a model."""
    return and_(
        col(ListingEmbedding.listing_row_id) == col(Listing.row_id),
        col(ListingEmbedding.model_name) == model_name,
    )


# The two reads of every match request, built once per model and audience and then only given
# their ids: building and keying a statement cost ~0.15 ms each time.


@functools.lru_cache(maxsize=1024)
def _shown_rows(
    model_name: str, organization_id: uuid.UUID | None
) -> Select[Listing, int | None, bytes | None]:
    """Listings by row id (`row_ids`) that an audience may see, each with the sentence vectors
    of its embedding by the model, if any."""
    return (
        select(Listing, ListingEmbedding.dimension, ListingEmbedding.sentence_vectors)
        .outerjoin(ListingEmbedding, _embedding_of_model(model_name))
        .options(_BRIEF)
        .where(visible_to_organization(organization_id))
        .where(col(Listing.row_id).in_(bindparam("row_ids", expanding=True)))
    )


@functools.lru_cache(maxsize=1024)
def _listing_with_vector(
    model_name: str, organization_id: uuid.UUID | None
) -> Select[Listing, bytes | None]:
    """The listing of an id (`listing_id`) if the audience may see it, with its embedding by
    the model, if any."""
    return (
        select(Listing, ListingEmbedding.vector)
        .outerjoin(ListingEmbedding, _embedding_of_model(model_name))
        .where(Listing.id == bindparam("listing_id"), visible_to_organization(organization_id))
    )


def _vector(index: SearchIndex, listing: Listing, stored: bytes | None) -> npt.NDArray[np.float32]:
    """The listing's stored embedding, or a fresh one when it has none of the current model."""
    if stored is not None:
        return embeddings.from_bytes(stored)
    return index.matcher.embed([listing_facts(listing)])[0]


def query_vector(session: Session, index: SearchIndex, listing: Listing) -> npt.NDArray[np.float32]:
    """The listing's stored embedding, or a fresh one when it has none of the current model."""
    stored = session.exec(
        select(ListingEmbedding.vector)
        .join(Listing, _embedding_of_model(index.matcher.embedder.model_name))
        .where(Listing.row_id == listing.row_id)
    ).first()
    return _vector(index, listing, stored)


def _kinds(listing: Listing, kind: ListingKind | None) -> frozenset[Kind]:
    allowed = counterpart_kinds(listing.kind)  # type: ignore[arg-type]
    if kind is None:
        return allowed
    if kind.value not in allowed:
        raise InvalidInput(
            f"A {listing.kind} listing is matched with {' or '.join(sorted(allowed))} listings.",
            code="kind_not_counterpart",
            errors=[FieldError(field="query.kind", message="not a kind of the other side")],
        )
    return frozenset({kind.value})  # type: ignore[arg-type]


def _visible_with_vector(
    session: Session, viewer: Member | None, listing_id: uuid.UUID, index: SearchIndex
) -> tuple[Listing, npt.NDArray[np.float32]]:
    """A listing the viewer may see (else 404, as `get_visible`) and its embedding, read
    together; embedded afresh when it has none of the current model."""
    query = _listing_with_vector(index.matcher.embedder.model_name, organization_of(viewer))
    found = session.exec(query, params={"listing_id": listing_id}).first()
    if found is None:
        raise NotFound("No such listing.")
    listing, stored = found
    return listing, _vector(index, listing, stored)


def for_listing(
    session: Session,
    *,
    viewer: Member | None,
    listing_id: uuid.UUID,
    index: SearchIndex,
    kind: ListingKind | None,
    limit: int,
    strict: bool,
    min_score: float,
) -> list[MatchRead]:
    """Ranked, explained counterparts from the other side that the caller may see."""
    listing, vector = _visible_with_vector(session, viewer, listing_id, index)
    verdicts = _feedback(session, viewer, listing)
    dismissed = _dismissed(verdicts)
    allowed = index.visible_ids(organization_of(viewer))
    facts, kinds = listing_facts(listing), _kinds(listing, kind)

    def rank(count: int) -> list[Match]:
        return index.matcher.match(
            facts,
            kinds=kinds,
            limit=count,
            strict=strict,
            min_score=min_score,
            allowed_ids=allowed,
            vector=vector,
            explain=False,
        )

    shown = _page(session, viewer, index, rank, limit, limit + len(dismissed), skip=dismissed)
    return [
        match_read(match, shown.rows[match.id], verdicts.get(shown.rows[match.id].id))
        for match in index.matcher.explain(shown.matches, vector, shown.sentences)
    ]


def search(
    session: Session, *, viewer: Member | None, request: SearchRequest, index: SearchIndex
) -> list[MatchRead]:
    """Free-text search over the listings the caller may see, with filters."""
    kinds: set[str] = (
        {k.value for k in request.kinds} if request.kinds else {k.value for k in ListingKind}
    )
    if request.side is not None:
        kinds &= {k.value for k in KINDS_BY_SIDE[request.side]}
    if not kinds:
        return []
    filters: list[object] = []
    if request.sector is not None:
        filters.append(Listing.sector == request.sector)
    if request.country is not None:
        filters.append(Listing.country == request.country)
    if request.organization_kind is not None:
        filters.append(
            col(Listing.organization_id).in_(
                select(Organization.id).where(Organization.kind == request.organization_kind)
            )
        )
    allowed = index.visible_ids(organization_of(viewer))
    vector = index.matcher.embedder.encode([request.text])[0]

    def rank(count: int) -> list[Match]:
        return index.matcher.search(
            request.text,
            kinds=kinds,  # type: ignore[arg-type]
            allowed_ids=allowed,
            limit=count,
            min_score=request.min_score,
            explain=False,
            vector=vector,
        )

    # The database applies the filters: rank more from the start when there are any.
    fetch = request.limit * (_OVERFETCH if filters else 1)
    shown = _page(session, viewer, index, rank, request.limit, fetch, *filters)
    explained = index.matcher.explain(shown.matches, vector, shown.sentences)
    return [match_read(m, shown.rows[m.id], None) for m in explained]


def partners(
    session: Session,
    *,
    viewer: Member,
    organization_id: uuid.UUID,
    index: SearchIndex,
    limit: int,
) -> list[PartnerRead]:
    """Organizations whose listings best match this organization's, with the pairs why.

    Only the organization's own members may ask: the pairs reveal its unpublished listings.
    """
    if viewer.organization_id != organization_id:
        raise Forbidden("Only members of the organization see its partner recommendations.")
    own = list(
        session.exec(
            select(Listing)
            .where(Listing.organization_id == organization_id)
            .order_by(col(Listing.row_id).desc())
            .limit(_PARTNER_SOURCE_LISTINGS)
        ).unique()
    )
    allowed = index.visible_ids(organization_id)
    pairs: dict[uuid.UUID, list[tuple[float, Listing, int]]] = defaultdict(list)
    candidate_ids: set[int] = set()
    for listing in own:
        dismissed = {
            c
            for c, v in _feedback(session, viewer, listing).items()
            if v == FeedbackVerdict.DISMISSED
        }
        for match in index.matcher.match(
            listing_facts(listing),
            limit=_MATCHES_PER_SOURCE,
            allowed_ids=allowed,
            vector=query_vector(session, index, listing),
            explain=False,
        ):
            entry = index.listing(match.id)
            if entry is None or entry.organization_id == organization_id or entry.id in dismissed:
                continue
            pairs[entry.organization_id].append((match.score, listing, match.id))
            candidate_ids.add(match.id)
    rows = _visible_rows(session, viewer, sorted(candidate_ids))
    ranked: list[PartnerRead] = []
    for _, found in pairs.items():
        kept = sorted((p for p in found if p[2] in rows), key=lambda p: -p[0])[:_PAIRS_PER_PARTNER]
        if not kept:
            continue
        partner = rows[kept[0][2]].organization
        ranked.append(
            PartnerRead(
                organization=organization_ref(partner),
                score=round(sum(score for score, _, _ in kept[:3]), 6),
                pairs=[
                    PartnerPair(
                        listing_id=source.id,
                        listing_title=source.title,
                        counterpart_id=rows[row_id].id,
                        counterpart_title=rows[row_id].title,
                        score=round(score, 6),
                    )
                    for score, source, row_id in kept
                ],
            )
        )
    ranked.sort(key=lambda p: (-p.score, p.organization.slug))
    return ranked[:limit]


def give_feedback(
    session: Session,
    *,
    viewer: Member,
    listing_id: uuid.UUID,
    counterpart_id: uuid.UUID,
    data: FeedbackCreate,
) -> MatchFeedback:
    """Record (or change) the caller's organization's verdict on a proposed counterpart."""
    listing = get_visible(session, viewer=viewer, listing_id=listing_id)
    counterpart = get_visible(session, viewer=viewer, listing_id=counterpart_id)
    if side_of(ListingKind(listing.kind)) == side_of(ListingKind(counterpart.kind)):
        raise NotFound("That listing is not a counterpart of this one.")
    verdict: dict[str, Any] = {
        "verdict": data.verdict,
        "reason": data.reason,
        "member_id": viewer.id,
        "updated_at": utc_now(),
    }
    row = session.exec(
        select(MatchFeedback).where(
            MatchFeedback.organization_id == viewer.organization_id,
            MatchFeedback.listing_id == listing.id,
            MatchFeedback.counterpart_id == counterpart.id,
        )
    ).first()
    if row is None:
        row = MatchFeedback(
            organization_id=viewer.organization_id,
            listing_id=listing.id,
            counterpart_id=counterpart.id,
            **verdict,
        )
    else:
        row.sqlmodel_update(verdict)
    session.add(row)
    try:
        session.commit()
    except IntegrityError as exc:  # the same verdict raced in from another request
        session.rollback()
        raise Conflict("Feedback on this pair is being recorded; retry.") from exc
    return row
