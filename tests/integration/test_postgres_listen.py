"""The PostgreSQL store's LISTEN connection comes back after it is lost, or when it could not be
opened at first, and wakes the workers once it is back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest

from gateway.store.postgres import Listener, PostgresStore
from gateway.store.queries import NEW_WORK_CHANNEL
from tests.integration.test_store_contract import add_hook, publish
from tests.pg_proxy import Proxy

pytestmark = pytest.mark.postgres
WAIT = 10.0


class Wakes:
    """Counts calls of the callback given to a store or a listener."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self.changed.set()

    async def reach(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while self.count < count:
                self.changed.clear()
                await self.changed.wait()


async def eventually(check: Callable[[], object]) -> None:
    async with asyncio.timeout(WAIT):
        while not check():
            await asyncio.sleep(0.02)


async def listener_pids(url: str) -> set[int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND query LIKE 'LISTEN %'"
        )
        return {row[0] for row in rows}
    finally:
        await conn.close()


async def test_a_terminated_listen_connection_comes_back_and_wakes_the_workers(
    postgres_url: str,
) -> None:
    async with PostgresStore(postgres_url) as api, PostgresStore(postgres_url) as worker:
        wakes = Wakes()
        await worker.watch_new_work(wakes)
        [first] = await listener_pids(postgres_url)
        conn = await asyncpg.connect(postgres_url)
        try:
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", first)
        finally:
            await conn.close()
        await wakes.reach(1)  # once back, for whatever was committed while it was away
        [second] = await listener_pids(postgres_url)
        assert second != first
        hook = await add_hook(api)
        await publish(api, hook)
        await wakes.reach(2)  # and NOTIFY reaches it again


async def test_a_listener_that_cannot_connect_at_first_keeps_trying(postgres_url: str) -> None:
    async with Proxy(postgres_url) as proxy, PostgresStore(postgres_url) as api:
        proxy.refuse = 3
        wakes = Wakes()
        listener = Listener(proxy.url, [NEW_WORK_CHANNEL], lambda _channel, _payload: wakes())
        try:
            await listener.start()  # refused: it goes on in the background
            await wakes.reach(1)  # connected at last, and says so
            assert proxy.refuse == 0
            hook = await add_hook(api)
            await publish(api, hook)
            await wakes.reach(2)
        finally:
            await listener.close()


async def test_closing_stops_reconnecting(postgres_url: str) -> None:
    async with Proxy(postgres_url) as proxy:
        proxy.refuse = 1_000
        listener = Listener(proxy.url, [NEW_WORK_CHANNEL], lambda *_: None)
        await listener.start()
        await eventually(lambda: proxy.refuse < 999)  # it is trying again
        await listener.close()
        reconnecting = [t for t in asyncio.all_tasks()
                        if t.get_coro().__qualname__ == "Listener._reconnect"]  # type: ignore[union-attr]  # fmt: skip
        assert not reconnecting
