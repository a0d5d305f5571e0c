"""Webhook lifecycle (contract §5): every transition as data, decided by pure functions here and
written by the store as one guarded update in the transaction that parks or releases the
webhook's notifications.

    Active ──(more than retryCount consecutive failures)──> Errored        (failing)
    Active ──(failureWindow.count failed attempts within its seconds)──> Errored   (failing)
    Active ──(410 Gone)──> Inactive                                        (unsubscribed)
    any ──(owner pauses)──> Inactive                                       (paused)
    Active ──(expirationDate passes)──> Inactive                           (expired)
    Active ──(re-verification handshake fails)──> Errored                  (unverified)
    any ──(owner asks for Active, or renews an expired one; handshake passes)──> Active
    Errored, unsubscribed ──(owner moves the callback; its handshake passes)──> Active

retryCount (0-5) counts the consecutive failed attempts tolerated, not counting the current one:
the webhook becomes Errored when its consecutive failure count exceeds retryCount. A success
resets the count, and so does a reactivation. A failure window (`failureWindow`, optional)
counts failed attempts, successes or not between them, within its last `seconds`; a
reactivation starts it afresh (the store counts none logged before it). The status message
says which rule tripped: "N consecutive failed deliveries; last: ..." or "N failed attempts
within S s (failureWindow); last: ...".

Expiry is one rule (`is_expired`) with one message (`expired_message`): readers see an expired
Active webhook as Inactive at once (`effective_status`), and the sweep writes the same status and
message to the row later (`expiry`).

Re-verification (`reverify_interval`) runs an Active webhook's handshake again once per
interval, at a moment of its own (`next_reverification`): each webhook's checks fall at the
same offset of every interval, the offsets spread over the interval by the webhook's id, so
webhooks created together are not checked together.

Every change of status is announced in the webhook's group as a lifecycle notice
(gateway.notices).

Invariants the stores keep in the transactions that change state, and that a periodic check
(`Store.check_invariants`) verifies and repairs:
- no parked notification belongs to an Active webhook (every move to Active releases them);
- no notification of a webhook that is not Active waits as pending to be claimed (every move
  away from Active parks them, and a publish parks what it adds for such a webhook);
- an Active webhook has no status message and no reason.
A Strict webhook's queue keeps gateway.ordering's rule besides (one head, the others waiting),
which the same check verifies and repairs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from gateway.errors import ValidationError
from gateway.models import Recipient, StatusReason, Webhook, WebhookStatus

MESSAGE_LIMIT = 100  # statusMessage is at most 100 characters on the wire
GONE_MESSAGE = "callback answered 410 Gone (unsubscribed)"
PAUSED_MESSAGE = "paused by owner"
RELEASED_MESSAGE = "due again: the webhook was reactivated"
UNVERIFIED_MESSAGE = "re-verification failed"


@dataclass(frozen=True, slots=True)
class Transition:
    """The webhook's bookkeeping after one delivery attempt."""

    failure_count: int
    status: WebhookStatus
    status_message: str | None
    reason: StatusReason | None
    park: bool  # the webhook left Active: park its pending notifications


class Move(enum.Enum):
    """What a status change does to the webhook's notifications."""

    PARK = "park"  # pending ones wait, parked, until it is Active again
    RELEASE = "release"  # parked ones are due now


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A change of status an owner (or the expiry sweep) makes, with what it implies."""

    status: WebhookStatus
    status_message: str | None
    reason: StatusReason | None
    move: Move
    reset_failures: bool = False  # a fresh start: old failures do not count against it


PAUSE = StatusChange(WebhookStatus.INACTIVE, PAUSED_MESSAGE, StatusReason.PAUSED, Move.PARK)
# The stops that a new callback, verified by its handshake, ends: the old callback's failures
# (Errored) or its 410 stopped the webhook, and the owner has just proved the new one answers.
# A pause or an expiry is the owner's own choice, and stays.
CALLBACK_STOPS = frozenset(
    {StatusReason.FAILING, StatusReason.UNVERIFIED, StatusReason.UNSUBSCRIBED}
)
ACTIVATE = StatusChange(WebhookStatus.ACTIVE, None, None, Move.RELEASE, reset_failures=True)


@dataclass(frozen=True, slots=True)
class PatchPlan:
    """What an owner's PATCH does to the status: the handshake first, then the change."""

    handshake: bool
    change: StatusChange | None


def shorten(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """The text cut to `limit` characters, ending in "…" when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def after_success(webhook: Webhook) -> Transition:
    """A delivered notification resets the consecutive failures."""
    return Transition(
        0, webhook.status_code, webhook.status_message, webhook.status_reason, park=False
    )


def after_failure(webhook: Webhook, cause: str, window_failures: int = 0) -> Transition:
    """One more consecutive failure; past retry_count, or with `window_failures` (this one
    counted) reaching its failure window's count, an Active webhook becomes Errored, its
    message naming the rule."""
    count = webhook.failure_count + 1
    # Only Active can turn Errored: an attempt in flight when the owner paused the webhook
    # must not overwrite "paused by owner".
    if webhook.status_code is WebhookStatus.ACTIVE:
        message = tripped(webhook, count, window_failures)
        if message is not None:
            message = shorten(f"{message}; last: {cause}")
            return Transition(
                count, WebhookStatus.ERRORED, message, StatusReason.FAILING, park=True
            )
    return Transition(
        count, webhook.status_code, webhook.status_message, webhook.status_reason, park=False
    )


def tripped(webhook: Webhook, consecutive: int, window_failures: int) -> str | None:
    """Which rule makes the webhook Errored, if one does (retryCount's first): the start of
    its status message."""
    if consecutive > webhook.retry_count:
        return f"{consecutive} consecutive failed deliveries"
    window = webhook.failure_window
    if window is not None and window_failures >= window.count:
        return f"{window_failures} failed attempts within {window.seconds} s (failureWindow)"
    return None


def after_gone(webhook: Webhook) -> Transition:
    """A 410 Gone means the partner unsubscribed: the webhook becomes Inactive."""
    leaving_active = webhook.status_code is WebhookStatus.ACTIVE
    return Transition(
        webhook.failure_count,
        WebhookStatus.INACTIVE,
        GONE_MESSAGE,
        StatusReason.UNSUBSCRIBED,
        park=leaving_active,
    )


def is_expired(webhook: Webhook, now: datetime) -> bool:
    """Whether the webhook's expiration date has come."""
    return webhook.expiration_date is not None and webhook.expiration_date <= now


def expired_message(expiration: datetime) -> str:
    """The statusMessage of an expired webhook, e.g. "expired on 2026-01-31T00:00:00Z"."""
    moment = expiration.astimezone(UTC).replace(microsecond=0, tzinfo=None)
    return f"expired on {moment.isoformat()}Z"


def expiry(webhook: Webhook, now: datetime) -> StatusChange | None:
    """The change the expiry sweep writes for this webhook, if it is Active and expired."""
    expiration = webhook.expiration_date
    if webhook.status_code is not WebhookStatus.ACTIVE or expiration is None or expiration > now:
        return None
    return StatusChange(
        WebhookStatus.INACTIVE, expired_message(expiration), StatusReason.EXPIRED, Move.PARK
    )


def reverification_failed(detail: str) -> StatusChange:
    """The change a failed re-verification writes: Errored, saying why, its notifications
    parked until its owner reactivates it (a handshake again)."""
    message = shorten(f"{UNVERIFIED_MESSAGE}: {detail}")
    return StatusChange(WebhookStatus.ERRORED, message, StatusReason.UNVERIFIED, Move.PARK)


def next_reverification(webhook_id: UUID, after: datetime, interval: float) -> datetime:
    """The first moment after `after` when this webhook's callback is verified again: the
    webhook's own offset (from its id, spread over the interval) in the next interval."""
    offset = (webhook_id.int % 1_000_003) / 1_000_003 * interval
    periods = (after.timestamp() - offset) // interval + 1
    moment = datetime.fromtimestamp(periods * interval + offset, UTC)
    # Microseconds round: `after` on a moment may read as just before it.
    return moment if moment > after else moment + timedelta(seconds=interval)


def effective_status(webhook: Webhook, now: datetime) -> tuple[WebhookStatus, str | None]:
    """The status and message a reader sees: an expired Active webhook reads as Inactive,
    with the message the sweep will write."""
    return shown_status(webhook.status_code, webhook.status_message, webhook.expiration_date, now)


def shown_status(
    status: WebhookStatus, message: str | None, expiration: datetime | None, now: datetime
) -> tuple[WebhookStatus, str | None]:
    """`effective_status` from the columns it reads."""
    if status is WebhookStatus.ACTIVE and expiration is not None and expiration <= now:
        return WebhookStatus.INACTIVE, expired_message(expiration)
    return status, message


def is_active(webhook: Webhook | Recipient, now: datetime) -> bool:
    """Whether the webhook receives notifications now (Active and not expired); `receives`
    written out, as the sender asks before every send."""
    expiration = webhook.expiration_date
    return webhook.status_code is WebhookStatus.ACTIVE and (expiration is None or expiration > now)


def receives(status: WebhookStatus, expiration: datetime | None, now: datetime) -> bool:
    """`is_active` from the columns it reads."""
    return status is WebhookStatus.ACTIVE and (expiration is None or expiration > now)


def parked_message(status: WebhookStatus, status_message: str | None) -> str:
    """Why a notification waits, as its history shows it."""
    why = f" ({status_message})" if status_message else ""
    return shorten(f"parked: webhook is {status.value}{why}", 200)


def plan_patch(
    webhook: Webhook,
    requested: WebhookStatus | None,
    *,
    now: datetime,
    expiration: datetime | None,
    renews: bool,
    moves: bool,
) -> PatchPlan:
    """What an owner's PATCH does to the status.

    `expiration` is the expiration date the webhook will have after the PATCH; `renews` says the
    PATCH gives one (a date, or null for none); `moves` says it changes the callback URL or
    method, which always needs a handshake (contract §4).

    - Errored cannot be requested.
    - Inactive pauses, whatever the status.
    - Active on an Active webhook changes nothing; on any other it reactivates: the handshake,
      then Active, parked notifications due now, the failure count reset. An expired webhook
      needs a future expirationDate for that.
    - A new expirationDate (or none) on an expired webhook renews it: a reactivation too.
    - A new callback (URL or method) on a webhook stopped because of its callback (Errored by
      failures or a failed re-verification, or unsubscribed by a 410; CALLBACK_STOPS)
      reactivates it once its handshake passes, unless it would be expired: moving is how an
      owner fixes such a webhook, and no owner wants a fixed callback to stay unused. A
      paused or expired one stays as it is.
    """
    if requested is WebhookStatus.ERRORED:
        raise ValidationError.field("statusCode", "Errored is set by the gateway, not by a request")
    if requested is WebhookStatus.INACTIVE:
        return PatchPlan(moves, PAUSE)
    expired = _expired_by_date(webhook, now)
    if requested is WebhookStatus.ACTIVE:
        if expiration is not None and expiration <= now:
            raise ValidationError.field(
                "expirationDate", "has passed; give a future expirationDate to reactivate"
            )
        if webhook.status_code is WebhookStatus.ACTIVE and not expired:
            return PatchPlan(moves, None)
        return PatchPlan(True, ACTIVATE)
    if renews and expired:
        return PatchPlan(True, ACTIVATE)
    current = expiration is None or expiration > now
    if moves and webhook.status_reason in CALLBACK_STOPS and current:
        return PatchPlan(True, ACTIVATE)
    return PatchPlan(moves, None)


def _expired_by_date(webhook: Webhook, now: datetime) -> bool:
    """Expired and not otherwise stopped: Active past its date (before the sweep), or made
    Inactive by the sweep. A paused or Errored webhook stays so when its date is renewed."""
    if webhook.status_code is WebhookStatus.ACTIVE:
        return is_expired(webhook, now)
    return webhook.status_reason is StatusReason.EXPIRED
