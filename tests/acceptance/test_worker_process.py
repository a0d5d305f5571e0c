"""`gateway worker` runs apart from the API, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from gateway import config, supervisor
from tests.acceptance.processes import (
    children,
    create_key,
    example_receiver,
    gateway_process,
    recorded,
    start_gateway,
    start_worker,
    stat_fields,
    stop,
    subscribe_receiver,
)
from tests.receiver import Answer, run_receiver

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
    return {line["payload"]["eventId"] for line in recorded(record)}


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


def _wait_for_children(pid: int, count: int, without: set[int], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = children(pid)
        if len(found) == count and not found & without:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{pid} has children {children(pid)}, wanted {count} new ones")


def test_serve_runs_worker_processes_restarts_one_that_dies_and_stops_them(tmp_path: Path) -> None:
    database = "sqlite:///data/gateway.db"
    key = create_key(tmp_path, database, "pool")["apiKey"]
    record = tmp_path / "received.jsonl"
    env = {"GATEWAY_WORKER_PROCESSES": "2", "GATEWAY_SHUTDOWN_DEADLINE": "5"}
    published: list[str] = []
    with example_receiver(("--record", str(record))) as receiver:
        serve, url = start_gateway(tmp_path, database, env)
        try:
            workers = _wait_for_children(serve.pid, 2, set(), timeout=10)
            for pid in workers:
                assert "worker" in Path(f"/proc/{pid}/cmdline").read_text()
            subscribe_receiver(url, key, receiver, content="Id", event_type="I")

            def publish(start: int) -> None:
                events = [
                    {"tableKey": "Invoice", "eventType": "I", "records": [{"id": str(i)}]}
                    for i in range(start, start + 50)
                ]
                answer = httpx.post(f"{url}/api/v1/Events", headers={"Api-Key": key}, json=events)
                published.extend(answer.json()["eventIds"])

            publish(0)
            assert len(_wait(record, 50, timeout=30)) == 50
            dead = min(workers)
            os.kill(dead, signal.SIGKILL)
            workers = _wait_for_children(serve.pid, 2, {dead}, timeout=10)
            publish(50)
            assert _wait(record, 100, timeout=30) == set(published)
        finally:
            serve.send_signal(signal.SIGTERM)
            # Ended by the signal once its workers have stopped, as uvicorn ends without them.
            assert serve.wait(timeout=30) == -signal.SIGTERM
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "workers outlived serve"


def test_serve_by_default_delivers_from_worker_processes_woken_at_once_that_end_with_it(
    tmp_path: Path,
) -> None:
    """The default ("auto") layout on this machine. Polls are 60 s apart, so deliveries within
    seconds show that serve's wake-up reached the worker processes; a SIGKILLed serve closes
    their standard input, and they stop."""
    database = "sqlite:///data/gateway.db"
    key = create_key(tmp_path, database, "auto")["apiKey"]
    record = tmp_path / "received.jsonl"
    env = {"GATEWAY_POLL_INTERVAL": "60", "GATEWAY_SHUTDOWN_DEADLINE": "5"}
    expected = supervisor.process_count(config.load(env={}))
    with example_receiver(("--record", str(record))) as receiver:
        serve, url = start_gateway(tmp_path, database, env)
        try:
            workers = _wait_for_children(serve.pid, expected, set(), timeout=10)
            subscribe_receiver(url, key, receiver, content="Id", event_type="I")
            time.sleep(1.0)  # every worker has made its first claim and now waits
            published: list[str] = []
            for start in (0, 20):
                events = [
                    {"tableKey": "Invoice", "eventType": "I", "records": [{"id": str(i)}]}
                    for i in range(start, start + 20)
                ]
                answer = httpx.post(f"{url}/api/v1/Events", headers={"Api-Key": key}, json=events)
                published.extend(answer.json()["eventIds"])
                assert _wait(record, len(published), timeout=15) == set(published)
            # serve's /metrics counts the attempts its worker processes made.
            assert _attempts(url, "success", wanted=40, timeout=15) == 40
        finally:
            serve.kill()
            serve.wait(timeout=10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)], "workers outlived serve"


def _alive(pid: int) -> bool:
    """Running, not ended (a zombie waits for whoever adopted it to reap it)."""
    try:
        return stat_fields(Path(f"/proc/{pid}/stat"))[0] != "Z"
    except OSError:
        return False


def _attempts(url: str, outcome: str, wanted: int, timeout: float) -> float:
    """gateway_delivery_attempts_total for `outcome` from /metrics, once it reaches `wanted`
    (a worker counts an attempt after the receiver has it) or `timeout` passes."""
    sample = f'gateway_delivery_attempts_total{{outcome="{outcome}"}} '
    deadline = time.monotonic() + timeout
    while True:
        lines = httpx.get(f"{url}/metrics").text.splitlines()
        found = sum(float(line.removeprefix(sample)) for line in lines if line.startswith(sample))
        if found >= wanted or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


async def test_a_pause_reaches_serves_worker_processes_before_their_next_send(
    tmp_path: Path,
) -> None:
    """serve tells its worker processes of an owner's change on their standard input: once
    the sends in flight are answered, a paused webhook receives nothing more, where each
    worker's copy of it (kept for a second) and the notifications it held would have let the
    next ones go out before any settlement."""
    database = "sqlite:///data/gateway.db"
    key = create_key(tmp_path, database, "pause")["apiKey"]
    env = {"GATEWAY_WORKER_PROCESSES": "2", "GATEWAY_PER_WEBHOOK_CONCURRENCY": "2"}
    async with run_receiver() as receiver:
        serve, url = await asyncio.to_thread(start_gateway, tmp_path, database, env)
        try:
            async with httpx.AsyncClient(base_url=url, headers={"Api-Key": key}) as api:
                # Answered in half a second: well within the second a worker keeps its copy.
                receiver.plan("/slow", Answer(delay=0.5))
                body = {"name": "slow", "requestContentType": "Id", "callbackHttpMethod": "POST",
                        "callbackUrl": f"{receiver.url}/slow"}  # fmt: skip
                hook = (await api.post("/api/v1/Webhooks", json=[body])).json()[0]
                rule = {"webhookId": hook["webhookId"], "tableKey": "Invoice", "eventType": "I"}
                assert (await api.post("/api/v1/WebhookRules", json=[rule])).status_code == 200
                events = [{"tableKey": "Invoice", "eventType": "I", "records": [{"id": str(i)}]}
                          for i in range(40)]  # fmt: skip
                assert (await api.post("/api/v1/Events", json=events)).status_code == 202
                await receiver.wait_for(2, "/slow", timeout=15)
                await asyncio.sleep(0.1)  # the other worker process's sends, if it has some
                paused = await api.patch(
                    f"/api/v1/Webhooks/{hook['webhookId']}", json={"statusCode": "Inactive"}
                )
                assert paused.json()["statusCode"] == "Inactive"
                in_flight = len(receiver.notifications("/slow"))
                await asyncio.sleep(1.5)  # the sends in flight are answered, then nothing more
                assert 2 <= in_flight <= 4  # two worker processes, two each at most
                assert len(receiver.notifications("/slow")) == in_flight
        finally:
            await asyncio.to_thread(stop, serve)
