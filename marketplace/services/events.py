"""The audit trail: append-only events in one hash chain per subject (an agreement, a listing).

Each event's hash covers its own fields and the previous event's hash, so editing, reordering or
removing an event breaks every later link. An append first bumps the chain's head row in
`event_chains` (a row lock on PostgreSQL, the write lock on SQLite), so appends to one chain are
serialised and sequence numbers never collide. Webhook deliveries are queued in the same
transaction (the outbox), so a committed event is never lost to a crash.
"""

import uuid
from collections.abc import Iterable
from datetime import UTC
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel, col, select

from marketplace.canonical import sha256_hex
from marketplace.models import Event, EventChain, Listing, MatchAlertJob, Member, utc_now
from marketplace.services import webhooks
from marketplace.services.pagination import decode_cursor, next_cursor
from schemas.events import BrokenLink, EventType, SubjectType
from schemas.listings import ListingStatus

GENESIS_HASH = "0" * 64


def event_hash(event: Event) -> str:
    """SHA-256 over the canonical JSON of the event's fields, `prev_hash` included."""
    return sha256_hex(
        {
            "id": str(event.id),
            "subject_type": event.subject_type,
            "subject_id": str(event.subject_id),
            "sequence": event.sequence,
            "type": event.type,
            "actor_member_id": _text(event.actor_member_id),
            "organization_id": _text(event.organization_id),
            "terms_hash": event.terms_hash,
            "data": event.data,
            "occurred_at": event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
            "prev_hash": event.prev_hash,
        }
    )


def _text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def append(
    session: Session,
    *,
    subject_type: SubjectType,
    subject_id: uuid.UUID,
    type: EventType,
    audience: Iterable[uuid.UUID],
    actor: Member | None = None,
    terms_hash: str | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    """Append an event to its subject's chain and queue deliveries to the audience's webhooks.

    `actor` None means the platform acted (a deadline passed). The caller commits.
    """
    chain = (col(EventChain.subject_type) == subject_type) & (
        col(EventChain.subject_id) == subject_id
    )
    _insert_if_absent(
        session,
        EventChain,
        subject_type=subject_type,
        subject_id=subject_id,
        length=0,
        head_hash=GENESIS_HASH,
    )
    sequence, prev_hash = session.execute(
        update(EventChain)
        .where(chain)
        .values(length=col(EventChain.length) + 1)
        .returning(col(EventChain.length), col(EventChain.head_hash))
    ).one()
    event = Event(
        subject_type=subject_type,
        subject_id=subject_id,
        sequence=sequence,
        type=type,
        actor_member_id=actor.id if actor else None,
        organization_id=actor.organization_id if actor else None,
        terms_hash=terms_hash,
        data=data or {},
        occurred_at=utc_now(),
        prev_hash=prev_hash,
        hash="",
    )
    event.hash = event_hash(event)
    session.add(event)
    session.execute(update(EventChain).where(chain).values(head_hash=event.hash))
    webhooks.enqueue(session, event=event, organization_ids=audience)
    return event


def _insert_if_absent(session: Session, table: type[SQLModel], **values: Any) -> None:
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(insert(table).values(**values).on_conflict_do_nothing())


def listing_status_changed(
    session: Session, *, listing: Listing, actor: Member, before: str | None, after: str
) -> None:
    """Record `listing.published` when a listing becomes published, and queue its `match.new`
    alerts for the background worker (services/match_alerts.py); the caller commits."""
    if after != ListingStatus.PUBLISHED or before == ListingStatus.PUBLISHED:
        return
    event = append(
        session,
        subject_type=SubjectType.LISTING,
        subject_id=listing.id,
        type=EventType.LISTING_PUBLISHED,
        audience=[listing.organization_id],
        actor=actor,
        data={"listing_id": str(listing.id), "kind": str(listing.kind)},
    )
    # A listing published again before its alerts were raised keeps its one pending job.
    _insert_if_absent(session, MatchAlertJob, listing_id=listing.id, event_id=event.id)


def chain_of(
    session: Session,
    *,
    subject_type: SubjectType,
    subject_id: uuid.UUID,
    limit: int,
    cursor: str | None,
) -> tuple[list[Event], str | None]:
    """A subject's events in chain order."""
    query = select(Event).where(Event.subject_type == subject_type, Event.subject_id == subject_id)
    after = decode_cursor(cursor, int)
    if after is not None:
        query = query.where(col(Event.sequence) > after)
    rows = list(session.exec(query.order_by(col(Event.sequence)).limit(limit + 1)))
    return rows[:limit], next_cursor([e.sequence for e in rows], limit, len(rows))


def verify_chain(
    session: Session, *, subject_type: SubjectType, subject_id: uuid.UUID
) -> tuple[int, BrokenLink | None]:
    """Recompute a subject's chain; returns how many events were checked and the first break."""
    events = session.exec(
        select(Event)
        .where(Event.subject_type == subject_type, Event.subject_id == subject_id)
        .order_by(col(Event.sequence))
    ).all()
    prev_hash = GENESIS_HASH
    for position, event in enumerate(events, start=1):
        reason = None
        if event.sequence != position:
            reason = f"expected sequence {position}: events are missing before this one"
        elif event.prev_hash != prev_hash:
            reason = "does not link to the hash of the event before it"
        elif event_hash(event) != event.hash:
            reason = "its contents do not match its hash"
        if reason is not None:
            return position, BrokenLink(sequence=event.sequence, event_id=event.id, reason=reason)
        prev_hash = event.hash
    head = session.get(EventChain, (subject_type, subject_id))
    if head is not None and (head.length != len(events) or head.head_hash != prev_hash):
        return len(events), BrokenLink(
            sequence=len(events) + 1,
            event_id=None,
            reason=f"the chain head records {head.length} events; {len(events)} remain",
        )
    return len(events), None
