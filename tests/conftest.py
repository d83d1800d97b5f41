"""Shared fixtures: databases (SQLite and PostgreSQL, built by the migrations) and the app.

PostgreSQL comes from SCX_TEST_POSTGRES_URL (default: the local server); each test session
creates its own database there and drops it at the end, so parallel runs never collide.
"""

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from marketplace import db
from marketplace.app import create_app
from marketplace.embedder import shared_embedder
from marketplace.models import metadata
from marketplace.settings import Settings
from matching.embedding import SentenceTransformerEmbedder
from tests.factories import cheap_password_hashing

POSTGRES_SERVER_URL = os.environ.get(
    "SCX_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _create_postgres_database() -> str:
    name = f"scx_test_{uuid.uuid4().hex[:12]}"
    server = create_engine(POSTGRES_SERVER_URL, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    server.dispose()
    return make_url(POSTGRES_SERVER_URL).set(database=name).render_as_string(hide_password=False)


def _drop_postgres_database(url: str) -> None:
    name = make_url(url).database
    server = create_engine(POSTGRES_SERVER_URL, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    server.dispose()


@pytest.fixture(scope="session")
def fresh_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A factory of empty databases (nothing migrated) for the given backend."""
    created: list[str] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            path = tmp_path_factory.mktemp("sqlite") / "marketplace.db"
            return f"sqlite:///{path}"
        url = _create_postgres_database()
        created.append(url)
        return url

    yield make
    for url in created:
        _drop_postgres_database(url)


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, fresh_database_url) -> str:  # type: ignore[no-untyped-def]
    """A migrated database per backend, shared by the session and emptied before each test."""
    url = fresh_database_url(request.param)
    command.upgrade(db.alembic_config(url), "head")
    return url


@pytest.fixture(scope="session")
def _engines() -> Iterator[dict[str, Engine]]:
    engines: dict[str, Engine] = {}
    yield engines
    for engine in engines.values():
        engine.dispose()


@pytest.fixture
def engine(database_url: str, _engines: dict[str, Engine]) -> Engine:
    """The backend's engine, with every table emptied so each test starts clean."""
    engine = _engines.setdefault(database_url, db.make_engine(database_url))
    # DELETE in reverse dependency order: on these tiny tables it is ~100x faster than TRUNCATE.
    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())
    return engine


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings over the test database and a fresh data dir.

    Queries use the model itself: an app built from these would otherwise write an ONNX export
    into each test's data dir (seconds each). tests/e2e and tests/cli cover the export.
    """
    return Settings(database_url=database_url, data_dir=tmp_path / "data", onnx=False)


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id at its lowest cost in every test: the same code paths, ~1 ms per hash."""
    cheap_password_hashing(monkeypatch)


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The default real model, loaded once per test session (about 4 s) and shared by every app."""
    return shared_embedder(None)


@pytest.fixture(scope="session")
def onnx_export(
    embedder: SentenceTransformerEmbedder, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """An ONNX export of the default model, written once per test session (read only)."""
    folder = tmp_path_factory.mktemp("onnx") / "minilm"
    assert embedder.export_onnx(folder)
    return folder


@pytest.fixture(scope="session")
def _clients() -> Iterator[dict[str, TestClient]]:
    clients: dict[str, TestClient] = {}
    with ExitStack() as stack:
        yield clients
        for test_client in clients.values():
            stack.push(test_client.__exit__)


@pytest.fixture
def client(
    engine: Engine,
    database_url: str,
    embedder: SentenceTransformerEmbedder,
    tmp_path_factory: pytest.TempPathFactory,
    _clients: dict[str, TestClient],
) -> TestClient:
    """A client of the real app over the test database, one app per backend and session.

    Building an app and serving its first request costs ~0.3 s, so the app is shared; each test
    still starts from empty tables and an index rebuilt from them.
    """
    test_client = _clients.get(database_url)
    if test_client is None:
        data_dir = tmp_path_factory.mktemp("app") / "data"
        # No background worker: this app outlives its tests, and its sweeps and dispatches would
        # race the tests that drive a worker of their own. The index follower still runs.
        settings = Settings(database_url=database_url, data_dir=data_dir, worker_interval_seconds=0)
        app = create_app(settings, embedder=embedder)
        test_client = _clients[database_url] = TestClient(app).__enter__()
    test_client.app.state.search_index.reload()  # type: ignore[attr-defined]
    return test_client
