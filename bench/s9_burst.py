"""S9, a burst: 5,000 events published at once, from the first publish to the last receipt,
beside bare aiohttp sending 5,000 bodies.

    python -m bench.s9_burst [--events 5000] [--concurrency 32] [--webhooks 1,10] [--quick]

S1's phase on a smaller scale, timed to the receipt: `gateway serve` in its default layout on a
fresh SQLite file, N webhooks subscribed, the events published through aiohttp, 100 a request,
4 requests at a time (bench.s1_throughput.gateway_run). The clock runs from the first publish
to the receiver's last receipt, by the receiver's own clock (a poll would stop it up to 50 ms
late, 5% of a second's burst); the CPU is read once the store records every notification as
delivered. What S1 spreads over 20,000 events shows whole here: the first claim after a
publish, the workers' start from idle, the tail of the last batch.

Baseline: a bare aiohttp session sending `--events` signed bodies to the same receiver,
`--concurrency` in flight, before each phase and after the last, as in S1: a phase's baseline
is the two runs beside it taken together. With 10 webhooks the gateway delivers 10 x the
events: its rate, notifications a second, is compared with the bare client's.
Targets: the rate at least 50% of the baseline's; CPU per notification (gateway processes and
receiver, the publisher not counted, as in S1) at most 2.0x the bare client's and receiver's.
`--quick` sends 2,000 events, to 1 webhook.
"""

from __future__ import annotations

import argparse
import asyncio
import functools

from bench.common import Receiver, Report, signed_bodies
from bench.s1_throughput import (
    CPU_TARGET,
    Plan,
    add_rows,
    between_baselines,
    gateway_run,
    worker_label,
)

TARGET = 0.5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, help="events in the burst (5000; 2000 with --quick)")
    parser.add_argument("--concurrency", type=int, default=32, help="in flight per webhook")
    parser.add_argument("--webhooks", help="webhook counts (1,10; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args()
    args.events = args.events or (2_000 if args.quick else 5_000)
    args.webhooks = args.webhooks or ("1" if args.quick else "1,10")
    return args


async def main() -> None:
    args = parse_args()
    report = Report(
        f"S9 burst: {args.events:,} events at once, {args.concurrency} in flight, "
        "first publish to last receipt"
    )
    with Receiver.start() as receiver:
        plans = [
            Plan(
                f"gateway burst, {webhooks} webhook(s), sqlite, {worker_label(None)}",
                functools.partial(
                    gateway_run,
                    receiver,
                    args.events,
                    webhooks,
                    args.concurrency,
                    until_received=True,
                ),
                TARGET,
                CPU_TARGET,
            )
            for webhooks in (int(n) for n in args.webhooks.split(","))
        ]
        bodies = signed_bodies(args.events)
        add_rows(report, await between_baselines(receiver, bodies, args.concurrency, plans))
    report.print()


if __name__ == "__main__":
    asyncio.run(main())
