"""The PostgreSQL store's own costs, in process, without HTTP: what a change to its statements
or its schema moves.

    python -m bench.pg_cycle [--database-url postgresql://...] [--notifications 20000]
                             [--batch 64]

On a fresh schema with one webhook, it repeats S1's cycle without the HTTP: publish `--batch`
events (one notification each), claim them, record each as delivered. It prints, per
notification: the wall time, the CPU of this process, and the CPU of the server's backends
serving it (bench.local_postgres.ServerCpu, so the server must run on this machine); then how
many claims rewrote their row in place (heap-only updates, migration 0015), read from the
server's statistics once the store has closed, and the size of the notifications' heap. When
the database has the pg_stat_statements extension (it must be in shared_preload_libraries), it
also prints the server time of the five dearest statements (every client's: run it on a quiet
server).

No targets: these explain S1's PostgreSQL rows. For a baseline, run the same script against an
older checkout (PYTHONPATH=that/checkout, from a directory outside this one), alternately with
this one: on a shared machine the server's times move by a fifth between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from datetime import timedelta
from urllib.parse import urlsplit

import asyncpg

from bench.common import Report, fresh_database
from bench.local_postgres import DEFAULT_URL, ServerCpu, is_local
from bench.store_ops import batch, delivered
from gateway.ids import new_id
from gateway.models import utcnow
from gateway.store.postgres import PostgresStore
from tests.factories import make_webhook
from tests.postgres import notification_updates

# The extension's schema, or None: the bench's connections search only their own schema.
STATEMENTS_SCHEMA = """
SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_stat_statements'
"""
DEAREST = """
SELECT total_exec_time, calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 60)
FROM {schema}.pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY total_exec_time DESC LIMIT 5
"""
Figures = tuple[float, float, float]


def warm_up(count: int, size: int) -> int:
    """The notifications cycled before the measured `count`: a tenth as many, whole batches."""
    return count // 10 // size * size


async def cycle(url: str, conn: asyncpg.Connection, count: int, size: int) -> Figures:
    """Seconds per notification (wall, this process's CPU, the server's CPU) of `count`
    notifications, after `warm_up(count, size)` of them; the statements' clock starts after."""
    async with PostgresStore(url) as store:
        hook = make_webhook()
        await store.add_webhooks([hook])
        lease = utcnow() + timedelta(minutes=5)

        async def run(notifications: int) -> None:
            for _ in range(notifications // size):
                await store.add_events(*batch(hook, size, new_id))
                claimed = await store.claim_due(utcnow(), size, "w", lease)
                await store.record_attempts([delivered(note, "w") for note in claimed])

        await run(warm_up(count, size))
        # What autovacuum does within a minute of a table's growth: without it, the plans the
        # store's connections cached while the table was small would scan it whole.
        await conn.execute("ANALYZE notifications")
        if schema := await conn.fetchval(STATEMENTS_SCHEMA):
            await conn.execute(f"SELECT {schema}.pg_stat_statements_reset()")
        server = ServerCpu([os.getpid()], urlsplit(url).port or 5432)
        server()
        wall, cpu = time.perf_counter(), time.process_time()
        await run(count)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return wall / count, cpu / count, server() / count


async def main(args: argparse.Namespace) -> None:
    if not is_local(args.database_url):
        raise SystemExit(f"{args.database_url}: the server must run on this machine")
    count = args.notifications - args.notifications % args.batch
    report = Report(f"PostgreSQL store cycle: {count:,} notifications, {args.batch} at a time")
    async with fresh_database(args.database_url, "") as url:
        conn = await asyncpg.connect(url)
        try:
            wall, cpu, server = await cycle(url, conn, count, args.batch)
            claims = count + warm_up(count, args.batch)
            # Each notification claimed, then settled: two updates.
            done, in_place = await notification_updates(conn, 2 * claims)
            heap = await conn.fetchval("SELECT pg_relation_size('notifications')")
            schema = await conn.fetchval(STATEMENTS_SCHEMA)
            dearest = [] if schema is None else await conn.fetch(DEAREST.format(schema=schema))
        finally:
            await conn.close()
    us = 1e6
    report.add("publish, claim and settle: wall time", f"{wall * us:.1f} µs/notification")
    report.add("CPU of this process", f"{cpu * us:.1f} µs/notification")
    report.add("CPU of the server's backends", f"{server * us:.1f} µs/notification")
    report.add("updates made in place (heap-only), warm-up included", f"{in_place:,} of {done:,}",
               f"{claims:,} claims", f"{in_place / claims:.0%} of the claims")  # fmt: skip
    report.add("the notifications' heap, every row settled", f"{heap / 2**20:.1f} MB",
               f"{claims:,} rows")  # fmt: skip
    for total_ms, calls, text in dearest:
        report.add(f"server time: `{text}`", f"{total_ms * 1e3 / count:.1f} µs/notification",
                   f"{calls:,} calls")  # fmt: skip
    if schema is None:
        report.add("server time per statement", "pg_stat_statements is not installed")
    report.print()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL, help="a local PostgreSQL")
    parser.add_argument("--notifications", type=int, default=20_000, help="to cycle")
    parser.add_argument("--batch", type=int, default=64, help="published and claimed at a time")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
