"""S3 matching scale: publish latency with 100,000 webhooks against the same with 1,000.

    python -m bench.s3_matching [--webhooks 100000] [--baseline-webhooks 1000]
        [--per-group 100] [--publishes 200] [--quick]

Each size runs on its own fresh SQLite file, seeded directly (bench/seed.py) before `gateway
serve` starts: `--webhooks` Active POST webhooks to the loopback receiver, `--per-group` to a
group (so 100,000 webhooks span 1,000 groups and 1,000 span 10; the benchmark's key owns one of
them). Webhook j of every group has two rules, as partners would write them: `U` events of table
j mod 4 (Invoice, Payment, Customer, Credit) whose `customerId = 'c<j>'`, and every `I` event of
the next table. Per group, 25 `Invoice U` rules come out of the index and exactly one filter
accepts `customerId = 'c0'`.

The figure: the latency of `POST /api/v1/Events` carrying one `Invoice U` event of customer c0
(so exactly one notification, which the worker delivers meanwhile), one request at a time from
one httpx client, after 20 unmeasured publishes; median and p95 over `--publishes`. The
baseline is a second gateway with `--baseline-webhooks`, running beside the first: publishes go
to one size and then the other, the order swapped every round, so a change in the shared
machine's speed reaches both alike. Target: the median at the large size is at most 1.5x the
baseline's. Every publish is checked to have made exactly one
notification, and the receiver to have received each of them on the one matching webhook.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass, field
from uuid import uuid4

import httpx

from bench import seed
from bench.common import Receiver, Report, gateway
from gateway.models import EventType, utcnow

TABLES = ("Invoice", "Payment", "Customer", "Credit")
WARMUP = 20


def seed_webhooks(database_url: str, receiver: str, total: int, per_group: int) -> float:
    """Seed `total` webhooks with two rules each, `per_group` to a group; return seconds."""
    start = time.perf_counter()
    with seed.connect(database_url) as conn:
        bench_group, user = seed.bench_key(conn)
        now = utcnow()
        for g in range(0, total // per_group):
            group = bench_group if g == 0 else uuid4()
            hooks, rules = [], []
            for j in range(per_group):
                url = f"{receiver}/s3/{total}/{g}/{j}"
                hook = seed.webhook(group, user, url, f"s3-{g}-{j}", now)
                hooks.append(hook)
                table = TABLES[j % len(TABLES)]
                rules.append(seed.rule(hook, table, EventType.UPDATE, f"customerId = 'c{j}'"))
                rules.append(seed.rule(hook, TABLES[(j + 1) % len(TABLES)], EventType.INSERT))
            seed.insert(conn, hooks, rules)
    return time.perf_counter() - start


@dataclass
class Size:
    """One gateway of the comparison: its webhooks, its API client, what it measured."""

    total: int
    api: httpx.AsyncClient
    seeding: float
    seconds: list[float] = field(default_factory=list)


async def open_size(
    stack: contextlib.AsyncExitStack, receiver: Receiver, total: int, per_group: int
) -> Size:
    """A gateway on a fresh SQLite file seeded with `total` webhooks, open until `stack` ends."""
    seeding: list[float] = []

    async def prepare(url: str) -> None:
        seeding.append(await asyncio.to_thread(seed_webhooks, url, receiver.url, total, per_group))

    gw = await stack.enter_async_context(gateway(prepare=prepare))
    api = await stack.enter_async_context(gw.client())
    return Size(total, api, seeding[0])


async def publish_one(size: Size, i: int) -> float:
    """Seconds for one publish that matches exactly one webhook."""
    event = {"tableKey": "Invoice", "eventType": "U",
             "records": [{"id": str(i), "customerId": "c0", "total": i}]}  # fmt: skip
    start = time.perf_counter()
    answer = (await size.api.post("/api/v1/Events", json=event)).raise_for_status().json()
    took = time.perf_counter() - start
    if answer["notificationCount"] != 1:
        raise AssertionError(f"the event made {answer['notificationCount']} notifications")
    return took


async def measure(receiver: Receiver, sizes: list[Size], publishes: int) -> None:
    """Publish to each size in turn, one request at a time, the order swapped every round, so
    that both see the machine at the same speed; then check every delivery arrived."""
    for i in range(WARMUP + publishes):
        for size in sizes if i % 2 == 0 else reversed(sizes):
            took = await publish_one(size, i)
            if i >= WARMUP:
                size.seconds.append(took)
    sent = WARMUP + publishes
    for size in sizes:
        await receiver.wait_for(sent, timeout=60, prefix=f"/s3/{size.total}/0/0")
        if (seen := await receiver.count(f"/s3/{size.total}/")) != sent:
            raise AssertionError(f"{seen} deliveries at size {size.total}, not {sent}")


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


async def main(args: argparse.Namespace) -> None:
    report = Report(
        f"S3 matching scale: one matching event among {args.webhooks:,} webhooks "
        f"({args.per_group} a group), SQLite"
    )
    with Receiver.start() as receiver:
        async with contextlib.AsyncExitStack() as stack:
            small = await open_size(stack, receiver, args.baseline_webhooks, args.per_group)
            large = await open_size(stack, receiver, args.webhooks, args.per_group)
            await measure(receiver, [small, large], args.publishes)
    base, big, seeding = small.seconds, large.seconds, large.seeding
    small_name, big_name = f"{args.baseline_webhooks:,} webhooks", f"{args.webhooks:,} webhooks"
    for name, pick in (("median", statistics.median), ("p95", p95)):
        b, x = pick(base) * 1000, pick(big) * 1000
        report.add(f"publish latency, {small_name}", f"{name} {b:.2f} ms")
        ratio = x / b
        target = "≤ 1.5x" if name == "median" else ""
        met = ratio <= 1.5 if name == "median" else None
        report.add(f"publish latency, {big_name}", f"{name} {x:.2f} ms",
                   f"{b:.2f} ms", f"{ratio:.2f}x", target, met)  # fmt: skip
    report.add(f"seeding {big_name} and {2 * args.webhooks:,} rules (direct SQLite)",
               f"{seeding:.1f} s")  # fmt: skip
    report.print()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--webhooks", type=int, default=100_000)
    parser.add_argument("--baseline-webhooks", type=int, default=1_000)
    parser.add_argument("--per-group", type=int, default=100, help="webhooks to a group")
    parser.add_argument("--publishes", type=int, default=200, help="measured publishes a size")
    parser.add_argument("--quick", action="store_true", help="10,000 webhooks, 100 publishes")
    args = parser.parse_args()
    if args.quick:
        args.webhooks, args.publishes = 10_000, 100
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
