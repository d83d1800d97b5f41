"""The ASGI application factory: `uvicorn marketplace.app:create_app --factory`."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import astuple

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from marketplace import db
from marketplace.api import (
    agreements,
    auth,
    listings,
    matches,
    me,
    members,
    organizations,
    saved_searches,
    webhooks,
)
from marketplace.body_limit import BodySizeLimit
from marketplace.embedder import shared_embedder
from marketplace.errors import install_error_handlers, problem_response
from marketplace.search_index import SearchIndex
from marketplace.settings import Settings
from marketplace.worker import BackgroundWorker
from matching.embedding import Embedder

log = logging.getLogger(__name__)


class DatabaseBehind(RuntimeError):
    """The database's migrations are older than the code's."""


def create_app(settings: Settings | None = None, *, embedder: Embedder | None = None) -> FastAPI:
    """Build the app; engine, embedder and index are opened when the app starts (lifespan).

    `embedder` lets a process that already loaded the model (tests, benchmarks) share it.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = db.make_engine(settings.resolved_database_url)
        try:
            if db.migrations_pending(engine):
                raise DatabaseBehind(
                    f"The database at {engine.url.render_as_string(hide_password=True)} is not "
                    "at the latest migration. Run `marketplace db upgrade` first."
                )
            app.state.engine = engine
            index = SearchIndex.configured(
                engine, embedder or shared_embedder(settings.embedding_model), settings
            )
            report = index.open()
            log.info("index ready: %d listings, %d embedded, %.1f s", *astuple(report))
            index.start()
            app.state.search_index = index
            worker = BackgroundWorker(engine, settings, index)
            if settings.worker_interval_seconds > 0:
                worker.start()
            try:
                yield
            finally:
                worker.stop()
                index.close()
        finally:
            engine.dispose()

    app = FastAPI(
        title="Scenario Exchange",
        version="1.0.0",
        summary="Universities and governments post datasets and scenarios; companies post "
        "compute and models; matches become agreements.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)

    @app.exception_handler(Exception)
    def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem_response(500, "internal_error", "An unexpected error occurred.")

    api = APIRouter(prefix="/api/v1")
    for module in (auth, me, organizations, members, listings, matches, agreements, webhooks):
        api.include_router(module.router)
    api.include_router(saved_searches.router)

    @api.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        """Liveness: the process answers and its database is migrated."""
        return {"status": "ok"}

    app.include_router(api)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
