"""How much of a publish the worker of the same process takes straight from it (`take_fresh`):
never more than a claim would give it, in all, for one webhook or for one group."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import pytest

from gateway.config import Settings
from gateway.delivery import Worker
from gateway.netguard import AddressPolicy
from gateway.outbound import Outbound
from gateway.store import Store, store_for_url
from tests.factories import make_notification, make_webhook

SETTINGS = dataclasses.replace(
    Settings(), claim_batch_size=3, per_webhook_concurrency=1, poll_interval=30.0
)


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[Worker]:
    """A running worker on an empty memory:// store (it never sends anything here)."""
    async with Outbound(policy=AddressPolicy()) as outbound, store_for_url("memory://") as store:
        running = Worker(settings, store, outbound)
        stop = asyncio.Event()
        task = asyncio.create_task(running.run(stop))
        await asyncio.sleep(0)  # run() starts delivering
        yield running
        stop.set()
        await task


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    async with running_worker(SETTINGS) as running:
        yield running


async def test_a_worker_that_is_not_running_takes_nothing(store: Store) -> None:
    async with Outbound(policy=AddressPolicy()) as outbound:
        idle = Worker(SETTINGS, store, outbound)
        hook = make_webhook()
        assert not idle.handoff.take_fresh(hook.webhook_id, hook.group_key)


async def test_take_fresh_stops_at_a_webhooks_share_and_at_the_workers_limit() -> None:
    # A group may hold its 1 sender's worth and a claim of 3; the worker twice that: 8.
    settings = dataclasses.replace(SETTINGS, per_group_concurrency=1)
    hooks = [make_webhook() for _ in range(5)]  # each of its own group
    async with running_worker(settings) as worker:
        take = worker.handoff.take_fresh
        # Twice a webhook's concurrency, as claims leave a saturated webhook out.
        assert [take(hooks[0].webhook_id, hooks[0].group_key) for _ in range(3)] == [
            True,
            True,
            False,
        ]
        assert all(take(h.webhook_id, h.group_key) for h in hooks[1:4] for _ in range(2))
        # The worker's holding limit in all.
        assert not take(hooks[4].webhook_id, hooks[4].group_key)


async def test_take_fresh_stops_at_a_groups_holding_limit() -> None:
    # One send per group at a time and claims of 2: a group holds at most 3, as claims leave
    # it out then.
    settings = dataclasses.replace(
        SETTINGS, claim_batch_size=2, per_webhook_concurrency=5, per_group_concurrency=1
    )
    group = make_webhook().group_key
    hooks = [make_webhook(group) for _ in range(4)]
    async with running_worker(settings) as worker:
        taken = [worker.handoff.take_fresh(hook.webhook_id, group) for hook in hooks]
        assert taken == [True, True, True, False]
        other = make_webhook()
        assert worker.handoff.take_fresh(other.webhook_id, other.group_key)
        worker.handoff.forgo([make_notification(hooks[0], lease_owner=worker.owner)])
        assert worker.handoff.take_fresh(hooks[3].webhook_id, group)


async def test_forgo_gives_the_room_back(worker: Worker) -> None:
    hook = make_webhook()
    assert all(worker.handoff.take_fresh(hook.webhook_id, hook.group_key) for _ in range(2))
    leased = make_notification(hook, lease_owner=worker.owner)
    unleased = make_notification(hook)
    worker.handoff.forgo([leased, unleased])  # the store refused the publish
    assert worker.handoff.take_fresh(hook.webhook_id, hook.group_key)
    assert not worker.handoff.take_fresh(hook.webhook_id, hook.group_key)
