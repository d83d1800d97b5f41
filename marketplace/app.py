"""The ASGI application factory: `uvicorn marketplace.app:create_app --factory`."""

import gc
import logging
import threading
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
from marketplace.embedder import service_embedder
from marketplace.errors import install_error_handlers, problem_response
from marketplace.search_index import SearchIndex
from marketplace.settings import Settings
from marketplace.worker import BackgroundWorker
from matching.embedding import BackgroundLoadedEmbedder, Embedder
from matching.text import load_chinese_segmenter

log = logging.getLogger(__name__)


class DatabaseBehind(RuntimeError):
    """The database's migrations are older than the code's."""


def create_app(settings: Settings | None = None, *, embedder: Embedder | None = None) -> FastAPI:
    """Build the app; engine, embedder and index are opened when the app starts (lifespan).

    `embedder` lets a process that already loaded the model (tests, benchmarks) share it;
    without it the model loads in a background thread once the index is open, and the app
    serves from then on: matches at once, searches and writes once an encoder is in (the model's
    ONNX export at once, else the model).
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
            model = embedder or service_embedder(settings)
            app.state.embedder = model
            index = SearchIndex.configured(engine, model, settings)
            report = index.open()
            log.info("index ready: %d listings, %d embedded, %.1f s", *astuple(report))
            # What exists now lives as long as the process: keep it out of the collector's full
            # passes, which otherwise stall every request for ~0.5 s (700k objects at 100k).
            gc.freeze()
            if isinstance(model, BackgroundLoadedEmbedder):
                # Only now: importing torch beside the index's opening slows both (the GIL).
                model.start()
            # Not in the first Chinese query or listing after the start.
            threading.Thread(target=load_chinese_segmenter, name="jieba-load", daemon=True).start()
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
                if isinstance(model, BackgroundLoadedEmbedder):
                    model.join(timeout=60)  # never leave a half-written ONNX export behind
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
    def health(request: Request) -> dict[str, str]:
        """Liveness: the process answers, its database is migrated and its index is open.

        `model` is "loading" in the first seconds after a start and "ready" once the model is
        in; `search` and `writes` say whether free-text queries and writes (which embed
        listings) are served without waiting for it. An ONNX export of the model serves both
        from the start (writes until the model is in, where it is the faster of the two);
        without one, both wait for the model. A model that failed to load answers 503
        `model_unavailable`.
        """
        model = request.app.state.embedder
        if not isinstance(model, BackgroundLoadedEmbedder):
            return {"status": "ok", "model": "ready", "search": "ready", "writes": "ready"}
        if model.failed:
            model.wait()  # raises EmbedderUnavailable, a 503
        return {
            "status": "ok",
            "model": "ready" if model.ready else "loading",
            "search": "ready" if model.queries_ready else "loading",
            "writes": "ready" if model.writes_ready else "loading",
        }

    app.include_router(api)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
