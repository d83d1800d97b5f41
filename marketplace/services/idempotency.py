"""Idempotency keys: a creating POST sent again with the same key gets the first response back.

Keys are per member. The first response is stored in the same transaction as what it created,
so a key is either unused or bound to a committed result, never half of each.
"""

from typing import Any

from pydantic import BaseModel
from sqlmodel import Session

from marketplace.canonical import sha256_hex
from marketplace.errors import InvalidInput
from marketplace.models import IdempotencyKey, Member


def fingerprint(request: BaseModel) -> str:
    return sha256_hex(request.model_dump(mode="json"))


def replay(
    session: Session, *, member: Member, key: str | None, request: BaseModel
) -> dict[str, Any] | None:
    """The stored first response for this key, or None; the same key with another body is a 422."""
    if key is None:
        return None
    stored = session.get(IdempotencyKey, (member.id, key))
    if stored is None:
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
