"""The event chain: hash links per subject, atomic with its outbox rows, serialised appends."""

import threading
import uuid

import pytest
from pydantic import TypeAdapter
from sqlalchemy import Engine, func, update
from sqlmodel import Session, col, select

from marketplace.models import Event, EventChain, MatchAlertJob, Member, WebhookDelivery
from marketplace.services import events, listings, webhooks
from matching.embedding import Embedder
from schemas.events import EventType, SubjectType
from schemas.listings import ListingCreate, ListingUpdate
from schemas.webhooks import WebhookEndpointCreate
from tests.factories import listing_body, owner_of_new_organization

AGREEMENT = SubjectType.AGREEMENT


@pytest.fixture
def owner(engine: Engine) -> Member:
    """An organization's owner, with an endpoint subscribed to two event types."""
    member = owner_of_new_organization(engine, "Chain Test Lab")
    with Session(engine, expire_on_commit=False) as session:
        webhooks.create(
            session,
            actor=member,
            data=WebhookEndpointCreate(
                url="http://127.0.0.1:9/hooks",  # type: ignore[arg-type]
                event_types=[EventType.AGREEMENT_COMMENTED, EventType.LISTING_PUBLISHED],
            ),
            allow_private=True,
        )
    return member


def append(session: Session, subject_id: uuid.UUID, owner: Member, n: int = 0) -> Event:
    return events.append(
        session,
        subject_type=AGREEMENT,
        subject_id=subject_id,
        type=EventType.AGREEMENT_COMMENTED,
        audience=[owner.organization_id],
        actor=owner,
        data={"body": f"comment {n}"},
    )


def chain(engine: Engine, subject_id: uuid.UUID) -> list[Event]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(Event).where(Event.subject_id == subject_id).order_by(col(Event.sequence))
            )
        )


def rows(engine: Engine, table: type[object]) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(table)).one()


class TestAppend:
    def test_events_link_by_hash_from_a_zero_genesis(self, engine: Engine, owner: Member) -> None:
        subject = uuid.uuid4()
        with Session(engine) as session:
            for n in range(3):
                append(session, subject, owner, n)
            session.commit()

        stored = chain(engine, subject)

        assert [e.sequence for e in stored] == [1, 2, 3]
        assert stored[0].prev_hash == events.GENESIS_HASH
        assert [e.prev_hash for e in stored[1:]] == [e.hash for e in stored[:-1]]
        assert all(events.event_hash(e) == e.hash for e in stored)
        with Session(engine) as session:
            assert events.verify_chain(session, subject_type=AGREEMENT, subject_id=subject) == (
                3,
                None,
            )

    def test_each_subject_has_its_own_chain(self, engine: Engine, owner: Member) -> None:
        first, second = uuid.uuid4(), uuid.uuid4()
        with Session(engine) as session:
            for subject in (first, second, first, second, first):
                append(session, subject, owner)
            session.commit()

        assert [e.sequence for e in chain(engine, first)] == [1, 2, 3]
        assert [e.sequence for e in chain(engine, second)] == [1, 2]

    def test_the_outbox_row_commits_with_its_event(self, engine: Engine, owner: Member) -> None:
        subject = uuid.uuid4()
        with Session(engine) as session:
            event = append(session, subject, owner)
            session.commit()
            (delivery,) = session.exec(select(WebhookDelivery)).all()

        assert delivery.event_id == event.id
        assert delivery.status == "pending"
        assert delivery.next_attempt_at == event.occurred_at

    def test_a_rolled_back_append_leaves_no_trace(self, engine: Engine, owner: Member) -> None:
        subject = uuid.uuid4()
        with Session(engine) as session:
            append(session, subject, owner)
            session.rollback()

        assert rows(engine, Event) == rows(engine, EventChain) == rows(engine, WebhookDelivery) == 0

    def test_a_reordered_chain_fails_verification(self, engine: Engine, owner: Member) -> None:
        subject = uuid.uuid4()
        with Session(engine) as session:
            for n in range(3):
                append(session, subject, owner, n)
            session.commit()
        first, second = (e.id for e in chain(engine, subject)[:2])
        with engine.begin() as connection:  # swap the first two events' places
            for event_id, sequence in ((first, 100), (second, 1), (first, 2)):
                connection.execute(
                    update(Event).where(col(Event.id) == event_id).values(sequence=sequence)
                )

        with Session(engine) as session:
            _, broken = events.verify_chain(session, subject_type=AGREEMENT, subject_id=subject)

        assert broken is not None
        assert broken.sequence == 1

    def test_append_many_extends_new_and_existing_chains(
        self, engine: Engine, owner: Member
    ) -> None:
        existing, fresh = uuid.uuid4(), uuid.uuid4()
        with Session(engine) as session:
            append(session, existing, owner)
            session.commit()
            batch = [
                events.NewEvent(
                    subject_type=AGREEMENT,
                    subject_id=subject,
                    type=EventType.AGREEMENT_COMMENTED,
                    audience=(owner.organization_id,),
                    data={"body": "batched"},
                )
                for subject in (existing, fresh)
            ]
            appended = events.append_many(session, batch, actor=owner)
            session.commit()
            deliveries = session.exec(select(WebhookDelivery)).all()

            for subject, length in ((existing, 2), (fresh, 1)):
                assert events.verify_chain(session, subject_type=AGREEMENT, subject_id=subject) == (
                    length,
                    None,
                )
        assert [e.sequence for e in appended] == [2, 1]
        assert appended[0].prev_hash == chain(engine, existing)[0].hash
        assert sorted(d.event_id for d in deliveries) == sorted(
            [chain(engine, existing)[0].id, *(e.id for e in appended)]
        )

    def test_append_many_takes_one_event_per_subject(self, engine: Engine, owner: Member) -> None:
        subject = uuid.uuid4()
        twice = [
            events.NewEvent(AGREEMENT, subject, EventType.AGREEMENT_COMMENTED, ()) for _ in range(2)
        ]
        with Session(engine) as session, pytest.raises(ValueError, match="one event per subject"):
            events.append_many(session, twice, actor=owner)

        assert rows(engine, Event) == rows(engine, EventChain) == 0

    def test_deliveries_go_only_to_each_events_audience(
        self, engine: Engine, owner: Member
    ) -> None:
        outsider = uuid.uuid4()
        with Session(engine) as session:
            heard, _ = events.append_many(
                session,
                [
                    events.NewEvent(
                        AGREEMENT,
                        uuid.uuid4(),
                        EventType.AGREEMENT_COMMENTED,
                        (owner.organization_id,),
                    ),
                    events.NewEvent(
                        AGREEMENT, uuid.uuid4(), EventType.AGREEMENT_COMMENTED, (outsider,)
                    ),
                ],
                actor=owner,
            )
            session.commit()
            deliveries = session.exec(select(WebhookDelivery)).all()

        assert [d.event_id for d in deliveries] == [heard.id]

    @pytest.mark.parametrize(
        "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
    )
    def test_concurrent_appends_to_one_chain_stay_contiguous(
        self, engine: Engine, owner: Member
    ) -> None:
        subject = uuid.uuid4()
        barrier = threading.Barrier(6)

        def writer() -> None:
            barrier.wait()
            for n in range(5):
                with Session(engine) as session:
                    append(session, subject, owner, n)
                    session.commit()

        threads = [threading.Thread(target=writer) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert [e.sequence for e in chain(engine, subject)] == list(range(1, 31))
        with Session(engine) as session:
            assert events.verify_chain(session, subject_type=AGREEMENT, subject_id=subject) == (
                30,
                None,
            )


class TestListingPublished:
    def test_fires_when_a_listing_is_created_published_or_becomes_published(
        self, engine: Engine, owner: Member, embedder: Embedder
    ) -> None:
        parse = TypeAdapter(ListingCreate).validate_python
        with Session(engine, expire_on_commit=False) as session:
            published = listings.create(
                session, actor=owner, data=parse(listing_body("dataset")), embedder=embedder
            )
            draft = listings.create(
                session,
                actor=owner,
                data=parse(listing_body("model", status="draft")),
                embedder=embedder,
            )
            draft = listings.update(
                session,
                actor=owner,
                listing_id=draft.id,
                data=ListingUpdate(status="published"),  # type: ignore[arg-type]
                expected_version=draft.version,
                embedder=embedder,
            )
            listings.update(
                session,
                actor=owner,
                listing_id=draft.id,
                data=ListingUpdate(title="Still published, retitled"),
                expected_version=draft.version,
                embedder=embedder,
            )

        fired = [
            (e.subject_id, e.type) for e in chain(engine, published.id) + chain(engine, draft.id)
        ]
        assert fired == [
            (published.id, "listing.published"),
            (draft.id, "listing.published"),
        ]
        assert rows(engine, WebhookDelivery) == 2

    def test_a_batch_records_each_listing_published_in_it(
        self, engine: Engine, owner: Member, embedder: Embedder
    ) -> None:
        parse = TypeAdapter(ListingCreate).validate_python
        bodies = [listing_body("dataset"), listing_body("model", status="draft")]
        bodies.append(listing_body("compute"))
        with Session(engine, expire_on_commit=False) as session:
            created = listings.create_many(
                session, actor=owner, items=[parse(b) for b in bodies], embedder=embedder
            )
            listings.update(
                session,
                actor=owner,
                listing_id=created[0].id,
                data=ListingUpdate(status="published"),  # type: ignore[arg-type]
                expected_version=created[0].version,
                embedder=embedder,
            )
            jobs = session.exec(select(MatchAlertJob)).all()
            checked = [
                events.verify_chain(
                    session, subject_type=SubjectType.LISTING, subject_id=listing.id
                )
                for listing in created
            ]

        assert [len(chain(engine, listing.id)) for listing in created] == [1, 0, 1]
        assert checked == [(1, None), (0, None), (1, None)]
        assert sorted(job.listing_id for job in jobs) == sorted([created[0].id, created[2].id])
        assert rows(engine, WebhookDelivery) == 2
