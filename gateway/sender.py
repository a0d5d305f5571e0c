"""One delivery attempt: render, sign, send, classify. No database writes happen here.

The request is signed by the webhook's scheme (gateway.signing.signer_for) and goes out through
a gateway.transport.Transport: the guarded aiohttp client in the product, a MockTransport in
unit tests. Deliveries and the API's test sends both come through `send`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID

from gateway import lifecycle, payloads, signing
from gateway.config import Settings
from gateway.errors import OutboundError, Unrenderable, ValidationError
from gateway.models import Notification, Webhook, record
from gateway.outcomes import AttemptOutcome, Effect
from gateway.retry import RetryPolicy, classify
from gateway.store import Store
from gateway.transport import OutboundResponse, Transport
from gateway.wire_values import truncate

# How long a webhook read from the store is reused: a busy webhook costs one read per interval,
# not per send. Changes the worker learns of (`forget`) end the reuse at once; others (a
# `gateway worker` started by hand on SQLite, which hears from nobody) reach it within this time.
WEBHOOK_CACHE_SECONDS = 1.0
NOT_ACTIVE = "not sent: the webhook is not Active"
NUL, REPLACEMENT = "\x00", "\ufffd"


@record
class Sent:
    """What a signed request got back."""

    response: OutboundResponse | None
    error: OutboundError | None
    request_text: str


def active_secrets(hook: Webhook, now: datetime) -> list[str]:
    """The secrets (or Ed25519 private keys) that sign now: the current one, and the previous
    during its grace period."""
    expires = hook.previous_secret_expires
    return signing.signing_secrets(hook, expires is not None and expires > now)


class Sender:
    """Turns a claimed notification into an AttemptOutcome."""

    def __init__(
        self,
        settings: Settings,
        outbound: Transport,
        store: Store,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.outbound = outbound
        self.store = store
        self.clock = clock
        self.policy = RetryPolicy(
            settings.retry_schedule, settings.retry_jitter, settings.retry_after_cap
        )
        self._rng = random.Random()
        self._cache: dict[UUID, tuple[float, Webhook | None]] = {}

    def forget(self, webhook_id: UUID) -> None:
        """The webhook changed: read it afresh before its next send."""
        self._cache.pop(webhook_id, None)

    def forget_all(self) -> None:
        """Any webhook may have changed: read each afresh before its next send."""
        self._cache.clear()

    async def _webhook(self, webhook_id: UUID) -> Webhook | None:
        cached = self._cache.get(webhook_id)
        if cached and time.monotonic() - cached[0] < WEBHOOK_CACHE_SECONDS:
            return cached[1]
        hook = await self.store.get_webhook_any_group(webhook_id)
        self._cache[webhook_id] = (time.monotonic(), hook)
        return hook

    async def send(self, hook: Webhook, note: Notification, now: datetime | None = None) -> Sent:
        """Render, sign (at `now`, by default the clock's time) and send one notification."""
        now = now or self.clock()
        try:
            rendered = payloads.render(hook, note)
        except (ValueError, TypeError, RecursionError, ValidationError) as exc:
            # Refused at the door today; rows stored before the door checked, or a record the
            # checks missed, fail for good here instead of at every lease.
            raise Unrenderable(f"cannot be rendered: {exc}") from exc
        headers = signing.signer_for(hook).headers(
            active_secrets(hook, now),
            str(note.notification_id),
            int(now.timestamp()),
            rendered.signed_payload,
        )
        headers["content-type"] = "application/json"
        request_text = f"{rendered.method} {rendered.url}\n\n{(rendered.body or b'').decode()}"
        try:
            response = await self.outbound.send(
                rendered.method,
                rendered.url,
                headers=headers,
                body=rendered.body,
                timeout=self.settings.delivery_timeout,
                max_body=self.settings.max_response_bytes,
                group=hook.group_key,  # capped per group by the API's client (test sends) only
            )
        except OutboundError as exc:
            return Sent(None, exc, request_text)
        return Sent(response, None, request_text)

    async def attempt(self, note: Notification, owner: str) -> AttemptOutcome:
        """Deliver once (or park, if the webhook is not Active) and say what happened."""
        hook = await self._webhook(note.webhook_id)
        now = self.clock()
        if hook is None or not lifecycle.is_active(hook, now):
            return AttemptOutcome(note.notification_id, owner, Effect.NOT_SENT, NOT_ACTIVE, None)
        try:
            sent = await self.send(hook, note, now)
        except Unrenderable as exc:
            return AttemptOutcome(note.notification_id, owner, Effect.UNDELIVERABLE, str(exc), None)
        return self._outcome(hook, note, owner, sent)

    def _outcome(self, hook: Webhook, note: Notification, owner: str, sent: Sent) -> AttemptOutcome:
        limit = self.settings.history_message_limit
        response = sent.response
        status = response.status if response else None
        effect = classify(status, sent.error, hook.success_policy, hook.retry_policy)
        cause = f"HTTP {response.status}" if response else str(sent.error)
        retry_at = None
        if effect is Effect.FAILURE:
            retry_after = None
            if response is not None:
                retry_after = RetryPolicy.parse_retry_after(
                    response.headers.get("retry-after"), self.clock()
                )
            delay = self.policy.delay(note.attempts + 1, retry_after=retry_after, rng=self._rng)
            retry_at = self.clock() + timedelta(seconds=delay)
        response_text = None
        if response is not None:
            body = response.body.decode(errors="replace")
            # NUL cannot be kept in PostgreSQL text; both stores keep the same replacement.
            response_text = f"HTTP {response.status}\n\n{body.replace(NUL, REPLACEMENT)}"
        return AttemptOutcome(
            notification_id=note.notification_id,
            lease_owner=owner,
            effect=effect,
            cause=cause,
            retry_at=retry_at,
            response_status_code=str(response.status) if response else None,
            request_message=truncate(sent.request_text, limit),
            response_message=truncate(response_text, limit),
        )
