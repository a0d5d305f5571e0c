"""S1, delivery throughput: the gateway end to end beside bare aiohttp and httpx clients.

    python -m bench.s1_throughput [--events 20000] [--concurrency 32] [--webhooks 1,10]
        [--database-url sqlite|postgresql://... ...] [--workers auto,0] [--no-peer] [--quick]

All traffic stays on loopback; one receiver process serves every phase. Each gateway phase
starts `gateway serve` on a fresh database, subscribes N webhooks, publishes the events through
aiohttp, 100 per request (encoded before the clock starts), 4 requests at a time, and stops the
clock when the receiver has counted all events x N notifications and the store records every
one as delivered. Each webhook may have `--concurrency` in flight, the group max(--concurrency,
64): half the worker's senders. `--workers` lists the layouts, as `serve --worker-processes`
takes them: auto is serve's default (one `gateway worker` process per core, at most 4; the
worker inside serve on one core), 0 the worker inside `serve`, N that many worker processes; by
default auto and 0. The database is SQLite; without `--database-url`, the default layout also
runs on PostgreSQL when a server answers at 127.0.0.1:5432 (database test, user postgres; a
fresh schema each phase), and a row says so when none does. `--database-url` (repeatable)
names the databases instead, each run in every layout.

Baselines: a bare aiohttp session sending the same kind of signed bodies (`--events` of them)
to the same receiver, `--concurrency` in flight, persisting nothing. One runs before the first
phase, one between each two phases and one after the last; a phase's baseline is the two
beside it taken together (their bodies over their seconds), so every ratio compares figures
measured within a minute or two of each other: a shared machine's speed can move by half in
one run (the CPU probe lines show it). Bare httpx is a phase too, on 2,000 bodies (it sends
about 400 a second: the whole sample would take a minute), to show what the client costs.

The peer (issue 21): what Python teams build by hand, a Celery worker (threads pool of
`--concurrency`, acks_late, Redis broker at 127.0.0.1:6379) running one httpx task per
notification, delivers the same bodies to the same receiver (bench/peer_celery.py), a phase
between bare runs like the others. Each gateway phase's rate is printed as a multiple of the
peer's, each taken as its share of its own neighbours (so a change of the machine's speed
between the two phases cancels out). It needs `pip install -e '.[bench]'` and Redis; without
either its row says why it was not measured. `--no-peer` skips it.

Targets, each a row with pass or MISS, of the rate against the baseline's:
- serve's default layout on SQLite: >= 65%, to 1 and to 10 webhooks;
- the worker inside serve on SQLite: >= 50%;
- PostgreSQL: >= 50%, the server on this machine, sharing its cores;
and of CPU per notification: every gateway phase at most 2.0x its baseline's.

CPU per notification is counted over the processes that do the delivering: for a gateway
phase serve, its worker processes, the receiver and, with the PostgreSQL server on this
machine, the server's processes serving the gateway's connections and its background ones
(bench.local_postgres); for a bare client, this script (the client) and the receiver. This
script's CPU in a gateway phase, the publisher, is printed beside them but not counted: it
stands for the platform's backend, which publishes whatever delivers its webhooks (the same for
the peer, whose publisher enqueues its tasks).
`--quick` sends 2,000 events: a smoke run, not a measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from bench import local_postgres, peer_celery
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
    publish,
    signed_bodies,
    subscribe,
    wait_delivered,
)
from gateway import supervisor
from gateway.config import Settings

DEFAULT_LAYOUT_TARGET = 0.65  # of the baseline's rate: serve's default layout, SQLite
WORKER_IN_SERVE_TARGET = 0.5  # the worker inside serve, SQLite
POSTGRES_TARGET = 0.5  # PostgreSQL, any layout
CPU_TARGET = 2.0  # the most CPU per notification, times the baseline's
NOT_COUNTED = ("publisher",)  # CPU printed, left out of the ratio: the platform's backend
HTTPX_BODIES = 2_000
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
        """CPU microseconds per notification of the processes counted (all but the publisher)."""
        counted = sum(s for role, s in self.cpu.items() if role not in NOT_COUNTED)
        return counted / self.notifications * 1e6

    def cpu_note(self) -> str:
        """CPU microseconds per notification, in total and by process."""

        def part(role: str) -> str:
            return f"{role} {self.cpu[role] / self.notifications * 1e6:.0f}"

        counted = " + ".join(part(role) for role in self.cpu if role not in NOT_COUNTED)
        aside = ", ".join(part(role) for role in self.cpu if role in NOT_COUNTED)
        note = f"{self.cpu_total():.0f} µs ({counted})"
        return f"{note}; {aside} not counted" if aside else note


@dataclass
class Plan:
    """A phase to measure between two bare aiohttp runs, and the targets it is held to."""

    label: str
    measure: Callable[[], Awaitable[Run | str]]  # a str says why it was not measured
    rate_target: float | None = None  # the least share of the baseline's rate
    cpu_target: float | None = None  # the most CPU per notification, times the baseline's


@dataclass
class Measured:
    """A phase's run and the bare aiohttp runs made right before and right after it."""

    plan: Plan
    run: Run
    before: Run
    after: Run

    @property
    def baseline(self) -> Run:
        return combined(self.before, self.after)

    @property
    def share(self) -> float:
        """Its rate as a share of its baseline's."""
        return self.run.rate / self.baseline.rate


@dataclass
class Unmeasured:
    """A phase that could not run here, and why."""

    plan: Plan
    reason: str


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


async def between_baselines(
    receiver: Receiver, bodies: Sequence[Body], inflight: int, plans: Sequence[Plan]
) -> list[Measured | Unmeasured]:
    """Measure each plan between bare aiohttp runs of `bodies`: one before the first, one
    between each two, one after the last. A phase's baseline is the two beside it, measured
    within a minute or two of it: a shared machine's speed can move by half within one run,
    and a baseline taken at the run's other end would compare figures of two machines."""
    before = await baseline_run(receiver, bare_aiohttp, bodies, inflight)
    phases: list[Measured | Unmeasured] = []
    for plan in plans:
        run = await plan.measure()
        if isinstance(run, str):
            phases.append(Unmeasured(plan, run))
            continue
        after = await baseline_run(receiver, bare_aiohttp, bodies, inflight)
        phases.append(Measured(plan, run, before, after))
        before = after
    return phases


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
    until_received: bool = False,
) -> Run:
    """`events` published to `webhooks` healthy webhooks, plus `hanging` ones whose receiver
    never answers; the clock stops when every healthy notification is received and recorded
    (with `until_received`, at the last one's receipt, by the receiver's clock; the CPU is
    read once all are recorded either way). S5 calls this for its own run and for its
    baseline, the S1 10-webhook rate; S9 with `until_received`."""
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
            started = time.time()
            start = time.perf_counter()
            await publish(gw, batches)
            await receiver.wait_for(expected, WAIT_TIMEOUT, prefix=healthy)
            await wait_delivered(api, expected, WAIT_TIMEOUT)
            seconds = time.perf_counter() - start
            spent = _spent(before, _cpu_now(**sources))
            if until_received:
                seconds = await receiver.last_receipt(healthy) - started
            failed = [await failed_attempts(api, hook) for hook in ids[webhooks:]]
    return Run(expected, seconds, spent, sum(failed))


def _gateway_cpu_sources(gw: Gateway, receiver: Receiver) -> dict[str, Callable[[], float]]:
    serve, *workers = gw.pids
    sources = {"serve": lambda: cpu_seconds(serve)}
    if workers:
        sources["workers"] = lambda: sum(cpu_seconds(pid) for pid in workers)
    sources["receiver"] = receiver.cpu_seconds
    if local_postgres.is_local(gw.database_url):
        # The server shares the cores; only its work for this gateway counts.
        port = urlsplit(gw.database_url).port or 5432
        sources["postgres"] = local_postgres.ServerCpu(gw.pids, port)
    sources["publisher"] = time.process_time
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


def rate_target(workers: int | None, database: str) -> float | None:
    """The issue's target for a phase: by database, then by layout (none for N processes)."""
    if database != "sqlite":
        return POSTGRES_TARGET
    return {None: DEFAULT_LAYOUT_TARGET, 0: WORKER_IN_SERVE_TARGET}.get(workers)


def gateway_plans(receiver: Receiver, args: argparse.Namespace, postgres: str | None) -> list[Plan]:
    """The gateway phases: every layout, database and webhook count of the arguments; without
    `--database-url`, SQLite in every layout and `postgres` (if any) in the first."""
    layouts = _layouts(args.workers)
    if args.database_url:
        phases = list(itertools.product(layouts, args.database_url, _counts(args.webhooks)))
    else:
        databases = {layout: ["sqlite"] for layout in layouts}
        databases[layouts[0]] += [postgres] if postgres else []
        phases = [
            (layout, database, webhooks)
            for layout in layouts
            for database in databases[layout]
            for webhooks in _counts(args.webhooks)
        ]
    return [
        Plan(
            f"gateway {webhooks} webhook(s), {database_name(database)}, {worker_label(workers)}",
            functools.partial(
                gateway_run,
                receiver,
                args.events,
                webhooks,
                args.concurrency,
                database=database,
                workers=workers,
            ),
            rate_target(workers, database),
            CPU_TARGET,
        )
        for workers, database, webhooks in phases
    ]


def httpx_plan(receiver: Receiver, bodies: Sequence[Body], inflight: int) -> Plan:
    """Bare httpx on the first HTTPX_BODIES bodies: at about 400 a second, all of them would
    take a minute."""
    sample = bodies[:HTTPX_BODIES]
    return Plan(
        f"bare httpx ({len(sample):,} bodies)",
        functools.partial(baseline_run, receiver, bare_httpx, sample, inflight),
    )


def add_rows(report: Report, phases: Sequence[Measured | Unmeasured]) -> None:
    """Every bare aiohttp run in order; each phase's rate, then each one's CPU per
    notification, against its baseline: the bare aiohttp runs right before and after it."""
    measured = [m for m in phases if isinstance(m, Measured)]
    if measured:
        bare = [measured[0].before, *(m.after for m in measured)]
        report.add(
            f"bare aiohttp, {bare[0].notifications:,} bodies: each run, in order",
            ", ".join(f"{run.rate:,.0f}" for run in bare) + " /s",
        )
    for m in phases:
        target = m.plan.rate_target
        if isinstance(m, Unmeasured):
            report.add(m.plan.label, m.reason, target="" if target is None else f"≥ {target:.0%}")
            continue
        report.add(
            m.plan.label,
            f"{m.run.rate:,.0f}/s",
            f"{m.baseline.rate:,.0f}/s ({m.before.rate:,.0f} before, {m.after.rate:,.0f} after)",
            f"{m.share:.1%}",
            "" if target is None else f"≥ {target:.0%}",
            None if target is None else m.share >= target,
        )
    for m in measured:
        times, target = m.run.cpu_total() / m.baseline.cpu_total(), m.plan.cpu_target
        report.add(
            f"CPU per notification, {m.plan.label}",
            m.run.cpu_note(),
            m.baseline.cpu_note(),
            f"{times:.2f}x",
            "" if target is None else f"≤ {target:.1f}x",
            None if target is None else times <= target,
        )


PEER = "Celery peer (threads, acks_late, Redis)"


def peer_plan(receiver: Receiver, bodies: Sequence[Body], inflight: int) -> Plan:
    """The Celery peer delivering `bodies` with `inflight` threads."""

    async def measure() -> Run | str:
        try:
            peer = await peer_celery.measure(receiver, bodies, inflight)
        except peer_celery.Unavailable as exc:
            return f"not measured: {exc}"
        return Run(peer.notifications, peer.seconds, peer.cpu)

    return Plan(PEER, measure)


def add_peer_rows(report: Report, phases: Sequence[Measured | Unmeasured]) -> None:
    """Each gateway phase's rate as a multiple of the peer's: the ratio of their shares of
    their own baselines, so that the machine's speed at either time cancels out."""
    peer = next((m for m in phases if isinstance(m, Measured) and m.plan.label == PEER), None)
    if peer is None:
        return
    for m in phases:
        if isinstance(m, Measured) and m.plan.label.startswith("gateway"):
            report.add(
                f"{m.plan.label}, x the Celery peer",
                f"{m.run.rate:,.0f}/s ({m.share:.1%} of bare)",
                f"{peer.run.rate:,.0f}/s ({peer.share:.1%} of bare)",
                f"{m.share / peer.share:.1f}x",
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
    parser.add_argument(
        "--database-url",
        action="append",
        help="sqlite or postgresql://... (default: sqlite, and the local PostgreSQL if it answers)",
    )
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
    report = Report(f"S1 delivery throughput: {args.events:,} events, {args.concurrency} in flight")
    postgres = None
    if not args.database_url and await local_postgres.answers(local_postgres.DEFAULT_URL):
        postgres = local_postgres.DEFAULT_URL
    with Receiver.start() as receiver:
        bodies = signed_bodies(args.events)
        plans = [httpx_plan(receiver, bodies, args.concurrency)]
        plans += [peer_plan(receiver, bodies, args.concurrency)] if args.peer else []
        plans += gateway_plans(receiver, args, postgres)
        phases = await between_baselines(receiver, bodies, args.concurrency, plans)
    add_rows(report, phases)
    add_peer_rows(report, phases)
    if not args.database_url and postgres is None:
        report.add(
            f"gateway, postgresql: no server answered at {local_postgres.DEFAULT_URL}",
            "not measured",
            target=f"≥ {POSTGRES_TARGET:.0%}",
        )
    report.print()


if __name__ == "__main__":
    asyncio.run(main())
