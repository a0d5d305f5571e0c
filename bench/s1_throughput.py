"""S1, delivery throughput: the gateway end to end beside bare aiohttp and httpx clients.

    python -m bench.s1_throughput [--events 20000] [--concurrency 32] [--webhooks 1,10]
        [--database-url sqlite|postgresql://... ...] [--workers auto,0] [--no-peer] [--quick]

All traffic stays on loopback; one receiver process serves every phase. The baseline is a bare
aiohttp session sending the same kind of signed bodies to the same receiver, `--concurrency` in
flight, persisting nothing, run before and again after the gateway phases and taken together (a
shared machine's speed can move during a run); a bare httpx AsyncClient's rate is printed
beside it. Each gateway phase starts `gateway serve` on a fresh database (SQLite unless
`--database-url` names PostgreSQL; repeat the option to compare), subscribes N webhooks,
publishes the events through aiohttp, 100 per request (encoded before the clock starts), 4
requests at a time, and stops the clock when the receiver has counted all events x N
notifications and the store records every one as delivered. Each webhook may have
`--concurrency` in flight, the group max(--concurrency, 64): half the worker's senders.
`--workers` lists the layouts, as `serve --worker-processes` takes them: auto is serve's
default (one `gateway worker` process per core, at most 4; the worker inside serve on one
core), 0 the worker inside `serve`, N that many worker processes; by default auto and 0.
Target: the gateway at 50% or more of bare aiohttp's rate, to 1 and to 10 webhooks.

The peer (issue 21): what Python teams build by hand, a Celery worker (threads pool of
`--concurrency`, acks_late, Redis broker at 127.0.0.1:6379) running one httpx task per
notification, delivers the same bodies to the same receiver (bench/peer_celery.py), and each
gateway phase's rate is printed as a multiple of the peer's. It needs `pip install -e
'.[bench]'` and Redis; without either its row says why it was not measured. `--no-peer` skips it.

CPU seconds per notification are printed too: for the gateway serve, its worker processes
(together), the receiver, this script (the publisher) and, with a PostgreSQL server on this
machine, that server's processes (all of its clients' work); for the bare clients this script
(the client) and the receiver. Receiver, gateway and load generator share the machine's cores,
so these say where the CPU budget goes. `--quick` sends 2,000 events: a smoke run, not a
measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from bench import peer_celery
from bench.common import (
    Body,
    Gateway,
    Receiver,
    Report,
    bare_aiohttp,
    bare_httpx,
    cpu_seconds,
    event_batches,
    failed_attempts,
    gateway,
    local_postgres_cpu_seconds,
    percent,
    publish,
    signed_bodies,
    subscribe,
    wait_delivered,
)
from gateway import supervisor
from gateway.config import Settings

TARGET = 0.5
QUICK_EVENTS = 2_000
WAIT_TIMEOUT = 900.0
BareClient = Callable[[str, Sequence[Body], int], Awaitable[float]]


@dataclass
class Run:
    """One measured phase: notifications delivered, wall-clock seconds, CPU seconds by process."""

    notifications: int
    seconds: float
    cpu: Mapping[str, float]
    failed_attempts: int = 0  # of the hanging webhooks, as their history records them

    @property
    def rate(self) -> float:
        return self.notifications / self.seconds

    def cpu_total(self) -> float:
        """CPU microseconds per notification, all processes together."""
        return sum(self.cpu.values()) / self.notifications * 1e6

    def cpu_note(self) -> str:
        """CPU microseconds per notification, in total and by process."""
        parts = " + ".join(
            f"{role} {s / self.notifications * 1e6:.0f}" for role, s in self.cpu.items()
        )
        return f"{self.cpu_total():.0f} µs ({parts})"


def delivery_env(inflight: int) -> dict[str, str]:
    """Gateway settings that allow each webhook the baseline's number in flight, and the one
    group max(that, 64): half the worker's senders (per_group_concurrency "auto")."""
    return {
        "GATEWAY_PER_WEBHOOK_CONCURRENCY": str(inflight),
        "GATEWAY_WORKER_CONCURRENCY": str(2 * max(inflight, 64)),
    }


def _cpu_now(**processes: Callable[[], float]) -> dict[str, float]:
    return {role: read() for role, read in processes.items()}


def _spent(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {role: after[role] - before[role] for role in before}


async def baseline_run(
    receiver: Receiver, client: BareClient, bodies: Sequence[Body], inflight: int
) -> Run:
    """A bare client posting `bodies` straight to the receiver."""
    sources = {"client": time.process_time, "receiver": receiver.cpu_seconds}
    before = _cpu_now(**sources)
    rate = await client(f"{receiver.url}/base/{uuid.uuid4().hex[:8]}", bodies, inflight)
    return Run(len(bodies), len(bodies) / rate, _spent(before, _cpu_now(**sources)))


async def gateway_run(
    receiver: Receiver,
    events: int,
    webhooks: int,
    inflight: int,
    *,
    database: str = "sqlite",
    workers: int | None = None,
    hanging: int = 0,
    env: Mapping[str, str] | None = None,
) -> Run:
    """`events` published to `webhooks` healthy webhooks, plus `hanging` ones whose receiver
    never answers; the clock stops when every healthy notification is received and recorded.
    S5 calls this for its own run and for its baseline, the S1 10-webhook rate."""
    run = uuid.uuid4().hex[:8]
    healthy = f"/hook/{run}/"
    urls = [f"{receiver.url}{healthy}{i}" for i in range(webhooks)]
    urls += [f"{receiver.url}/hang/{run}/{i}" for i in range(hanging)]
    expected = events * webhooks
    async with gateway(database, {**delivery_env(inflight), **(env or {})}, workers) as gw:
        async with gw.client() as api:
            ids = await subscribe(api, urls)
            batches = event_batches(events)
            sources = _gateway_cpu_sources(gw, receiver)
            before = _cpu_now(**sources)
            start = time.perf_counter()
            await publish(gw, batches)
            await receiver.wait_for(expected, WAIT_TIMEOUT, prefix=healthy)
            await wait_delivered(api, expected, WAIT_TIMEOUT)
            seconds = time.perf_counter() - start
            spent = _spent(before, _cpu_now(**sources))
            failed = [await failed_attempts(api, hook) for hook in ids[webhooks:]]
    return Run(expected, seconds, spent, sum(failed))


def _gateway_cpu_sources(gw: Gateway, receiver: Receiver) -> dict[str, Callable[[], float]]:
    serve, *workers = gw.pids
    sources = {"serve": lambda: cpu_seconds(serve)}
    if workers:
        sources["workers"] = lambda: sum(cpu_seconds(pid) for pid in workers)
    sources |= {"receiver": receiver.cpu_seconds, "publisher": time.process_time}
    if not gw.database_url.startswith("sqlite") and local_postgres_cpu_seconds() is not None:
        # The server shares the cores when it runs here; its other clients count too.
        sources["postgres"] = lambda: local_postgres_cpu_seconds() or 0.0
    return sources


def database_name(database: str) -> str:
    """`sqlite` or the URL's scheme: never the URL itself, which may hold a password."""
    return database.split("://", 1)[0]


def worker_label(workers: int | None) -> str:
    if workers is None:
        return f"auto: {worker_label(supervisor.process_count(Settings()))}, the default"
    return f"{workers} worker process(es)" if workers else "worker in serve"


def combined(first: Run, second: Run) -> Run:
    """Two runs of the same client as one: their notifications over their seconds."""
    cpu = {role: first.cpu[role] + second.cpu[role] for role in first.cpu}
    return Run(first.notifications + second.notifications, first.seconds + second.seconds, cpu)


def add_rows(report: Report, bases: Sequence[Run], bare: Run, gateways: Mapping[str, Run]) -> None:
    """Rates first, then CPU per notification, each against bare aiohttp: measured before and
    after the gateway phases, and taken together as the baseline."""
    before, after = bases
    base = combined(before, after)
    report.add("bare aiohttp, before the gateway runs", f"{before.rate:,.0f}/s")
    report.add("bare aiohttp, after the gateway runs", f"{after.rate:,.0f}/s")
    report.add("bare aiohttp (baseline: both runs)", f"{base.rate:,.0f}/s")
    report.add(
        "bare httpx", f"{bare.rate:,.0f}/s", f"{base.rate:,.0f}/s", percent(bare.rate, base.rate)
    )
    for label, run in gateways.items():
        ratio = run.rate / base.rate
        report.add(
            label,
            f"{run.rate:,.0f}/s",
            f"{base.rate:,.0f}/s",
            f"{ratio:.1%}",
            f"≥ {TARGET:.0%}",
            ratio >= TARGET,
        )
    for label, run in {"bare aiohttp": base, "bare httpx": bare, **gateways}.items():
        times = f"{run.cpu_total() / base.cpu_total():.1f}x"
        report.add(
            f"CPU per notification, {label}", run.cpu_note(), f"{base.cpu_total():.0f} µs", times
        )


PEER = "Celery peer (threads, acks_late, Redis)"


async def peer_run(receiver: Receiver, bodies: Sequence[Body], inflight: int) -> Run | str:
    """The Celery peer delivering `bodies` with `inflight` threads, or why it was not measured."""
    try:
        peer = await peer_celery.measure(receiver, bodies, inflight)
    except peer_celery.Unavailable as exc:
        return f"not measured: {exc}"
    return Run(peer.notifications, peer.seconds, peer.cpu)


def add_peer_rows(report: Report, peer: Run | str, base: Run, gateways: Mapping[str, Run]) -> None:
    """The peer's rate against bare aiohttp (`base`), each gateway phase's rate as a multiple
    of the peer's, and the peer's CPU per notification."""
    if isinstance(peer, str):
        report.add(PEER, peer)
        return
    report.add(PEER, f"{peer.rate:,.0f}/s", f"{base.rate:,.0f}/s", percent(peer.rate, base.rate))
    for label, run in gateways.items():
        times = f"{run.rate / peer.rate:.1f}x"
        report.add(
            f"{label}, x the Celery peer", f"{run.rate:,.0f}/s", f"{peer.rate:,.0f}/s", times
        )
    times = f"{peer.cpu_total() / base.cpu_total():.1f}x"
    report.add(
        f"CPU per notification, {PEER}", peer.cpu_note(), f"{base.cpu_total():.0f} µs", times
    )


def _counts(text: str) -> list[int]:
    return [int(n) for n in text.split(",")]


def _layouts(text: str) -> list[int | None]:
    return [None if n.strip() == "auto" else int(n) for n in text.split(",")]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, help="events per phase (20000; 2000 with --quick)")
    parser.add_argument("--concurrency", type=int, default=32, help="in flight per webhook")
    parser.add_argument("--webhooks", default="1,10", help="webhook counts, e.g. 1,10")
    parser.add_argument("--database-url", action="append", help="sqlite or postgresql://...")
    parser.add_argument("--workers", default="auto,0", help="worker processes, e.g. auto,0,1,2")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument(
        "--peer", action=argparse.BooleanOptionalAction, default=True, help="the Celery peer row"
    )
    args = parser.parse_args()
    args.events = args.events or (QUICK_EVENTS if args.quick else 20_000)
    return args


async def main() -> None:
    args = parse_args()
    databases = args.database_url or ["sqlite"]
    report = Report(f"S1 delivery throughput: {args.events:,} events, {args.concurrency} in flight")
    gateways: dict[str, Run] = {}
    with Receiver.start() as receiver:
        bodies = signed_bodies(args.events)
        base = await baseline_run(receiver, bare_aiohttp, bodies, args.concurrency)
        bare = await baseline_run(receiver, bare_httpx, bodies, args.concurrency)
        peer = await peer_run(receiver, bodies, args.concurrency) if args.peer else None
        phases = itertools.product(_layouts(args.workers), databases, _counts(args.webhooks))
        for workers, database, webhooks in phases:
            label = f"gateway {webhooks} webhook(s), {database_name(database)}"
            gateways[f"{label}, {worker_label(workers)}"] = await gateway_run(
                receiver,
                args.events,
                webhooks,
                args.concurrency,
                database=database,
                workers=workers,
            )
        # Again at the end: a shared machine's speed can move during a run of minutes.
        again = await baseline_run(receiver, bare_aiohttp, bodies, args.concurrency)
    add_rows(report, [base, again], bare, gateways)
    if peer is not None:
        add_peer_rows(report, peer, combined(base, again), gateways)
    report.print()


if __name__ == "__main__":
    asyncio.run(main())
