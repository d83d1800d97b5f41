"""Idempotency keys: a creating POST sent again with the same key gets the first response back.

Keys are per member. The first response is stored in the same transaction as what it created,
so a key is either unused or bound to a committed result, never half of each. A key is kept for
a while (24 hours by default, as payment APIs do): older, it is free to be used again, and the
background worker deletes it.
"""

from datetime import timedelta
from typing import Any, cast

from pydantic import BaseModel
from sqlalchemy import CursorResult, delete
from sqlmodel import Session, col

from marketplace.canonical import sha256_hex
from marketplace.errors import InvalidInput
from marketplace.models import IdempotencyKey, Member, utc_now


def fingerprint(request: BaseModel) -> str:
    return sha256_hex(request.model_dump(mode="json"))


def replay(
    session: Session, *, member: Member, key: str | None, request: BaseModel, kept_for: timedelta
) -> dict[str, Any] | None:
    """The stored first response for this key, or None; the same key with another body is a 422.

    A key stored longer than `kept_for` ago is forgotten here (the caller commits), so that the
    request runs again and binds it anew.
    """
    if key is None:
        return None
    stored = session.get(IdempotencyKey, (member.id, key))
    if stored is None:
        return None
    if stored.created_at <= utc_now() - kept_for:
        session.delete(stored)
        session.flush()
        return None
    if stored.fingerprint != fingerprint(request):
        raise InvalidInput(
            "This Idempotency-Key was used for a different request.",
            code="idempotency_key_reused",
        )
    return stored.response


def remember(
    session: Session, *, member: Member, key: str, request: BaseModel, response: BaseModel
) -> None:
    """Bind the key to its first response; the caller commits with what the request created."""
    session.add(
        IdempotencyKey(
            member_id=member.id,
            key=key,
            fingerprint=fingerprint(request),
            response=response.model_dump(mode="json"),
        )
    )


def forget_expired(session: Session, *, kept_for: timedelta) -> int:
    """Delete the keys stored longer than `kept_for` ago; returns how many (the caller commits)."""
    expired = col(IdempotencyKey.created_at) <= utc_now() - kept_for
    result = cast(CursorResult[Any], session.execute(delete(IdempotencyKey).where(expired)))
    return result.rowcount
