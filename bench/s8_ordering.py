"""S8, delivery order: what a Strict webhook's rate costs beside an Unordered one's, and whether
Strict webhooks whose queues are blocked slow the Unordered webhooks of other groups.

    python -m bench.s8_ordering [--events 20000] [--group-events 10000] [--strict-webhooks 10]
        [--backlog 5000] [--rounds 2] [--concurrency 8] [--database-url sqlite|postgresql://...]
        [--quick]

One receiver process; every phase starts `gateway serve` (its default layout) on a fresh
database (SQLite unless `--database-url` names PostgreSQL), publishes through aiohttp, 100
events a request, 4 requests at a time, and stops its clock when the receiver has counted every
notification it waits for and the store records each one as delivered. Each webhook may have
`--concurrency` in flight (GATEWAY_PER_WEBHOOK_CONCURRENCY; 8 is the gateway's default), which
only Unordered uses: a Strict webhook has one.

A. `--events` events to one Unordered webhook: its rate.
B. The same to one Strict webhook: its rate, and its ratio to A's. The receiver notes each
   body's `sequence` (paths under `/order/`) and both rows say how many arrived after a later
   one: never for Strict, what the choice buys.
C. A group's 10 Unordered webhooks, `--group-events` events each, alone, and beside another
   group's `--strict-webhooks` Strict webhooks with a head-of-line-blocked queue each: their
   receiver answers 503 to every notification (`/fail/`), and `--backlog` events were
   published to them before the clock starts, so each has a failed head (retried on the
   gateway's schedule: 5 s, then 30 s) and the rest waiting behind it throughout the run. The
   runs alternate, alone first and last (`--rounds` beside, one more alone: a shared machine's
   speed moves within minutes), and each side's runs are taken together. Target: the group's
   rate beside them at least 90% of its rate alone; its gateway CPU per notification on both
   sides is printed beside it. Printed too: the strict group's requests while measured (its
   heads' retries; a queued one sent would show here) and, at the last run's end, how many of
   its notifications their history shows never sent (`requestSent eq false`: all but the
   heads, if they stayed blocked).

Gateway CPU seconds (serve and its worker processes) per notification are printed for A and
B. `--quick` runs 1,000 events, 200 in each group, and a backlog of 200: a smoke run, not a
measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from bench.common import (
    Gateway,
    Receiver,
    Report,
    event_batches,
    gateway,
    percent,
    publish,
    settled,
    subscribe,
    wait_delivered,
)
from bench.s1_throughput import WAIT_TIMEOUT, database_name
from bench.s5_isolation import HEALTHY, new_key

TARGET = 0.9
QUICK = {"events": 1_000, "group_events": 200, "backlog": 200}
FULL = {"events": 20_000, "group_events": 10_000, "backlog": 5_000}
STRICT_GROUP = "strict"


@dataclass
class Phase:
    """One measured run: notifications delivered, wall-clock and gateway CPU seconds, and what
    the receiver or the store saw besides."""

    notifications: int
    seconds: float
    gateway_cpu: float
    out_of_order: int = 0  # arrivals after one of a higher sequence (phases A and B)
    strict_requests: int = 0  # the strict group's, during the run (phase C)
    never_sent: int = 0  # the strict group's notifications not sent yet, at the end (phase C)

    @property
    def rate(self) -> float:
        return self.notifications / self.seconds

    def cpu_note(self) -> str:
        return f"{self.gateway_cpu / self.notifications * 1e6:.0f} µs"


def settings(args: argparse.Namespace) -> dict[str, str]:
    return {"GATEWAY_PER_WEBHOOK_CONCURRENCY": str(args.concurrency)}


async def one_webhook(
    receiver: Receiver, args: argparse.Namespace, order: str, events: int
) -> Phase:
    """Phases A and B: `events` events to one webhook of this `deliveryOrder`."""
    prefix = f"/order/{uuid.uuid4().hex[:8]}/"
    async with gateway(args.database, settings(args)) as gw, gw.client() as api:
        await subscribe(api, [f"{receiver.url}{prefix}0"], deliveryOrder=order)
        seconds, cpu = await timed(gw, api, receiver, event_batches(events), events, prefix)
    return Phase(events, seconds, cpu, out_of_order=await receiver.disorder(prefix))


async def timed(
    gw: Gateway,
    api: httpx.AsyncClient,
    receiver: Receiver,
    batches: Sequence[bytes],
    expected: int,
    prefix: str,
) -> tuple[float, float]:
    """Publish `batches` and wait until `expected` notifications reached the receiver under
    `prefix` and history says so: the seconds that took, and the gateway's CPU seconds."""
    cpu = gw.cpu_seconds()
    start = time.perf_counter()
    await publish(gw, batches)
    await receiver.wait_for(expected, WAIT_TIMEOUT, prefix=prefix)
    await wait_delivered(api, expected, WAIT_TIMEOUT)
    return time.perf_counter() - start, gw.cpu_seconds() - cpu


async def group_run(receiver: Receiver, args: argparse.Namespace, strict: int) -> Phase:
    """Phase C: the Unordered group's run, beside `strict` blocked Strict webhooks of another
    group (none: alone). Their setup is done, and the gateway idle again, before the clock."""
    run = uuid.uuid4().hex[:8]
    healthy, failing = f"/hook/{run}/", f"/fail/{run}/"
    keys: dict[str, str] = {}

    async def prepare(database_url: str) -> None:
        keys[STRICT_GROUP] = new_key(database_url, STRICT_GROUP)

    async with gateway(args.database, settings(args), prepare=prepare) as gw, gw.client() as api:
        await subscribe(api, [f"{receiver.url}{healthy}{i}" for i in range(HEALTHY)])
        other = dataclasses.replace(gw, key=keys[STRICT_GROUP])
        strict_ids = await block(receiver, other, failing, strict, args.backlog) if strict else []
        expected = args.group_events * HEALTHY
        batches = event_batches(args.group_events)
        sent_before = await receiver.count(failing)
        seconds, cpu = await timed(gw, api, receiver, batches, expected, healthy)
        strict_requests = await receiver.count(failing) - sent_before
        async with other.client() as theirs:
            never_sent = sum([await unsent(theirs, hook) for hook in strict_ids])
    return Phase(expected, seconds, cpu, strict_requests=strict_requests, never_sent=never_sent)


async def block(
    receiver: Receiver, gw: Gateway, failing: str, strict: int, backlog: int
) -> list[str]:
    """`strict` Strict webhooks of `gw.key`'s group on `failing` paths, `backlog` events each:
    each head is sent and fails, the rest queue behind it. Returns their ids once every head
    has failed once and the gateway's processes are idle again."""
    async with gw.client() as api:
        urls = [f"{receiver.url}{failing}{i}" for i in range(strict)]
        ids = await subscribe(api, urls, deliveryOrder="Strict")
    await publish(gw, event_batches(backlog))
    await receiver.wait_for(strict, WAIT_TIMEOUT, prefix=failing)
    await settled(gw.pids)
    return ids


async def unsent(api: httpx.AsyncClient, webhook_id: str) -> int:
    """How many of a webhook's notifications its history shows never sent."""
    params: dict[str, str | int] = {"filter": "requestSent eq false", "pageSize": 1}
    answer = await api.get(f"/api/v1/Webhooks/{webhook_id}/history/query", params=params)
    return int(answer.raise_for_status().json()["totalCount"])


def together(runs: Sequence[Phase]) -> Phase:
    """Runs of the same kind as one: their notifications over their seconds; the strict
    group's requests summed, the queue left at the last one's end."""
    return Phase(
        sum(run.notifications for run in runs),
        sum(run.seconds for run in runs),
        sum(run.gateway_cpu for run in runs),
        strict_requests=sum(run.strict_requests for run in runs),
        never_sent=runs[-1].never_sent,
    )


def add_order_rows(report: Report, unordered: Phase, strict: Phase) -> None:
    report.add(
        "A. one Unordered webhook: rate (out-of-order arrivals; gateway CPU per notification)",
        f"{unordered.rate:,.0f}/s ({unordered.out_of_order:,}; {unordered.cpu_note()})",
    )
    report.add(
        "B. one Strict webhook, same receiver: rate (out-of-order arrivals; CPU)",
        f"{strict.rate:,.0f}/s ({strict.out_of_order:,}; {strict.cpu_note()})",
        f"{unordered.rate:,.0f}/s",
        percent(strict.rate, unordered.rate),
    )


def add_group_rows(
    report: Report, turns: Sequence[tuple[str, Phase]], args: argparse.Namespace
) -> None:
    """Phase C's rows: each run in turn ("alone" or "beside"), then each side taken together."""
    who = f"C. {HEALTHY} Unordered webhooks"
    for n, (side, run) in enumerate(turns, 1):
        report.add(f"{who} {side}, run {n} of {len(turns)}: rate", f"{run.rate:,.0f}/s")
    alone = together([run for side, run in turns if side == "alone"])
    beside = together([run for side, run in turns if side == "beside"])
    ratio = beside.rate / alone.rate
    report.add(f"{who} alone (baseline: every such run)", f"{alone.rate:,.0f}/s")
    report.add(
        f"{who} beside another group's {args.strict_webhooks} Strict webhooks, each head "
        f"failing, {args.backlog:,} queued each (every such run): rate",
        f"{beside.rate:,.0f}/s",
        f"{alone.rate:,.0f}/s",
        f"{ratio:.1%}",
        f"≥ {TARGET:.0%}",
        ratio >= TARGET,
    )
    report.add(
        f"{who}: gateway CPU (serve and workers) per notification, beside / alone",
        beside.cpu_note(),
        alone.cpu_note(),
        percent(beside.gateway_cpu / beside.notifications, alone.gateway_cpu / alone.notifications),
    )
    report.add(
        "C. the Strict group: requests while measured (all answered 503); never sent at the end",
        f"{beside.strict_requests:,}; {beside.never_sent:,} of "
        f"{args.strict_webhooks * args.backlog:,}",
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, help="phases A and B (20000; 1000 with --quick)")
    parser.add_argument("--group-events", type=int, help="phase C, per webhook (10000; 200)")
    parser.add_argument("--strict-webhooks", type=int, default=10, help="phase C's strict group")
    parser.add_argument("--backlog", type=int, help="events queued to each of them (5000; 200)")
    parser.add_argument("--rounds", type=int, default=2, help="phase C's runs beside them")
    parser.add_argument("--concurrency", type=int, default=8, help="in flight per webhook")
    parser.add_argument(
        "--database-url", dest="database", default="sqlite", help="sqlite or postgresql://..."
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    for name, size in sizes.items():
        setattr(args, name, getattr(args, name) or size)
    return args


def title(args: argparse.Namespace) -> str:
    return (
        f"S8 delivery order: {args.events:,} events to one webhook; {args.group_events:,} to each "
        f"of {HEALTHY} beside {args.strict_webhooks} blocked Strict webhooks; "
        f"{args.concurrency} in flight per Unordered webhook; {database_name(args.database)}"
    )


async def main() -> None:
    args = parse_args()
    report = Report(title(args))
    with Receiver.start() as receiver:
        unordered = await one_webhook(receiver, args, "Unordered", args.events)
        strict = await one_webhook(receiver, args, "Strict", args.events)
        # Alone and beside in turn, alone first and last: a shared machine's speed moves
        # within minutes, and each side then gets early and late runs alike.
        turns = [("alone", await group_run(receiver, args, 0))]
        for _ in range(args.rounds):
            turns.append(("beside", await group_run(receiver, args, args.strict_webhooks)))
            turns.append(("alone", await group_run(receiver, args, 0)))
    add_order_rows(report, unordered, strict)
    add_group_rows(report, turns, args)
    report.print()


if __name__ == "__main__":
    asyncio.run(main())
