"""S2 fan-out: one event to 1,000 webhooks, beside bare aiohttp sending the same 1,000 requests.

    python -m bench.s2_fanout [--webhooks 1000] [--concurrency 64] [--rounds 3] [--quick]

The gateway runs on a fresh SQLite file seeded directly (bench/seed.py) with `--webhooks`
Active POST webhooks of the benchmark's group, each on its own path of the loopback receiver
(`/fan/<i>`) with a rule for every Invoice update. Each round publishes one Invoice update event
and stops two clocks: when the receiver has counted one request on every path ("received"), and
when /metrics says the store recorded every one of them as delivered ("recorded", the figure).
The worker runs in `gateway serve` with GATEWAY_WORKER_CONCURRENCY=2 x `--concurrency`, so
its one group has `--concurrency` in flight (half the senders).

Baseline: one pooled aiohttp session POSTing as many signed bodies to as many distinct paths of
the same receiver (`/base/<i>`), `--concurrency` in flight, persisting nothing. Both figures are
the median of `--rounds` rounds. There is no fixed target: the ratio is the price of storing,
claiming, rendering, signing and recording each notification.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence

import aiohttp

from bench import seed
from bench.common import Body, Receiver, Report, delivered_count, gateway, signed_bodies


def seed_fanout(database_url: str, receiver: str, count: int) -> None:
    """`count` webhooks of the benchmark's group, one receiver path each, all on Invoice U."""
    with seed.connect(database_url) as conn:
        seed.subscribed(conn, [f"{receiver}/fan/{i}" for i in range(count)], "fan")


async def gateway_rounds(
    receiver: Receiver, webhooks: int, inflight: int, rounds: int
) -> list[tuple[float, float]]:
    """(received, recorded) seconds after publishing, for each round."""

    async def prepare(url: str) -> None:
        await asyncio.to_thread(seed_fanout, url, receiver.url, webhooks)

    # The group may have half the senders in flight (per_group_concurrency "auto").
    env = {"GATEWAY_WORKER_CONCURRENCY": str(2 * inflight)}
    out = []
    async with gateway(env=env, prepare=prepare) as gw, gw.client() as api:
        for r in range(1, rounds + 1):
            event = {"tableKey": "Invoice", "eventType": "U", "records": [{"id": str(r)}]}
            start = time.perf_counter()
            (await api.post("/api/v1/Events", json=event)).raise_for_status()
            await receiver.wait_for(r * webhooks, timeout=300, prefix="/fan/")
            received = time.perf_counter() - start
            while await delivered_count(api) < r * webhooks:
                await asyncio.sleep(0.01)
            out.append((received, time.perf_counter() - start))
    return out


async def bare_fanout(receiver: str, bodies: Sequence[Body], inflight: int) -> float:
    """Seconds for one aiohttp session to POST body i to `/base/<i>`, `inflight` at a time."""
    queue = list(reversed(list(enumerate(bodies))))
    connector = aiohttp.TCPConnector(limit=inflight)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def lane() -> None:
            while queue:
                i, (body, headers) = queue.pop()
                async with session.post(f"{receiver}/base/{i}", data=body, headers=headers) as a:
                    await a.read()

        start = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(inflight)))
        return time.perf_counter() - start


async def main(args: argparse.Namespace) -> None:
    report = Report(f"S2 fan-out: one event to {args.webhooks:,} webhooks, SQLite")
    with Receiver.start() as receiver:
        bare = [await bare_fanout(receiver.url, signed_bodies(args.webhooks), args.concurrency)
                for _ in range(args.rounds)]  # fmt: skip
        if (seen := await receiver.count("/base/")) != args.rounds * args.webhooks:
            raise AssertionError(f"the receiver saw {seen} baseline requests")
        rounds = await gateway_rounds(receiver, args.webhooks, args.concurrency, args.rounds)
    base = statistics.median(bare)
    received = statistics.median(r for r, _ in rounds)
    recorded = statistics.median(r for _, r in rounds)
    each = ", ".join(f"{r * 1000:.0f}" for _, r in rounds)
    report.add(f"bare aiohttp, {args.concurrency} in flight",
               f"{base * 1000:.0f} ms ({args.webhooks / base:,.0f}/s)")  # fmt: skip
    report.add("gateway: publish → all received", f"{received * 1000:.0f} ms",
               f"{base * 1000:.0f} ms", f"{received / base:.2f}x")  # fmt: skip
    report.add(f"gateway: publish → all recorded (rounds: {each} ms)",
               f"{recorded * 1000:.0f} ms ({args.webhooks / recorded:,.0f}/s)",
               f"{base * 1000:.0f} ms", f"{recorded / base:.2f}x")  # fmt: skip
    report.print()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--webhooks", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=3, help="events published, one by one")
    parser.add_argument("--quick", action="store_true", help="200 webhooks, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.webhooks, args.rounds = 200, 2
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
