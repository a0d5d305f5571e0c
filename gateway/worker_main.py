"""`gateway worker`: the delivery worker alone, so API and delivery can scale apart; and the
worker processes that `gateway serve --worker-processes N` runs beside itself."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

from gateway import config, heap
from gateway.config import Settings
from gateway.delivery import Worker
from gateway.netguard import AddressPolicy
from gateway.outbound import Outbound
from gateway.store import store_for_url

log = logging.getLogger(__name__)


async def _run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        # SIGTERM: stop claiming, finish or release what is in flight, exit.
        loop.add_signal_handler(signum, stop.set)
    policy = AddressPolicy(settings.allowed_callback_networks)
    async with store_for_url(settings.database_url) as store, Outbound(policy=policy) as outbound:
        heap.freeze_startup()
        await Worker(settings, store, outbound).run(stop)


def run_worker(settings: Settings) -> int:
    """Run the worker until SIGTERM or SIGINT, on uvloop like `gateway serve` (uvicorn picks it
    when installed): the delivery loop spends most of its time in the event loop's socket calls."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_run(settings))
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # not on every platform; the standard loop works, only slower
        return None
    return uvloop.new_event_loop


# What serve's own flags can set and its workers need; the rest they read as serve did.
PASSED_ON = ("database_url", "allowed_callback_networks", "log_level")
WATCH_INTERVAL = 1.0  # seconds between looks for a worker process that has exited
STOP_MARGIN = 5.0  # seconds past the shutdown deadline before a stopping worker is killed
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Stopped(Exception):
    """A stop signal, raised where serve's main thread is."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, frame: object) -> None:
    raise _Stopped(signum)


@contextlib.contextmanager
def worker_processes(settings: Settings) -> Iterator[Settings]:
    """Run `settings.worker_processes` `gateway worker` processes for as long as this lasts,
    restarting any that exits, and stop them at the end (SIGTERM: they finish or give back what
    they hold). Yields the settings serve runs with: its own worker off when there are any.

    uvicorn shuts down on SIGTERM or SIGINT and then raises the signal again with the handler
    it found, which by default would end the process before the workers are stopped: the
    handler it finds here raises instead, the workers stop, and then the signal ends the
    process as it would have.
    """
    if settings.worker_processes <= 0:
        yield settings
        return
    pool = _WorkerPool(settings)
    previous = {signum: signal.signal(signum, _raise_stopped) for signum in STOP_SIGNALS}
    stopped_by = None
    try:
        yield dataclasses.replace(settings, run_worker=False)
    except _Stopped as stopped:
        stopped_by = stopped.signum
    finally:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)  # the stop below is bounded; let it finish
        pool.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if stopped_by is not None:
        signal.raise_signal(stopped_by)


class _WorkerPool:
    """The running `gateway worker` processes, and a thread that replaces any that exits."""

    def __init__(self, settings: Settings) -> None:
        self._deadline = settings.shutdown_deadline + STOP_MARGIN
        self._env = config.child_env(settings, PASSED_ON)
        self._stopping = threading.Event()
        self._procs = [self._spawn() for _ in range(settings.worker_processes)]
        self._watcher = threading.Thread(target=self._watch, name="worker-processes", daemon=True)
        self._watcher.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker"], env=self._env)
        log.info("worker process started", extra={"pid": proc.pid})
        return proc

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_INTERVAL):
            for i, proc in enumerate(self._procs):
                if proc.poll() is not None and not self._stopping.is_set():
                    log.error("worker process %d exited with %s; starting another",
                              proc.pid, proc.returncode)  # fmt: skip
                    self._procs[i] = self._spawn()

    def stop(self) -> None:
        """SIGTERM every worker process, wait for them, kill those past the deadline."""
        self._stopping.set()
        self._watcher.join()
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        ends = time.monotonic() + self._deadline
        for proc in self._procs:
            try:
                proc.wait(timeout=max(0.0, ends - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker process %d did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.wait()
