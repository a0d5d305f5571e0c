"""max_webhooks_per_group on both stores: a create past it is a 409 naming the limit and creates
nothing of its batch, and creates that race each other never pass it together, because the
store counts in the transaction that inserts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from gateway.errors import LimitReached
from gateway.store import Store, store_for_url
from gateway.store.base import Query
from tests.factories import make_webhook
from tests.gateway_server import RunningGateway, run_gateway
from tests.receiver import Receiver
from tests.tenant import STORES, hook_body, problem, settings_for

MOST = 5
RACERS = 6  # concurrent creates of 2 webhooks each: room for 2 of them under MOST


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A file SQLite store, or a PostgreSQL one with a connection for every racer."""
    url = settings_for(request, tmp_path).database_url
    async with store_for_url(url, pool_size=RACERS + 2) as opened:
        yield opened


async def test_racing_creates_never_pass_the_limit_together(store: Store) -> None:
    group = uuid4()

    async def add_two() -> bool:
        try:
            pair = [make_webhook(group), make_webhook(group)]
            await store.add_webhooks(pair, most_per_group=MOST)
        except LimitReached:
            return False
        return True

    async with asyncio.timeout(30):
        added = await asyncio.gather(*(add_two() for _ in range(RACERS)))
    assert sorted(added) == [False] * (RACERS - 2) + [True, True]
    assert await store.count_webhooks(group) == 4


async def test_a_batch_past_the_limit_adds_none_of_it(store: Store) -> None:
    group, other = uuid4(), uuid4()
    await store.add_webhooks([make_webhook(group) for _ in range(4)], most_per_group=MOST)
    with pytest.raises(LimitReached, match="at most 5 webhooks") as refused:
        await store.add_webhooks([make_webhook(group), make_webhook(group)], most_per_group=MOST)
    assert refused.value.status == 409
    assert await store.count_webhooks(group) == 4
    await store.add_webhooks([make_webhook(group)], most_per_group=MOST)  # the last place
    # Another group's count is its own.
    await store.add_webhooks([make_webhook(other) for _ in range(MOST)], most_per_group=MOST)
    assert await store.count_webhooks(other) == MOST
    await store.add_webhooks([make_webhook(group)])  # no limit asked: none applies


@pytest.fixture(params=STORES)
async def limited(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    settings = settings_for(request, tmp_path, max_webhooks_per_group=MOST)
    async with run_gateway(settings) as running:
        yield running


async def create(api: httpx.AsyncClient, receiver: Receiver, count: int) -> httpx.Response:
    bodies = [hook_body(callbackUrl=receiver.plan("/hook")) for _ in range(count)]
    return await api.post("/api/v1/Webhooks", json=bodies)


async def stored(gateway: RunningGateway, key: Any) -> int:
    return (await gateway.ctx.store.query_webhooks(key.group_key, Query())).total_count


async def test_a_create_past_the_limit_is_a_409_naming_it(
    limited: RunningGateway, receiver: Receiver
) -> None:
    key, record = await limited.add_key("acme")
    async with limited.client(key) as api:
        assert (await create(api, receiver, 4)).status_code == 200
        handshakes = len(receiver.seen)
        answer = problem(await create(api, receiver, 2), 409)
        assert "at most 5 webhooks (max_webhooks_per_group)" in answer["detail"]
        assert "this one has 4" in answer["detail"]
        assert await stored(limited, record) == 4
        # Refused before any handshake: the callbacks never hear of it.
        assert len(receiver.seen) == handshakes
        # Deleting one makes room.
        first = (await api.get("/api/v1/Webhooks/query")).json()["records"][0]["webhookId"]
        assert (await api.delete(f"/api/v1/Webhooks/{first}")).status_code == 200
        assert (await create(api, receiver, 2)).status_code == 200
    assert await stored(limited, record) == MOST


async def test_racing_api_creates_never_pass_the_limit_together(
    limited: RunningGateway, receiver: Receiver
) -> None:
    key, record = await limited.add_key("acme")
    async with limited.client(key) as api, asyncio.timeout(60):
        answers = await asyncio.gather(*(create(api, receiver, 2) for _ in range(RACERS)))
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [200, 200] + [409] * (RACERS - 2)
    assert await stored(limited, record) == 4
