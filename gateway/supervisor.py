"""The worker processes that `gateway serve --worker-processes N` runs beside itself: how many,
starting them (`gateway worker --parent-stdin`), replacing any that exits, telling them of new
work and changed webhooks (gateway.wakeup), and stopping them with serve."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator

from gateway import config, wakeup
from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.store import in_one_process

log = logging.getLogger(__name__)

# "auto" runs one worker process per core serve may use, at most this many. Measured only on
# 2 cores (2 processes beat 1 and 3 there, bench.s1_throughput); SQLite writes one at a time.
AUTO_MOST = 4
# What serve's own flags can set and its workers need; the rest they read as serve did. The
# secret key too: it opens the authentications' stored secrets, and a worker without it would
# make a key of its own beside the database and fail every send that needs one.
PASSED_ON = ("database_url", "allowed_callback_networks", "log_level", "log_format", "secret_key")
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


def process_count(settings: Settings, cores: int | None = None) -> int:
    """How many worker processes `serve` runs. An explicit `worker_processes` is taken as it
    is. "auto" (None) gives one per core this process may run on, at most AUTO_MOST; none on a
    single core, where a second process would only take turns with serve, and none when serve's
    worker is off (`run_worker=false`: an API-only process, delivery runs elsewhere), nor with
    a memory:// store, which other processes cannot see."""
    in_memory = in_one_process(settings.database_url)
    if settings.worker_processes is not None:
        if settings.worker_processes and in_memory:
            raise GatewayError("worker processes cannot share a memory:// store; use 0")
        return settings.worker_processes
    if not settings.run_worker or in_memory:
        return 0
    cores = _usable_cores() if cores is None else cores
    return 0 if cores < 2 else min(cores, AUTO_MOST)


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: what a container or taskset allows
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def worker_processes(settings: Settings) -> Iterator[tuple[Settings, WorkerPool | None]]:
    """Run `process_count(settings)` `gateway worker` processes for as long as this lasts,
    restarting any that exits, and stop them at the end (SIGTERM: they finish or give back what
    they hold). Yields the settings serve runs with (its own worker off when there are any)
    and the pool (None when there are none), which wakes them and holds their metrics.

    uvicorn shuts down on SIGTERM or SIGINT and then raises the signal again with the handler
    it found, which by default would end the process before the workers are stopped: the
    handler it finds here raises instead, the workers stop, and then the signal ends the
    process as it would have.
    """
    count = process_count(settings)
    if count <= 0:
        yield settings, None
        return
    pool = WorkerPool(settings, count)
    previous = {signum: signal.signal(signum, _raise_stopped) for signum in STOP_SIGNALS}
    stopped_by = None
    try:
        yield dataclasses.replace(settings, run_worker=False), pool
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


class WorkerPool:
    """The running `gateway worker` processes, a thread that replaces any that exits, and the
    directory where they write their metrics (`gateway.metrics`), removed when they stop."""

    def __init__(self, settings: Settings, count: int) -> None:
        self._deadline = settings.shutdown_deadline + STOP_MARGIN
        self.metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
        self._env = config.child_env(settings, PASSED_ON)
        self._env["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir
        self._stopping = threading.Event()
        self._procs = [self._spawn() for _ in range(count)]
        self._watcher = threading.Thread(target=self._watch, name="worker-processes", daemon=True)
        self._watcher.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "gateway.cli", "worker", "--parent-stdin"]
        proc = subprocess.Popen(command, env=self._env, stdin=subprocess.PIPE)
        assert proc.stdin is not None
        os.set_blocking(proc.stdin.fileno(), False)  # wake() must never stall the event loop
        log.info("worker process started", extra={"pid": proc.pid})
        return proc

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_INTERVAL):
            for i, proc in enumerate(self._procs):
                if proc.poll() is not None and not self._stopping.is_set():
                    log.error("worker process %d exited with %s; starting another",
                              proc.pid, proc.returncode)  # fmt: skip
                    self._procs[i] = self._spawn()

    def wake(self) -> None:
        """New notifications are due: a wake-up to each worker process, which reads it on its
        standard input (gateway.worker_main)."""
        self._tell(wakeup.WAKE)

    def webhook_changed(self, webhook_id: uuid.UUID) -> None:
        """A webhook changed: each worker process reads it afresh before its next send."""
        self._tell(wakeup.line_for(webhook_id))

    def _tell(self, line: bytes) -> None:
        """Write a line to each worker process. Called on serve's event loop while the watcher
        thread may replace a process: this writes to the processes it saw, whose pipes stay
        open while it holds them."""
        for proc in list(self._procs):
            if proc.stdin is None:
                continue
            # A full pipe holds wake-ups not read yet (a webhook's change is lost with it,
            # and reaches the worker within its cache's second); a closed one, a process that
            # exited, whose replacement reads every webhook afresh. Neither needs this line.
            with contextlib.suppress(OSError, ValueError):
                os.write(proc.stdin.fileno(), line)

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
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
