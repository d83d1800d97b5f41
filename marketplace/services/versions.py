"""Optimistic locking for rows with a `version` (the ETag): compare-and-set, never lost updates."""

from typing import Any, Protocol, cast

from sqlalchemy import CursorResult
from sqlmodel import Session

from marketplace.errors import PreconditionFailed


class Versioned(Protocol):
    row_id: int | None
    version: int


def check_version(row: Versioned, expected_version: int | None, *, noun: str) -> None:
    """Refuse early when the caller's If-Match names another version than the stored one."""
    if expected_version is not None and expected_version != row.version:
        raise PreconditionFailed(
            f"The {noun} changed (now version {row.version}); reload and retry.",
            code="stale_version",
        )


def compare_and_set(session: Session, row: Versioned, statement: Any, *, noun: str) -> None:
    """Run an UPDATE or DELETE of `row` only if nobody changed it since it was read (no commit)."""
    model: Any = type(row)
    result = cast(
        CursorResult[Any],
        session.execute(statement.where(model.row_id == row.row_id, model.version == row.version)),
    )
    if result.rowcount != 1:
        session.rollback()
        raise PreconditionFailed(
            f"The {noun} changed meanwhile; reload and retry.", code="stale_version"
        )
