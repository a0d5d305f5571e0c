"""The delivery worker: claim due notifications, send them, record what happened.

    store.claim_due (leased) -> per-webhook queue -> send (global and per-webhook caps)
        -> outcome queue -> store.record_attempts (batched; settles lifecycle atomically)

A lease longer than the delivery timeout means a live send never loses its claim; a crashed
worker's leases expire and another claim picks the notifications up (at-least-once).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID

from gateway import metrics
from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.models import Notification, utcnow
from gateway.outbound import Outbound
from gateway.outcomes import AttemptOutcome
from gateway.sender import Sender
from gateway.store.base import Store

log = logging.getLogger(__name__)


class Worker:
    """Delivers notifications until stopped; `drain()` runs until nothing is due (tests)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        outbound: Outbound,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.store = store
        # Host and pid in the lease owner: an operator (or a test) can tell whose leases they are.
        self.owner = f"worker-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.clock = clock
        self.sender = Sender(settings, outbound, store, clock)
        self._queues: dict[UUID, collections.deque[Notification]] = {}
        self._active: dict[UUID, int] = collections.defaultdict(int)
        self._slots = asyncio.Semaphore(settings.worker_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._outcomes: list[AttemptOutcome] = []
        self._wake = asyncio.Event()
        self._flushed = asyncio.Event()

    def wake(self) -> None:
        """New notifications are due: claim now instead of at the next poll."""
        self._wake.set()

    def _backlog(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def _saturated(self) -> list[UUID]:
        """Webhooks with enough queued locally; claims skip them so one slow partner cannot
        hold every lease."""
        cap = self.settings.per_webhook_concurrency
        return [wid for wid, q in self._queues.items() if len(q) + self._active[wid] >= 2 * cap]

    async def _claim(self) -> int:
        room = self.settings.claim_batch_size * 2 - self._backlog() - len(self._tasks)
        if room <= 0:
            return 0
        now = self.clock()
        lease_until = now + timedelta(seconds=self.settings.lease_seconds)
        batch = await self.store.claim_due(
            now,
            min(room, self.settings.claim_batch_size),
            self.owner,
            lease_until,
            exclude_webhooks=self._saturated(),
        )
        for note in batch:
            self._queues.setdefault(note.webhook_id, collections.deque()).append(note)
        self._dispatch()
        return len(batch)

    def _dispatch(self) -> None:
        cap = self.settings.per_webhook_concurrency
        for webhook_id, queue in list(self._queues.items()):
            while queue and self._active[webhook_id] < cap:
                note = queue.popleft()
                self._active[webhook_id] += 1
                task = asyncio.create_task(self._deliver(note))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if not queue:
                del self._queues[webhook_id]

    async def _deliver(self, note: Notification) -> None:
        try:
            async with self._slots:
                outcome = await self.sender.attempt(note, self.owner)
            self._outcomes.append(outcome)
            metrics.ATTEMPTS.labels(outcome=outcome.effect.value).inc()
        finally:
            self._active[note.webhook_id] -= 1
            if not self._active[note.webhook_id]:
                del self._active[note.webhook_id]
            self._dispatch()
            self._wake.set()

    async def _flush(self) -> None:
        """Write the finished attempts in one batch."""
        if not self._outcomes:
            return
        batch, self._outcomes = self._outcomes, []
        try:
            await self.store.record_attempts(batch)
        except GatewayError:
            # The leases still stand; they expire and the notifications go out again.
            log.exception("could not record %d attempts", len(batch))

    async def _cycle(self) -> int:
        claimed = await self._claim()
        await self._flush()
        return claimed

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set, then finish or release what is in flight."""
        log.info("delivery worker started", extra={"owner": self.owner})
        await self.store.watch_new_work(self.wake)
        while not stop.is_set():
            try:
                claimed = await self._cycle()
            except GatewayError:
                log.exception("delivery cycle failed; retrying after the poll interval")
                claimed = 0
            if not claimed:
                await self._idle(stop)
        await self.shutdown()

    async def _idle(self, stop: asyncio.Event) -> None:
        self._wake.clear()
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait(
                waiters, timeout=self.settings.poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
        for waiter in waiters:
            waiter.cancel()

    async def shutdown(self) -> None:
        """Stop: wait for sends up to the deadline, record them, release every other lease."""
        self._queues.clear()
        if self._tasks:
            _, pending = await asyncio.wait(
                set(self._tasks), timeout=self.settings.shutdown_deadline
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._flush()
        released = await self.store.release_leases(self.owner)
        log.info("delivery worker stopped", extra={"released": released})

    async def drain(self, timeout: float = 30.0) -> None:
        """Deliver until nothing is due and nothing is in flight (tests; never sleeps blind)."""
        async with asyncio.timeout(timeout):
            while True:
                claimed = await self._cycle()
                if self._tasks:
                    await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
                    continue
                await self._flush()
                if not claimed and not self._queues:
                    return
