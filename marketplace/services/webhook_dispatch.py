"""Sending queued deliveries: claim, sign (Standard Webhooks), post with httpx, record, retry.

A dispatcher claims one due delivery at a time in its own short transaction: `FOR UPDATE SKIP
LOCKED` on PostgreSQL keeps workers off each other's rows, and the claim itself is a
compare-and-set that leases the row (`claimed_until`) under a fresh `claim_token`. The HTTP call
runs outside any transaction; its outcome is written only while the claim still holds. A worker
that dies mid-send leaves a lease that runs out, and the delivery is tried again: at least once.
"""

import base64
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any, cast

import httpx
from sqlalchemy import CursorResult, or_, update
from sqlmodel import Session, col, select

from marketplace import url_guard
from marketplace.canonical import canonical_json
from marketplace.models import Event, WebhookDelivery, WebhookEndpoint, utc_now
from marketplace.settings import Settings
from schemas.webhooks import SECRET_PREFIX, DeliveryStatus

USER_AGENT = "ScenarioExchange-Webhooks/1"
_MAX_ERROR = 1000


@dataclass(frozen=True)
class DispatchPolicy:
    allow_private_addresses: bool
    timeout: float
    max_attempts: int
    retry_base_seconds: float
    retry_factor: float
    lease: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> "DispatchPolicy":
        return cls(
            allow_private_addresses=settings.webhook_allow_private_addresses,
            timeout=settings.webhook_timeout_seconds,
            max_attempts=settings.webhook_max_attempts,
            retry_base_seconds=settings.webhook_retry_base_seconds,
            retry_factor=settings.webhook_retry_factor,
            lease=timedelta(seconds=settings.webhook_claim_seconds),
        )

    def retry_delay(self, attempts: int) -> timedelta:
        """Exponential backoff after the `attempts`-th failure."""
        return timedelta(seconds=self.retry_base_seconds * self.retry_factor ** (attempts - 1))


@dataclass(frozen=True)
class _Claim:
    delivery_id: uuid.UUID
    token: uuid.UUID
    attempts: int
    url: str
    secret: str
    message_id: str
    body: bytes


@dataclass(frozen=True)
class _Outcome:
    status_code: int | None
    error: str | None


def sign(*, secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def payload(event: Event) -> bytes:
    """The delivery body: the Standard Webhooks envelope `{type, timestamp, data}`."""
    return canonical_json(
        {
            "type": event.type,
            "timestamp": event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
            "data": {
                "event_id": str(event.id),
                "subject_type": event.subject_type,
                "subject_id": str(event.subject_id),
                "sequence": event.sequence,
                "actor_member_id": str(event.actor_member_id) if event.actor_member_id else None,
                "organization_id": str(event.organization_id) if event.organization_id else None,
                "terms_hash": event.terms_hash,
                "details": event.data,
                "hash": event.hash,
            },
        }
    )


def dispatch_due(session: Session, *, policy: DispatchPolicy, limit: int = 10) -> int:
    """Send up to `limit` due deliveries, one claim at a time; returns how many were tried."""
    tried = 0
    with httpx.Client(timeout=policy.timeout, follow_redirects=False, trust_env=False) as client:
        while tried < limit:
            claim = _claim_next(session, policy)
            if claim is None:
                break
            _record(session, claim, _send(client, claim, policy), policy)
            tried += 1
    return tried


def _claim_next(session: Session, policy: DispatchPolicy) -> _Claim | None:
    """Lease the most overdue delivery; None when nothing is due."""
    while True:
        now = utc_now()
        claimable = (col(WebhookDelivery.status) == DeliveryStatus.PENDING) & or_(
            col(WebhookDelivery.claimed_until).is_(None), col(WebhookDelivery.claimed_until) < now
        )
        candidate = session.exec(
            select(WebhookDelivery.id)
            .join(WebhookEndpoint, col(WebhookEndpoint.id) == WebhookDelivery.endpoint_id)
            .where(
                claimable, col(WebhookDelivery.next_attempt_at) <= now, col(WebhookEndpoint.enabled)
            )
            .order_by(col(WebhookDelivery.next_attempt_at))
            .limit(1)
            .with_for_update(skip_locked=True, of=WebhookDelivery)
        ).first()
        if candidate is None:
            session.rollback()
            return None
        token = uuid.uuid4()
        claimed = cast(
            CursorResult[Any],
            session.execute(
                update(WebhookDelivery)
                .where(col(WebhookDelivery.id) == candidate, claimable)
                .values(claimed_until=now + policy.lease, claim_token=token)
            ),
        )
        session.commit()
        # Without SKIP LOCKED (SQLite) another worker may have claimed it first: look again.
        if claimed.rowcount == 1:
            return _load_claim(session, candidate, token)


def _load_claim(session: Session, delivery_id: uuid.UUID, token: uuid.UUID) -> _Claim:
    delivery, endpoint = session.exec(
        select(WebhookDelivery, WebhookEndpoint)
        .join(WebhookEndpoint, col(WebhookEndpoint.id) == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.id == delivery_id)
        .execution_options(populate_existing=True)
    ).one()
    claim = _Claim(
        delivery_id=delivery.id,
        token=token,
        attempts=delivery.attempts,
        url=endpoint.url,
        secret=endpoint.secret,
        message_id=str(delivery.event_id),
        body=payload(delivery.event),
    )
    session.rollback()
    return claim


def _send(client: httpx.Client, claim: _Claim, policy: DispatchPolicy) -> _Outcome:
    try:
        addresses = url_guard.resolve(claim.url, allow_private=policy.allow_private_addresses)
    except url_guard.UnsafeUrl as exc:
        return _Outcome(None, f"refused: {exc}")
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": claim.message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(
            secret=claim.secret, message_id=claim.message_id, timestamp=timestamp, body=claim.body
        ),
    }
    try:
        status = _post_to_checked_address(client, claim.url, addresses, headers, claim.body)
    except httpx.HTTPError as exc:
        return _Outcome(None, f"{type(exc).__name__}: {exc}"[:_MAX_ERROR])
    return _Outcome(status, None if 200 <= status < 300 else f"HTTP {status}")


def _post_to_checked_address(
    client: httpx.Client,
    url: str,
    addresses: list[url_guard.IPAddress],
    headers: dict[str, str],
    body: bytes,
) -> int:
    """POST to the addresses just checked, never to a fresh lookup (no DNS rebinding); the next
    address is tried only when one refuses the connection."""
    *fallbacks, last = addresses
    for address in fallbacks:
        try:
            return _post_once(client, url, address, headers, body)
        except httpx.ConnectError:
            continue
    return _post_once(client, url, last, headers, body)


def _post_once(
    client: httpx.Client,
    url: str,
    address: url_guard.IPAddress,
    headers: dict[str, str],
    body: bytes,
) -> int:
    """One POST to `address`; TLS still checks the certificate against the URL's host name."""
    target = httpx.URL(url)
    request = client.build_request(
        "POST",
        target.copy_with(host=str(address)),
        headers={**headers, "host": target.netloc.decode("ascii")},
        content=body,
        extensions={"sni_hostname": target.raw_host.decode("ascii")},
    )
    response = client.send(request, stream=True)  # the body is never read
    response.close()
    return response.status_code


def _record(session: Session, claim: _Claim, outcome: _Outcome, policy: DispatchPolicy) -> None:
    now = utc_now()
    attempts = claim.attempts + 1
    if outcome.error is None:
        values = {"status": DeliveryStatus.SUCCEEDED, "delivered_at": now, "next_attempt_at": None}
    elif attempts >= policy.max_attempts:
        values = {"status": DeliveryStatus.FAILED, "next_attempt_at": None}
    else:
        values = {"next_attempt_at": now + policy.retry_delay(attempts)}
    session.execute(
        update(WebhookDelivery)
        .where(col(WebhookDelivery.id) == claim.delivery_id)
        .where(col(WebhookDelivery.claim_token) == claim.token)
        .values(
            **values,
            attempts=attempts,
            last_attempt_at=now,
            last_status_code=outcome.status_code,
            last_error=outcome.error,
            claimed_until=None,
            claim_token=None,
        )
    )
    session.commit()
