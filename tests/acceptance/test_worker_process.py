"""`gateway worker` runs apart from the API, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.acceptance.processes import (
    create_key,
    example_receiver,
    gateway_process,
    start_worker,
    stop,
    subscribe_receiver,
)

pytestmark = pytest.mark.timeout(120)
EVENTS = 300
# Leases far longer than the test: only leases given back on SIGTERM let the second worker on.
ENV = {
    "GATEWAY_RUN_WORKER": "false",
    "GATEWAY_LEASE_SECONDS": "300",
    "GATEWAY_PER_WEBHOOK_CONCURRENCY": "4",
    "GATEWAY_SHUTDOWN_DEADLINE": "5",
    "GATEWAY_POLL_INTERVAL": "0.1",
}


def _arrived(record: Path) -> set[str]:
    if not record.exists():
        return set()
    lines = record.read_text().splitlines()
    return {json.loads(line)["payload"]["eventId"] for line in lines if line.strip()}


def _wait(record: Path, count: int, timeout: float) -> set[str]:
    deadline = time.monotonic() + timeout
    while len(seen := _arrived(record)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen


def test_a_separate_worker_delivers_and_gives_back_its_leases_on_sigterm(tmp_path: Path) -> None:
    database = "sqlite:///data/gateway.db"
    key = create_key(tmp_path, database, "workers")["apiKey"]
    record = tmp_path / "received.jsonl"
    receiver_args = ("--record", str(record), "--delay", "0.02")
    with (
        example_receiver(receiver_args) as receiver,
        gateway_process(tmp_path, database, ENV) as url,
    ):
        headers = {"Api-Key": key}
        subscribe_receiver(url, key, receiver, content="Id", event_type="I")
        events = [
            {"tableKey": "Invoice", "eventType": "I", "records": [{"id": str(i)}]}
            for i in range(EVENTS)
        ]
        published = httpx.post(f"{url}/api/v1/Events", headers=headers, json=events).json()
        time.sleep(0.5)
        assert _arrived(record) == set(), "serve runs no worker with run_worker=false"

        first = start_worker(tmp_path, database, ENV)
        _wait(record, 20, timeout=30)
        stopping = time.monotonic()
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=20) == 0
        assert time.monotonic() - stopping < 10, "stopped within the shutdown deadline"
        partial = _arrived(record)
        assert 0 < len(partial) < EVENTS

        second = start_worker(tmp_path, database, ENV)
        try:
            seen = _wait(record, EVENTS, timeout=60)
        finally:
            stop(second)
    assert seen == set(published["eventIds"])
