"""Several `gateway worker` processes on one PostgreSQL database share the work.

One `gateway serve` (its own worker off) takes the events; three `gateway worker` processes
deliver them to scripts/example_receiver.py, which verifies every notification with
standardwebhooks and records it. The count is taken at the receiver, the in-flight set of the
killed worker from the database (lease owners name their process).
"""

from __future__ import annotations

import concurrent.futures
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.acceptance.processes import (
    create_key,
    example_receiver,
    gateway_process,
    recorded,
    start_worker,
    stop,
    subscribe_receiver,
)
from tests.postgres import run_sync

pytestmark = pytest.mark.postgres
EVENTS = 10_000
ENV = {
    "GATEWAY_RUN_WORKER": "false",
    # The killed worker's leases come back after this; longer than any send under load.
    "GATEWAY_LEASE_SECONDS": "12",
    "GATEWAY_DELIVERY_TIMEOUT": "4",
    "GATEWAY_POLL_INTERVAL": "0.2",
    "GATEWAY_PER_WEBHOOK_CONCURRENCY": "16",
}


async def _query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Rows of one query on the test's database (from outside the gateway)."""
    return run_sync(_query(url, sql, *args))


def received(record: Path) -> list[str]:
    """The webhook-id of every notification the receiver verified, in arrival order."""
    return [str(line["webhookId"]) for line in recorded(record)]


def wait_for(record: Path, distinct: int, timeout: float) -> list[str]:
    """Poll the record until `distinct` notifications arrived, or time runs out."""
    deadline = time.monotonic() + timeout
    while len(set(seen := received(record))) < distinct and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen


def publish(url: str, key: str, count: int, start: int = 0) -> None:
    for first in range(start, start + count, 100):
        batch = [
            {"tableKey": "Invoice", "eventType": "U", "records": [{"id": str(i)}]}
            for i in range(first, min(first + 100, start + count))
        ]
        answer = httpx.post(
            f"{url}/api/v1/Events", headers={"Api-Key": key}, json=batch, timeout=30
        )
        assert answer.status_code == 202, answer.text


def settled(url: str) -> int:
    """How many notifications are recorded as delivered."""
    rows = query(url, "SELECT count(*) FROM notifications WHERE state = 'succeeded'")
    return int(rows[0][0])


def leased_by(url: str, proc: subprocess.Popen[bytes]) -> set[str]:
    """Notifications still leased to this (dead) worker process, by its pid in the owner."""
    rows = query(
        url,
        "SELECT notification_id FROM notifications WHERE state = 'pending' AND lease_owner LIKE $1",
        f"worker-%-{proc.pid}-%",
    )
    return {str(row[0]) for row in rows}


def kill_holding_leases(url: str, proc: subprocess.Popen[bytes]) -> set[str]:
    """SIGKILL the worker at a moment it holds leases; return what it held.

    The worker is frozen (SIGSTOP) while its leases are read, so the set read is exactly the set
    it dies with; if it holds none at that moment it runs on a little and is looked at again.
    """
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        proc.send_signal(signal.SIGSTOP)
        if held := leased_by(url, proc):
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            return held
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.02)
    raise TimeoutError("the worker never held a lease to be killed with")


@pytest.mark.timeout(120)
def test_three_workers_share_the_work_and_a_killed_one_loses_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    key = create_key(tmp_path, postgres_url, "scale")["apiKey"]
    record = tmp_path / "received.jsonl"
    workers: list[subprocess.Popen[bytes]] = []
    with (
        example_receiver(("--record", str(record))) as receiver,
        gateway_process(tmp_path, postgres_url, ENV) as url,
    ):
        try:
            subscribe_receiver(url, key, receiver)
            workers = [start_worker(tmp_path, postgres_url, ENV) for _ in range(3)]
            # Publishing goes on while the workers deliver, so the kill lands early in it.
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                publishing = pool.submit(publish, url, key, EVENTS)
                wait_for(record, EVENTS // 4, timeout=60)
                victim = workers[0]
                in_flight = kill_holding_leases(postgres_url, victim)
                arrived_before = len(set(received(record)))
                publishing.result()
            seen = wait_for(record, EVENTS, timeout=90)
            # What the killed worker sent but never recorded arrived already; its lease must
            # run out before another worker sends it again and records it.
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and query(
                postgres_url, "SELECT 1 FROM notifications WHERE state <> 'succeeded' LIMIT 1"
            ):
                time.sleep(0.2)
            seen = received(record)
        finally:
            for proc in workers:
                stop(proc)

    assert 0 < arrived_before < EVENTS, "the kill landed mid-delivery"
    rows = query(postgres_url, "SELECT notification_id, state FROM notifications")
    assert len(rows) == EVENTS and {row[1] for row in rows} == {"succeeded"}
    assert set(seen) == {str(row[0]) for row in rows}, "every notification arrived"
    duplicates = {notification for notification, n in Counter(seen).items() if n > 1}
    assert duplicates <= in_flight, "only the killed worker's in-flight notifications repeat"
    print(
        f"{len(seen)} deliveries of {EVENTS} notifications, {len(duplicates)} duplicates; "
        f"the killed worker had {len(in_flight)} in flight when {arrived_before} had arrived"
    )


@pytest.mark.timeout(60)
def test_a_new_event_reaches_an_idle_worker_without_waiting_for_its_poll(
    tmp_path: Path, postgres_url: str
) -> None:
    # A poll interval longer than this test's timeout: only the NOTIFY can wake the worker.
    env = {**ENV, "GATEWAY_POLL_INTERVAL": "600"}
    key = create_key(tmp_path, postgres_url, "listen")["apiKey"]
    record = tmp_path / "received.jsonl"
    with (
        example_receiver(("--record", str(record))) as receiver,
        gateway_process(tmp_path, postgres_url, env) as url,
    ):
        subscribe_receiver(url, key, receiver)
        worker = start_worker(tmp_path, postgres_url, env)
        try:
            publish(url, key, 1)
            assert len(wait_for(record, 1, timeout=30)) == 1
            # Once the attempt is recorded the worker has nothing left and goes idle; the
            # second event arrives only if the worker is woken for it.
            deadline = time.monotonic() + 30
            while settled(postgres_url) < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            publish(url, key, 1, start=1)
            assert len(set(wait_for(record, 2, timeout=30))) == 2
        finally:
            stop(worker)
