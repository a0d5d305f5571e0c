"""The SQLite store's own costs, in process, without HTTP: what a change to the store moves.

    python -m bench.store_ops [--pending 200000] [--events 50000] [--random-ids] [--quick]

On a fresh SQLite file with one webhook (and 1,000 more for the fan-out row), it times:
- add_events: batches of 100 events, one notification each, through SqliteStore.add_events;
  baseline: the same encoded rows inserted with the sqlite3 module in one transaction a batch
  (the floor the store's own work sits on);
- claim_due and record_attempts: leasing 256 at a time and recording each batch as delivered,
  until all are done (per notification);
- a claim that excludes the only webhook with due work, at `--pending` notifications: the read
  the worker avoids repeating (delivery.Worker._nothing_else_due);
- add_events of one event to 1,000 webhooks (sequence numbers reserved in one statement).

`--random-ids` gives events and notifications random (v4) ids instead of the time-ordered
(v7) ids the API makes, to show what the id kind costs the inserts. No targets: these explain
the scenario figures, they are not among them.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from uuid import UUID

from bench import seed
from bench.common import Report
from gateway.ids import new_id
from gateway.models import Deliverable, Event, EventType, Notification, Webhook, utcnow
from gateway.outcomes import AttemptOutcome, Effect
from gateway.store import sqlite_queries as q
from gateway.store.sqlite import SqliteStore
from tests.factories import make_webhook

BATCH = 100
CLAIM = 256
RECORDS = ({"id": "1", "total": 10},)
NewId = Callable[[], UUID]  # new_id as gateway/publishing.py makes them; --random-ids: uuid4


def batch(hook: Webhook, count: int, new_id: NewId) -> tuple[list[Event], list[Notification]]:
    """`count` events with one pending notification each, due now, as the API makes them."""
    now = utcnow()
    events = [
        Event(new_id(), hook.group_key, "Invoice", EventType.UPDATE, RECORDS, now)
        for _ in range(count)
    ]
    notes = [seed.pending(event, hook, new_id=new_id) for event in events]
    return events, notes


def delivered(note: Deliverable, owner: str) -> AttemptOutcome:
    return AttemptOutcome(
        notification_id=note.notification_id,
        lease_owner=owner,
        effect=Effect.SUCCESS,
        cause="HTTP 200",
        retry_at=None,
        response_status_code="200",
        request_message=f"POST http://127.0.0.1/hook\n\n{'x' * 200}",
        response_message="HTTP 200\n\nok",
    )


async def open_store(directory: str, name: str) -> tuple[SqliteStore, Webhook]:
    store = SqliteStore(Path(directory) / name)
    await store.open()
    hook = make_webhook()
    await store.add_webhooks([hook])
    return store, hook


async def add_events(directory: str, events: int, new_id: NewId) -> float:
    """Seconds per event through the store."""
    store, hook = await open_store(directory, "add.db")
    try:
        elapsed = 0.0
        for _ in range(events // BATCH):
            rows, notes = batch(hook, BATCH, new_id)
            start = time.perf_counter()
            await store.add_events(rows, notes)
            elapsed += time.perf_counter() - start
        return elapsed / events
    finally:
        await store.close()


async def raw_inserts(directory: str, events: int, new_id: NewId) -> float:
    """Seconds per event for the same rows through the sqlite3 module alone."""
    store, hook = await open_store(directory, "raw.db")
    await store.close()
    db = sqlite3.connect(Path(directory) / "raw.db", isolation_level=None)
    for pragma in q.PRAGMAS:
        db.execute(pragma)
    sequence = 0
    elapsed = 0.0
    for _ in range(events // BATCH):
        rows, notes = batch(hook, BATCH, new_id)
        start = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.executemany(q.INSERT_EVENT, [q.event_row(e) for e in rows])
        encoded = []
        for note in notes:
            sequence += 1
            row = q.notification_row(note)
            row[q.ROW_SEQUENCE] = sequence
            encoded.append(row)
        db.executemany(q.INSERT_NOTIFICATION, encoded)
        db.execute("COMMIT")
        elapsed += time.perf_counter() - start
    db.close()
    return elapsed / events


async def claim_and_record(
    directory: str, pending_count: int, new_id: NewId
) -> tuple[float, float, float]:
    """Seconds per notification to claim and to record; seconds of one fruitless claim."""
    store, hook = await open_store(directory, "cycle.db")
    try:
        for first in range(0, pending_count, 1000):
            await store.add_events(*batch(hook, min(1000, pending_count - first), new_id))
        lease = utcnow() + timedelta(minutes=5)
        start = time.perf_counter()
        await store.claim_due(utcnow(), CLAIM, "w", lease, exclude_webhooks=[hook.webhook_id])
        fruitless = time.perf_counter() - start
        claiming = recording = 0.0
        while True:
            start = time.perf_counter()
            notes = await store.claim_due(utcnow(), CLAIM, "w", lease)
            claimed = time.perf_counter()
            if not notes:
                break
            await store.record_attempts([delivered(n, "w") for n in notes])
            claiming += claimed - start
            recording += time.perf_counter() - claimed
        return claiming / pending_count, recording / pending_count, fruitless
    finally:
        await store.close()


async def fan_out(directory: str, webhooks: int, new_id: NewId, rounds: int = 10) -> float:
    """Best seconds of `rounds` add_events of one event to `webhooks` webhooks."""
    store, first = await open_store(directory, "fan.db")
    try:
        hooks = [make_webhook(group_key=first.group_key) for _ in range(webhooks)]
        await store.add_webhooks(hooks)
        best = float("inf")
        for _ in range(rounds):
            [event], _ = batch(first, 1, new_id)
            notes = [seed.pending(event, hook, new_id=new_id) for hook in hooks]
            start = time.perf_counter()
            await store.add_events([event], notes)
            best = min(best, time.perf_counter() - start)
        return best
    finally:
        await store.close()


async def main(args: argparse.Namespace) -> None:
    make_id: NewId = uuid.uuid4 if args.random_ids else new_id
    ids = "random (v4)" if args.random_ids else "time-ordered (v7)"
    report = Report(f"Store operations: SQLite, in process, {args.pending:,} pending, {ids} ids")
    with tempfile.TemporaryDirectory() as directory:
        store_cost = await add_events(directory, args.events, make_id)
        floor = await raw_inserts(directory, args.events, make_id)
        claim, record, fruitless = await claim_and_record(directory, args.pending, make_id)
        fan = await fan_out(directory, 1_000, make_id)
    us = 1e6
    report.add(
        f"add_events, {BATCH} events a batch, 1 notification each",
        f"{store_cost * us:.1f} µs/event",
        f"{floor * us:.1f} µs/event (sqlite3 alone)",
        f"{store_cost / floor:.2f}x",
    )
    report.add(f"claim_due, {CLAIM} at a time", f"{claim * us:.1f} µs/notification")
    report.add("record_attempts, each claimed batch", f"{record * us:.1f} µs/notification")
    report.add(
        f"a claim excluding the only webhook with work, {args.pending:,} pending",
        f"{fruitless * 1e3:.1f} ms",
    )
    report.add("add_events, 1 event to 1,000 webhooks (best of 10)", f"{fan * 1e3:.1f} ms")
    report.print()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pending", type=int, default=200_000, help="notifications to drain")
    parser.add_argument("--events", type=int, default=50_000, help="events for add_events")
    parser.add_argument("--random-ids", action="store_true", help="uuid4 ids instead of uuid7")
    parser.add_argument("--quick", action="store_true", help="20,000 pending, 10,000 events")
    args = parser.parse_args()
    if args.quick:
        args.pending, args.events = 20_000, 10_000
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
