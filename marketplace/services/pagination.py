"""Opaque keyset cursors for list endpoints."""

import base64
import binascii
import json
from typing import Any

from marketplace.errors import BadRequest


def encode_cursor(key: int | str) -> str:
    return base64.urlsafe_b64encode(json.dumps([key]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, key_type: type[int] | type[str]) -> Any:
    """The key after which the next page starts, or None for the first page."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BadRequest("The cursor is not one this API issued.", code="invalid_cursor") from exc
    key = decoded[0] if isinstance(decoded, list) and len(decoded) == 1 else None
    # Keys this API issues fit a signed 64-bit column (SQLite binds nothing larger) and hold no
    # NUL (PostgreSQL text cannot).
    if (
        type(key) is not key_type
        or (isinstance(key, int) and not 0 <= key < 2**63)
        or (isinstance(key, str) and "\x00" in key)
    ):
        raise BadRequest("The cursor is not one this API issued.", code="invalid_cursor")
    return key


def next_cursor(keys: list[int] | list[str], limit: int, fetched: int) -> str | None:
    """Fetch `limit + 1` rows; a cursor exists only when the extra row came back."""
    return encode_cursor(keys[limit - 1]) if fetched > limit else None
