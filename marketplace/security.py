"""Password hashing (argon2) and API token secrets (random, stored as SHA-256)."""

import functools
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TOKEN_PREFIX = "scx_"
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    """Verifying against this keeps sign-in time the same whether or not the email exists.

    Made on first use (hashing costs 0.2 s, which every process start would pay), with the
    hasher's own parameters, so it costs what a real verification costs.
    """
    return hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password; with no stored hash, spend the same time and answer False."""
    try:
        return (
            _hasher.verify(password_hash or _dummy_hash(_hasher), password)
            and password_hash is not None
        )
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(token.encode()).hexdigest()
