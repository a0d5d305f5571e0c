"""`gateway worker`: the delivery worker alone, so API and delivery can scale apart, run on its
own or as one of the worker processes `gateway serve` supervises (gateway.supervisor)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

from gateway import heap, logs, wakeup
from gateway.config import Settings
from gateway.delivery import Worker
from gateway.netguard import AddressPolicy
from gateway.outbound import Outbound
from gateway.store import store_for_url

log = logging.getLogger(__name__)
STDIN = 0  # a worker process started by serve hears from it here (`_follow_parent`)


async def _run(settings: Settings, *, parent_stdin: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        # SIGTERM: stop claiming, finish or release what is in flight, exit.
        loop.add_signal_handler(signum, stop.set)
    policy = AddressPolicy(settings.allowed_callback_networks)
    store = store_for_url(settings.database_url, pool_size=settings.database_pool_size)
    async with store, Outbound(policy=policy, ca_bundle=settings.ca_bundle) as outbound:
        heap.freeze_startup()
        worker = Worker(settings, store, outbound)
        logs.startup_summary(
            "worker", settings, lease_owner=worker.owner, started_by_serve=parent_stdin
        )
        if parent_stdin:
            _follow_parent(loop, worker, stop)
        await worker.run(stop)


def _follow_parent(
    loop: asyncio.AbstractEventLoop, worker: Worker, stop: asyncio.Event, fd: int = STDIN
) -> None:
    """Listen to the `serve` that started this process, on standard input: it writes a line
    there when a publish leaves notifications for a claim (WAKE) or an owner changes a webhook
    (its id), and the pipe ends when `serve` ends, however it ends (SIGKILL included). The end
    stops the worker as SIGTERM would. SQLite has no NOTIFY: without the wake-up, new work
    waits up to `poll_interval`, and without the id, a paused webhook's notifications held
    here could go out until the worker's cached copy of it is a second old."""
    os.set_blocking(fd, False)
    pending = bytearray()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            pending.extend(data)
            *lines, rest = pending.split(b"\n")
            pending[:] = rest
            wakeup.heard(worker, lines)
            return
        loop.remove_reader(fd)
        if not stop.is_set():
            log.warning("the serve process that started this worker has exited; stopping")
            stop.set()

    loop.add_reader(fd, readable)


def run_worker(settings: Settings, *, parent_stdin: bool = False) -> int:
    """Run the worker until SIGTERM or SIGINT (or, with `parent_stdin`, until the serve that
    started it ends), on uvloop like `gateway serve` (uvicorn picks it when installed): the
    delivery loop spends most of its time in the event loop's socket calls."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_run(settings, parent_stdin=parent_stdin))
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # not on every platform; the standard loop works, only slower
        return None
    return uvloop.new_event_loop
