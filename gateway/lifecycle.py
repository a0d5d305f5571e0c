"""Webhook lifecycle transitions (DESIGN §5), as pure functions over a Webhook record.

    Active ──(more than retryCount consecutive failures)──> Errored
    Active ──(410 Gone, owner pauses, expirationDate passes)──> Inactive
    Inactive / Errored ──(owner asks for Active, handshake passes)──> Active

retryCount (0-5) counts the consecutive failed attempts tolerated, not counting the current one:
the webhook becomes Errored when its consecutive failure count exceeds retryCount. A success
resets the count. Expiry is never written by a transition: it is read through
`effective_status`, so no reader sees an expired webhook as Active.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.errors import ValidationError
from gateway.models import Webhook, WebhookStatus

MESSAGE_LIMIT = 100  # statusMessage is at most 100 characters on the wire
GONE_MESSAGE = "callback answered 410 Gone (unsubscribed)"
PAUSED_MESSAGE = "paused by owner"


@dataclass(frozen=True, slots=True)
class Transition:
    """The webhook's bookkeeping after one delivery attempt."""

    failure_count: int
    status: WebhookStatus
    status_message: str | None
    park: bool  # the webhook left Active: park its pending notifications


@dataclass(frozen=True, slots=True)
class StatusChange:
    """What an owner's request for a status does."""

    status: WebhookStatus
    status_message: str | None
    needs_handshake: bool  # run the handshake first; on failure nothing changes
    release_parked: bool  # parked notifications go out again once Active


def shorten(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """The text cut to `limit` characters, ending in "…" when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def after_success(webhook: Webhook) -> Transition:
    """A delivered notification resets the consecutive failures."""
    return Transition(0, webhook.status_code, webhook.status_message, park=False)


def after_failure(webhook: Webhook, cause: str) -> Transition:
    """One more consecutive failure; past retry_count an Active webhook becomes Errored."""
    count = webhook.failure_count + 1
    # Only Active can turn Errored: an attempt in flight when the owner paused the webhook
    # must not overwrite "paused by owner".
    if webhook.status_code is WebhookStatus.ACTIVE and count > webhook.retry_count:
        message = shorten(f"{count} consecutive failed deliveries; last: {cause}")
        return Transition(count, WebhookStatus.ERRORED, message, park=True)
    return Transition(count, webhook.status_code, webhook.status_message, park=False)


def after_gone(webhook: Webhook) -> Transition:
    """A 410 Gone means the partner unsubscribed: the webhook becomes Inactive."""
    leaving_active = webhook.status_code is WebhookStatus.ACTIVE
    return Transition(webhook.failure_count, WebhookStatus.INACTIVE, GONE_MESSAGE, leaving_active)


def is_expired(webhook: Webhook, now: datetime) -> bool:
    """Whether the webhook's expiration date has come."""
    return webhook.expiration_date is not None and webhook.expiration_date <= now


def expired_message(expiration: datetime) -> str:
    """The statusMessage of an expired webhook, e.g. "expired on 2026-01-31T00:00:00Z"."""
    moment = expiration.astimezone(UTC).replace(microsecond=0, tzinfo=None)
    return f"expired on {moment.isoformat()}Z"


def effective_status(webhook: Webhook, now: datetime) -> tuple[WebhookStatus, str | None]:
    """The status and message a reader sees: an expired Active webhook reads as Inactive."""
    expiration = webhook.expiration_date
    if webhook.status_code is WebhookStatus.ACTIVE and expiration is not None and expiration <= now:
        return WebhookStatus.INACTIVE, expired_message(expiration)
    return webhook.status_code, webhook.status_message


def plan_status_change(
    webhook: Webhook, requested: WebhookStatus, *, now: datetime, new_expiration: datetime | None
) -> StatusChange:
    """What an owner's PATCH of statusCode does.

    When the change releases parked notifications (a reactivation), the caller also resets the
    webhook's failure_count to 0, so old failures do not count against the fresh start.
    """
    if requested is WebhookStatus.ERRORED:
        raise ValidationError.field("statusCode", "Errored is set by the gateway, not by a request")
    if requested is WebhookStatus.INACTIVE:
        return StatusChange(WebhookStatus.INACTIVE, PAUSED_MESSAGE, False, False)
    expiration = new_expiration if new_expiration is not None else webhook.expiration_date
    if expiration is not None and expiration <= now:
        raise ValidationError.field(
            "expirationDate", "has passed; give a future expirationDate to reactivate"
        )
    if webhook.status_code is WebhookStatus.ACTIVE and not is_expired(webhook, now):
        return StatusChange(WebhookStatus.ACTIVE, webhook.status_message, False, False)
    return StatusChange(WebhookStatus.ACTIVE, None, needs_handshake=True, release_parked=True)
