"""Canonical JSON and its SHA-256: the bytes that terms versions and trail events are hashed over.

Keys sorted, no insignificant whitespace, UTF-8, no NaN. Values are JSON-native (strings for
decimals, dates and ids), so any party can recompute a hash from what the API returns.
"""

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()
