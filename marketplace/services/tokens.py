"""API tokens: sign-in issues one, bearer authentication resolves one, members list and revoke."""

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session, col, select

from marketplace import security
from marketplace.errors import NotFound, Unauthenticated
from marketplace.models import ApiToken, Member, utc_now
from marketplace.services import rate_limits

# Writing last_used_at on every request would turn reads into writes; a minute is precise enough.
_LAST_USED_PRECISION = timedelta(minutes=1)


@dataclass(frozen=True)
class SignInPolicy:
    window: timedelta
    max_failures_per_email: int
    max_attempts_per_client: int
    default_expiry: timedelta | None


def sign_in(
    session: Session,
    *,
    email: str,
    password: str,
    client: str,
    name: str,
    expires_in: timedelta | None,
    policy: SignInPolicy,
) -> tuple[ApiToken, str]:
    """Exchange email and password for a new token; returns the row and the secret (shown once).

    Failures say nothing about whether the email exists, and both the email and the client
    address are limited, so neither guessing passwords nor probing addresses scales.
    """
    email_key = f"sign-in-failure:{email.strip().lower()}"
    client_key = f"sign-in-client:{client}"
    rate_limits.enforce(
        session,
        [
            rate_limits.Limit(email_key, policy.max_failures_per_email, policy.window),
            rate_limits.Limit(client_key, policy.max_attempts_per_client, policy.window),
        ],
    )
    member = session.exec(select(Member).where(Member.email == email.strip().lower())).first()
    valid = security.verify_password(member.password_hash if member else None, password)
    if member is None or not valid:
        rate_limits.record(session, [email_key, client_key], keep=policy.window)
        session.commit()
        raise Unauthenticated("The email or password is wrong.", code="invalid_credentials")
    rate_limits.record(session, [client_key], keep=policy.window)
    rate_limits.clear(session, [email_key])
    token, secret = _issue(member, name=name, expires_in=expires_in or policy.default_expiry)
    session.add(token)
    session.commit()
    return token, secret


def _issue(member: Member, *, name: str, expires_in: timedelta | None) -> tuple[ApiToken, str]:
    secret = security.new_token()
    token = ApiToken(
        member_id=member.id,
        name=name,
        prefix=secret[:12],
        token_hash=security.hash_token(secret),
        expires_at=utc_now() + expires_in if expires_in else None,
    )
    return token, secret


def authenticate(session: Session, secret: str) -> Member:
    """The member a bearer token belongs to; raises Unauthenticated for any unusable token."""
    token = session.exec(
        select(ApiToken).where(ApiToken.token_hash == security.hash_token(secret))
    ).first()
    now = utc_now()
    if token is None or token.revoked_at is not None:
        raise Unauthenticated("The token is not valid.", code="invalid_token")
    if token.expires_at is not None and token.expires_at <= now:
        raise Unauthenticated("The token has expired.", code="token_expired")
    member = session.get(Member, token.member_id)
    if member is None:
        raise Unauthenticated("The token is not valid.", code="invalid_token")
    if token.last_used_at is None or now - token.last_used_at > _LAST_USED_PRECISION:
        token.last_used_at = now
        session.add(token)
        session.commit()
    return member


def list_for(session: Session, *, member: Member) -> list[ApiToken]:
    return list(
        session.exec(
            select(ApiToken)
            .where(ApiToken.member_id == member.id)
            .order_by(col(ApiToken.created_at).desc())
        )
    )


def revoke(session: Session, *, member: Member, token_id: uuid.UUID) -> None:
    """Revoke one of the member's own tokens; another member's token is reported missing."""
    token = session.get(ApiToken, token_id)
    if token is None or token.member_id != member.id:
        raise NotFound("No such token.")
    if token.revoked_at is None:
        token.revoked_at = utc_now()
        session.add(token)
        session.commit()
