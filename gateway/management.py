"""Managing webhooks: what an owner's request (or the housekeeping) does to them, with the rules
it carries, callable without HTTP.

- create: every new callback passes its handshake, then all are stored, or none is;
- patch: the status moves of a PATCH (gateway.lifecycle.plan_patch), a handshake before a new
  callback or a reactivation is trusted, and only the named properties written;
- rotate the secret: a new one signs, the old one too for the grace period;
- expire: webhooks past their expirationDate become Inactive, and those close to it are
  warned of it (an `expiring` lifecycle notice, gateway.notices);
- re-verify: every Active webhook's handshake again once per `reverify_interval`;
- a hand retry of one notification, and a signed test notification sent now and kept in
  history, marked as a test, never counted against the lifecycle.

Each change a worker must know of goes out through the wake-up (gateway.wakeup): a changed
webhook is read afresh before its next send, and notifications due again are claimed at once.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from gateway import credentials, lifecycle, sealed, signing
from gateway.config import Settings
from gateway.errors import HandshakeFailed, LimitReached, NotFound, ValidationError
from gateway.handshake import HandshakeCodes, verify_callback
from gateway.headers import beside, owner_headers
from gateway.lifecycle import Move, StatusChange
from gateway.models import (
    Authentication,
    Event,
    EventType,
    Notification,
    NotificationState,
    Webhook,
    WebhookRule,
    WebhookStatus,
)
from gateway.outbound import Outbound
from gateway.outcomes import Effect
from gateway.sender import Sender, Sent
from gateway.store import Store
from gateway.store.base import Requeue, WebhookEdit
from gateway.wakeup import Wakeup

log = logging.getLogger(__name__)
# Re-verifications one sweep runs at most (at once, each within its group's handshake slots),
# and webhooks it schedules at most: the rest wait for the next sweep.
REVERIFY_BATCH = 100
SCHEDULED_AT_ONCE = 1000
SAMPLE_RECORD = {"id": "test-record", "note": "a test notification from the webhook gateway"}
TEST_TABLE = "Test"  # the tableKey of a test send


class Management:
    """The operations on webhooks that reach beyond the store: handshakes, the workers."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        outbound: Outbound,
        codes: HandshakeCodes,
        wakeup: Wakeup,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.store = store
        self.outbound = outbound
        self.codes = codes
        self.wakeup = wakeup
        self.clock = clock
        self.sender = Sender(settings, outbound, store, clock)  # test sends

    async def create(self, hooks: Sequence[Webhook], rules: Sequence[WebhookRule] = ()) -> None:
        """Store new webhooks, with these rules of theirs in the same transaction, once every
        callback has passed its handshake, each with the authentication it names (one of its
        own group's, else a 400), and only if their group stays within max_webhooks_per_group
        (LimitReached)."""
        most = self.settings.max_webhooks_per_group
        if most:
            await self._check_room(hooks, most)
        found = [
            await self._authentication(h.group_key, h.authentication_id, f"[{i}].authenticationId")
            for i, h in enumerate(hooks)
        ]
        await self._handshake_all(hooks, found)
        verified = self.clock()
        hooks = [dataclasses.replace(h, verified_at=verified) for h in hooks]
        # The store counts again in the transaction that inserts: this count only spares
        # the callbacks a handshake for a create bound to be refused.
        await self.store.add_webhooks(hooks, most_per_group=most, rules=rules)

    async def _check_room(self, hooks: Sequence[Webhook], most: int) -> None:
        for group, adding in collections.Counter(h.group_key for h in hooks).items():
            have = await self.store.count_webhooks(group)
            if have + adding > most:
                raise LimitReached.webhooks(most, have, adding)

    async def _authentication(
        self, group_key: UUID, authentication_id: UUID | None, field: str
    ) -> Authentication | None:
        """The authentication a webhook names (None if none); a 400 naming `field` if its
        group has no such authentication, worded as for one that never existed."""
        if authentication_id is None:
            return None
        found = await self.store.get_authentication(group_key, authentication_id)
        if found is None:
            raise ValidationError.field(field, f"no authentication {authentication_id}")
        return found

    def _headers(self, found: Authentication | None) -> dict[str, str]:
        """What an authentication adds to a request (gateway.credentials), if there is one."""
        if found is None:
            return {}
        return credentials.headers(found, sealed.sealer(self.settings.secret_key))

    async def _handshake_all(
        self, hooks: Sequence[Webhook], found: Sequence[Authentication | None]
    ) -> None:
        """Run every handshake at once; any failure fails the batch, naming each failing item."""
        results = await asyncio.gather(
            *(self._verify(h, self._headers(auth)) for h, auth in zip(hooks, found, strict=True)),
            return_exceptions=True,
        )
        errors: dict[str, list[str]] = {}
        for index, result in enumerate(results):
            if isinstance(result, HandshakeFailed):
                errors[f"[{index}].callbackUrl"] = [result.detail]
            elif isinstance(result, BaseException):
                raise result
        if errors:
            detail = "; ".join(f"item {k[1 : k.index(']')]}: {v[0]}" for k, v in errors.items())
            raise HandshakeFailed(f"callback verification failed: {detail}", errors=errors)

    async def _verify(self, hook: Webhook, auth: dict[str, str]) -> None:
        """The handshake against this webhook's callback, as its settings are (or will be once
        a PATCH is written), with its owner's headers and its authentication's (`auth`, which
        win), within its group's slots."""
        await verify_callback(
            self.outbound,
            self.codes,
            hook.webhook_id,
            hook.callback_http_method.value,
            hook.callback_url,
            group=hook.group_key,
            timeout=self.settings.handshake_timeout,
            headers=beside(owner_headers(hook), auth),
        )

    async def patch(
        self,
        hook: Webhook,
        values: dict[str, Any],
        requested: WebhookStatus | None,
        modifier: UUID,
        now: datetime,
    ) -> Webhook:
        """Write these columns (Webhook fields) and the status requested, as `modifier` at
        `now`; the webhook as stored after the change. A new callback, a reactivation or the
        renewal of an expired webhook passes a handshake first."""
        method = values.get("callback_http_method", hook.callback_http_method)
        url = values.get("callback_url", hook.callback_url)
        plan = lifecycle.plan_patch(
            hook,
            requested,
            now=now,
            expiration=values.get("expiration_date", hook.expiration_date),
            renews="expiration_date" in values,
            moves=(url, method) != (hook.callback_url, hook.callback_http_method),
        )
        authentication_id = values.get("authentication_id", hook.authentication_id)
        found = None
        if "authentication_id" in values or plan.handshake:
            field = "authenticationId"
            found = await self._authentication(hook.group_key, authentication_id, field)
        if plan.handshake:
            await self._verify(dataclasses.replace(hook, **values), self._headers(found))
        expect = _relied_on(hook, values, plan.handshake)
        values = {**values, "modified": now, "modified_user_id": modifier}
        if plan.handshake:  # verified now: the re-verification sweep schedules it afresh
            values |= {"verified_at": now, "reverify_due": None}
        if "signature_scheme" in values or "signature_header" in values:
            # Decided from the stored scheme and keys: only while the scheme is still that.
            values |= _scheme_change(hook, values)
            expect["signature_scheme"] = hook.signature_scheme
        edit = WebhookEdit(values, expect, plan.change)
        changed = await self.store.edit_webhook(hook.group_key, hook.webhook_id, edit, now)
        if changed is None:
            raise NotFound(f"no webhook {hook.webhook_id}")
        if "delivery_order" in values and changed.delivery_order is not hook.delivery_order:
            # The workers give back what they hold of it unsent, to go out by the new order;
            # Unordered now, what waited in its queue is due.
            self.wakeup.webhook_changed(hook.webhook_id)
            self.wakeup.new_work()
        if plan.change is not None:
            self._changed_status(changed, plan.change)
        elif "signature_scheme" in expect or "authentication_id" in values:
            # Signed the new way, or sent with the new authentication, from its next request.
            self.wakeup.webhook_changed(hook.webhook_id)
        return changed

    def _changed_status(self, hook: Webhook, change: StatusChange) -> None:
        """Tell the workers and the log about an owner's change of status."""
        self.wakeup.webhook_changed(hook.webhook_id)
        # Its parked notifications are due now, or its lifecycle notice waits for a claim.
        self.wakeup.new_work()
        verb = "reactivated" if change.move is Move.RELEASE else "paused"
        log.info(f"webhook {verb}", extra={
            "webhook_id": str(hook.webhook_id), "group_key": str(hook.group_key),
            "status_code": hook.status_code.value, "reason": hook.status_message,
        })  # fmt: skip

    async def rotate_secret(self, hook: Webhook, modifier: UUID, now: datetime) -> Webhook:
        """A new client secret; the old one keeps signing for the grace period."""
        grace = timedelta(seconds=self.settings.secret_grace_period)
        # A new key pair too, which the store gives the webhook if it signs with Ed25519.
        changed = await self.store.regenerate_secret(
            hook.group_key, hook.webhook_id, signing.generate_secret(), now + grace, now, modifier,
            key_pair=signing.generate_key_pair(),
        )  # fmt: skip
        if changed is None:
            raise NotFound(f"no webhook {hook.webhook_id}")
        self.wakeup.webhook_changed(hook.webhook_id)
        log.info("client secret regenerated", extra={
            "webhook_id": str(hook.webhook_id), "group_key": str(hook.group_key),
            "previous_secret_until": (now + grace).isoformat(),
        })  # fmt: skip
        return changed

    async def expire_due(self) -> list[Webhook]:
        """Make the webhooks whose expirationDate has passed Inactive (the status readers
        already see), park their notifications, and log each."""
        expired = await self.store.expire_webhooks(self.clock())
        if expired:
            self.wakeup.new_work()  # their lifecycle notices
        for hook in expired:
            self.wakeup.webhook_changed(hook.webhook_id)
            log.info("webhook expired", extra={
                "webhook_id": str(hook.webhook_id), "group_key": str(hook.group_key),
                "status_code": hook.status_code.value, "reason": hook.status_message,
            })  # fmt: skip
        return expired

    async def warn_expiring(self) -> list[Webhook]:
        """Send an `expiring` notice for each Active webhook whose expirationDate comes within
        lifecycle_warning_before, once per date; those warned."""
        ahead = self.settings.lifecycle_warning_before
        if ahead <= 0:
            return []
        now = self.clock()
        warned = await self.store.warn_expiring(now, now + timedelta(seconds=ahead))
        if warned:
            self.wakeup.new_work()
            log.info("webhooks warned of expiry", extra={
                "webhook_ids": [str(hook.webhook_id) for hook in warned],
            })  # fmt: skip
        return warned

    async def reverify_due(self) -> dict[str, int]:
        """Run the handshake again for the Active webhooks whose re-verification is due (at most
        REVERIFY_BATCH, at once), each at its own moment of every reverify_interval
        (lifecycle.next_reverification). A failure makes the webhook Errored, its
        notifications parked, with a `verificationFailed` notice; a success records when it
        passed. How many passed and failed."""
        interval = self.settings.reverify_interval
        if interval <= 0:
            return {"reverified": 0, "reverify_failed": 0}
        now = self.clock()
        await self._schedule_reverifications(now, interval)
        due = await self.store.due_for_reverification(now, REVERIFY_BATCH)
        # At most half a group's handshake slots: its owners' handshakes keep the others, and
        # no re-verification fails for want of a slot.
        most = max(1, self.settings.per_group_handshakes // 2)
        gates: dict[UUID, asyncio.Semaphore] = collections.defaultdict(
            lambda: asyncio.Semaphore(most)
        )

        async def reverify(hook: Webhook) -> bool:
            async with gates[hook.group_key]:
                return await self._reverify(hook, interval)

        passed = await asyncio.gather(*(reverify(hook) for hook in due))
        return {"reverified": sum(passed), "reverify_failed": len(passed) - sum(passed)}

    async def _schedule_reverifications(self, now: datetime, interval: float) -> None:
        """Give the Active webhooks that have no re-verification due (new, reactivated, or
        due further off than an interval) their moment in the coming interval: each webhook's
        own, so webhooks created together are not verified together (and a new one's first
        may come sooner than an interval after its creation's handshake)."""
        latest = now + timedelta(seconds=interval)
        found = await self.store.unscheduled_reverifications(latest, SCHEDULED_AT_ONCE)
        due = {webhook_id: lifecycle.next_reverification(webhook_id, now, interval)
               for webhook_id in found}  # fmt: skip
        if due:
            await self.store.schedule_reverifications(due, latest)

    async def _reverify(self, hook: Webhook, interval: float) -> bool:
        """One webhook's re-verification; whether it passed (or the webhook changed meanwhile,
        which leaves it as its owner made it)."""
        try:
            auth = await self._authentication(hook.group_key, hook.authentication_id, "")
            await self._verify(hook, self._headers(auth))
        except (HandshakeFailed, ValidationError) as exc:
            return not await self._unverified(hook, exc.detail)
        now = self.clock()
        due = lifecycle.next_reverification(hook.webhook_id, now, interval)
        await self.store.record_verified(hook, now, due)
        return True

    async def _unverified(self, hook: Webhook, detail: str) -> bool:
        """Make the webhook Errored after a failed re-verification; whether it was (it is not
        if its owner changed its callback or status meanwhile)."""
        change = lifecycle.reverification_failed(detail)
        changed = await self.store.fail_verification(hook, change, self.clock())
        if changed is None:
            return False
        self.wakeup.webhook_changed(hook.webhook_id)
        self.wakeup.new_work()  # its verificationFailed notice
        log.warning("webhook failed re-verification", extra={
            "webhook_id": str(hook.webhook_id), "group_key": str(hook.group_key),
            "status_code": changed.status_code.value, "reason": changed.status_message,
        })  # fmt: skip
        return True

    async def retry(self, group_key: UUID, webhook_id: UUID, history_id: UUID) -> Requeue:
        """Queue one notification that has not been delivered to go out now (the store
        refuses while its webhook is not Active); the workers claim it at once."""
        found = await self.store.requeue_notification(
            group_key, webhook_id, history_id, self.clock()
        )
        if found is Requeue.QUEUED:
            self.wakeup.new_work()
        return found

    async def test_send(self, hook: Webhook) -> tuple[Notification, Sent]:
        """Send a signed sample notification to this webhook now and keep it in the webhook's
        history, marked as a test (`is_test`); the row as recorded, and what came back.

        A test send is judged as a delivery would be (successPolicy), but it is not one:
        whatever the answer (a failure, a 410), the webhook's status, failure count and
        failure window stay as they are, and a hand retry refuses it."""
        now = self.clock()
        event = Event(uuid.uuid4(), hook.group_key, TEST_TABLE, EventType.UPDATE,
                      (SAMPLE_RECORD,), now)  # fmt: skip
        sample = Notification(
            notification_id=uuid.uuid4(),
            group_key=hook.group_key,
            webhook_id=hook.webhook_id,
            event_id=event.event_id,
            table_key=TEST_TABLE,
            event_type=EventType.UPDATE,
            records=(SAMPLE_RECORD,),
            sequence=0,  # not one of the webhook's numbered notifications
            triggered_at=now,
            state=NotificationState.PENDING,
            next_attempt_at=now,
            created=now,
            is_test=True,
        )
        sent = await self.sender.send(hook, sample)
        outcome = self.sender.outcome(hook, sample, "test", sent)
        success = outcome.effect is Effect.SUCCESS
        row = dataclasses.replace(
            sample,
            state=NotificationState.SUCCEEDED if success else NotificationState.FAILED,
            attempts=1,
            request_sent=outcome.request_sent,
            is_successful=success,
            response_status_code=outcome.response_status_code,
            process_result_message=outcome.cause,
            request_message=outcome.request_message,
            response_message=outcome.response_message,
            timestamp=self.clock(),
        )
        if not await self.store.record_test_send(event, row):
            raise NotFound(f"no webhook {hook.webhook_id}")
        return row, sent


def _scheme_change(hook: Webhook, values: dict[str, Any]) -> dict[str, Any]:
    """What a PATCH of the signature scheme or header writes with them: the header the scheme
    signs in (a given null: the default), and a key pair made or dropped."""
    scheme = values.get("signature_scheme", hook.signature_scheme)
    header = values["signature_header"] if "signature_header" in values else hook.signature_header
    return signing.scheme_fields(scheme, header, hook)


def _relied_on(hook: Webhook, values: dict[str, Any], verified: bool) -> dict[str, Any]:
    """The stored values this PATCH decided on without setting them, which must still hold
    when it writes: the method and content type checked together, and the callback a
    handshake verified. A concurrent change of them makes the PATCH a 409, not a webhook
    whose callback nobody verified."""
    relied = set()
    if ("callback_http_method" in values) != ("request_content_type" in values):
        relied |= {"callback_http_method", "request_content_type"}
    if verified:
        relied |= {"callback_url", "callback_http_method"}
    return {name: getattr(hook, name) for name in sorted(relied - set(values))}
