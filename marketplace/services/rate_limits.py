"""Sliding-window limits on attempts, stored in the database so every worker shares them."""

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from marketplace.errors import RateLimited
from marketplace.models import SignInAttempt, utc_now


@dataclass(frozen=True)
class Limit:
    key: str
    max_attempts: int
    window: timedelta


def enforce(session: Session, limits: list[Limit]) -> None:
    """Raise RateLimited when any key already used its attempts in the window."""
    now = utc_now()
    for limit in limits:
        since = now - limit.window
        count, oldest = session.exec(
            select(func.count(), func.min(SignInAttempt.at)).where(
                SignInAttempt.key == limit.key, SignInAttempt.at > since
            )
        ).one()
        if count >= limit.max_attempts and oldest is not None:
            retry_after = int((oldest + limit.window - now).total_seconds()) + 1
            raise RateLimited("Too many attempts; try again later.", retry_after=retry_after)


def record(session: Session, keys: list[str], *, keep: timedelta) -> None:
    """Count one attempt against each key and forget attempts older than `keep` (no commit)."""
    now = utc_now()
    session.add_all(SignInAttempt(key=key, at=now) for key in keys)
    session.exec(delete(SignInAttempt).where(col(SignInAttempt.at) < now - keep))


def clear(session: Session, keys: list[str]) -> None:
    session.exec(delete(SignInAttempt).where(col(SignInAttempt.key).in_(keys)))
