"""S5, isolation: a partner that never answers must not slow the healthy ones down, nor a noisy
tenant the other tenants.

    python -m bench.s5_isolation [--events 20000] [--concurrency 32] [--delivery-timeout 2]
        [--noisy-webhooks 300] [--quick]

One receiver process; every gateway run on a fresh SQLite file, serve's default layout, the
same events published in each. Two scenarios, each a measured run beside its baseline:

1. A hanging webhook in the group. The baseline is S1's 10-webhook run
   (bench.s1_throughput.gateway_run). The measured run adds an eleventh webhook on the
   receiver's `/hang/` path, which answers the handshake and then never answers a
   notification: each of its sends holds a worker slot until the delivery timeout, fails, and
   is retried after the backoff until the webhook is Errored. Target: the healthy rate is at
   least 90% of the baseline.
2. A noisy tenant. A healthy group publishes to 10 webhooks (S1's shape) and, meanwhile,
   creates one webhook at a time (a handshake each) with a pause of 0.25 s between creates.
   Baseline: that group alone, run before and again after the measured run and taken
   together (a shared machine's speed moves within minutes). Measured run: the same beside a
   noisy group with
   `--noisy-webhooks` webhooks whose deliveries hang (two events published to them before the
   clock starts, so their sends hang throughout) and as many whose handshakes hang: creates of
   100 in a loop, as many at once as make that number, each answered only when its handshakes
   have failed. Targets: the healthy delivery rate at least 90% of the baseline's, and the
   healthy creates' median answer time within twice the baseline's (their normal time).

Both scenarios use `GATEWAY_DELIVERY_TIMEOUT=--delivery-timeout` (2 s; the gateway's default
is 10 s) so that hanging sends time out and retry within the run instead of merely sitting in
flight; the handshake timeout stays at its default (10 s). The clock stops when the receiver
has counted every healthy notification and the store records them all as delivered (the
hanging webhooks' never succeed, so the store's delivered total is the healthy one).
`--quick` sends 2,000 events: a smoke run, not a measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    Gateway,
    Receiver,
    Report,
    event_batches,
    gateway,
    metric,
    publish,
    wait_delivered,
)
from bench.s1_throughput import QUICK_EVENTS, WAIT_TIMEOUT, delivery_env, gateway_run
from tests.acceptance.processes import create_key

TARGET = 0.9
HEALTHY = 10
CREATE_TARGET = 2.0  # the healthy creates' median, at most this many times the normal one
CREATE_PAUSE = 0.25
BATCH = 100  # webhooks per create request: the API's largest batch


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, help="events per run (20000; 2000 with --quick)")
    parser.add_argument("--concurrency", type=int, default=32, help="in flight per webhook")
    parser.add_argument("--delivery-timeout", type=float, default=2.0, help="seconds")
    parser.add_argument(
        "--noisy-webhooks", type=int, default=300, help="the noisy group's webhooks of each kind"
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args()
    args.events = args.events or (QUICK_EVENTS if args.quick else 20_000)
    return args


@dataclass
class TenantRun:
    """The healthy group's figures in one run, and what the noisy group went through."""

    notifications: int
    seconds: float
    create_seconds: list[float]
    gateway_cpu: float  # seconds, serve and its worker processes
    noisy_creates: list[float] = field(default_factory=list)  # answer times, all refused
    failed_deliveries: int = 0  # the noisy group's: the healthy group's all succeed
    failed_handshakes: int = 0  # the same

    @property
    def rate(self) -> float:
        return self.notifications / self.seconds

    @property
    def create_median(self) -> float:
        return statistics.median(self.create_seconds)


def hooks(urls: list[str], start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "name": f"bench-{start + i}",
            "requestContentType": "Full",
            "callbackHttpMethod": "POST",
            "callbackUrl": url,
            "retryCount": 5,
        }
        for i, url in enumerate(urls)
    ]


async def subscribe_in_batches(api: httpx.AsyncClient, urls: list[str]) -> None:
    """Webhooks at `urls`, created 100 a request, each with a rule for Invoice updates."""
    for start in range(0, len(urls), BATCH):
        created = await api.post("/api/v1/Webhooks", json=hooks(urls[start : start + BATCH]))
        rules = [
            {"webhookId": hook["webhookId"], "tableKey": "Invoice", "eventType": "U"}
            for hook in created.raise_for_status().json()
        ]
        (await api.post("/api/v1/WebhookRules", json=rules)).raise_for_status()


async def create_loop(
    api: httpx.AsyncClient, urls: list[str], pause: float, times: list[float]
) -> None:
    """Create webhooks at `urls` (one request), again and again until cancelled; record each
    answer's time. Creates refused (handshakes that failed) are recorded too."""
    while True:
        started = time.perf_counter()
        answer = await api.post("/api/v1/Webhooks", json=hooks(urls))
        times.append(time.perf_counter() - started)
        if answer.status_code not in (200, 400):
            answer.raise_for_status()
        await asyncio.sleep(pause)


def new_key(database_url: str, group: str) -> str:
    """An API key of another group on the gateway's database (before serve starts)."""
    with tempfile.TemporaryDirectory() as workdir:
        return create_key(Path(workdir), database_url, group)["apiKey"]


async def tenant_run(
    receiver: Receiver, events_count: int, inflight: int, env: Mapping[str, str], noisy: int
) -> TenantRun:
    """The healthy group's run, beside a noisy group with `noisy` webhooks of each kind (none:
    the baseline). The clock runs from the first healthy publish until every healthy
    notification is received and recorded; the healthy creates run on that clock too."""
    run = uuid.uuid4().hex[:8]
    healthy = f"/hook/{run}/"
    keys: dict[str, str] = {}

    async def prepare(database_url: str) -> None:
        keys["noisy"] = new_key(database_url, "noisy")

    async with gateway("sqlite", {**delivery_env(inflight), **env}, prepare=prepare) as gw:
        async with gw.client() as api, noisy_client(gw, keys["noisy"]) as rowdy:
            await subscribe_in_batches(api, [f"{receiver.url}{healthy}{i}" for i in range(HEALTHY)])
            loops, noisy_creates = await start_noise(receiver, rowdy, run, noisy)
            create_times: list[float] = []
            created = f"{receiver.url}/created/{run}/"
            loops.append(
                asyncio.create_task(create_loop(api, [created], CREATE_PAUSE, create_times))
            )
            expected = events_count * HEALTHY
            cpu = gw.cpu_seconds()
            start = time.perf_counter()
            try:
                await publish(gw, event_batches(events_count))
                await receiver.wait_for(expected, WAIT_TIMEOUT, prefix=healthy)
                await wait_delivered(api, expected, WAIT_TIMEOUT)
                seconds = time.perf_counter() - start
                cpu = gw.cpu_seconds() - cpu
            finally:
                for loop in loops:
                    loop.cancel()
                await asyncio.gather(*loops, return_exceptions=True)
            failures = await metric(api, 'gateway_delivery_attempts_total{outcome="failure"}')
            refused = await metric(api, 'gateway_handshakes_total{outcome="failed"}')
    return TenantRun(
        expected, seconds, create_times, cpu, noisy_creates, int(failures), int(refused)
    )


def noisy_client(gw: Gateway, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=gw.url, headers={"Api-Key": key}, timeout=120)


async def start_noise(
    receiver: Receiver, api: httpx.AsyncClient, run: str, count: int
) -> tuple[list[asyncio.Task[None]], list[float]]:
    """The noisy group: `count` webhooks whose deliveries hang, each sent two events now, and
    create loops keeping `count` handshakes that hang in progress. Returns the loops and the
    list their answer times go to."""
    times: list[float] = []
    if not count:
        return [], times
    await subscribe_in_batches(api, [f"{receiver.url}/hang/{run}/{i}" for i in range(count)])
    body = {"tableKey": "Invoice", "eventType": "U", "records": [{"id": "noisy"}]}
    (await api.post("/api/v1/Events", json=[body, body])).raise_for_status()
    loops = []
    for start in range(0, count, BATCH):
        urls = [f"{receiver.url}/hang-all/{run}/{start + i}" for i in range(BATCH)]
        loops.append(asyncio.create_task(create_loop(api, urls[: count - start], 0, times)))
    return loops, times


def create_times(run: TenantRun) -> str:
    slowest = max(run.create_seconds)
    return f"median {run.create_median * 1000:.0f} ms, max {slowest * 1000:.0f} ms"


def together(first: TenantRun, second: TenantRun) -> TenantRun:
    """Two runs of the healthy group alone as one."""
    return TenantRun(
        first.notifications + second.notifications,
        first.seconds + second.seconds,
        first.create_seconds + second.create_seconds,
        first.gateway_cpu + second.gateway_cpu,
    )


def cpu_per_notification(run: TenantRun) -> float:
    return run.gateway_cpu / run.notifications * 1e6


def add_tenant_rows(
    report: Report, alone_runs: tuple[TenantRun, TenantRun], beside: TenantRun, noisy: int
) -> None:
    first, second = alone_runs
    alone = together(first, second)
    ratio = beside.rate / alone.rate
    report.add("healthy group alone, before the noisy run: delivery rate", f"{first.rate:,.0f}/s")
    report.add("healthy group alone, after the noisy run: delivery rate", f"{second.rate:,.0f}/s")
    report.add("healthy group alone (baseline: both runs): delivery rate", f"{alone.rate:,.0f}/s")
    report.add(
        f"healthy group beside a noisy one ({noisy} + {noisy} hanging): delivery rate",
        f"{beside.rate:,.0f}/s",
        f"{alone.rate:,.0f}/s",
        f"{ratio:.1%}",
        f"≥ {TARGET:.0%}",
        ratio >= TARGET,
    )
    spent, normal = cpu_per_notification(beside), cpu_per_notification(alone)
    report.add(
        "gateway CPU (serve and workers) per healthy notification, beside the noisy group",
        f"{spent:.0f} µs",
        f"{normal:.0f} µs",
        f"{spent / normal:.1f}x",
    )
    report.add(
        f"healthy creates alone ({len(alone.create_seconds)}): answer time", create_times(alone)
    )
    slower = beside.create_median / alone.create_median
    report.add(
        f"healthy creates beside the noisy group ({len(beside.create_seconds)}): answer time",
        create_times(beside),
        f"median {alone.create_median * 1000:.0f} ms",
        f"{slower:.1f}x",
        f"≤ {CREATE_TARGET:g}x",
        slower <= CREATE_TARGET,
    )
    if beside.noisy_creates:
        noisy_times = sorted(beside.noisy_creates)
        report.add(
            f"noisy creates of {BATCH} hanging handshakes: answered (all refused)",
            f"{len(noisy_times)}, in {noisy_times[0]:.1f} to {noisy_times[-1]:.1f} s",
        )
    report.add(
        "noisy group: failed delivery attempts, failed handshakes",
        f"{beside.failed_deliveries:,}, {beside.failed_handshakes:,}",
    )


async def main() -> None:
    args = parse_args()
    env = {"GATEWAY_DELIVERY_TIMEOUT": str(args.delivery_timeout)}
    report = Report(
        f"S5 isolation: {args.events:,} events to {HEALTHY} healthy webhooks, "
        f"{args.concurrency} in flight per webhook, delivery timeout {args.delivery_timeout:g} s"
    )
    with Receiver.start() as receiver:
        base = await gateway_run(receiver, args.events, HEALTHY, args.concurrency, env=env)
        run = await gateway_run(
            receiver, args.events, HEALTHY, args.concurrency, hanging=1, env=env
        )
        alone = await tenant_run(receiver, args.events, args.concurrency, env, 0)
        beside = await tenant_run(receiver, args.events, args.concurrency, env, args.noisy_webhooks)
        again = await tenant_run(receiver, args.events, args.concurrency, env, 0)
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
    add_tenant_rows(report, (alone, again), beside, args.noisy_webhooks)
    report.print()


if __name__ == "__main__":
    asyncio.run(main())
