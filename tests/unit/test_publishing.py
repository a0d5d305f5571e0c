"""Publishing without HTTP, on a memory:// store: which webhooks receive which records, the
worker of the same process taking what it has room for, the wake-up for the rest, and no
promise to the worker outliving a publish that fails or is cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest

from gateway import app, lifecycle
from gateway.config import Settings
from gateway.delivery import Worker
from gateway.errors import StoreError
from gateway.models import (
    DeliveryOrder,
    Event,
    Notification,
    NotificationState,
    Webhook,
    utcnow,
)
from gateway.netguard import AddressPolicy
from gateway.outbound import Outbound
from gateway.publishing import Publishing
from gateway.store import Store
from gateway.store.base import Added, WebhookEdit
from gateway.store.sqlite import ThrowawaySqliteStore
from gateway.wakeup import Wakeup
from tests.factories import Wakes, make_event, make_rule, make_webhook
from tests.throwaway import column

# A webhook's share is 2 held (twice its concurrency), a claim's worth 3.
SETTINGS = dataclasses.replace(
    Settings(), claim_batch_size=3, per_webhook_concurrency=1, poll_interval=30.0
)


async def subscribed(store: Store, group: uuid.UUID, *filters: str | None) -> Webhook:
    """A stored webhook with a rule for Invoice updates per filter (one without, by default)."""
    hook = make_webhook(group)
    await store.add_webhooks([hook])
    await store.add_rules([make_rule(hook, filter=text) for text in filters or (None,)])
    return hook


def invoices(group: uuid.UUID, count: int) -> list[Event]:
    return [make_event(group) for _ in range(count)]


@contextlib.asynccontextmanager
async def running_worker(store: Store) -> AsyncIterator[Worker]:
    """A running worker on this store; its sends are refused before they leave (loopback is
    not allowed), so it never sends anything."""
    async with Outbound(policy=AddressPolicy()) as outbound:
        worker = Worker(SETTINGS, store, outbound)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await asyncio.sleep(0)  # run() starts delivering
        try:
            yield worker
        finally:
            stop.set()
            await task


def room_for(worker: Worker, hook: Webhook) -> list[bool]:
    """What the worker would take of this webhook now, asked three times (its share is 2)."""
    return [worker.handoff.take_fresh(hook.webhook_id, hook.group_key) for _ in range(3)]


async def test_each_webhook_receives_the_records_its_rules_accept(store: Store) -> None:
    group = uuid.uuid4()
    cheap = await subscribed(store, group, "total lt 100")
    dear = await subscribed(store, group, "total gt 100", "id eq '1'")  # two rules, one note
    every = await subscribed(store, group)
    await subscribed(store, uuid.uuid4())  # another group's
    records = ({"id": "1", "total": 10}, {"id": "2", "total": 500}, {"id": "3", "total": 20})
    event = make_event(group, records=records)
    notes = await Publishing(store, Wakeup()).publish([event], utcnow())
    received = {n.webhook_id: [r["id"] for r in n.records] for n in notes}
    assert received == {
        cheap.webhook_id: ["1", "3"],
        dear.webhook_id: ["1", "2"],
        every.webhook_id: ["1", "2", "3"],
    }
    stored = column(store, "SELECT notification_id FROM notifications")
    assert {str(n.notification_id) for n in notes} == stored
    assert column(store, "SELECT event_id FROM events") == {str(event.event_id)}


async def test_an_event_no_rule_accepts_is_stored_without_notifications(store: Store) -> None:
    group = uuid.uuid4()
    await subscribed(store, group, "total gt 100")
    wakes = Wakes()
    event = make_event(group)  # total 10
    assert await Publishing(store, Wakeup(wakes)).publish([event], utcnow()) == []
    assert column(store, "SELECT event_id FROM events") == {str(event.event_id)}
    assert column(store, "SELECT notification_id FROM notifications") == set()
    assert wakes.count == 0


async def test_pending_notifications_wake_the_workers_once_a_publish(store: Store) -> None:
    group = uuid.uuid4()
    for _ in range(2):
        await subscribed(store, group)
    wakes = Wakes()
    notes = await Publishing(store, Wakeup(wakes)).publish(invoices(group, 3), utcnow())
    assert len(notes) == 6
    assert column(store, "SELECT state FROM notifications") == {NotificationState.PENDING.value}
    assert wakes.count == 1


async def test_a_paused_webhooks_notifications_are_parked_and_wake_no_one(store: Store) -> None:
    group = uuid.uuid4()
    hook = await subscribed(store, group)
    await store.edit_webhook(
        group, hook.webhook_id, WebhookEdit({}, status=lifecycle.PAUSE), utcnow()
    )
    wakes = Wakes()
    await Publishing(store, Wakeup(wakes)).publish(invoices(group, 2), utcnow())
    assert column(store, "SELECT state FROM notifications") == {NotificationState.PARKED.value}
    assert wakes.count == 0


async def test_the_worker_of_the_process_takes_its_share_and_the_rest_wakes_a_claim(
    store: Store,
) -> None:
    group = uuid.uuid4()
    hook = await subscribed(store, group)
    wakes = Wakes()
    publishing = Publishing(store, Wakeup(wakes))
    async with running_worker(store) as worker:
        publishing.handoff = worker.handoff
        notes = await publishing.publish(invoices(group, 3), utcnow())
        owners = [n.lease_owner for n in notes]
        assert owners == [worker.owner, worker.owner, None]
        assert wakes.count == 1  # for the one left to a claim
        assert room_for(worker, hook) == [False, False, False]  # held now, not promised


async def test_what_the_worker_takes_entirely_wakes_no_one(store: Store) -> None:
    group = uuid.uuid4()
    await subscribed(store, group)
    wakes = Wakes()
    publishing = Publishing(store, Wakeup(wakes))
    async with running_worker(store) as worker:
        publishing.handoff = worker.handoff
        notes = await publishing.publish(invoices(group, 2), utcnow())
        assert {n.lease_owner for n in notes} == {worker.owner}
        assert wakes.count == 0


async def test_a_strict_webhooks_notifications_are_never_handed_over(store: Store) -> None:
    """They join its queue instead (gateway.ordering): the first is due, for a claim, which
    the worker is woken for; the others wait behind it. The worker keeps its room."""
    group = uuid.uuid4()
    hook = await subscribed(store, group)
    edit = WebhookEdit({"delivery_order": DeliveryOrder.STRICT})
    await store.edit_webhook(group, hook.webhook_id, edit, utcnow())
    wakes = Wakes()
    publishing = Publishing(store, Wakeup(wakes))
    async with running_worker(store) as worker:
        publishing.handoff = worker.handoff
        notes = await publishing.publish(invoices(group, 3), utcnow())
        assert [n.lease_owner for n in notes] == [None, None, None]
        assert wakes.count == 1
        assert room_for(worker, hook) == [True, True, False]
    states = column(store, "SELECT state FROM notifications ORDER BY sequence")
    assert states == {NotificationState.PENDING.value, NotificationState.WAITING.value}
    waiting = "SELECT count(*) FROM notifications WHERE state = 'waiting' AND lease_owner IS NULL"
    assert column(store, waiting) == {2}


class RefusingStore(ThrowawaySqliteStore):
    """A store whose add_events fails, as a database that went away would."""

    async def add_events(self, events: Sequence[Event], notes: Sequence[Notification]) -> Added:
        raise StoreError("the database went away")


class StallingStore(ThrowawaySqliteStore):
    """A store whose add_events never answers, for a publish cancelled while it waits."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()

    async def add_events(self, events: Sequence[Event], notes: Sequence[Notification]) -> Added:
        self.entered.set()
        await asyncio.Event().wait()
        raise AssertionError("never answers")


@contextlib.asynccontextmanager
async def beside_a_worker(
    store: ThrowawaySqliteStore, group: uuid.UUID
) -> AsyncIterator[tuple[Publishing, Worker, Webhook]]:
    """`store` opened with a webhook of `group`, and publishing handing off to a running
    worker on it."""
    async with store:
        hook = await subscribed(store, group)
        publishing = Publishing(store, Wakeup())
        async with running_worker(store) as worker:
            publishing.handoff = worker.handoff
            yield publishing, worker, hook


async def test_a_publish_the_store_refuses_gives_the_worker_its_room_back() -> None:
    group = uuid.uuid4()
    async with beside_a_worker(RefusingStore(), group) as (publishing, worker, hook):
        with pytest.raises(StoreError):
            await publishing.publish(invoices(group, 2), utcnow())
        assert room_for(worker, hook) == [True, True, False]


async def test_a_cancelled_publish_gives_the_worker_its_room_back() -> None:
    store, group = StallingStore(), uuid.uuid4()
    async with beside_a_worker(store, group) as (publishing, worker, hook):
        task = asyncio.create_task(publishing.publish(invoices(group, 2), utcnow()))
        await asyncio.wait_for(store.entered.wait(), 1.0)  # promised, and storing
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert room_for(worker, hook) == [True, True, False]


async def test_the_worker_attached_to_the_context_is_handed_publishes_until_detached(
    store: Store,
) -> None:
    group = uuid.uuid4()
    await subscribed(store, group)
    async with running_worker(store) as worker, Outbound(policy=AddressPolicy()) as outbound:
        ctx = app._context(SETTINGS, store, outbound, None)
        wakes = Wakes()
        worker.wake = wakes.wake  # type: ignore[method-assign]
        ctx.worker = worker  # as the lifespan does when this process delivers
        [attached] = await ctx.publishing.publish(invoices(group, 1), utcnow())
        ctx.worker = None
        [detached] = await ctx.publishing.publish(invoices(group, 1), utcnow())  # left to a claim
    assert (attached.lease_owner, detached.lease_owner) == (worker.owner, None)
    assert wakes.count == 0  # a detached worker is not woken
