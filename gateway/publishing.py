"""Publishing: accepted events become notifications, stored with them, handed to the worker of
this process where it has room, and the other workers woken for the rest.

    events -> matching (rules x events) -> notifications, pending or parked as each webhook is
           -> store.add_events (all or none) -> the hand-off keeps its promises (gateway.handoff)
           -> the wake-up, when some were left pending for a claim (gateway.wakeup)

Callable without HTTP: the API's handler parses the request, calls `publish` and shapes the
answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gateway import lifecycle, matching
from gateway.handoff import HandOff, Promises, promising
from gateway.ids import new_id
from gateway.models import Event, Notification, NotificationState
from gateway.store import Store
from gateway.wakeup import Wakeup


class Publishing:
    """Publishes events to the webhooks whose rules match them."""

    def __init__(self, store: Store, wakeup: Wakeup) -> None:
        self.store = store
        self.wakeup = wakeup
        self.handoff: HandOff | None = None  # the worker of this process's, when it runs one

    async def publish(self, events: Sequence[Event], now: datetime) -> list[Notification]:
        """Store the events and their notifications (all or none), and see them delivered:
        those handed to the worker of this process are queued there, and for the others
        pending the workers are woken. `now` is when the events were accepted. The stored
        notifications: none for a webhook deleted meanwhile (store.Added.dropped)."""
        matched = await matching.matches(self.store, events)
        with promising(self.handoff, now) as promises:
            notes = [_notification(match, now, promises) for match in matched]
            added = await self.store.add_events(events, notes)
            promises.keep(notes, added)
        if added.due or any(n.lease_owner is None and added.pending(n) for n in notes):
            self.wakeup.new_work()  # some were left for a claim
        return added.stored(notes)


def _notification(match: matching.Match, now: datetime, promises: Promises) -> Notification:
    """The notification of one match: pending if its webhook looks Active (a first guess from
    the webhook as read; the store decides in its transaction), and leased to the worker of
    this process when it takes it."""
    event, hook, records = match
    active = lifecycle.is_active(hook, now)
    handed = active and promises.take(hook)
    return Notification(
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
        lease_until=promises.lease_until if handed else None,
        lease_owner=promises.owner if handed else None,
        timestamp=now,
    )
