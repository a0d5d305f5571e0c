"""S7, latency: publish-to-receipt p50/p99 at a steady 200 events a second.

    python -m bench.s7_latency [--seconds 30] [--rate 200] [--quick]

One receiver process; all traffic on loopback. Events go out one per request on an absolute
schedule (event i at start + i / rate, each request in its own task so a slow answer does not
delay the next; a late tick is sent at once and the worst lateness is printed). Every record
carries `sentAt`, the wall-clock time just before its request is made, and the receiver notes
receipt - sentAt for each body that holds one.

The baseline is a bare aiohttp session posting a signed body straight to the receiver on the
same schedule. The gateway phase runs `gateway serve` with its default delivery settings on a
fresh SQLite file, one Active webhook, and publishes through an aiohttp session too, so both
phases pay the same for the sending side. Each phase first sends for one second unmeasured
(connections, caches). Target: the gateway's p99 under 100 ms. `--quick` measures 5 seconds.
The gateway's CPU per event over the measured part (publish and delivery, all its threads) is
printed too: at a steady rate a fixed cost per request shows there, not in S1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.common import BODY_TEMPLATE, Receiver, Report, events, gateway, subscribe
from gateway import signing

TARGET = 0.1
WARMUP = 1.0
WAIT_TIMEOUT = 120.0
Send = Callable[[int], Coroutine[Any, Any, None]]


@dataclass
class Latencies:
    """What one phase measured: seconds from sentAt to receipt, and the schedule's worst lag."""

    seconds: list[float]
    lag: float
    cpu: float = 0.0  # CPU seconds the measured process(es) used while measured

    def quantile(self, q: int) -> float:
        """The q-th percentile."""
        return statistics.quantiles(self.seconds, n=100, method="inclusive")[q - 1]

    def summary(self) -> str:
        return (
            f"p50 {self.quantile(50) * 1e3:.1f} ms, p99 {self.quantile(99) * 1e3:.1f} ms, "
            f"max {max(self.seconds) * 1e3:.1f} ms (n={len(self.seconds):,})"
        )


async def steady(send: Send, rate: float, count: int, first: int = 0) -> float:
    """Call send(first + i) at start + i / rate, each in its own task; return the worst lag."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks = []
    lag = 0.0
    for i in range(count):
        due = start + i / rate
        if (wait := due - loop.time()) > 0:
            await asyncio.sleep(wait)
        lag = max(lag, loop.time() - due)
        tasks.append(asyncio.create_task(send(first + i)))
    await asyncio.gather(*tasks)
    return lag


async def measure(
    receiver: Receiver,
    prefix: str,
    send: Send,
    rate: float,
    seconds: float,
    cpu: Callable[[], float] = lambda: 0.0,
) -> Latencies:
    """Warm up, then send at `rate` for `seconds`; wait until the receiver has every body.
    `cpu()` (CPU seconds so far) is read when the measured part starts and ends."""
    warm = int(rate * WARMUP)
    await steady(send, rate, warm)
    await receiver.wait_for(warm, WAIT_TIMEOUT, prefix)
    await receiver.latencies(reset=True)
    count = int(rate * seconds)
    before = cpu()
    lag = await steady(send, rate, count, first=warm)
    await receiver.wait_for(warm + count, WAIT_TIMEOUT, prefix)
    return Latencies(await receiver.latencies(reset=True), lag, cpu() - before)


async def bare_aiohttp_latencies(receiver: Receiver, rate: float, seconds: float) -> Latencies:
    """A bare aiohttp session posting signed bodies straight to the receiver."""
    secret = signing.generate_secret()
    prefix = f"/base/{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession() as session:

        async def send(i: int) -> None:
            record = {"id": str(i), "total": i, "sentAt": time.time()}
            body = json.dumps({**BODY_TEMPLATE, "records": [record]}).encode()
            headers = signing.STANDARD_WEBHOOKS.headers(
                [secret], f"msg_{i}", int(time.time()), body
            )
            headers["content-type"] = "application/json"
            async with session.post(f"{receiver.url}{prefix}", data=body, headers=headers) as r:
                r.raise_for_status()

        return await measure(receiver, prefix, send, rate, seconds)


async def gateway_latencies(receiver: Receiver, rate: float, seconds: float) -> Latencies:
    """One event per request published to a gateway with one webhook on the receiver."""
    prefix = f"/hook/{uuid.uuid4().hex[:8]}"
    async with gateway() as gw:
        async with gw.client() as api:
            await subscribe(api, [f"{receiver.url}{prefix}"])
        headers = {"Api-Key": gw.key}
        async with aiohttp.ClientSession(gw.url, headers=headers) as session:

            async def send(i: int) -> None:
                async with session.post(
                    "/api/v1/Events", json=events(1, i, sentAt=time.time())
                ) as r:
                    r.raise_for_status()

            return await measure(receiver, prefix, send, rate, seconds, gw.cpu_seconds)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, help="measured seconds (30; 5 with --quick)")
    parser.add_argument("--rate", type=float, default=200.0, help="events a second")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    args.seconds = args.seconds or (5.0 if args.quick else 30.0)
    return args


async def main() -> None:
    args = parse_args()
    report = Report(
        f"S7 latency: {args.rate:g} events/s for {args.seconds:g} s, one event per request"
    )
    with Receiver.start() as receiver:
        base = await bare_aiohttp_latencies(receiver, args.rate, args.seconds)
        through = await gateway_latencies(receiver, args.rate, args.seconds)
    report.add("bare aiohttp to receiver (baseline)", base.summary())
    report.add(
        "gateway, 1 webhook, sqlite",
        through.summary(),
        f"p99 {base.quantile(99) * 1e3:.1f} ms",
        f"p99 {through.quantile(99) / base.quantile(99):.1f}x",
        f"p99 < {TARGET * 1e3:.0f} ms",
        through.quantile(99) < TARGET,
    )
    for label, phase in (("bare aiohttp", base), ("gateway", through)):
        report.add(f"schedule's worst lag, {label}", f"{phase.lag * 1e3:.1f} ms")
    # The gateway's cost of one event, published and delivered, when it keeps up.
    per_event = through.cpu / len(through.seconds) * 1e6
    report.add("gateway CPU per event (publish and delivery)", f"{per_event:.0f} µs")
    report.print()


if __name__ == "__main__":
    asyncio.run(main())
