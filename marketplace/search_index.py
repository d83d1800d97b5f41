"""The process's matcher, kept in step with the database, which stays the source of truth.

On start the state is loaded from a snapshot in the data directory when one of the same model is
there (then the changes after its sequence floor are applied), and otherwise built from the stored
embeddings (nothing is re-embedded unless the model changed or a listing has none). Afterwards a
background thread applies the change sequence (`index_changes`), so every worker over one
PostgreSQL converges within a poll interval. Another counts again how many organizations, other
than its own, name each listing (the prominence that ranking blends in, `matching.mentions`) once
enough has changed: a pass over every listing, so it lags behind writes rather than delaying them.

Only published listings are indexed; who may see which is decided per query from the visibility
kept here (public, registered, or private to one organization).
"""

import logging
import pickle
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, func
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from marketplace.listing_facts import listing_facts
from marketplace.models import IndexChange, Listing, ListingEmbedding, utc_now
from marketplace.services import embeddings
from marketplace.settings import Settings
from matching.arrays import grown
from matching.atomic_file import atomic_file
from matching.embedding import Embedder
from matching.id_set import IdSet
from matching.index import IndexKind
from matching.partitioned_index import PartitionedIndex
from matching.ranking import Matcher, MatcherState
from schemas.listings import ListingStatus, Visibility

log = logging.getLogger(__name__)

# A change row may commit after rows with higher numbers; wait this long for such gaps to fill.
_GAP_PATIENCE = timedelta(seconds=30)
_BATCH = 2_000
_SNAPSHOT_FORMAT = 7
# The index needs each listing's vector, never its sentence vectors (read per shown match).
_WITHOUT_SENTENCES = defer(ListingEmbedding.sentence_vectors)  # type: ignore[arg-type]
_VISIBILITIES = (Visibility.PUBLIC, Visibility.REGISTERED, Visibility.PRIVATE)
_VISIBILITY_CODE = {visibility: code for code, visibility in enumerate(_VISIBILITIES)}


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
        self,
        engine: Engine,
        embedder: Embedder,
        *,
        path: Path,
        poll_seconds: float = 0.25,
        index_kind: IndexKind = "flat",
        recount_seconds: float = 30.0,
    ) -> None:
        self.engine = engine
        self.path = path
        self.poll_seconds = poll_seconds
        self.recount_seconds = recount_seconds
        self.index_kind: IndexKind = index_kind
        self._embedder = embedder
        self._clear()
        self._sync_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @classmethod
    def configured(cls, engine: Engine, embedder: Embedder, settings: Settings) -> "SearchIndex":
        """The index as the settings describe it (file, poll interval, vector index kind)."""
        return cls(
            engine,
            embedder,
            path=settings.index_path,
            poll_seconds=settings.index_poll_seconds,
            index_kind=settings.index_kind,
        )

    def _clear(self) -> None:
        self.matcher = Matcher(self._embedder, index_kind=self.index_kind)
        self._audiences = _Audiences()
        self._floor = 0  # every change with seq <= floor is applied
        self._seen: dict[int, datetime] = {}  # applied seqs above the floor -> when applied

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def snapshot_path(self) -> Path:
        """The snapshot of everything but the vectors, next to the vector index file."""
        return self.path.with_name(self.path.stem + ".snapshot")

    def open(self) -> OpenReport:
        """Load the snapshot and apply the changes since, or build from the database and save."""
        started = utc_now()
        if self._restore():
            self.sync()
            seconds = (utc_now() - started).total_seconds()
            return OpenReport(len(self), 0, seconds, from_snapshot=True)
        self._clear()
        report = self._build(started)
        self.save()  # at once: a crash must not cost another build (~20 minutes at 1M listings)
        return report

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
        self.recount_mentions()
        return OpenReport(total, embedded, (utc_now() - started).total_seconds())

    def start(self) -> None:
        """Follow the change sequence, and count mentions again when due, in background threads."""
        self._threads = [
            threading.Thread(target=self._follow, name="search-index", daemon=True),
            threading.Thread(target=self._recount, name="search-index-mentions", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self.save()

    def save(self) -> None:
        """Persist the vector index and the snapshot (caches: deleting them costs a rebuild).

        The snapshot is a pickle of the visibility maps, the change-sequence floor and the
        model name, followed by the matcher's state (`MatcherState.write`: the facts, and the
        lexical index with its postings as raw arrays). Unpickling runs code, so the data directory
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
            state = {
                "format": _SNAPSHOT_FORMAT,
                "token": token,
                "model": model,
                "dimension": self.matcher.index.dimension,
                "floor": self._floor,
                "audiences": self._audiences,
            }
            with atomic_file(self.snapshot_path) as file:
                pickle.dump(state, file, pickle.HIGHEST_PROTOCOL)
                self.matcher.state().write(file)

    def _restore(self) -> bool:
        """Load the saved state when it is present, intact, of this model and this database."""
        if not (self.path.exists() and self.snapshot_path.exists()):
            return False
        try:
            with self.snapshot_path.open("rb") as file:  # streamed: never the file and its
                state = pickle.load(file)  # objects in memory at once (1.7 GB at 1M listings)
                if not isinstance(state, dict) or state.get("format") != _SNAPSHOT_FORMAT:
                    raise ValueError("not a snapshot of this format")
                matcher_state = MatcherState.read(file)
            model = self.matcher.embedder.model_name
            if state["model"] != model:
                raise ValueError(f"snapshot of model {state['model']!r}, not {model!r}")
            vectors = PartitionedIndex.load(self.path)
            if vectors.dimension != state["dimension"]:
                raise ValueError(
                    f"vectors of dimension {vectors.dimension}, not {state['dimension']}"
                )
            if vectors.kind != self.index_kind:
                raise ValueError(f"a {vectors.kind} index, configured {self.index_kind}")
            if vectors.metadata.get("snapshot") != state["token"]:
                raise ValueError("the vector index was not saved with this snapshot")
            with Session(self.engine) as session:
                head = session.exec(select(func.coalesce(func.max(IndexChange.seq), 0))).one()
            if state["floor"] > head:
                raise ValueError("snapshot newer than the database's change sequence")
            audiences = state["audiences"]
            if not isinstance(audiences, _Audiences) or len(audiences) != len(matcher_state.facts):
                raise ValueError("snapshot listings and matcher disagree")
            matcher = Matcher.from_state(self._embedder, vectors, matcher_state)
            self._clear()
            self.matcher = matcher
            self._audiences = audiences
            self._floor = int(state["floor"])
        except Exception:  # any unreadable or foreign snapshot: rebuild, never fail to start
            log.warning(
                "index snapshot at %s not usable; rebuilding", self.snapshot_path, exc_info=True
            )
            self._clear()
            return False
        return True

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.sync()
            except Exception:  # the next poll retries; a dead follower would go stale silently
                log.exception("applying index changes failed")

    def recount_mentions(self) -> None:
        """Count how many organizations, other than its own, name each listing."""
        matcher, audiences = self.matcher, self._audiences  # a reload may replace them
        matcher.recount_mentions(audiences.organizations_of)

    def _recount(self) -> None:
        while not self._stop.wait(self.recount_seconds):
            try:
                if self.matcher.mentions_due:
                    self.recount_mentions()
            except Exception:  # counted again at the next poll; ranking keeps the last counts
                log.exception("counting mentions failed")

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
            .options(_WITHOUT_SENTENCES)
            .where(Listing.status == ListingStatus.PUBLISHED)
            .order_by(col(Listing.row_id))
        )
        after = 0
        while rows := list(session.exec(query.where(col(Listing.row_id) > after).limit(_BATCH))):
            self._put(rows)
            after = rows[-1][0].row_id or after
        return len(self)

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
                .options(_WITHOUT_SENTENCES)
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
        facts = [listing_facts(listing) for listing, _ in rows]
        vectors = [embeddings.as_vector(embedding) for _, embedding in rows]
        self.matcher.upsert_many(facts, vectors)
        for listing, _ in rows:
            self._audiences.put(
                listing.row_id or 0,
                IndexedListing(listing.id, listing.organization_id, Visibility(listing.visibility)),
            )

    def _drop(self, row_ids: Sequence[int]) -> None:
        held = [row_id for row_id in row_ids if row_id in self._audiences]
        self.matcher.remove(held)
        for row_id in held:
            self._audiences.drop(row_id)

    # -- queries ------------------------------------------------------------------------------

    def visible_ids(self, organization_id: uuid.UUID | None) -> IdSet:
        """Indexed listings a caller may see: anonymous callers public ones only."""
        return self._audiences.visible_to(organization_id)

    def listing(self, row_id: int) -> IndexedListing | None:
        return self._audiences.get(row_id)

    def __len__(self) -> int:
        return len(self._audiences)


class _Audiences:
    """Who may see each indexed listing, in arrays indexed by row id (cheap to pickle and query).

    A private listing is visible to its organization only, a registered one to every member of
    any organization, a public one to everyone.
    """

    _ABSENT = -1

    def __init__(self) -> None:
        self._visibility = np.full(0, self._ABSENT, dtype=np.int8)
        self._organization = np.zeros(0, dtype=np.int32)
        self._uuid = np.zeros((0, 16), dtype=np.uint8)
        self._organizations: list[uuid.UUID] = []
        self._organization_code: dict[uuid.UUID, int] = {}

    def __len__(self) -> int:
        return int(np.count_nonzero(self._visibility != self._ABSENT))

    def __contains__(self, row_id: int) -> bool:
        return 0 <= row_id < self._visibility.size and self._visibility[row_id] != self._ABSENT

    def put(self, row_id: int, entry: IndexedListing) -> None:
        self._visibility = grown(self._visibility, row_id + 1, self._ABSENT)
        self._organization = grown(self._organization, self._visibility.size)
        self._uuid = grown(self._uuid, self._visibility.size)
        self._visibility[row_id] = _VISIBILITY_CODE[entry.visibility]
        self._organization[row_id] = self._code(entry.organization_id)
        self._uuid[row_id] = np.frombuffer(entry.id.bytes, dtype=np.uint8)

    def drop(self, row_id: int) -> None:
        if 0 <= row_id < self._visibility.size:
            self._visibility[row_id] = self._ABSENT

    def get(self, row_id: int) -> IndexedListing | None:
        if row_id not in self:
            return None
        code = int(self._visibility[row_id])
        return IndexedListing(
            uuid.UUID(bytes=self._uuid[row_id].tobytes()),
            self._organizations[int(self._organization[row_id])],
            _VISIBILITIES[code],
        )

    def organizations_of(self, row_ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """The organizations of listings by row id, as codes; rows not held share one code."""
        held = row_ids < self._organization.size
        codes = np.full(row_ids.size, len(self._organizations), dtype=np.int64)
        codes[held] = self._organization[row_ids[held]]
        return codes

    def visible_to(self, organization_id: uuid.UUID | None) -> IdSet:
        public = _VISIBILITY_CODE[Visibility.PUBLIC]
        if organization_id is None:
            return IdSet(self._visibility == public)
        registered = _VISIBILITY_CODE[Visibility.REGISTERED]
        mask = (self._visibility == public) | (self._visibility == registered)
        code = self._organization_code.get(organization_id)
        if code is not None:
            private = _VISIBILITY_CODE[Visibility.PRIVATE]
            mask |= (self._visibility == private) & (self._organization == code)
        return IdSet(mask)

    def _code(self, organization_id: uuid.UUID) -> int:
        code = self._organization_code.get(organization_id)
        if code is None:
            code = self._organization_code[organization_id] = len(self._organizations)
            self._organizations.append(organization_id)
        return code
