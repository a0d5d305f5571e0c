"""The worker's own work per notification, HTTP left out: what a change to delivery.py moves.

    python -m bench.worker_drain [--notifications 4000] [--webhooks 10] [--seed-only] [--http]

Seeds a fresh SQLite file with `--notifications` pending notifications spread over
`--webhooks` webhooks of one group (batches of 100 through SqliteStore.add_events), then times
one Worker draining them all with an outbound client that answers 200 at once, and prints the
rate. Timings on a shared machine move by 10-20% between runs; instructions by about 1% (how
often the sender's one-second webhook cache runs out during a drain under callgrind, and how
the worker's batches fall, follow the machine's speed: compare runs made close together). To
count them, run it under callgrind twice, with and without `--seed-only`, and divide the
difference by the notifications:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m bench.worker_drain [--seed-only]     # "Collected : N"

With `--http` the worker sends for real, through the aiohttp client `gateway worker` uses, to
a loopback receiver in its own process (bench/receiver.py), with S1's concurrency (32 in flight
a webhook); then a bare aiohttp session posts as many signed bodies to the same receiver, 32 in
flight, from the same process and loop. It prints both CPU times per notification (this
process, all its threads: the store's too) and their ratio: the worker's cost over the bare
client's without the other processes of S1 sharing the cores. `--http worker` and `--http bare`
run one side only (the bodies are made either way, and with `--seed-only`): under callgrind,
each side's count less `--http --seed-only`'s, over the notifications, is that side's
instructions per notification.

Run against an older checkout of the gateway (PYTHONPATH=that/checkout, from a directory
outside this one) for a baseline: the script only uses what the store and worker had before
fairness (issue 17), and gateway.transport's MockTransport (issue 18; for a checkout older than
that, take this script as of e255db0, whose own stand-in did the same). No targets: this
explains S1's figures, it is not among them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from uuid import uuid4

from bench.common import Receiver, bare_aiohttp, signed_bodies
from bench.store_ops import batch
from gateway import heap
from gateway.config import Settings
from gateway.delivery import Worker
from gateway.ids import new_id
from gateway.netguard import AddressPolicy
from gateway.outbound import Outbound
from gateway.store.sqlite import SqliteStore
from gateway.transport import (
    MockTransport,
    OutboundRequest,
    OutboundResponse,
    Transport,
    respond,
)
from tests.factories import make_webhook

BATCH = 100
INFLIGHT = 32  # S1's, a webhook
LOOPBACK = ("127.0.0.0/8",)
OK = respond(200, b"ok")


def answers_200(request: OutboundRequest) -> OutboundResponse:
    """Every request is answered 200 at once, sending nothing."""
    return OK


async def drain(
    directory: Path,
    notifications: int,
    webhooks: int,
    seed_only: bool,
    receiver: str | None,
    sides: str = "both",
) -> None:
    store = SqliteStore(directory / "drain.db")
    await store.open()
    try:
        group = uuid4()
        url = f"{receiver or 'http://127.0.0.1:9'}/drain"
        hooks = [make_webhook(group_key=group, callback_url=url) for _ in range(webhooks)]
        await store.add_webhooks(hooks)
        for index in range(notifications // BATCH):
            await store.add_events(*batch(hooks[index % webhooks], BATCH, new_id))
        bodies = signed_bodies(notifications) if receiver else []
        if receiver:
            heap.freeze_startup()  # the collector as `gateway worker` sets it once started
        if seed_only:
            return
        if receiver is None:
            await _drain(store, MockTransport(answers_200, keep_requests=False), notifications)
            return
        cpu = {}
        if sides in ("both", "worker"):
            async with Outbound(policy=AddressPolicy(LOOPBACK)) as outbound:
                cpu["worker"] = await _drain(store, outbound, notifications, INFLIGHT)
        if sides in ("both", "bare"):
            started = time.process_time()
            await bare_aiohttp(f"{receiver}/base", bodies, INFLIGHT)
            cpu["bare aiohttp"] = (time.process_time() - started) / notifications * 1e6
        each = ", ".join(f"{side} {micros:.1f} µs" for side, micros in cpu.items())
        ratio = f", ratio {cpu['worker'] / cpu['bare aiohttp']:.2f}" if len(cpu) == 2 else ""
        print(f"CPU per notification: {each}{ratio}")
    finally:
        await store.close()


async def _drain(
    store: SqliteStore, outbound: Transport, notifications: int, inflight: int = 8
) -> float:
    """One worker draining the store through `outbound`; prints the rate, returns the CPU
    microseconds per notification."""
    settings = Settings(
        database_url="sqlite:///unused",
        per_webhook_concurrency=inflight,
        worker_concurrency=2 * max(inflight, 64),
    )
    worker = Worker(settings, store, outbound)
    started, cpu = time.perf_counter(), time.process_time()
    await worker.drain(timeout=600)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    rate, each = notifications / elapsed, elapsed / notifications * 1e6
    print(f"drained {notifications}: {rate:,.0f}/s, {each:.1f} µs")
    return cpu / notifications * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notifications", type=int, default=4000, help="(4000)")
    parser.add_argument("--webhooks", type=int, default=10, help="of one group (10)")
    parser.add_argument("--seed-only", action="store_true", help="stop before the drain")
    parser.add_argument(
        "--http",
        nargs="?",
        const="both",
        choices=["both", "worker", "bare"],
        help="to a receiver, beside bare aiohttp (worker or bare: that side only)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, contextlib.ExitStack() as stack:
        receiver = stack.enter_context(Receiver.start()).url if args.http else None
        asyncio.run(
            drain(
                Path(directory),
                args.notifications,
                args.webhooks,
                args.seed_only,
                receiver,
                args.http or "both",
            )
        )


if __name__ == "__main__":
    main()
