"""A gateway on PostgreSQL whose database connections are terminated under it, as an operator's
`pg_terminate_backend`, a server restart or a failover would.

The gateway takes the API; a delivery worker with a store (a pool and a LISTEN connection) of
its own stands for a `gateway worker` process. Its poll interval is 30 s, so a notification that
arrives within seconds was found through LISTEN/NOTIFY, not by a poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from gateway.delivery import Worker
from gateway.store.postgres import PostgresStore
from tests.gateway_server import RunningGateway, gateway_settings, run_gateway
from tests.partner import Partner, invoice_update, subscribe
from tests.receiver import Answer, Receiver

pytestmark = pytest.mark.postgres
POLL = 30.0  # the worker's poll interval: longer than any wait for a prompt delivery below
PROMPT = 10.0  # seconds a delivery woken by NOTIFY may take here, on a busy 2-core machine
LEASE = 6.0
# Seconds the deliveries interrupted below may take in all: less than a lease and the poll
# after it, so none of them may have waited for its lease to end (a failed claim or record).
RECOVERY = 20.0
LISTENING = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() " \
            "AND pid <> pg_backend_pid() AND query LIKE 'LISTEN %'"  # fmt: skip
TERMINATE_ALL = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


@contextlib.asynccontextmanager
async def api_gateway(
    tmp_path: Path, url: str, *, run_worker: bool = False
) -> AsyncIterator[RunningGateway]:
    """A gateway taking the API (and delivering, with `run_worker`). Its settings serve a worker
    beside it too: leases short enough for a test to see them end, and claims small enough to be
    sent well within them (a claim is sent only while 2 x delivery_timeout of its lease is left)."""
    settings = gateway_settings(
        tmp_path, database_url=url, delivery_timeout=2.0, lease_seconds=LEASE, poll_interval=POLL,
        claim_batch_size=16, run_worker=run_worker,
    )  # fmt: skip
    async with run_gateway(settings) as gateway:
        yield gateway


@contextlib.asynccontextmanager
async def worker_beside(gateway: RunningGateway, url: str) -> AsyncIterator[Worker]:
    """A running delivery worker with its own store on the same database."""
    async with PostgresStore(url) as store:
        worker = Worker(gateway.ctx.settings, store, gateway.ctx.outbound)
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        try:
            yield worker
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)


async def sql(url: str, query: str) -> list[asyncpg.Record]:
    """Rows of one query, on a connection of the test's own."""
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()


async def listener_pid(url: str, other_than: int | None = None) -> int:
    """The server pid of the LISTEN connection, once there is one (other than `other_than`)."""
    async with asyncio.timeout(PROMPT):
        while True:
            pids = {row[0] for row in await sql(url, LISTENING)} - {other_than}
            if pids:
                [pid] = pids
                return int(pid)
            await asyncio.sleep(0.05)


def record_ids(partner: Partner, path: str = "/hook") -> dict[str, set[str]]:
    """Each delivered record id with the webhook-ids it arrived under (verified signatures)."""
    arrived: dict[str, set[str]] = defaultdict(set)
    for seen in partner.receiver.notifications(path):
        for record in partner.verify(seen)["records"]:
            arrived[record["id"]].add(seen.headers["webhook-id"])
    return arrived


async def wait_for_records(partner: Partner, wanted: set[str], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not wanted <= set(record_ids(partner)):
            await asyncio.sleep(0.05)


async def test_a_worker_is_woken_through_a_reconnected_listen_connection(
    tmp_path: Path, postgres_url: str, receiver: Receiver
) -> None:
    async with api_gateway(tmp_path, postgres_url) as gateway:
        partner = await subscribe(gateway, receiver)
        async with worker_beside(gateway, postgres_url):
            first = await listener_pid(postgres_url)
            [[terminated]] = await sql(postgres_url, f"SELECT pg_terminate_backend({first})")
            assert terminated
            await listener_pid(postgres_url, other_than=first)  # it came back
            for number in ("1", "2"):
                # The first may be claimed by the wake that follows a reconnect; the second
                # can be found only through the NOTIFY on the new connection.
                await partner.publish(invoice_update([{"id": number}]))
                await wait_for_records(partner, {number}, PROMPT)


@pytest.mark.parametrize("layout", ["worker-beside", "worker-inside"])
async def test_terminating_every_gateway_connection_mid_delivery_loses_nothing(
    tmp_path: Path, postgres_url: str, receiver: Receiver, layout: str
) -> None:
    inside = layout == "worker-inside"  # serve's own worker, sharing its store
    async with api_gateway(tmp_path, postgres_url, run_worker=inside) as gateway:
        partner = await subscribe(gateway, receiver)
        receiver.plan("/hook", Answer(delay=0.2))  # every delivery in flight for a while
        published = {str(i) for i in range(120)}
        beside = contextlib.nullcontext() if inside else worker_beside(gateway, postgres_url)
        async with beside:
            for first in range(0, 120, 40):
                batch = [invoice_update([{"id": str(i)}]) for i in range(first, first + 40)]
                await partner.publish(*batch)
            for arrived in (10, 50, 90):
                await receiver.wait_for(arrived, "/hook", timeout=30)
                assert receiver.in_flight["/hook"] > 0  # mid-delivery
                [[terminated]] = await sql(postgres_url, TERMINATE_ALL)
                assert terminated >= (2 if inside else 3)  # the pools, and the LISTEN
            # Claims and records cut short were tried again: nothing waited for its lease.
            await wait_for_records(partner, published, RECOVERY)
            # The next publish goes out at once: the pools and LISTEN are back.
            await partner.publish(invoice_update([{"id": "next"}]))
            await wait_for_records(partner, {"next"}, PROMPT)
            # And every outcome was recorded: nothing is left pending (or leased).
            async with asyncio.timeout(PROMPT):
                while (await gateway.ctx.store.delivery_stats(gateway.ctx.clock()))["pending"]:
                    await asyncio.sleep(0.1)
        arrived = record_ids(partner)
        assert set(arrived) == published | {"next"}
        # At least once, and a notification sent twice keeps its webhook-id.
        assert all(len(ids) == 1 for ids in arrived.values())
        stats = await gateway.ctx.store.delivery_stats(gateway.ctx.clock())
        assert stats["succeeded"] == len(published) + 1 and stats["failed"] == 0
