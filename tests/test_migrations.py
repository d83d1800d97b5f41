"""The migration history: a full round trip on each backend, and models equal to migrations."""

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from marketplace import db
from marketplace.models import metadata
from tests.conftest import BACKENDS


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, fresh_database_url) -> str:  # type: ignore[no-untyped-def]
    return str(fresh_database_url(request.param))


def _tables(url: str) -> set[str]:
    engine = db.make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


class TestMigrationHistory:
    def test_upgrade_downgrade_upgrade_round_trip(self, empty_database_url: str) -> None:
        config = db.alembic_config(empty_database_url)
        command.upgrade(config, "head")
        assert _tables(empty_database_url) == set(metadata.tables)
        command.downgrade(config, "base")
        assert _tables(empty_database_url) == set()
        command.upgrade(config, "head")
        assert _tables(empty_database_url) == set(metadata.tables)

    def test_models_match_migrations(self, empty_database_url: str) -> None:
        command.upgrade(db.alembic_config(empty_database_url), "head")
        engine = db.make_engine(empty_database_url)
        try:
            with engine.connect() as connection:
                context = MigrationContext.configure(connection, opts={"compare_type": True})
                assert compare_metadata(context, metadata) == []
        finally:
            engine.dispose()

    def test_a_fresh_database_reports_pending_migrations(self, empty_database_url: str) -> None:
        engine = db.make_engine(empty_database_url)
        try:
            assert db.migrations_pending(engine)
            command.upgrade(db.alembic_config(empty_database_url), "head")
            assert not db.migrations_pending(engine)
        finally:
            engine.dispose()
