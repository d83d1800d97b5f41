"""The ASGI application factory: `uvicorn marketplace.app:create_app --factory`."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from marketplace import db
from marketplace.api import agreements, auth, listings, me, members, organizations, webhooks
from marketplace.body_limit import BodySizeLimit
from marketplace.errors import install_error_handlers, problem_response
from marketplace.settings import Settings
from marketplace.worker import BackgroundWorker

log = logging.getLogger(__name__)


class DatabaseBehind(RuntimeError):
    """The database's migrations are older than the code's."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the engine is opened and checked when the app starts (lifespan)."""
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
            worker = BackgroundWorker(engine, settings)
            if settings.worker_interval_seconds > 0:
                worker.start()
            try:
                yield
            finally:
                worker.stop()
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
    for module in (auth, me, organizations, members, listings, agreements, webhooks):
        api.include_router(module.router)

    @api.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        """Liveness: the process answers and its database is migrated."""
        return {"status": "ok"}

    app.include_router(api)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
