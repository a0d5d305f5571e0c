"""The worker's own work per notification, HTTP left out: what a change to delivery.py moves.

    python -m bench.worker_drain [--notifications 4000] [--webhooks 10] [--seed-only]

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

Run against an older checkout of the gateway (PYTHONPATH=that/checkout, from a directory
outside this one) for a baseline: the script only uses what the store and worker had before
fairness (issue 17), and gateway.transport's MockTransport (issue 18; for a checkout older than
that, take this script as of e255db0, whose own stand-in did the same). No targets: this
explains S1's figures, it is not among them.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from uuid import uuid4

from bench.store_ops import batch
from gateway.config import Settings
from gateway.delivery import Worker
from gateway.ids import new_id
from gateway.store.sqlite import SqliteStore
from gateway.transport import MockTransport, OutboundRequest, OutboundResponse, respond
from tests.factories import make_webhook

BATCH = 100
OK = respond(200, b"ok")


def answers_200(request: OutboundRequest) -> OutboundResponse:
    """Every request is answered 200 at once, sending nothing."""
    return OK


async def drain(directory: Path, notifications: int, webhooks: int, seed_only: bool) -> None:
    store = SqliteStore(directory / "drain.db")
    await store.open()
    try:
        group = uuid4()
        hooks = [make_webhook(group_key=group) for _ in range(webhooks)]
        await store.add_webhooks(hooks)
        for index in range(notifications // BATCH):
            await store.add_events(*batch(hooks[index % webhooks], BATCH, new_id))
        if seed_only:
            return
        settings = Settings(database_url=f"sqlite:///{directory}/drain.db")
        worker = Worker(settings, store, MockTransport(answers_200, keep_requests=False))
        started = time.perf_counter()
        await worker.drain(timeout=600)
        elapsed = time.perf_counter() - started
        rate, each = notifications / elapsed, elapsed / notifications * 1e6
        print(f"drained {notifications} of {webhooks} webhook(s): {rate:,.0f}/s, {each:.1f} µs")
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notifications", type=int, default=4000, help="(4000)")
    parser.add_argument("--webhooks", type=int, default=10, help="of one group (10)")
    parser.add_argument("--seed-only", action="store_true", help="stop before the drain")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(drain(Path(directory), args.notifications, args.webhooks, args.seed_only))


if __name__ == "__main__":
    main()
