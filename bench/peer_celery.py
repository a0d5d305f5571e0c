"""The peer beside the gateway: what Python teams build by hand, a Celery task queue with one
HTTP task per notification (issue 21), measured delivering S1's bodies to S1's receiver.

    python -m bench.peer_celery [--events 20000] [--concurrency 32] [--broker redis://...]

A real `celery worker` process (bench/peer_tasks.py: threads pool of `--concurrency`,
`acks_late`, no result backend, a task that signs and posts one body with a pooled httpx
client, non-2xx retried) consumes from a Redis broker (127.0.0.1:6379 by default). The run has
its own queue and key prefix in that database, deleted afterwards with the worker stopped.

The publisher sends one task message per notification through one producer, as
`group(...).apply_async()` does (one connection held; each message still costs kombu's two
Redis round trips, the exchange's bindings and the push): a team's backend enqueueing a batch
of notifications. The clock runs from the first enqueue
until the receiver has counted every request under the run's path; one warm-up task first
proves the worker consumes, and its CPU is let settle. CPU is read from the worker process
(and any children), the receiver, this process (the publisher) and, when it runs here, the
Redis server (its other clients count too): the broker is part of the peer's deployment as
the database is of the gateway's.

Prefetch: `--prefetch-multiplier` 4 (Celery's default), 128 messages reserved for 32 threads,
so a thread that finishes finds the next task already fetched. With acks_late a reserved
message stays in Redis's unacked hash until its task has posted, so reserving ahead loses
nothing if the worker dies (Redis redelivers it after the visibility timeout); the advice to
use 1 with acks_late is for long tasks hoarded by one worker among several. Here 1, 4 and 16
(and 8 threads instead of 32) made no difference beyond the noise: the worker is bound by its
CPU. It spends about 1.5 ms of CPU a notification, in one process and so on one core at a time
(the GIL): about half in httpx (32 threads posting with their own clients, without Celery,
took 770 µs a request in one throwaway measurement here), the rest in Celery's consumer thread
(a BRPOP per message, and a MULTI to Redis's unacked hash when the message is received and
another when it is acked) and its task tracing.

Without celery installed (`pip install -e '.[bench]'`) or with Redis not answering, `measure`
raises Unavailable saying why, and S1 prints that in the peer's row.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bench.common import (
    Body,
    Receiver,
    Report,
    bare_aiohttp,
    cpu_seconds,
    percent,
    settled,
    signed_bodies,
)
from gateway import signing
from tests.acceptance.processes import ROOT, children, stop

BROKER = "redis://127.0.0.1:6379/0"
PREFETCH = 4
START_TIMEOUT = 60.0
WAIT_TIMEOUT = 900.0
INSTALL = "pip install -e '.[bench]'"


class Unavailable(Exception):
    """The peer cannot be measured here: celery missing or Redis not answering."""


@dataclass
class Delivery:
    """Notifications the peer delivered, wall-clock seconds, CPU seconds by process."""

    notifications: int
    seconds: float
    cpu: Mapping[str, float]

    @property
    def rate(self) -> float:
        return self.notifications / self.seconds


async def measure(
    receiver: Receiver,
    bodies: Sequence[Body],
    concurrency: int = 32,
    broker: str = BROKER,
    prefetch: int = PREFETCH,
) -> Delivery:
    """Deliver `bodies` to `receiver` through a Celery worker; Unavailable if it cannot run."""
    celery = _celery_app_class()
    redis_pid = _redis_pid(broker)
    run = uuid.uuid4().hex[:8]
    prefix, queue = f"peer-{run}:", f"peer-{run}"
    app = celery("peer-publisher", broker=broker)
    app.conf.update(broker_transport_options={"global_keyprefix": prefix})
    try:
        with _worker(broker, prefix, queue, concurrency, prefetch) as pids:
            send = _sender(app, queue)
            warm = f"/peer/{run}-warm/"
            await asyncio.to_thread(send, f"{receiver.url}{warm}0", bodies[:1])
            try:
                await receiver.wait_for(1, START_TIMEOUT, prefix=warm)
            except TimeoutError as exc:
                raise Unavailable(f"its worker delivered nothing in {START_TIMEOUT:g} s") from exc
            await settled(_with_children(pids))
            return await _timed(receiver, bodies, send, f"/peer/{run}/", pids, redis_pid)
    finally:
        app.close()
        _delete_keys(broker, prefix)


async def _timed(
    receiver: Receiver,
    bodies: Sequence[Body],
    send: Callable[[str, Sequence[Body]], None],
    path: str,
    pids: Sequence[int],
    redis_pid: int | None,
) -> Delivery:
    sources: dict[str, Callable[[], float]] = {
        "celery worker": lambda: sum(cpu_seconds(pid) for pid in _with_children(pids)),
        "receiver": receiver.cpu_seconds,
        "publisher": time.process_time,
    }
    if redis_pid is not None:
        sources["redis"] = lambda: cpu_seconds(redis_pid)
    before = {role: read() for role, read in sources.items()}
    start = time.perf_counter()
    await asyncio.to_thread(send, f"{receiver.url}{path}0", bodies)
    await receiver.wait_for(len(bodies), WAIT_TIMEOUT, prefix=path)
    seconds = time.perf_counter() - start
    spent = {role: read() - before[role] for role, read in sources.items()}
    return Delivery(len(bodies), seconds, spent)


def _sender(app: Any, queue: str) -> Callable[[str, Sequence[Body]], None]:
    """Enqueue one task per body through one producer (group's way): its text and id, which
    the task signs afresh when it sends."""

    def send(url: str, bodies: Sequence[Body]) -> None:
        with app.producer_or_acquire() as producer:
            for body, headers in bodies:
                args = (url, headers["webhook-id"], body.decode())
                app.send_task("peer.deliver", args, queue=queue, producer=producer)

    return send


@contextlib.contextmanager
def _worker(
    broker: str, prefix: str, queue: str, concurrency: int, prefetch: int
) -> Iterator[list[int]]:
    """A `celery worker` on the run's queue; its pids (it and any children) while it runs."""
    # Celery warns on every start as root (this machine's benchmarks run as root).
    command = [sys.executable, "-W", "ignore:You're running the worker with superuser"]
    command += ["-m", "celery", "-A", "bench.peer_tasks", "-b", broker, "--quiet"]
    command += ["worker", "-P", "threads", "-c", str(concurrency), "-Q", queue]
    command += ["--prefetch-multiplier", str(prefetch), "-n", f"{queue}@%h", "-l", "WARNING"]
    # Gossip, mingle and heartbeats talk to other workers; there are none to talk to.
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    env = {**os.environ, "PEER_CELERY_PREFIX": prefix}
    env["PEER_CELERY_SECRET"] = signing.generate_secret()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        yield [proc.pid]
    finally:
        stop(proc)
        if proc.returncode not in (0, None):
            print(f"celery worker exited with {proc.returncode}", file=sys.stderr)


def _with_children(pids: Sequence[int]) -> list[int]:
    found = list(pids)
    for pid in pids:
        found += sorted(children(pid))
    return found


def _celery_app_class() -> Any:
    try:
        from celery import Celery
    except ImportError as exc:
        raise Unavailable(f"celery is not installed ({INSTALL})") from exc
    return Celery


def _redis(broker: str) -> Any:
    try:
        import redis
    except ImportError as exc:
        raise Unavailable(f"redis is not installed ({INSTALL})") from exc
    return redis.Redis.from_url(broker, socket_connect_timeout=2, socket_timeout=10)


def _redis_pid(broker: str) -> int | None:
    """The Redis server's pid when it runs on this machine, None if elsewhere; Unavailable
    when it does not answer."""
    client = _redis(broker)
    try:
        pid = int(client.info("server")["process_id"])
    except Exception as exc:  # redis.RedisError and OSError alike: the reason goes in the row
        where = urlsplit(broker)  # never the URL itself, which may hold a password
        raise Unavailable(
            f"Redis at {where.hostname}:{where.port} does not answer ({exc})"
        ) from exc
    finally:
        client.close()
    with contextlib.suppress(OSError):
        cpu_seconds(pid)
        return pid
    return None


def _delete_keys(broker: str, prefix: str) -> None:
    """Every Redis key of the run: its queue, kombu's unacked hash and bindings, the pidbox."""
    client = _redis(broker)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="notifications to deliver")
    parser.add_argument("--concurrency", type=int, default=32, help="threads; aiohttp in flight")
    parser.add_argument("--prefetch-multiplier", type=int, default=PREFETCH, help="worker's")
    parser.add_argument("--broker", default=BROKER, help="the Redis URL (a database number)")
    return parser.parse_args()


def cpu_note(delivery: Delivery) -> str:
    """CPU microseconds per notification, in total and by process."""
    per = {role: s / delivery.notifications * 1e6 for role, s in delivery.cpu.items()}
    parts = " + ".join(f"{role} {us:.0f}" for role, us in per.items())
    return f"{sum(per.values()):.0f} µs ({parts})"


async def main() -> None:
    args = parse_args()
    report = Report(f"The Celery peer: {args.events:,} notifications, {args.concurrency} threads")
    with Receiver.start() as receiver:
        bodies = signed_bodies(args.events)
        url = f"{receiver.url}/base/{uuid.uuid4().hex[:8]}"
        base = await bare_aiohttp(url, bodies, args.concurrency)
        report.add("bare aiohttp", f"{base:,.0f}/s")
        try:
            peer = await measure(
                receiver, bodies, args.concurrency, args.broker, args.prefetch_multiplier
            )
        except Unavailable as exc:
            report.add("Celery peer", f"not measured: {exc}")
        else:
            rate = f"{peer.rate:,.0f}/s"
            report.add("Celery peer", rate, f"{base:,.0f}/s", percent(peer.rate, base))
            report.add("CPU per notification, Celery peer", cpu_note(peer))
    report.print()


if __name__ == "__main__":
    asyncio.run(main())
