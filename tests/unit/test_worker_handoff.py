"""How much of a publish the worker of the same process takes straight from it (`take_fresh`):
never more than a claim would give it, in all or for one webhook."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from gateway.config import Settings
from gateway.delivery import Worker
from gateway.netguard import AddressPolicy
from gateway.outbound import Outbound
from gateway.store.memory import MemoryStore
from tests.factories import make_notification, make_webhook

SETTINGS = dataclasses.replace(
    Settings(), claim_batch_size=3, per_webhook_concurrency=1, poll_interval=30.0
)


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    """A running worker on an empty in-memory store (it never sends anything here)."""
    async with Outbound(policy=AddressPolicy()) as outbound:
        running = Worker(SETTINGS, MemoryStore(), outbound)
        stop = asyncio.Event()
        task = asyncio.create_task(running.run(stop))
        await asyncio.sleep(0)  # run() starts delivering
        yield running
        stop.set()
        await task


async def test_a_worker_that_is_not_running_takes_nothing() -> None:
    async with Outbound(policy=AddressPolicy()) as outbound:
        idle = Worker(SETTINGS, MemoryStore(), outbound)
        assert not idle.take_fresh(make_webhook().webhook_id)


async def test_take_fresh_stops_at_a_webhooks_share_and_at_a_claims_worth(worker: Worker) -> None:
    one, two, three = (make_webhook().webhook_id for _ in range(3))
    # Twice a webhook's concurrency, as claims leave a saturated webhook out.
    assert [worker.take_fresh(one) for _ in range(3)] == [True, True, False]
    assert worker.take_fresh(two)
    assert not worker.take_fresh(three)  # claim_batch_size promised in all


async def test_forgo_gives_the_room_back(worker: Worker) -> None:
    hook = make_webhook()
    assert all(worker.take_fresh(hook.webhook_id) for _ in range(2))
    leased = make_notification(hook, lease_owner=worker.owner)
    unleased = make_notification(hook)
    worker.forgo([leased, unleased])  # the store refused the publish
    assert worker.take_fresh(hook.webhook_id)
    assert not worker.take_fresh(hook.webhook_id)
