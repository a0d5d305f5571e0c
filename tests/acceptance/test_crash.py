"""`gateway serve` is killed with SIGKILL mid-delivery; after a restart nothing is lost.

The receiver (scripts/example_receiver.py) verifies every notification with standardwebhooks
and records it; the count is taken there, not from the gateway's own books.
"""

from __future__ import annotations

import signal
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from tests.acceptance.processes import (
    create_key,
    example_receiver,
    recorded,
    start_gateway,
    stop,
    subscribe_receiver,
)

pytestmark = pytest.mark.timeout(240)
EVENTS = 2000
# Short leases so the killed process's claims come back quickly; still longer than a send.
ENV = {
    "GATEWAY_LEASE_SECONDS": "4",
    "GATEWAY_DELIVERY_TIMEOUT": "1",
    "GATEWAY_POLL_INTERVAL": "0.2",
}


def _wait(record: Path, at_least: int, timeout: float) -> list[dict[str, object]]:
    """Poll the record until `at_least` distinct notifications arrived (or time runs out)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = recorded(record)
        if len({r["webhookId"] for r in seen}) >= at_least or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


def test_sigkill_mid_delivery_loses_nothing(tmp_path: Path) -> None:
    database = "sqlite:///data/gateway.db"
    key = create_key(tmp_path, database, "crash")["apiKey"]
    record = tmp_path / "received.jsonl"
    # 5 ms an answer, one at a time: ~10 s of delivery, so the kill lands early in it.
    with example_receiver(("--record", str(record), "--delay", "0.005")) as receiver:
        proc, url = start_gateway(tmp_path, database, ENV)
        headers = {"Api-Key": key}
        subscribe_receiver(url, key, receiver)
        published: list[str] = []
        for start in range(0, EVENTS, 100):
            batch = [
                {"tableKey": "Invoice", "eventType": "U", "records": [{"id": str(i)}]}
                for i in range(start, start + 100)
            ]
            answer = httpx.post(f"{url}/api/v1/Events", headers=headers, json=batch, timeout=30)
            assert answer.status_code == 202
            published += answer.json()["eventIds"]

        _wait(record, 200, timeout=60)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        before_restart = len(recorded(record))
        assert before_restart < EVENTS, "the kill should land mid-delivery"

        proc, url = start_gateway(tmp_path, database, ENV)
        try:
            seen = _wait(record, EVENTS, timeout=120)
        finally:
            stop(proc)

    ids_by_event: dict[str, set[str]] = defaultdict(set)
    for row in seen:
        payload = row["payload"]
        assert isinstance(payload, dict)
        ids_by_event[str(payload["eventId"])].add(str(row["webhookId"]))
    assert set(ids_by_event) == set(published), "every event arrived at least once"
    assert all(len(ids) == 1 for ids in ids_by_event.values()), "duplicates keep their webhook-id"
    duplicates = len(seen) - len(ids_by_event)
    print(
        f"received {len(seen)} deliveries for {EVENTS} events ({duplicates} duplicates); "
        f"{before_restart} arrived before the SIGKILL"
    )
