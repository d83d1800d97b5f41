"""Sign-in: exchange email and password for an API token."""

from datetime import timedelta

from fastapi import APIRouter, status

from marketplace.api import problems
from marketplace.deps import ClientAddress, SessionDep, SettingsDep
from marketplace.mappers import token_read
from marketplace.services import tokens
from schemas.auth import TokenCreated, TokenRequest

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/tokens",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenCreated,
    responses=problems(401, 429),
)
def create_token(
    body: TokenRequest, session: SessionDep, settings: SettingsDep, client: ClientAddress
) -> TokenCreated:
    """Sign in with email and password; the token is shown only in this response."""
    policy = tokens.SignInPolicy(
        window=timedelta(seconds=settings.sign_in_window_seconds),
        max_failures_per_email=settings.sign_in_max_failures_per_email,
        max_attempts_per_client=settings.sign_in_max_attempts_per_client,
        default_expiry=timedelta(days=settings.token_default_days)
        if settings.token_default_days
        else None,
    )
    token, secret = tokens.sign_in(
        session,
        email=body.email,
        password=body.password,
        client=client,
        name=body.name,
        expires_in=timedelta(days=body.expires_in_days) if body.expires_in_days else None,
        policy=policy,
    )
    return TokenCreated(**token_read(token).model_dump(), token=secret)
