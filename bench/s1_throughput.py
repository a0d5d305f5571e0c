"""Delivery throughput: the gateway end to end beside bare aiohttp and httpx clients, one run.

    .venv/bin/python scripts/bench_delivery.py [--events 10000] [--webhooks 1] [--concurrency 32]
        [--database-url URL ...] [--workers N[,N...]]

All traffic stays on loopback. One receiver process (uvicorn + httptools, counting requests)
serves every phase. The baselines send the same signed bodies to the same receiver with the
same number in flight and persist nothing. The gateway phase starts `gateway serve` on a fresh
SQLite file, publishes the events (100 per request), and stops the clock when the receiver has
counted every notification and the store has recorded every one as delivered.

`--database-url postgresql://...` runs the gateway phase on PostgreSQL instead, in a fresh
schema of that database that is dropped afterwards (`sqlite` names the fresh SQLite file; give
the option twice to compare). `--workers N` turns the in-process worker off and starts N
`gateway worker` processes beside `gateway serve` (each with `--concurrency` in flight);
`--workers 1,2,4` runs each count. Several runs print one table, a column per database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path

import aiohttp
import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway import signing
from scripts.bench_support import (
    Receiver,
    create_key,
    delivered_count,
    gateway_process,
)
from tests.acceptance.processes import start_worker, stop

BODY_TEMPLATE = {"tableKey": "Invoice", "eventType": "U", "records": [{"id": "1", "total": 10}]}


def signed_bodies(count: int) -> list[tuple[bytes, dict[str, str]]]:
    """The same kind of signed JSON body the gateway sends, one per notification."""
    secret = signing.generate_secret()
    out = []
    stamp = int(time.time())
    for i in range(count):
        body = json.dumps({**BODY_TEMPLATE, "sequence": i}).encode()
        headers = signing.webhook_headers([secret], f"msg_{i}", stamp, body)
        headers["content-type"] = "application/json"
        out.append((body, headers))
    return out


async def bare_aiohttp(
    url: str, bodies: list[tuple[bytes, dict[str, str]]], inflight: int
) -> float:
    """Requests a second from one pooled aiohttp session."""
    connector = aiohttp.TCPConnector(limit=inflight)
    async with aiohttp.ClientSession(connector=connector) as session:
        return await _drive(bodies, inflight, lambda b, h: _aiohttp_post(session, url, b, h))


async def _aiohttp_post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> None:
    async with session.post(url, data=body, headers=headers) as response:
        await response.read()


async def bare_httpx(url: str, bodies: list[tuple[bytes, dict[str, str]]], inflight: int) -> float:
    """Requests a second from one pooled httpx AsyncClient."""
    limits = httpx.Limits(max_connections=inflight, max_keepalive_connections=inflight)
    async with httpx.AsyncClient(limits=limits) as client:
        return await _drive(bodies, inflight, lambda b, h: client.post(url, content=b, headers=h))


async def _drive(bodies, inflight, send) -> float:  # type: ignore[no-untyped-def]
    queue = list(reversed(bodies))

    async def lane() -> None:
        while queue:
            body, headers = queue.pop()
            await send(body, headers)

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(inflight)))
    return len(bodies) / (time.perf_counter() - start)


async def gateway_rate(
    receiver: Receiver, events: int, webhooks: int, inflight: int, database: str, workers: int
) -> float:
    """Notifications a second through the gateway: publish -> received and recorded."""
    with tempfile.TemporaryDirectory() as workdir, ExitStack() as stack:
        env = {
            "GATEWAY_PER_WEBHOOK_CONCURRENCY": str(inflight),
            "GATEWAY_WORKER_CONCURRENCY": str(max(inflight, 64)),
            "GATEWAY_RUN_WORKER": "false" if workers else "true",
        }
        async with fresh_database(database, workdir) as url:
            key = create_key(Path(workdir), url)
            served = stack.enter_context(gateway_process(Path(workdir), url, env))
            for _ in range(workers):
                stack.callback(stop, start_worker(Path(workdir), url, env))
            async with httpx.AsyncClient(
                base_url=served, headers={"Api-Key": key}, timeout=60
            ) as api:
                await _subscribe(api, receiver, webhooks)
                before = await receiver.count()
                start = time.perf_counter()
                await _publish(api, events)
                expected = events * webhooks
                await receiver.wait_for(before + expected, timeout=600)
                while await delivered_count(api) < expected:
                    await asyncio.sleep(0.05)
                rate = expected / (time.perf_counter() - start)
            stack.close()  # the processes end before their schema is dropped
            return rate


@asynccontextmanager
async def fresh_database(database: str, workdir: str) -> AsyncIterator[str]:
    """A fresh SQLite file in `workdir`, or a fresh schema in a PostgreSQL database."""
    if database == "sqlite":
        yield f"sqlite:///{workdir}/gateway.db"
        return
    schema = f"bench_{uuid.uuid4().hex}"
    conn = await asyncpg.connect(database)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        separator = "&" if "?" in database else "?"
        yield f"{database}{separator}search_path={schema}"
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


async def _subscribe(api: httpx.AsyncClient, receiver: Receiver, webhooks: int) -> None:
    for i in range(webhooks):
        hook = {
            "name": f"bench-{i}",
            "requestContentType": "Full",
            "callbackHttpMethod": "POST",
            "callbackUrl": f"{receiver.url}/hook/{i}",
            "retryCount": 5,
        }
        created = (await api.post("/api/v1/Webhooks", json=[hook])).raise_for_status().json()
        rule = {"webhookId": created[0]["webhookId"], "tableKey": "Invoice", "eventType": "U"}
        (await api.post("/api/v1/WebhookRules", json=[rule])).raise_for_status()


async def _publish(api: httpx.AsyncClient, events: int, per_request: int = 100) -> None:
    for start in range(0, events, per_request):
        batch = [
            {**BODY_TEMPLATE, "records": [{"id": str(start + i), "total": i}]}
            for i in range(min(per_request, events - start))
        ]
        (await api.post("/api/v1/Events", json=batch)).raise_for_status()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--webhooks", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--database-url", action="append", help="sqlite or postgresql://...")
    parser.add_argument("--workers", default="0", help="gateway worker processes, e.g. 1,2,4")
    args = parser.parse_args()
    databases = args.database_url or ["sqlite"]
    worker_counts = [int(n) for n in args.workers.split(",")]
    bodies = signed_bodies(args.events)
    rates: dict[tuple[int, str], float] = {}
    with Receiver.start() as receiver:
        target = f"{receiver.url}/hook/baseline"
        base = await bare_aiohttp(target, bodies, args.concurrency)
        httpx_rate = await bare_httpx(target, bodies, args.concurrency)
        for workers in worker_counts:
            for database in databases:
                rates[workers, database] = await gateway_rate(
                    receiver, args.events, args.webhooks, args.concurrency, database, workers
                )
    print(
        f"{args.events} events x {args.webhooks} webhook(s), {args.concurrency} in flight, "
        f"cpu count {os.cpu_count()}"
    )
    for name, rate in (("bare aiohttp", base), ("bare httpx", httpx_rate)):
        print(f"  {name:<14} {rate:9.0f} deliveries/s   {rate / base:6.1%} of bare aiohttp")
    if len(rates) == 1:
        rate = next(iter(rates.values()))
        print(f"  {'gateway':<14} {rate:9.0f} deliveries/s   {rate / base:6.1%} of bare aiohttp")
        return
    names = [d if d == "sqlite" else d.split("://")[0] for d in databases]
    print("\n| worker processes | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for workers in worker_counts:
        label = f"{workers} (+ serve)" if workers else "in serve"
        cells = [f"{rates[workers, d]:,.0f}/s" for d in databases]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    asyncio.run(main())
