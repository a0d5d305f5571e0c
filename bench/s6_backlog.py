"""S6 backlog: a gateway starting on 1,000,000 pending notifications: its memory and drain rate.

    python -m bench.s6_backlog [--pending 1000000] [--webhooks 10] [--drain 50000]
        [--baseline 20000] [--quick]

Before `gateway serve` starts, its fresh SQLite file is seeded directly (bench/seed.py, one
executemany per 20,000 events in its own transaction): `--webhooks` Active POST webhooks on
paths of the loopback receiver, each with a rule for Invoice updates, and `--pending` / webhooks
Invoice update events each with a pending notification, due now, for every webhook. The seeding
time is printed.

Then the gateway starts (serve's default layout and settings) and drains. Its resident memory
(bench.common.rss_bytes over Gateway.pids) is sampled every 0.5 s from start to the end of the
measurement. The drain rate is taken over `--drain` deliveries counted by the receiver, from the
1,000th to the 1,000 + drain-th (so start-up is not in it); draining all 1,000,000 would take
several minutes, so the rate is that of the first 5%. One GET /metrics (whose delivery_stats
counts the queue) is timed afterwards, with the backlog still almost whole.

Baseline (S1's shape, in the same run): a fresh gateway, the same number of webhooks subscribed
through the API, `--baseline` notifications published through the API (baseline / webhooks
events, 100 to a request, four requests at a time) and timed from the first publish until the
receiver has them all and /metrics records them all as delivered. It runs before the backlog
and again after it, and the drain is compared with the two taken together (their
notifications over their seconds): the machine's speed moves over the minutes the seeding
takes, and a baseline measured on one side only moved S6's ratio between 72% and 106% on the
same code.

Targets: peak RSS < 300 MB; drain rate >= 80% of the baseline rate.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench import seed
from bench.common import (
    Gateway,
    Receiver,
    Report,
    event_batches,
    gateway,
    percent,
    publish,
    rss_bytes,
    subscribe,
    wait_delivered,
)

SKIP = 1_000  # deliveries left out of the drain rate: start-up


def seed_backlog(database_url: str, receiver: str, webhooks: int, pending: int) -> float:
    """Webhooks with a rule each and `pending` notifications spread over them; return seconds."""
    with seed.connect(database_url) as conn:
        hooks = seed.subscribed(conn, [f"{receiver}/s6/{i}" for i in range(webhooks)], "s6")
        return seed.insert_backlog(conn, hooks, pending // webhooks)


class RssSampler:
    """Resident memory of a gateway's processes, sampled in the background."""

    def __init__(self, gw: Gateway, interval: float = 0.5) -> None:
        self.gw, self.interval = gw, interval
        self.samples: list[int] = []
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.samples.append(sum(rss_bytes(pid) for pid in self.gw.pids))
            await asyncio.sleep(self.interval)

    async def stop(self) -> int:
        """Stop sampling; return the peak."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.samples.append(sum(rss_bytes(pid) for pid in self.gw.pids))
        return max(self.samples)


async def backlog(receiver: Receiver, args: argparse.Namespace) -> dict[str, float]:
    """Seeding seconds, peak RSS, drain rate and one /metrics scrape's seconds."""
    found: dict[str, float] = {}

    async def prepare(url: str) -> None:
        found["seeding"] = await asyncio.to_thread(
            seed_backlog, url, receiver.url, args.webhooks, args.pending
        )
        print(f"seeded {args.pending:,} pending notifications in {found['seeding']:.1f} s")

    # Not settled: it starts draining at once, and the first SKIP deliveries are start-up.
    async with gateway(prepare=prepare, settle=False) as gw, gw.client() as api:
        sampler = RssSampler(gw)
        await receiver.wait_for(SKIP, timeout=300, prefix="/s6/")
        start = time.perf_counter()
        await receiver.wait_for(SKIP + args.drain, timeout=1200, prefix="/s6/")
        found["rate"] = args.drain / (time.perf_counter() - start)
        start = time.perf_counter()
        (await api.get("/metrics")).raise_for_status()
        found["metrics"] = time.perf_counter() - start
        found["peak_rss"] = await sampler.stop()
        found["first_rss"] = sampler.samples[0]
    return found


async def baseline(receiver: Receiver, args: argparse.Namespace) -> float:
    """Notifications a second, published through the API to fresh webhooks and delivered."""
    async with gateway() as gw, gw.client() as api:
        await subscribe(api, [f"{receiver.url}/s1/{i}" for i in range(args.webhooks)])
        batches = event_batches(args.baseline // args.webhooks)
        start = time.perf_counter()
        await publish(gw, batches)
        await receiver.wait_for(args.baseline, timeout=600, prefix="/s1/")
        await wait_delivered(api, args.baseline)
        rate: float = args.baseline / (time.perf_counter() - start)
        return rate


async def main(args: argparse.Namespace) -> None:
    report = Report(
        f"S6 backlog: {args.pending:,} pending notifications over {args.webhooks} webhooks, SQLite"
    )
    with Receiver.start() as receiver:
        before = await baseline(receiver, args)
        found = await backlog(receiver, args)
        after = await baseline(receiver, args)
    s1 = 2 / (1 / before + 1 / after)  # both runs' notifications over both runs' seconds
    mb = 1024 * 1024
    report.add("seeding (direct SQLite, not the gateway)", f"{found['seeding']:.1f} s")
    report.add(f"S1 shape: {args.baseline:,} published to {args.webhooks} webhooks, "
               f"before and after the backlog ({before:,.0f} and {after:,.0f}/s)",
               f"{s1:,.0f}/s")  # fmt: skip
    report.add("RSS of serve and its worker processes, first sample / peak",
               f"{found['first_rss'] / mb:.0f} / {found['peak_rss'] / mb:.0f} MB",
               target="< 300 MB", met=found["peak_rss"] < 300 * mb)  # fmt: skip
    report.add(f"drain rate, deliveries {SKIP:,} to {SKIP + args.drain:,}",
               f"{found['rate']:,.0f}/s", f"{s1:,.0f}/s", percent(found["rate"], s1),
               "≥ 80%", found["rate"] >= 0.8 * s1)  # fmt: skip
    report.add("one GET /metrics (delivery_stats) at the backlog", f"{found['metrics']:.2f} s")
    report.print()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pending", type=int, default=1_000_000, help="notifications seeded")
    parser.add_argument("--webhooks", type=int, default=10)
    parser.add_argument("--drain", type=int, default=50_000, help="deliveries timed")
    parser.add_argument("--baseline", type=int, default=20_000, help="notifications published")
    parser.add_argument("--quick", action="store_true", help="100,000 pending, 10,000 timed")
    args = parser.parse_args()
    if args.quick:
        args.pending, args.drain, args.baseline = 100_000, 10_000, 5_000
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
