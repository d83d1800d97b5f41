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
(services/events.py), so a committed publication is never forgotten. A worker settles a batch of
jobs in one transaction: it takes them (`FOR UPDATE SKIP LOCKED` on PostgreSQL), ranks, deletes
them by compare-and-set on their event ids, and appends every `match.new` event with its webhook
outbox rows. A crash before the commit leaves the jobs for the next round and no events; the commit
leaves the events and no jobs; of two workers on one job, only one deletes it and commits.
"""

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import CursorResult, delete, update
from sqlmodel import Session, col, select

from marketplace.listing_facts import listing_facts
from marketplace.models import Listing, MatchAlertJob, MatchFeedback, SavedSearch
from marketplace.search_index import SearchIndex
from marketplace.services import embeddings, events, matches
from marketplace.services.saved_searches import wanted_kinds
from matching.id_set import IdSet
from schemas.events import EventType, SubjectType
from schemas.listings import ListingKind, ListingStatus, Visibility
from schemas.matches import FeedbackVerdict

log = logging.getLogger(__name__)


def process_due(session: Session, *, index: SearchIndex, limit: int = 50) -> int:
    """Raise the alerts of up to `limit` pending publications, oldest first, in one transaction.

    Returns how many were settled: 0 when none is pending, or when the pending ones are taken by
    another worker.
    """
    jobs = session.exec(
        select(MatchAlertJob)
        .order_by(col(MatchAlertJob.queued_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not jobs:
        session.rollback()
        return 0
    listings = list(
        session.exec(
            select(Listing).where(col(Listing.id).in_([job.listing_id for job in jobs]))
        ).unique()
    )
    index.sync()  # now the index holds each listing as just read, or a later state of it
    searches = _Searches.load(session, index)
    alerts = sorted(
        (
            (search, listing, score)
            for listing in listings
            if _alertable(index, listing)
            for search, score in _alerts(session, index, searches, listing)
        ),
        # Chain heads are locked in one order by every worker, so two never deadlock.
        key=lambda alert: (alert[0].id, alert[1].row_id or 0),
    )
    taken = cast(
        CursorResult[Any],
        session.execute(
            delete(MatchAlertJob).where(
                col(MatchAlertJob.listing_id).in_([job.listing_id for job in jobs]),
                col(MatchAlertJob.event_id).in_([job.event_id for job in jobs]),
            )
        ),
    )
    if taken.rowcount != len(jobs):  # another worker settled some meanwhile (SQLite: no locks)
        session.rollback()
        return 0
    for search, listing, score in alerts:
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
    return len(jobs)


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


@dataclass(frozen=True)
class _Searches:
    """The enabled saved searches, the listings of those that follow one, and what each
    organization may see in the index (built once per organization and batch)."""

    index: SearchIndex
    enabled: list[SavedSearch]
    own_listings: dict[uuid.UUID, Listing]
    _visible: dict[uuid.UUID, IdSet] = field(default_factory=dict)

    @classmethod
    def load(cls, session: Session, index: SearchIndex) -> "_Searches":
        enabled = list(session.exec(select(SavedSearch).where(col(SavedSearch.enabled))))
        followed = [search.listing_id for search in enabled if search.listing_id]
        own = session.exec(select(Listing).where(col(Listing.id).in_(followed))).unique()
        return cls(index, enabled, {listing.id: listing for listing in own})

    def visible_to(self, organization_id: uuid.UUID) -> IdSet:
        if organization_id not in self._visible:
            self._visible[organization_id] = self.index.visible_ids(organization_id)
        return self._visible[organization_id]


def _alerts(
    session: Session, index: SearchIndex, searches: _Searches, listing: Listing
) -> list[tuple[SavedSearch, float]]:
    """Other organizations' saved searches that the listing meets, with its score."""
    kind = ListingKind(listing.kind)
    found = []
    for search in searches.enabled:
        if search.organization_id == listing.organization_id or not _passes_filters(
            search, listing
        ):
            continue
        own = searches.own_listings.get(search.listing_id) if search.listing_id else None
        kinds = wanted_kinds(search.kinds, search.side, counterparts_of=own.kind if own else None)
        if kind not in kinds:
            continue
        allowed = searches.visible_to(search.organization_id)
        score = (
            _listing_score(session, index, search, own, listing, kinds, allowed)
            if own is not None
            else _text_score(session, index, search, listing, kinds, allowed)
        )
        if score is not None:
            found.append((search, score))
    return found


def _passes_filters(search: SavedSearch, listing: Listing) -> bool:
    """The filters `POST /search` applies to its results."""
    return all(
        wanted is None or wanted == actual
        for wanted, actual in (
            (search.sector, listing.sector),
            (search.country, listing.country),
            (search.organization_kind, listing.organization.kind),
        )
    )


def _text_score(
    session: Session,
    index: SearchIndex,
    search: SavedSearch,
    listing: Listing,
    kinds: frozenset[ListingKind],
    allowed: IdSet,
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
    allowed: IdSet,
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
