"""/api/v1/Events: the platform publishes record changes; each becomes notifications."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response

from gateway import filters, lifecycle
from gateway.api.common import Context, authenticate, context, json_response, operation, read_json
from gateway.ids import new_id
from gateway.models import (
    Event,
    EventType,
    Notification,
    NotificationState,
    Scope,
    Webhook,
    WebhookRule,
)
from gateway.schemas import Circumstances, EventIn, parse_batch
from gateway.wire import EventsAccepted


@functools.lru_cache(maxsize=4096)
def _compiled(text: str | None) -> filters.Node | None:
    """Rule filters are parsed once and reused (they were validated when saved)."""
    return filters.parse_filter(text or "")


@operation(EventsAccepted, 400, body=EventIn, batch="max_events_per_request", status=202)
async def publish(request: Request) -> Response:
    """Accept events; answer 202 once they and their notifications are committed."""
    principal = await authenticate(request, Scope.EVENTS)
    ctx = context(request)
    now = ctx.clock()  # one time for the whole request: its events were accepted together
    specs = parse_batch(
        EventIn,
        await read_json(request),
        most=ctx.settings.max_events_per_request,
        noun="events",
        given=Circumstances(now, ctx.settings),
    )
    events = [_event(principal.group_key, spec, now) for spec in specs]
    notes = await _notifications(ctx, events, now)
    worker = ctx.worker
    try:
        added = await ctx.store.add_events(events, notes)
    except BaseException:
        if worker is not None:
            worker.forgo(notes)
        raise
    if worker is not None:
        worker.adopt(notes, added)
    if any(n.lease_owner is None and added.pending(n) for n in notes):
        ctx.wake_workers()  # some were left for a claim
    accepted = EventsAccepted(event_ids=[e.event_id for e in events], notification_count=len(notes))
    return json_response(accepted.wire(), 202)


def _event(group_key: UUID, spec: EventIn, now: datetime) -> Event:
    return Event(new_id(), group_key, spec.table_key, spec.event_type, tuple(spec.records), now)


async def _notifications(ctx: Context, events: list[Event], now: datetime) -> list[Notification]:
    """One notification per matching webhook per event, with the records its rules select."""
    lookups: dict[tuple[str, EventType], list[Subscriber]] = {}
    for event in events:
        key = (event.table_key, event.event_type)
        if key not in lookups:
            matches = await ctx.store.matching_rules(event.group_key, key[0], key[1].value)
            lookups[key] = _subscribers(matches)
    # Nothing below awaits or fails: the worker's promises (take_fresh) all reach add_events.
    out: list[Notification] = []
    worker = ctx.worker
    owner, lease_until = (worker.owner, worker.lease_until(now)) if worker else (None, None)
    for event in events:
        for hook, records in _select(lookups[event.table_key, event.event_type], event):
            # A first guess, from the webhook as read: the store decides in its transaction.
            active = lifecycle.is_active(hook, now)
            # Leased to this process's worker if it has room: it skips the claim.
            handed = (
                active and worker is not None and worker.take_fresh(hook.webhook_id, hook.group_key)
            )
            out.append(
                Notification(
                    notification_id=new_id(),
                    group_key=event.group_key,
                    webhook_id=hook.webhook_id,
                    event_id=event.event_id,
                    table_key=event.table_key,
                    event_type=event.event_type,
                    records=tuple(records),
                    sequence=0,
                    triggered_at=event.created,
                    state=NotificationState.PENDING if active else NotificationState.PARKED,
                    next_attempt_at=now,
                    created=now,
                    lease_until=lease_until if handed else None,
                    lease_owner=owner if handed else None,
                    timestamp=now,
                )
            )
    return out


# A webhook and its rules' filters; None when one of its rules has no filter and so accepts
# every record.
Subscriber = tuple[Webhook, list[filters.Node] | None]


def _subscribers(matches: list[tuple[WebhookRule, Webhook]]) -> list[Subscriber]:
    """Each matched webhook once, in the order of its first rule, with its rules' filters.
    Worked out once per table and event type of a request, not once per event."""
    hooks: dict[UUID, Webhook] = {}
    nodes: dict[UUID, list[filters.Node | None]] = {}
    for rule, hook in matches:
        hooks.setdefault(hook.webhook_id, hook)
        nodes.setdefault(hook.webhook_id, []).append(_compiled(rule.filter))
    return [
        (hook, None if None in nodes[webhook_id] else [n for n in nodes[webhook_id] if n])
        for webhook_id, hook in hooks.items()
    ]


def _select(
    subscribers: list[Subscriber], event: Event
) -> list[tuple[Webhook, list[dict[str, Any]]]]:
    """For each webhook, the event's records that any of its rules accept, in event order."""
    selected = []
    for hook, nodes in subscribers:
        if nodes is None:
            records = list(event.records)
        else:
            records = [r for r in event.records if any(filters.evaluate(n, r) for n in nodes)]
        if records:
            selected.append((hook, records))
    return selected
