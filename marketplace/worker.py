"""The background worker each app process runs: the agreement deadline sweep, the `match.new`
alerts of newly published listings, the webhook dispatcher and the clean-up of expired
idempotency keys, every `worker_interval_seconds`, in one thread started and stopped by the
lifespan.

Several processes may run it over one PostgreSQL: agreements are row-locked while they move, alert
jobs are taken with SKIP LOCKED and deleted with their alerts, and deliveries are claimed with SKIP
LOCKED under a lease, so nothing is moved, alerted or sent twice.
"""

import logging
import threading
import time
from datetime import timedelta

from sqlalchemy import Engine

from marketplace import db
from marketplace.search_index import SearchIndex
from marketplace.services import agreements, idempotency, match_alerts, webhook_dispatch
from marketplace.settings import Settings

log = logging.getLogger(__name__)

_BATCH = 10
_KEY_SWEEP_SECONDS = 600.0


class BackgroundWorker:
    def __init__(self, engine: Engine, settings: Settings, index: SearchIndex) -> None:
        self._engine = engine
        self._index = index
        self._interval = settings.worker_interval_seconds
        self._policy = webhook_dispatch.DispatchPolicy.from_settings(settings)
        self._keys_kept_for = timedelta(hours=settings.idempotency_key_hours)
        self._next_key_sweep = 0.0  # monotonic seconds; replays check a key's age themselves
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scx-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the loop to end and wait for it; an HTTP call in flight finishes first."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def run_once(self) -> None:
        """One round: move every agreement whose time has come, raise the alerts of new
        listings, send what is due, then (every ten minutes) forget expired idempotency keys."""
        with db.session_scope(self._engine) as session:
            agreements.advance_due(session)
        with db.session_scope(self._engine) as session:
            while not self._stop.is_set() and match_alerts.process_due(session, index=self._index):
                pass
        with db.session_scope(self._engine) as session:
            while not self._stop.is_set():
                if (
                    webhook_dispatch.dispatch_due(session, policy=self._policy, limit=_BATCH)
                    < _BATCH
                ):
                    break
        if time.monotonic() >= self._next_key_sweep:  # a table scan: not every round
            with db.session_scope(self._engine) as session:
                idempotency.forget_expired(session, kept_for=self._keys_kept_for)
                session.commit()
            self._next_key_sweep = time.monotonic() + _KEY_SWEEP_SECONDS

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # a bad round is logged; the next one runs anyway
                log.exception("background worker round failed")
            self._stop.wait(self._interval)
