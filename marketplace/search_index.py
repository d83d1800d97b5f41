"""The process's matcher, kept in step with the database, which stays the source of truth.

On start the state is loaded from a snapshot in the data directory when one of the same model is
there (then the changes after its sequence floor are applied), and otherwise built from the stored
embeddings (nothing is re-embedded unless the model changed or a listing has none). Afterwards a
background thread applies the change sequence (`index_changes`), so every worker over one
PostgreSQL converges within a poll interval.

Only published listings are indexed; who may see which is decided per query from the visibility
kept here (public, registered, or private to one organization).
"""

import logging
import os
import pickle
import tempfile
import threading
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from marketplace.listing_facts import listing_facts
from marketplace.models import IndexChange, Listing, ListingEmbedding, utc_now
from marketplace.services import embeddings
from matching.embedding import Embedder
from matching.index import VectorIndex
from matching.ranking import Matcher, MatcherState
from schemas.listings import ListingStatus, Visibility

log = logging.getLogger(__name__)

# A change row may commit after rows with higher numbers; wait this long for such gaps to fill.
_GAP_PATIENCE = timedelta(seconds=30)
_BATCH = 2_000
_SNAPSHOT_FORMAT = 1


@dataclass(frozen=True, slots=True)
class IndexedListing:
    id: uuid.UUID
    organization_id: uuid.UUID
    visibility: Visibility


@dataclass(frozen=True)
class OpenReport:
    listings: int
    embedded: int
    seconds: float
    from_snapshot: bool = False


class SearchIndex:
    def __init__(
        self, engine: Engine, embedder: Embedder, *, path: Path, poll_seconds: float = 0.25
    ) -> None:
        self.engine = engine
        self.path = path
        self.poll_seconds = poll_seconds
        self._embedder = embedder
        self._clear()
        self._sync_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _clear(self) -> None:
        self.matcher = Matcher(self._embedder)
        self._listings: dict[int, IndexedListing] = {}
        self._by_uuid: dict[uuid.UUID, int] = {}
        self._public: set[int] = set()
        self._registered: set[int] = set()
        self._private: dict[uuid.UUID, set[int]] = defaultdict(set)
        self._floor = 0  # every change with seq <= floor is applied
        self._seen: dict[int, datetime] = {}  # applied seqs above the floor -> when applied

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def snapshot_path(self) -> Path:
        """The snapshot of everything but the vectors, next to the vector index file."""
        return self.path.with_name(self.path.stem + ".snapshot")

    def open(self) -> OpenReport:
        """Load the snapshot and apply the changes since, or build from the database."""
        started = utc_now()
        if self._restore():
            self.sync()
            seconds = (utc_now() - started).total_seconds()
            return OpenReport(len(self), 0, seconds, from_snapshot=True)
        self._clear()
        return self._build(started)

    def reload(self) -> OpenReport:
        """Forget everything and build again from the database, ignoring any snapshot."""
        with self._sync_lock:
            self._clear()
            return self._build(utc_now())

    def _build(self, started: datetime) -> OpenReport:
        """Build the index from the database, embedding only listings that lack a vector."""
        with Session(self.engine) as session:
            self._floor = session.exec(select(func.max(IndexChange.seq))).one() or 0
            embedded = self._embed_missing(session)
            total = self._load_all(session)
        return OpenReport(total, embedded, (utc_now() - started).total_seconds())

    def start(self) -> None:
        """Follow the change sequence in a background thread."""
        self._thread = threading.Thread(target=self._follow, name="search-index", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.save()

    def save(self) -> None:
        """Persist the vector index and the snapshot (caches: deleting them costs a rebuild).

        The snapshot is a pickle of the lexical index, the facts, the visibility maps, the
        change-sequence floor and the model name. Unpickling runs code, so the data directory
        must be trusted like the SQLite file beside it: whoever can write there can already
        change the database.
        """
        with self._sync_lock:
            token = uuid.uuid4().hex  # ties the snapshot to this very vector index file
            model = self.matcher.embedder.model_name
            self.matcher.index.metadata.update(
                {"model": model, "seq": str(self._floor), "snapshot": token}
            )
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.matcher.index.save(self.path)
            entries = list(self._listings.items())
            state = {
                "format": _SNAPSHOT_FORMAT,
                "token": token,
                "model": model,
                "dimension": self.matcher.embedder.dimension,
                "floor": self._floor,
                "matcher": self.matcher.state(),
                # Plain columns rather than 100k small objects: several times faster to load.
                "row_ids": [row_id for row_id, _ in entries],
                "ids": b"".join(entry.id.bytes for _, entry in entries),
                "organizations": [entry.organization_id.bytes for _, entry in entries],
                "visibility": [entry.visibility.value for _, entry in entries],
            }
            _write_atomically(self.snapshot_path, pickle.dumps(state, pickle.HIGHEST_PROTOCOL))

    def _restore(self) -> bool:
        """Load the saved state when it is present, intact, of this model and this database."""
        if not (self.path.exists() and self.snapshot_path.exists()):
            return False
        try:
            state = pickle.loads(self.snapshot_path.read_bytes())
            model = self.matcher.embedder.model_name
            if not isinstance(state, dict) or state.get("format") != _SNAPSHOT_FORMAT:
                raise ValueError("not a snapshot of this format")
            if state["model"] != model or state["dimension"] != self.matcher.embedder.dimension:
                raise ValueError(f"snapshot of model {state['model']!r}, not {model!r}")
            vectors = VectorIndex.load(self.path)
            if vectors.metadata.get("snapshot") != state["token"]:
                raise ValueError("the vector index was not saved with this snapshot")
            with Session(self.engine) as session:
                head = session.exec(select(func.coalesce(func.max(IndexChange.seq), 0))).one()
            if state["floor"] > head:
                raise ValueError("snapshot newer than the database's change sequence")
            matcher_state = state["matcher"]
            if not isinstance(matcher_state, MatcherState):
                raise ValueError("no matcher state")
            matcher = Matcher.from_state(self._embedder, vectors, matcher_state)
            self._clear()
            self.matcher = matcher
            self._restore_listings(state)
            self._floor = int(state["floor"])
        except Exception:  # any unreadable or foreign snapshot: rebuild, never fail to start
            log.warning(
                "index snapshot at %s not usable; rebuilding", self.snapshot_path, exc_info=True
            )
            self._clear()
            return False
        return True

    def _restore_listings(self, state: dict[str, object]) -> None:
        row_ids, ids = state["row_ids"], state["ids"]
        organizations, visibilities = state["organizations"], state["visibility"]
        assert isinstance(row_ids, list) and isinstance(ids, bytes)
        assert isinstance(organizations, list) and isinstance(visibilities, list)
        if not len(row_ids) == len(organizations) == len(visibilities) == len(ids) // 16:
            raise ValueError("snapshot columns disagree")
        if len(row_ids) != len(self.matcher):
            raise ValueError("snapshot listings and matcher disagree")
        orgs: dict[bytes, uuid.UUID] = {}
        kinds = {v.value: v for v in Visibility}
        for position, (row_id, org, value) in enumerate(
            zip(row_ids, organizations, visibilities, strict=True)
        ):
            listing_id = uuid.UUID(bytes=ids[16 * position : 16 * position + 16])
            organization = orgs.get(org) or orgs.setdefault(org, uuid.UUID(bytes=org))
            visibility = kinds[value]
            self._listings[row_id] = IndexedListing(listing_id, organization, visibility)
            self._by_uuid[listing_id] = row_id
            self._audience(row_id, visibility, organization).add(row_id)

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.sync()
            except Exception:  # the next poll retries; a dead follower would go stale silently
                log.exception("applying index changes failed")

    # -- building -----------------------------------------------------------------------------

    def _embed_missing(self, session: Session) -> int:
        """Embed published listings without a vector of the current model, in batches."""
        model = self.matcher.embedder.model_name
        current = select(ListingEmbedding.listing_row_id).where(
            ListingEmbedding.model_name == model
        )
        missing = select(Listing).where(
            Listing.status == ListingStatus.PUBLISHED, col(Listing.row_id).not_in(current)
        )
        done = 0
        while batch := list(session.exec(missing.limit(256)).unique()):
            embeddings.refresh(session, batch, embedder=self.matcher.embedder)
            session.commit()
            done += len(batch)
        return done

    def _load_all(self, session: Session) -> int:
        query = (
            select(Listing, ListingEmbedding)
            .join(ListingEmbedding)
            .where(Listing.status == ListingStatus.PUBLISHED)
            .order_by(col(Listing.row_id))
        )
        after = 0
        while rows := list(session.exec(query.where(col(Listing.row_id) > after).limit(_BATCH))):
            self._put(rows)
            after = rows[-1][0].row_id or after
        return len(self._listings)

    # -- following changes --------------------------------------------------------------------

    def sync(self) -> int:
        """Apply changes committed since the last call; returns how many listings were touched."""
        with self._sync_lock, Session(self.engine) as session:
            changes = list(
                session.exec(
                    select(IndexChange)
                    .where(col(IndexChange.seq) > self._floor)
                    .order_by(col(IndexChange.seq))
                )
            )
            fresh = [c for c in changes if c.seq not in self._seen]
            row_ids = sorted({c.listing_row_id for c in fresh})
            for start in range(0, len(row_ids), _BATCH):
                self._apply(session, row_ids[start : start + _BATCH])
            now = utc_now()
            for change in fresh:
                self._seen[change.seq or 0] = now
            self._advance_floor(now)
            return len(row_ids)

    def _apply(self, session: Session, row_ids: Sequence[int]) -> None:
        rows = list(
            session.exec(
                select(Listing, ListingEmbedding)
                .join(ListingEmbedding)
                .where(
                    col(Listing.row_id).in_(row_ids),
                    Listing.status == ListingStatus.PUBLISHED,
                    ListingEmbedding.model_name == self.matcher.embedder.model_name,
                )
            )
        )
        present = {listing.row_id for listing, _ in rows}
        self._drop([row_id for row_id in row_ids if row_id not in present])
        self._put(rows)

    def _advance_floor(self, now: datetime) -> None:
        """Move the floor over applied seqs, and over gaps older than the patience."""
        for seq in sorted(self._seen):
            # A gap older than the patience belongs to a transaction that rolled back.
            if seq != self._floor + 1 and now - self._seen[seq] <= _GAP_PATIENCE:
                break
            self._floor = seq
            del self._seen[seq]

    # -- the in-memory state ------------------------------------------------------------------

    def _put(self, rows: Sequence[tuple[Listing, ListingEmbedding]]) -> None:
        if not rows:
            return
        self._drop([listing.row_id for listing, _ in rows if listing.row_id in self._listings])
        facts = [listing_facts(listing) for listing, _ in rows]
        vectors = [embeddings.as_vector(embedding) for _, embedding in rows]
        self.matcher.upsert_many(facts, vectors)
        for listing, _ in rows:
            row_id = listing.row_id or 0
            visibility = Visibility(listing.visibility)
            self._listings[row_id] = IndexedListing(listing.id, listing.organization_id, visibility)
            self._by_uuid[listing.id] = row_id
            self._audience(row_id, visibility, listing.organization_id).add(row_id)

    def _drop(self, row_ids: Sequence[int]) -> None:
        held = [row_id for row_id in row_ids if row_id in self._listings]
        self.matcher.remove(held)
        for row_id in held:
            entry = self._listings.pop(row_id)
            self._by_uuid.pop(entry.id, None)
            self._audience(row_id, entry.visibility, entry.organization_id).discard(row_id)

    def _audience(self, row_id: int, visibility: Visibility, org: uuid.UUID) -> set[int]:
        if visibility == Visibility.PUBLIC:
            return self._public
        if visibility == Visibility.REGISTERED:
            return self._registered
        return self._private[org]

    # -- queries ------------------------------------------------------------------------------

    def visible_ids(self, organization_id: uuid.UUID | None) -> set[int]:
        """Indexed listings a caller may see: anonymous callers public ones only."""
        if organization_id is None:
            return self._public
        return self._public | self._registered | self._private.get(organization_id, set())

    def listing(self, row_id: int) -> IndexedListing | None:
        return self._listings.get(row_id)

    def __len__(self) -> int:
        return len(self._listings)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write next to the target, flush to disk, rename over it: the old file or the new one."""
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
