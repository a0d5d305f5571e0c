"""S2 fan-out: one event to 1,000 webhooks, beside bare aiohttp sending the same 1,000 requests.

    python -m bench.s2_fanout [--webhooks 1000] [--concurrency 64] [--rounds 3] [--quick]

The gateway runs on a fresh SQLite file seeded directly (bench/seed.py) with `--webhooks`
Active POST webhooks of the benchmark's group, each on its own path of the loopback receiver
(`/fan/<i>`) with a rule for every Invoice update. Each round publishes one Invoice update event
and stops two clocks: when the receiver has counted one request on every path ("received"), and
when /metrics says the store recorded every one of them as delivered ("recorded", the figure).
serve runs in its default layout, each worker with GATEWAY_WORKER_CONCURRENCY=2 x
`--concurrency` senders, so the one group may have `--concurrency` in flight in each worker
(half its senders).

Baseline: one pooled aiohttp session POSTing as many signed bodies to as many distinct paths of
the same receiver (`/base/<i>`), `--concurrency` in flight, persisting nothing. One such round
runs before each gateway round and one after the last (the gateway up and idle meanwhile), and
each gateway round is compared with the mean of the two beside it: a shared machine's speed
moves within a run, and neighbours see it at the same speed. The figures are medians over
`--rounds` rounds: the gateway's times, its rounds' baselines, and its rounds' ratios.
Target: publish → all recorded at most 1.5x the baseline (the ratio is the price of storing,
claiming, rendering, signing and recording each notification).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence

import aiohttp

from bench import seed
from bench.common import Body, Receiver, Report, delivered_count, gateway, signed_bodies

TARGET = 1.5


def seed_fanout(database_url: str, receiver: str, count: int) -> None:
    """`count` webhooks of the benchmark's group, one receiver path each, all on Invoice U."""
    with seed.connect(database_url) as conn:
        seed.subscribed(conn, [f"{receiver}/fan/{i}" for i in range(count)], "fan")


async def gateway_rounds(
    receiver: Receiver,
    webhooks: int,
    inflight: int,
    rounds: int,
    bare: Callable[[], Awaitable[float]],
) -> tuple[list[tuple[float, float]], list[float]]:
    """(received, recorded) seconds after publishing, for each round, and the seconds of the
    `bare()` rounds run before each and after the last."""

    async def prepare(url: str) -> None:
        await asyncio.to_thread(seed_fanout, url, receiver.url, webhooks)

    # The group may have half the senders in flight (per_group_concurrency "auto").
    env = {"GATEWAY_WORKER_CONCURRENCY": str(2 * inflight)}
    out, bases = [], []
    async with gateway(env=env, prepare=prepare) as gw, gw.client() as api:
        for r in range(1, rounds + 1):
            bases.append(await bare())
            event = {"tableKey": "Invoice", "eventType": "U", "records": [{"id": str(r)}]}
            start = time.perf_counter()
            (await api.post("/api/v1/Events", json=event)).raise_for_status()
            await receiver.wait_for(r * webhooks, timeout=300, prefix="/fan/")
            received = time.perf_counter() - start
            while await delivered_count(api) < r * webhooks:
                await asyncio.sleep(0.01)
            out.append((received, time.perf_counter() - start))
        bases.append(await bare())
    return out, bases


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
        bodies = signed_bodies(args.webhooks)

        async def bare() -> float:
            return await bare_fanout(receiver.url, bodies, args.concurrency)

        rounds, bases = await gateway_rounds(
            receiver, args.webhooks, args.concurrency, args.rounds, bare
        )
        if (seen := await receiver.count("/base/")) != len(bases) * args.webhooks:
            raise AssertionError(f"the receiver saw {seen} baseline requests")
    add_rows(report, args, rounds, bases)
    report.print()


def add_rows(
    report: Report,
    args: argparse.Namespace,
    rounds: Sequence[tuple[float, float]],
    bases: Sequence[float],
) -> None:
    """The bare rounds; the gateway's, each against the mean of the bare rounds beside it."""
    beside = [(a + b) / 2 for a, b in itertools.pairwise(bases)]
    base = statistics.median(beside)
    received = statistics.median(r for r, _ in rounds)
    recorded = [r for _, r in rounds]
    ratios = [r / b for r, b in zip(recorded, beside, strict=True)]
    ratio, median = statistics.median(ratios), statistics.median(recorded)
    each = ", ".join(f"{b * 1000:.0f}" for b in bases)
    report.add(
        f"bare aiohttp, {args.concurrency} in flight (in order: {each} ms)",
        f"{base * 1000:.0f} ms ({args.webhooks / base:,.0f}/s)",
    )
    report.add(
        "gateway: publish → all received",
        f"{received * 1000:.0f} ms",
        f"{base * 1000:.0f} ms",
        f"{statistics.median(r / b for (r, _), b in zip(rounds, beside, strict=True)):.2f}x",
    )
    each = ", ".join(f"{r * 1000:.0f} ms {x:.2f}x" for r, x in zip(recorded, ratios, strict=True))
    report.add(
        f"gateway: publish → all recorded (rounds: {each})",
        f"{median * 1000:.0f} ms ({args.webhooks / median:,.0f}/s)",
        f"{base * 1000:.0f} ms",
        f"{ratio:.2f}x",
        f"≤ {TARGET:g}x",
        ratio <= TARGET,
    )


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
