"""`match.new`: tell an organization when a newly published listing of another organization
scores at least the threshold (`min_score`) of one of its saved searches.

The score is the one the API shows, from the process's matcher over everything the organization
may see: for a text search, the new listing's score in `POST /search` with the saved text and
kinds; for a listing's search, its score among `GET /listings/{id}/matches` of that listing (a
counterpart the organization dismissed there raises nothing). The other filters (sector, country,
organization kind) are checked on the new listing, as the API filters results. Only published
`public` or `registered` listings raise alerts: every signed-in organization may see those, and a
`private` one is seen by its own organization only, which is never alerted to its own listings.

Where it runs: in the background worker (`process_due`), not in the publishing request. The score
needs the new listing in the index, which only follows its transaction's commit, and one ranking per
saved search that could match is work no request should wait for.

Exactly once: a `match_alert_jobs` row commits with the `listing.published` event
(services/events.py), so a committed publication is never forgotten. A worker settles a job in one
transaction: it takes the job (`FOR UPDATE SKIP LOCKED` on PostgreSQL), ranks, deletes the job by
compare-and-set on its event id, and appends every `match.new` event with its webhook outbox rows.
A crash before the commit leaves the job for the next round and no events; the commit leaves the
events and no job; of two workers on one job, only one deletes it and commits.
"""

import logging
import uuid
from typing import Any, cast

from sqlalchemy import CursorResult, delete, or_, update
from sqlmodel import Session, col, select

from marketplace.listing_facts import listing_facts
from marketplace.models import Listing, MatchAlertJob, MatchFeedback, SavedSearch
from marketplace.search_index import SearchIndex
from marketplace.services import embeddings, events, matches
from marketplace.services.saved_searches import wanted_kinds
from schemas.events import EventType, SubjectType
from schemas.listings import ListingKind, ListingStatus, Visibility, side_of
from schemas.matches import FeedbackVerdict

log = logging.getLogger(__name__)


def process_due(session: Session, *, index: SearchIndex, limit: int = 10) -> int:
    """Settle up to `limit` pending publications, oldest first, one transaction each.

    Returns how many were settled; a job another worker took meanwhile is left to it.
    """
    jobs = session.exec(
        select(MatchAlertJob.listing_id, MatchAlertJob.event_id)
        .order_by(col(MatchAlertJob.queued_at))
        .limit(limit)
    ).all()
    session.rollback()
    return sum(_settle(session, index, listing_id, event_id) for listing_id, event_id in jobs)


def _settle(
    session: Session, index: SearchIndex, listing_id: uuid.UUID, event_id: uuid.UUID
) -> bool:
    this_job = (col(MatchAlertJob.listing_id) == listing_id) & (
        col(MatchAlertJob.event_id) == event_id
    )
    if (
        session.exec(select(MatchAlertJob).where(this_job).with_for_update(skip_locked=True))
    ).first() is None:
        session.rollback()
        return False
    listing = session.exec(select(Listing).where(Listing.id == listing_id)).first()
    if listing is None:  # deleted meanwhile, and its job with it (SQLite has no row locks)
        session.rollback()
        return False
    index.sync()  # now the index holds the listing as just read, or a later state of it
    alerts = _alerts(session, index, listing) if _alertable(index, listing) else []
    taken = cast(CursorResult[Any], session.execute(delete(MatchAlertJob).where(this_job)))
    if taken.rowcount != 1:  # settled by another worker meanwhile (SQLite has no row locks)
        session.rollback()
        return False
    for search, score in alerts:  # in id order: chain heads are always locked in one order
        events.append(
            session,
            subject_type=SubjectType.SAVED_SEARCH,
            subject_id=search.id,
            type=EventType.MATCH_NEW,
            audience=[search.organization_id],
            data={
                "listing_id": str(listing.id),
                "saved_search_id": str(search.id),
                "matched_listing_id": str(search.listing_id) if search.listing_id else None,
                "score": round(score, 6),
                "min_score": search.min_score,
            },
        )
    session.commit()
    return True


def _alertable(index: SearchIndex, listing: Listing) -> bool:
    """Published for every signed-in organization to see, and held by the matcher."""
    if listing.status != ListingStatus.PUBLISHED or listing.visibility not in (
        Visibility.PUBLIC,
        Visibility.REGISTERED,
    ):
        return False
    # The index applied every change committed before the listing was read, so this is no lag:
    # the listing's embedding is of another model than this process's (a misconfiguration).
    if index.listing(listing.row_id or 0) is None:
        log.warning("listing %s is not in the index: it raises no match alerts", listing.id)
        return False
    return True


def _alerts(
    session: Session, index: SearchIndex, listing: Listing
) -> list[tuple[SavedSearch, float]]:
    """The other organizations' saved searches the listing meets, with its score, by id."""
    kind = ListingKind(listing.kind)
    candidates = session.exec(
        select(SavedSearch)
        .where(
            col(SavedSearch.enabled),
            SavedSearch.organization_id != listing.organization_id,
            or_(col(SavedSearch.side).is_(None), col(SavedSearch.side) == side_of(kind)),
            or_(col(SavedSearch.sector).is_(None), col(SavedSearch.sector) == listing.sector),
            or_(col(SavedSearch.country).is_(None), col(SavedSearch.country) == listing.country),
            or_(
                col(SavedSearch.organization_kind).is_(None),
                col(SavedSearch.organization_kind) == listing.organization.kind,
            ),
        )
        .order_by(col(SavedSearch.id))
    ).all()
    own_listings = {
        row.id: row
        for row in session.exec(
            select(Listing).where(
                col(Listing.id).in_([s.listing_id for s in candidates if s.listing_id])
            )
        ).unique()
    }
    visible: dict[uuid.UUID, set[int]] = {}
    found = []
    for search in candidates:
        own = own_listings.get(search.listing_id) if search.listing_id else None
        kinds = wanted_kinds(search.kinds, search.side, counterparts_of=own.kind if own else None)
        if kind not in kinds:
            continue
        if search.organization_id not in visible:
            visible[search.organization_id] = index.visible_ids(search.organization_id)
        allowed = visible[search.organization_id]
        score = (
            _listing_score(session, index, search, own, listing, kinds, allowed)
            if own is not None
            else _text_score(session, index, search, listing, kinds, allowed)
        )
        if score is not None:
            found.append((search, score))
    return found


def _text_score(
    session: Session,
    index: SearchIndex,
    search: SavedSearch,
    listing: Listing,
    kinds: frozenset[ListingKind],
    allowed: set[int],
) -> float | None:
    """The listing's score in `POST /search` for the saved text, if at least the threshold."""
    assert search.text is not None
    matcher = index.matcher
    if search.model_name == matcher.embedder.model_name and search.query_vector is not None:
        vector = embeddings.from_bytes(search.query_vector)
    else:  # saved under another model: embed once more and keep it, unless the search changed
        vector = matcher.embedder.encode([search.text])[0]
        session.execute(
            update(SavedSearch)
            .where(
                col(SavedSearch.row_id) == search.row_id,
                col(SavedSearch.version) == search.version,
            )
            .values(
                model_name=matcher.embedder.model_name, query_vector=embeddings.as_bytes(vector)
            )
        )
    found = matcher.search(
        search.text,
        kinds={k.value for k in kinds},
        allowed_ids=allowed,
        limit=len(matcher),
        min_score=search.min_score,
        explain=False,
        vector=vector,
    )
    return next((m.score for m in found if m.id == listing.row_id), None)


def _listing_score(
    session: Session,
    index: SearchIndex,
    search: SavedSearch,
    own: Listing,
    listing: Listing,
    kinds: frozenset[ListingKind],
    allowed: set[int],
) -> float | None:
    """The listing's score among the matches of the organization's own listing, if at least the
    threshold and not dismissed there."""
    found = index.matcher.match(
        listing_facts(own),
        kinds={k.value for k in kinds},
        limit=len(index.matcher),
        min_score=search.min_score,
        allowed_ids=allowed,
        vector=matches.query_vector(session, index, own),
        explain=False,
    )
    score = next((m.score for m in found if m.id == listing.row_id), None)
    if score is None:
        return None
    dismissed = session.exec(
        select(MatchFeedback.id).where(
            MatchFeedback.organization_id == search.organization_id,
            MatchFeedback.listing_id == own.id,
            MatchFeedback.counterpart_id == listing.id,
            MatchFeedback.verdict == FeedbackVerdict.DISMISSED,
        )
    ).first()
    return None if dismissed is not None else score
