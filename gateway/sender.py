"""One delivery attempt: render, sign, send, classify. No database writes happen here.

The request is signed by the webhook's scheme (gateway.signing.signer_for) and goes out through
a gateway.transport.Transport: the guarded aiohttp client in the product, a MockTransport in
unit tests. Deliveries and the API's test sends both come through `send`, with the owner's
headers (gateway.headers) and `Idempotency-Key`, the notification's id (as `webhook-id`): a
retry repeats it, so a receiver can drop a notification it has already handled.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID

from gateway import credentials, lifecycle, payloads, sealed, signing
from gateway.config import Settings
from gateway.errors import OutboundError, Unrenderable, ValidationError
from gateway.headers import beside, owner_headers
from gateway.models import Deliverable, Webhook, record
from gateway.outcomes import AttemptOutcome, Effect
from gateway.retry import RetryPolicy, classify
from gateway.store import Store
from gateway.transport import OutboundResponse, Transport
from gateway.wire_values import truncate

# How long a webhook read from the store is reused, with its authentication's headers: a busy
# webhook costs one read per interval, not per send. Changes the worker learns of (`forget`) end
# the reuse at once; others (a `gateway worker` started by hand on SQLite, which hears from
# nobody) reach it within this time.
WEBHOOK_CACHE_SECONDS = 1.0
NOT_ACTIVE = "not sent: the webhook is not Active"
Headers = dict[str, str]
Loaded = tuple[Webhook | None, Headers | Unrenderable]  # a webhook as the sender uses it
NUL, REPLACEMENT = "\x00", "\ufffd"


@record
class Sent:
    """What a signed request got back."""

    response: OutboundResponse | None
    error: OutboundError | None
    request_text: str


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
        # By the id's integer: a uuid.UUID hashes in Python code, and this is read every send.
        self._cache: dict[int, tuple[float, Webhook | None, Headers | Unrenderable]] = {}
        # Webhooks to read in the next batch, each with the answer its senders wait for.
        self._wanted: dict[int, tuple[UUID, asyncio.Future[Loaded]]] = {}
        self._loader: asyncio.Task[None] | None = None
        self._changes = 0  # changes heard of (forget): a read begun before one is not kept

    def forget(self, webhook_id: UUID) -> None:
        """The webhook changed: read it afresh before its next send."""
        self._cache.pop(webhook_id.int, None)
        self._changes += 1

    def forget_all(self) -> None:
        """Any webhook may have changed: read each afresh before its next send."""
        self._cache.clear()
        self._changes += 1

    async def _webhook(self, webhook_id: UUID) -> Loaded:
        """The webhook as stored, and its authentication's headers (or why there are none),
        read together and reused together (`attempt` looks in the cache first): a change of
        either is seen from the same send.

        Senders that miss the cache in the same turn of the loop share one read (`_load`):
        after a fan-out, a worker meets hundreds of webhooks at once, and one read of each
        cost a round trip to the store's thread per notification (S2)."""
        key = webhook_id.int
        wanted = self._wanted.get(key)
        if wanted is None:
            wanted = self._wanted[key] = (webhook_id, asyncio.get_running_loop().create_future())
            if self._loader is None:
                self._loader = asyncio.create_task(self._load())
        # Shielded: a sender cancelled while it waits must not cancel the others' answer.
        return await asyncio.shield(wanted[1])

    async def _load(self) -> None:
        """Read every webhook wanted, in one read a batch, until none is wanted; those asked
        for while a read runs make the next batch. Its task starts after the senders of the
        current turn have asked."""
        try:
            while self._wanted:
                wanted, self._wanted = self._wanted, {}
                try:
                    found = await self._read([webhook_id for webhook_id, _ in wanted.values()])
                except Exception as exc:  # the senders waiting raise it; none is raised here,
                    _fail(wanted, exc)  # where no one awaits this task to retrieve it
                    continue
                except BaseException as exc:  # cancelled: stopping
                    _fail(wanted, exc)
                    raise
                for key, (_, answer) in wanted.items():
                    if not answer.done():
                        answer.set_result(found[key])
        finally:
            self._loader = None

    async def _read(self, webhook_ids: list[UUID]) -> dict[int, Loaded]:
        """These webhooks as stored (None for one that is not), with their authentications'
        headers, cached unless a change was heard of meanwhile."""
        changes = self._changes
        stored = await self.store.get_webhooks_any_group(webhook_ids)
        hooks = {hook.webhook_id.int: hook for hook in stored}
        read_at = time.monotonic()
        found: dict[int, Loaded] = {}
        for webhook_id in webhook_ids:
            hook = hooks.get(webhook_id.int)
            extra: Headers | Unrenderable = {}
            if hook is not None and hook.authentication_id is not None:
                try:
                    extra = await self.credentials(hook)
                except Unrenderable as exc:
                    extra = exc
            found[webhook_id.int] = hook, extra
            if self._changes == changes:  # else the senders that asked use it, once
                self._cache[webhook_id.int] = (read_at, hook, extra)
        return found

    async def credentials(self, hook: Webhook) -> Headers:
        """The headers the webhook's authentication adds (none without one), as stored now;
        Unrenderable if they cannot be had (Unsealable: its secret does not open)."""
        if hook.authentication_id is None:
            return {}
        found = await self.store.get_authentication(hook.group_key, hook.authentication_id)
        if found is None:  # the store refuses to delete one in use: not expected
            raise Unrenderable(f"its authentication {hook.authentication_id} is gone")
        return credentials.headers(found, sealed.sealer(self.settings.secret_key))

    async def send(
        self,
        hook: Webhook,
        note: Deliverable,
        now: datetime | None = None,
        extra: Headers | None = None,
    ) -> Sent:
        """Render, sign (at `now`, by default the clock's time) and send one notification, with
        its authentication's headers (`extra`; by default read from the store now)."""
        now = now or self.clock()
        if extra is None:
            extra = await self.credentials(hook)
        try:
            rendered = payloads.render(hook, note)
        except (ValueError, TypeError, RecursionError, ValidationError) as exc:
            # Refused at the door today; rows stored before the door checked, or a record the
            # checks missed, fail for good here instead of at every lease.
            raise Unrenderable(f"cannot be rendered: {exc}") from exc
        msg_id = str(note.notification_id)
        secrets = signing.signing_secrets(hook, now)
        headers = signing.signer_for(hook).headers(
            secrets, msg_id, int(now.timestamp()), rendered.signed_payload
        )
        headers["content-type"] = "application/json"
        headers["idempotency-key"] = msg_id
        if extra or hook.headers:  # the owner's, then the authentication's, then the gateway's
            headers = beside(beside(owner_headers(hook), extra), headers)
        request_text = f"{rendered.method} {rendered.url}\n\n{(rendered.shown or b'').decode()}"
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

    async def attempt(self, note: Deliverable, owner: str) -> AttemptOutcome:
        """Deliver once (or park, if the webhook is not Active) and say what happened."""
        cached = self._cache.get(note.webhook_id.int)
        if cached and time.monotonic() - cached[0] < WEBHOOK_CACHE_SECONDS:
            _, hook, extra = cached  # no coroutine to await for a reused webhook
        else:
            hook, extra = await self._webhook(note.webhook_id)
        now = self.clock()
        if hook is None or not lifecycle.is_active(hook, now):
            return AttemptOutcome(note.notification_id, owner, Effect.NOT_SENT, NOT_ACTIVE, None)
        try:
            if isinstance(extra, Unrenderable):
                raise Unrenderable(f"cannot be authenticated: {extra.detail}")
            sent = await self.send(hook, note, now, extra)
        except Unrenderable as exc:
            return AttemptOutcome(note.notification_id, owner, Effect.UNDELIVERABLE, str(exc), None)
        return self.outcome(hook, note, owner, sent)

    def outcome(self, hook: Webhook, note: Deliverable, owner: str, sent: Sent) -> AttemptOutcome:
        """What a request sent for a notification came to, as its history records it."""
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
            # In ms to 0.1: round(elapsed * 1000, 1) by an integer round, which skips round()'s
            # decimal conversion (370 ns against 150; 2,000,000 random latencies came out the
            # same both ways).
            elapsed_ms=round(response.elapsed * 10000) / 10 if response else None,
        )


def _fail(wanted: dict[int, tuple[UUID, asyncio.Future[Loaded]]], error: BaseException) -> None:
    """Every sender waiting for this read raises `error`."""
    for _, answer in wanted.values():
        if not answer.done():
            answer.set_exception(error)
