"""The delivery worker with a Strict webhook (gateway.ordering), over loopback to a real
receiver, on SQLite and PostgreSQL: each settlement that makes the next notification due wakes
the worker, so a Strict queue drains one request at a time without waiting for a poll.

(The end-to-end tests of strict order, through failures, pauses, killed workers and several
worker processes, are tests/acceptance's.)"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import orjson
import pytest

from gateway.delivery import Worker
from tests.gateway_server import RunningGateway
from tests.partner import invoice_update, subscribe
from tests.receiver import Answer, Receiver


@pytest.fixture
def gateway(gateway_on_each_store: RunningGateway) -> RunningGateway:
    return gateway_on_each_store


@contextlib.asynccontextmanager
async def delivering(gateway: RunningGateway) -> AsyncIterator[Worker]:
    """A worker running as under `gateway serve`, woken by the gateway's publishes, polling
    only every 30 s: what it sends within a test, it sends because something woke it."""
    settings = dataclasses.replace(gateway.ctx.settings, poll_interval=30.0)
    worker = Worker(settings, gateway.ctx.store, gateway.ctx.outbound)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    gateway.ctx.wakeup.attach(worker)
    try:
        yield worker
    finally:
        gateway.ctx.wakeup.detach(worker)
        stop.set()
        await task


async def test_a_strict_queue_drains_one_at_a_time_without_waiting_for_a_poll(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(gateway, receiver, retry_count=5, deliveryOrder="Strict")
    assert partner.hook["deliveryOrder"] == "Strict"
    receiver.plan("/hook", Answer(delay=0.02))  # slow enough for a second send to overlap
    async with delivering(gateway):
        for _ in range(5):
            await partner.publish(invoice_update())
        seen = await receiver.wait_for(5, "/hook", timeout=10.0)
    assert [orjson.loads(s.body)["sequence"] for s in seen] == [1, 2, 3, 4, 5]
    assert receiver.peak_in_flight["/hook"] == 1


async def test_a_patch_to_unordered_sends_what_waited_at_once(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    """Strict behind a slow first answer, then PATCHed to Unordered: what waited behind it is
    due at once and goes out beside it, the worker woken by the PATCH."""
    partner = await subscribe(gateway, receiver, deliveryOrder="Strict")
    receiver.plan("/hook", Answer(delay=1.0), Answer())
    async with delivering(gateway):
        for _ in range(3):
            await partner.publish(invoice_update())
        await receiver.wait_for(1, "/hook")  # the first, being answered slowly
        answer = await partner.patch(deliveryOrder="Unordered")
        assert answer.json()["deliveryOrder"] == "Unordered"
        seen = await receiver.wait_for(3, "/hook", timeout=10.0)
    assert sorted(orjson.loads(s.body)["sequence"] for s in seen) == [1, 2, 3]
    assert receiver.peak_in_flight["/hook"] >= 2
