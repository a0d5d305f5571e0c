"""S5, isolation: one partner that never answers must not slow the healthy ones down.

    python -m bench.s5_isolation [--events 20000] [--concurrency 32] [--delivery-timeout 2]
        [--quick]

Two gateway runs on fresh SQLite files, the same events published to both, one receiver
process. The baseline is S1's 10-webhook run (bench.s1_throughput.gateway_run). The measured
run adds an eleventh webhook on the receiver's `/hang/` path, which answers the handshake and
then never answers a notification: each of its sends holds a worker slot until the delivery
timeout, fails, and is retried after the backoff until the webhook is Errored. The clock stops
when the receiver has counted every healthy notification and the store records them all as
delivered (the hanging webhook's never succeed, so the store's delivered total is the healthy
one). Target: the healthy rate is at least 90% of the baseline.

Both runs use `GATEWAY_DELIVERY_TIMEOUT=--delivery-timeout` (2 s; the gateway's default is
10 s) so that the hanging webhook's sends time out and retry within the run instead of merely
sitting in flight. `--quick` sends 2,000 events: a smoke run, not a measurement.
"""

from __future__ import annotations

import argparse
import asyncio

from bench.common import Receiver, Report
from bench.s1_throughput import QUICK_EVENTS, gateway_run

TARGET = 0.9
HEALTHY = 10


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, help="events per run (20000; 2000 with --quick)")
    parser.add_argument("--concurrency", type=int, default=32, help="in flight per webhook")
    parser.add_argument("--delivery-timeout", type=float, default=2.0, help="seconds")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args()
    args.events = args.events or (QUICK_EVENTS if args.quick else 20_000)
    return args


async def main() -> None:
    args = parse_args()
    env = {"GATEWAY_DELIVERY_TIMEOUT": str(args.delivery_timeout)}
    report = Report(
        f"S5 isolation: {args.events:,} events to {HEALTHY} healthy webhooks and 1 that never "
        f"answers, {args.concurrency} in flight per webhook, delivery timeout "
        f"{args.delivery_timeout:g} s"
    )
    with Receiver.start() as receiver:
        base = await gateway_run(receiver, args.events, HEALTHY, args.concurrency, env=env)
        run = await gateway_run(
            receiver, args.events, HEALTHY, args.concurrency, hanging=1, env=env
        )
    ratio = run.rate / base.rate
    report.add("S1, 10 healthy webhooks (baseline)", f"{base.rate:,.0f}/s")
    report.add(
        "10 healthy + 1 hanging: healthy rate",
        f"{run.rate:,.0f}/s",
        f"{base.rate:,.0f}/s",
        f"{ratio:.1%}",
        f"≥ {TARGET:.0%}",
        ratio >= TARGET,
    )
    report.add("hanging webhook: failed attempts during the run", str(run.failed_attempts))
    report.print()


if __name__ == "__main__":
    asyncio.run(main())
