"""A Strict webhook's queue (gateway.ordering) as the store keeps it, written once for both
dialects: the step that sets a queue right (`normalize`), a change of deliveryOrder
(`switch_order`), and what the periodic check finds broken (`broken`).

Each step runs inside a transaction of `SqlStore`, whose caller has locked the webhooks' rows
(on PostgreSQL, FOR NO KEY UPDATE: two transactions changing one queue take turns), over the
statements of statements/shared.sql that read a queue by its index (WAITS, HEADS, QUEUE_*,
JOIN_QUEUE, LEAVE_QUEUE, UNQUEUE, STRICT_QUEUES). `q` is the dialect's statements (`SqlStore.q`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from types import ModuleType
from typing import Any
from uuid import UUID

from gateway import lifecycle, ordering
from gateway.models import DeliveryOrder, NotificationState, Webhook
from gateway.outcomes import AttemptOutcome, Settlement
from gateway.store.queries import NEW_WORK_CHANNEL
from gateway.store.steps import Execute, Notify, Script

STRICT = DeliveryOrder.STRICT
_PENDING, _PARKED = NotificationState.PENDING.value, NotificationState.PARKED.value


def normalize(q: ModuleType, queues: Mapping[Any, str | None], now: datetime) -> Script[bool]:
    """Restore gateway.ordering's rule in these Strict webhooks' queues: each webhook's id, and
    why its notifications are parked (None: it is Active). Whether a head became due, which
    the workers are told (NOTIFY on PostgreSQL)."""
    due = False
    message = ordering.WAITING_MESSAGE
    for webhook_id, why_parked in sorted(queues.items()):
        params = {"webhook_id": webhook_id, "now": now}
        yield Execute(q.QUEUE_SETTLED, {"webhook_id": webhook_id})
        yield Execute(q.QUEUE_WAITS, {**params, "message": message})
        head = {"state": _PARKED, "message": why_parked} if why_parked else {
            "state": _PENDING, "message": None}  # fmt: skip
        if (yield Execute(q.QUEUE_HEAD, {**params, **head})) and not why_parked:
            due = True
    if due:
        yield Notify(NEW_WORK_CHANNEL)
    return due


def switch_order(q: ModuleType, hook: Webhook, now: datetime) -> Script[None]:
    """The webhook's deliveryOrder changed to what `hook` says: become Strict, its pending and
    parked notifications join its queue, and those in flight finish first; become Unordered,
    every waiting one is pending (parked if the webhook is not Active)."""
    params = {"webhook_id": hook.webhook_id, "now": now}
    parked = why_parked(hook, now)
    if hook.delivery_order is STRICT:
        yield Execute(q.JOIN_QUEUE, params)
        yield from normalize(q, {hook.webhook_id: parked}, now)
        return
    if parked is None:
        params |= {"state": _PENDING, "message": ordering.UNORDERED_MESSAGE}
    else:
        params |= {"state": _PARKED, "message": parked}
    released = yield Execute(q.LEAVE_QUEUE, params)
    yield Execute(q.UNQUEUE, {"webhook_id": hook.webhook_id})
    if released and parked is None:
        yield Notify(NEW_WORK_CHANNEL)


def of_settled(
    settled: Iterable[tuple[AttemptOutcome, Webhook, Settlement]], now: datetime
) -> dict[UUID, str | None]:
    """The Strict webhooks of a settled batch, each with why its notifications are parked once
    the batch is written (None: it is Active), as `normalize` takes them."""
    after: dict[UUID, Webhook] = {}
    for _, hook, done in settled:
        if hook.delivery_order is STRICT:
            change = done.webhook
            after[hook.webhook_id] = hook if change is None else dataclasses.replace(
                hook, status_code=change.status, status_message=change.status_message)  # fmt: skip
    return {webhook_id: why_parked(hook, now) for webhook_id, hook in after.items()}


def of_webhooks(hooks: Iterable[Webhook], now: datetime) -> dict[UUID, str | None]:
    """The Strict ones of these webhooks, as `normalize` takes them."""
    return {
        hook.webhook_id: why_parked(hook, now) for hook in hooks if hook.delivery_order is STRICT
    }


def broken(rows: Sequence[Any]) -> tuple[int, int, set[Any]]:
    """From STRICT_QUEUES' rows: how many queues have waiting notifications but no head and
    none in flight, how many pending or parked notifications are not their queue's head
    (those `normalize` makes wait), and the webhooks of both."""
    headless, extra, found = 0, 0, set()
    for webhook_id, first_waiting, heads, first_head, in_flight in rows:
        if first_waiting is not None and not heads and not in_flight:
            headless += 1
            found.add(webhook_id)
        elif heads:
            behind = first_waiting is not None and first_waiting < first_head
            wrong = heads if in_flight or behind else heads - 1
            if wrong:
                extra += wrong
                found.add(webhook_id)
    return headless, extra, found


def why_parked(hook: Webhook, now: datetime) -> str | None:
    """Why the webhook's notifications are parked now, or None if it is Active."""
    if lifecycle.is_active(hook, now):
        return None
    return lifecycle.parked_message(*lifecycle.effective_status(hook, now))
