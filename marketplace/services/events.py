"""The audit trail: append-only events in one hash chain per subject (an agreement, a listing).

Each event's hash covers its own fields and the previous event's hash, so editing, reordering or
removing an event breaks every later link. An append first bumps the chain's head row in
`event_chains` (a row lock on PostgreSQL, the write lock on SQLite), so appends to one chain are
serialised and sequence numbers never collide. Webhook deliveries are queued in the same
transaction (the outbox), so a committed event is never lost to a crash.
"""

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from sqlalchemy import tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel, col, select

from marketplace.canonical import sha256_hex
from marketplace.models import Event, EventChain, Listing, MatchAlertJob, Member, utc_now
from marketplace.services import webhooks
from marketplace.services.pagination import decode_cursor, next_cursor
from schemas.events import BrokenLink, EventType, SubjectType

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


@dataclass(frozen=True)
class NewEvent:
    """An event to append to its subject's chain, with the organizations whose webhooks hear it."""

    subject_type: SubjectType
    subject_id: uuid.UUID
    type: EventType
    audience: tuple[uuid.UUID, ...]
    terms_hash: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


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
    new = NewEvent(subject_type, subject_id, type, tuple(audience), terms_hash, data or {})
    return append_many(session, [new], actor=actor)[0]


def append_many(
    session: Session, new_events: Sequence[NewEvent], *, actor: Member | None
) -> list[Event]:
    """Append one event to each of several chains, as `append` does, in a fixed number of
    statements however many there are (a batch of listings published together).

    Raises:
        ValueError: two events are for one subject; their order in its chain would be unclear.
    """
    subjects = [(new.subject_type, new.subject_id) for new in new_events]
    if len(set(subjects)) != len(subjects):
        raise ValueError("append_many takes at most one event per subject")
    if not new_events:
        return []
    _insert_if_absent(
        session,
        EventChain,
        [
            {"subject_type": kind, "subject_id": id, "length": 0, "head_hash": GENESIS_HASH}
            for kind, id in subjects
        ],
    )
    heads = {
        (kind, id): (length, head_hash)
        for kind, id, length, head_hash in session.execute(
            update(EventChain)
            .where(tuple_(col(EventChain.subject_type), col(EventChain.subject_id)).in_(subjects))
            .values(length=col(EventChain.length) + 1)
            .returning(
                col(EventChain.subject_type),
                col(EventChain.subject_id),
                col(EventChain.length),
                col(EventChain.head_hash),
            )
        )
    }
    occurred_at = utc_now()
    appended = []
    for new, subject in zip(new_events, subjects, strict=True):
        sequence, prev_hash = heads[subject]
        event = Event(
            subject_type=new.subject_type,
            subject_id=new.subject_id,
            sequence=sequence,
            type=new.type,
            actor_member_id=actor.id if actor else None,
            organization_id=actor.organization_id if actor else None,
            terms_hash=new.terms_hash,
            data=new.data,
            occurred_at=occurred_at,
            prev_hash=prev_hash,
            hash="",
        )
        event.hash = event_hash(event)
        appended.append(event)
    session.add_all(appended)
    session.execute(
        update(EventChain),
        [
            {"subject_type": kind, "subject_id": id, "head_hash": event.hash}
            for (kind, id), event in zip(subjects, appended, strict=True)
        ],
    )
    webhooks.enqueue(
        session, [(event, new.audience) for event, new in zip(appended, new_events, strict=True)]
    )
    return appended


def _insert_if_absent(session: Session, table: type[SQLModel], rows: list[dict[str, Any]]) -> None:
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(insert(table).values(rows).on_conflict_do_nothing())


def listings_published(session: Session, *, listings: Sequence[Listing], actor: Member) -> None:
    """Record `listing.published` for listings that have just become published, and queue their
    `match.new` alerts for the background worker (services/match_alerts.py); the caller commits."""
    appended = append_many(
        session,
        [
            NewEvent(
                subject_type=SubjectType.LISTING,
                subject_id=listing.id,
                type=EventType.LISTING_PUBLISHED,
                audience=(listing.organization_id,),
                data={"listing_id": str(listing.id), "kind": str(listing.kind)},
            )
            for listing in listings
        ],
        actor=actor,
    )
    if appended:
        # A listing published again before its alerts were raised keeps its one pending job.
        _insert_if_absent(
            session,
            MatchAlertJob,
            [
                {"listing_id": listing.id, "event_id": event.id}
                for listing, event in zip(listings, appended, strict=True)
            ],
        )


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
