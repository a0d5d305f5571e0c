"""The delivery worker: claim due notifications, send them, record what happened.

    store.claim_due (leased) -> per-webhook queue -> ready queue (per-webhook cap)
        -> a fixed pool of senders (the global cap; groups in turn, each within its share)
        -> outcomes -> store.record_attempts (batched; settles lifecycle atomically)

Three kinds of loop run side by side. The claimer leases a batch whenever the notifications held
here run low, so the next batch is on hand before the senders run dry. Each sender takes a ready
notification, sends it and reports the outcome. The flusher records the outcomes that piled up
during its last write in the next one: one transaction per outcome when idle, hundreds when busy.

A publish in the same process hands its new notifications straight to the worker when it has
room for them (gateway.handoff, `Worker.handoff`): they are stored already leased to it and
queued without a claim, which saves the claim's write and the decoding of its rows.

Groups (tenants) share the senders fairly (gateway.fairness): a free sender serves the groups
in turn, each group within its share of the senders, and claims pass over a group that holds
enough already, so one tenant's hanging callbacks cannot starve another's.

A Strict webhook (gateway.ordering) needs nothing of the worker: the store lets a claim find
at most one of its notifications, never hands one over, and says when a settlement made the next
one due (`Recorded.queue_due`), which wakes the claimer at once.

A lease at least twice the delivery timeout, and senders that leave a notification whose lease
has run low (held behind a slow webhook's cap), mean a live send never loses its claim; a crashed
worker's leases expire and another claim picks the notifications up (at-least-once).

A webhook that leaves Active stops receiving within the requests already in flight. The worker
learns it from the settlement that caused it (`record_attempts` names the webhooks it settled
that are not Active), not from a timer: it then sends nothing more of that webhook, and gives
back what it holds of it as not sent (parked). After a failed attempt, no new send of that
webhook starts until the failure is recorded, so the send that makes a webhook Errored is
followed by no other. A change made elsewhere (the API in this process, or serve telling its
worker processes) reaches the worker through `webhook_changed`, which makes the next send read
the webhook afresh.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import operator
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from gateway import metrics
from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.fairness import Holdings, ReadyQueue
from gateway.handoff import HandOff
from gateway.models import Deliverable, utcnow
from gateway.outcomes import AttemptOutcome, Effect, Recorded
from gateway.sender import Sender
from gateway.store import Store
from gateway.transport import Transport

log = logging.getLogger(__name__)
SEARCH_GAP = 30  # a search claim waits at least this many times its own duration (see _claim)
# One counter child per outcome, looked up once: labels() takes a lock and builds a key.
_ATTEMPTS = {effect: metrics.ATTEMPTS.labels(outcome=effect.value) for effect in Effect}
# Outcomes after which the webhook may leave Active: its next sends wait until they are recorded.
_MAY_STOP = frozenset({Effect.FAILURE, Effect.PERMANENT_FAILURE, Effect.GONE})
_EFFECT = operator.attrgetter("effect")
LEFT_ACTIVE = "not sent: the webhook left Active"
CHANGED = "not sent: the webhook changed while it waited here"


class Worker:
    """Delivers notifications until stopped; `drain()` runs until nothing is due (tests)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        outbound: Transport,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.store = store
        # Host and pid in the lease owner: an operator (or a test) can tell whose leases they are.
        self.owner = f"worker-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.clock = clock
        self.sender = Sender(settings, outbound, store, clock)
        # Webhooks and groups are keyed by their UUID's integer, as in gateway.fairness: hashing
        # a uuid.UUID runs Python code, an int's does not, and these are read several times per
        # notification.
        self._queues: dict[int, collections.deque[Deliverable]] = {}  # over the webhook's cap
        self._active: dict[int, int] = collections.defaultdict(int)  # ready or being sent
        self._active_total = 0
        self._none_active = asyncio.Event()  # nothing ready, nothing being sent
        self._none_active.set()
        # Failures (and 410s) not yet recorded, by webhook: its next sends wait for them.
        self._settling: dict[int, int] = {}
        self._webhook_of: dict[UUID, int] = {}  # notification -> webhook, while settling
        self._ready = ReadyQueue(settings.worker_concurrency, settings.group_concurrency())
        self._held = 0  # claimed and not yet attempted: queued, ready or being sent
        self._holding_limit = settings.holding_limit()
        self._holdings = Holdings(settings.group_holding_limit())  # the same, by group
        self._none_held = asyncio.Event()
        self._none_held.set()
        self._outcomes: list[AttemptOutcome] = []
        self._have_outcomes = asyncio.Event()
        self._wake = asyncio.Event()
        # A claim that excluded saturated webhooks and still found less than a batch shows that
        # everything else due was taken. Until new work is announced (wake) or a poll interval
        # has passed (retries come due), a claim excluding at least those webhooks would find
        # nothing more, and would read past every due row of theirs to find it: with 200,000
        # pending for one webhook, such a claim took 38 ms (bench.store_ops), after every batch.
        # The same holds for the groups it excluded, and a group's backlog costs more: 130 ms
        # a claim behind S5's healthy group, twice a second as the noisy group's sends ended,
        # took a quarter of the workers' time. So the wait is also at least SEARCH_GAP times
        # the claim that found the others drained. The third item: until when.
        self._others_drained: tuple[frozenset[UUID], frozenset[UUID], float] | None = None
        # A claim while every group held here is at its holding limit passes over all of
        # them: it can only find a group that holds nothing here yet, and reads past every due
        # row of theirs to learn whether there is one (with S1's backlog of one group, 150 ms
        # a claim, after every batch and every publish). A search passing over at least the
        # same groups waits SEARCH_GAP times the last one's duration (at 1/10 of the time,
        # S1's workers still spent 17 µs a notification on them): a group that turns up then is
        # claimed that much later (4.5 s behind a 150 ms search), like work a worker is not
        # woken for. A search passing over fewer groups does not wait: in S5, a worker whose
        # healthy group had just drained held only the noisy group's notifications, and waited
        # out the gap of a search past the healthy group's backlog while that backlog grew.
        self._searched: tuple[frozenset[UUID], float] | None = None  # groups, until when
        self._closing = False
        self._running = False  # run() is delivering: only then does it take fresh notifications
        self.handoff = HandOff(self)  # what publishes in this process lease to it
        self._loops: list[asyncio.Task[None]] = []

    def wake(self) -> None:
        """New notifications are due: claim now instead of at the next poll."""
        self._others_drained = None
        self._wake.set()

    def webhook_changed(self, webhook_id: UUID) -> None:
        """The webhook was changed elsewhere (paused, reactivated, new secret, delivery order):
        the next send of it reads it afresh, and what is held here of it unsent goes back to
        the store, which decides again when it goes (a switch to Strict: in sequence order,
        one at a time, after those in flight)."""
        self.sender.forget(webhook_id)
        self._give_back(webhook_id, CHANGED)

    def _changed_elsewhere(self, webhook_id: UUID | None) -> None:
        if webhook_id is None:
            self.sender.forget_all()  # we were not listening: any may have changed
        else:
            self.webhook_changed(webhook_id)

    @property
    def running(self) -> bool:
        """Delivering (`run`): only then does it take notifications from a publish."""
        return self._running

    def lease_until(self, now: datetime) -> datetime:
        """The end of a lease taken at `now`, by a claim or by a publish (gateway.handoff)."""
        return now + timedelta(seconds=self.settings.lease_seconds)

    def holding(self, webhook: int, group_key: UUID) -> tuple[int, int, int]:
        """Held here: in all, of this webhook (by its UUID's integer), and of this group; the
        hand-off measures its room by them as claims do."""
        return self._held, self._held_for(webhook), self._holdings.of(group_key)

    def _held_for(self, webhook: int) -> int:
        queue = self._queues.get(webhook)
        return (len(queue) if queue else 0) + self._active.get(webhook, 0)

    def _saturated(self) -> list[UUID]:
        """Webhooks with enough held here; claims skip them so one slow partner cannot hold
        every lease."""
        cap = self.settings.per_webhook_concurrency
        return [
            queue[0].webhook_id  # a queue is dropped once empty
            for webhook, queue in self._queues.items()
            if len(queue) + self._active[webhook] >= 2 * cap
        ]

    async def _claim(self) -> int:
        """Lease a batch, passing over the webhooks and groups that hold enough here, unless
        the worker holds its limit; return how many were claimed."""
        if self._held >= self._holding_limit:
            return 0
        excluded = frozenset(self._saturated())
        groups = self._holdings.full()
        searching = self._holdings.all_full()
        if self._nothing_else_due(excluded, groups):
            return 0
        if searching and self._searched_lately(groups):
            return 0
        started = time.monotonic()
        now = self.clock()
        batch = await self.store.claim_due(
            now,
            self.settings.claim_batch_size,
            self.owner,
            self.lease_until(now),
            exclude_webhooks=excluded,
            exclude_groups=groups,
        )
        ended = time.monotonic()
        gap = max(self.settings.poll_interval, SEARCH_GAP * (ended - started))
        if (excluded or groups) and len(batch) < self.settings.claim_batch_size:
            self._others_drained = (excluded, groups, ended + gap)
        if searching and len(batch) < self.settings.claim_batch_size:
            # A search that found a batch found work, and the next may too.
            self._searched = (groups, ended + gap)
        self.hold(batch)
        return len(batch)

    def hold(self, notes: Sequence[Deliverable]) -> None:
        """Queue notifications leased to this worker, and start sending what the caps allow."""
        if notes:
            self._held += len(notes)
            self._none_held.clear()
        by_group: dict[int, list[Any]] = {}  # the group, and how many of its: one add each
        queues = self._queues
        for note in notes:
            queue = queues.get(note.webhook_id.int)
            if queue is None:  # not setdefault: that makes a deque for every note
                queue = queues[note.webhook_id.int] = collections.deque()
            queue.append(note)
            counted = by_group.get(note.group_key.int)
            if counted is None:
                by_group[note.group_key.int] = [note.group_key, 1]
            else:
                counted[1] += 1
        for group, count in by_group.values():
            self._holdings.add(group, count)
        for webhook in {note.webhook_id.int for note in notes}:
            self._dispatch(webhook)

    def _searched_lately(self, groups: frozenset[UUID]) -> bool:
        """Whether a search passing over at least these groups ran too lately to repeat."""
        if self._searched is None:
            return False
        searched, until = self._searched
        return searched <= groups and time.monotonic() < until

    def _nothing_else_due(self, excluded: frozenset[UUID], groups: frozenset[UUID]) -> bool:
        if self._others_drained is None:
            return False
        drained, drained_groups, until = self._others_drained
        if not (drained <= excluded and drained_groups <= groups):
            return False
        return time.monotonic() < until

    def _dispatch(self, webhook: int) -> None:
        """Hand this webhook's next notifications to the senders, up to its cap (none while
        one of its failures is being recorded)."""
        queue = self._queues.get(webhook)
        if queue is None or (self._settling and webhook in self._settling):
            return
        while queue and self._active[webhook] < self.settings.per_webhook_concurrency:
            self._active[webhook] += 1
            self._active_total += 1
            self._none_active.clear()
            self._ready.put(queue.popleft())
        if not queue:
            del self._queues[webhook]

    async def _send_forever(self) -> None:
        """One sender of the pool: attempt ready notifications one at a time."""
        while True:
            note: Deliverable | None = await self._ready.get()
            while note is not None:
                try:
                    await self._attempt(note)
                except BaseException:  # cancelled: stopping
                    self._finished(note)
                    raise
                note = self._next_after(note)

    async def _attempt(self, note: Deliverable) -> None:
        try:
            if self._lease_too_short(note):
                # Held here so long (a slow webhook) that the lease could end during the
                # send or before its outcome is recorded, and another worker would send it
                # again: leave it; the lease expires and a later claim takes it up.
                metrics.LEFT_UNSENT.inc()
                return
            outcome = await self.sender.attempt(note, self.owner)
        except Exception:
            # The loop's boundary: the lease stands, expires, and the notification goes out
            # again; the sender lives on.
            log.exception("delivery attempt failed", extra={"id": str(note.notification_id)})
        else:
            if outcome.effect in _MAY_STOP:
                webhook = note.webhook_id.int
                self._settling[webhook] = self._settling.get(webhook, 0) + 1
                self._webhook_of[note.notification_id] = webhook
                _log_failure(note, outcome)
            elif outcome.effect is Effect.UNDELIVERABLE:
                log.error("notification cannot be rendered; recorded as failed", extra={
                    "notification_id": str(note.notification_id),
                    "webhook_id": str(note.webhook_id), "group_key": str(note.group_key),
                    "reason": outcome.cause,
                })  # fmt: skip
            # _report, written out (once per notification), and setting the event only for
            # the first outcome since a flush took the others: it stays set until the flusher
            # wakes, and the flusher clears it just before it takes the list.
            if not self._outcomes:
                self._have_outcomes.set()
            self._outcomes.append(outcome)

    def _report(self, outcome: AttemptOutcome) -> None:
        self._outcomes.append(outcome)
        self._have_outcomes.set()

    def _next_after(self, sent: Deliverable) -> Deliverable | None:
        """After a send: this webhook's next notification, for the sender that finished to
        take in the slot it holds, when no other is waiting to be sent and its group is
        within its share; else the slot is given back (`_finished`) and the sender takes the
        next ready notification in turn, if any.

        Through the ready queue, the next one would wake an idle sender, and the sender that
        finished would take it first: the woken one found the queue empty and waited again,
        a future and a task switch spent per notification (one webhook, S1's shape)."""
        webhook = sent.webhook_id.int
        queue = self._queues.get(webhook)
        settling = self._settling and webhook in self._settling
        if not queue or settling or not self._ready.keeps_slot(sent.group_key):
            self._ready.done(sent.group_key, returning=True)  # _finished, written out
            self._let_go(sent)
            return self._ready.take_returning()  # the next group's in turn, if any
        note = queue.popleft()
        if not queue:
            del self._queues[webhook]
        self._held -= 1  # the one sent; its slots (`_active`, the group's) go to the next
        group_freed = self._holdings.remove(sent.group_key)
        self._wake_claimer(webhook, group_freed)
        return note

    def _lease_too_short(self, note: Deliverable) -> bool:
        """Whether less of the lease is left than a send and its recording may take (twice
        the delivery timeout; the configuration makes leases at least that long)."""
        if note.lease_until is None:
            return False
        left = (note.lease_until - self.clock()).total_seconds()
        return left < 2 * self.settings.delivery_timeout

    def _finished(self, note: Deliverable, *, returning: bool = False) -> None:
        """A sender is done with this held notification: give its slots back (`returning`:
        the sender takes its next notification itself, ReadyQueue.take_returning)."""
        self._ready.done(note.group_key, returning=returning)
        self._let_go(note)

    def _let_go(self, note: Deliverable) -> None:
        """One held notification is done with; refill the senders, and wake the claimer when
        this makes a claim worth its round trip."""
        webhook = note.webhook_id.int
        active = self._active[webhook] - 1
        if active:
            self._active[webhook] = active
        else:
            del self._active[webhook]
        self._active_total -= 1
        if not self._active_total:
            self._none_active.set()
        self._held -= 1
        group_freed = self._holdings.remove(note.group_key)
        self._dispatch(webhook)
        if not self._held:
            self._none_held.set()
        self._wake_claimer(webhook, group_freed)

    def _wake_claimer(self, webhook: int, group_freed: bool) -> None:
        """After one held notification of this webhook is done with (`group_freed`: its group
        fell below its holding limit): wake the claimer when that makes a claim worth its
        round trip."""
        # Only when a threshold is crossed: a claim per finished send would cost more than it
        # brings when the only due notifications belong to a saturated webhook or group.
        below_limit = self._held == self._holding_limit - 1
        queue = self._queues.get(webhook)  # _held_for, written out: once per notification
        held = (len(queue) if queue else 0) + self._active.get(webhook, 0)
        unsaturated = held == 2 * self.settings.per_webhook_concurrency - 1
        if below_limit or unsaturated or group_freed:
            self._wake.set()

    async def _flush(self) -> None:
        """Write the finished attempts in one batch."""
        if not self._outcomes:
            return
        batch, self._outcomes = self._outcomes, []
        # Counted per batch: in a worker process each increment writes to its metrics file.
        for effect, count in collections.Counter(map(_EFFECT, batch)).items():
            _ATTEMPTS[effect].inc(count)
        try:
            recorded = await self.store.record_attempts(batch)
        except GatewayError:
            # The leases still stand; they expire and the notifications go out again.
            log.exception("could not record %d attempts", len(batch))
            recorded = Recorded(0)
        self._learn(recorded)
        self._settled(batch)

    def _learn(self, recorded: Recorded) -> None:
        """Act on what the store's settlement decided: log each change of status, claim the
        lifecycle notices it published and a Strict webhook's next notification (on PostgreSQL
        a NOTIFY says so too), and stop sending to the webhooks that are not Active."""
        if recorded.queue_due:
            self.wake()  # a Strict webhook's next one (gateway.ordering): it waited for this
        elif recorded.notices:
            self._wake.set()
        for change in recorded.changes:
            log.warning(f"webhook {change.status.value.lower()}", extra={
                "webhook_id": str(change.webhook_id), "group_key": str(change.group_key),
                "status_code": change.status.value, "reason": change.status_message,
            })  # fmt: skip
        for webhook_id in recorded.not_active:
            self.sender.forget(webhook_id)
            self._give_back(webhook_id, LEFT_ACTIVE)

    def _give_back(self, webhook_id: UUID, why: str) -> None:
        """Give back what is held here of this webhook and not yet sending, as not sent: the
        store parks it (not Active) or finds it due again, in its queue's order if Strict."""
        queue = self._queues.pop(webhook_id.int, None)
        if not queue:
            return
        for note in queue:
            self._report(self._unsent(note, why))
            self._holdings.remove(note.group_key)
        self._held -= len(queue)
        if not self._held:
            self._none_held.set()
        self._wake.set()  # room for others' notifications

    def _unsent(self, note: Deliverable, why: str = LEFT_ACTIVE) -> AttemptOutcome:
        return AttemptOutcome(note.notification_id, self.owner, Effect.NOT_SENT, why, None)

    def _settled(self, batch: Sequence[AttemptOutcome]) -> None:
        """The failures of this batch are recorded: their webhooks' sends may go on."""
        if not self._webhook_of:  # no failure is being recorded (nearly always)
            return
        for outcome in batch:
            if outcome.effect not in _MAY_STOP:
                continue
            webhook = self._webhook_of.pop(outcome.notification_id, None)
            if webhook is None:
                continue
            left = self._settling[webhook] - 1
            if left:
                self._settling[webhook] = left
            else:
                del self._settling[webhook]
                self._dispatch(webhook)

    async def _flush_forever(self) -> None:
        """Record outcomes as they come: those that arrive during a write go in the next."""
        while not self._closing:
            await self._have_outcomes.wait()
            self._have_outcomes.clear()
            await self._flush()

    def _start(self, *, flusher: bool) -> None:
        self._closing = False
        loops = [self._send_forever() for _ in range(self.settings.worker_concurrency)]
        self._loops = [asyncio.create_task(loop) for loop in loops]
        if flusher:
            self._loops.append(asyncio.create_task(self._flush_forever()))

    async def _stop_loops(self) -> None:
        self._closing = True
        self._have_outcomes.set()  # the flusher ends after the write it may be in
        for task in self._loops[: self.settings.worker_concurrency]:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops = []

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set, then finish or release what is in flight."""
        log.info("delivery worker started", extra={"owner": self.owner})
        await self.store.watch_new_work(self.wake)
        await self.store.watch_webhook_changes(self._changed_elsewhere)
        self._start(flusher=True)
        self._running = True
        try:
            while not stop.is_set():
                self._wake.clear()  # before the claim: a wake during it is not lost
                try:
                    claimed = await self._claim()
                except GatewayError:
                    log.exception("delivery cycle failed; retrying after the poll interval")
                    claimed = 0
                if claimed < self.settings.claim_batch_size:
                    await self._idle(stop)
        finally:
            self._running = False
            await self.shutdown()

    async def _idle(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait(
                waiters, timeout=self.settings.poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
        for waiter in waiters:
            waiter.cancel()

    async def shutdown(self) -> None:
        """Stop: wait for sends up to the deadline, record them, release every other lease."""
        self._forget_unsent()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._none_held.wait(), self.settings.shutdown_deadline)
        await self._stop_loops()
        await self._flush()
        released = await self.store.release_leases(self.owner)
        log.info("delivery worker stopped", extra={"released": released})

    def _forget_unsent(self) -> None:
        """Drop what is held but not being sent; release_leases gives it back."""
        for queue in self._queues.values():
            for note in queue:
                self._holdings.remove(note.group_key)
        self._held -= sum(len(queue) for queue in self._queues.values())
        self._queues.clear()
        for note in self._ready.clear():
            self._let_go(note)
        if not self._held:
            self._none_held.set()

    async def drain(self, timeout: float = 30.0) -> None:
        """Deliver until nothing is due and nothing is in flight (tests; never sleeps blind)."""
        self._start(flusher=False)
        try:
            async with asyncio.timeout(timeout):
                while await self._claim() or self._held or self._outcomes:
                    # Sends end; what waits behind a failure waits for its recording (below).
                    await self._none_active.wait()
                    await self._flush()
        finally:
            await self._stop_loops()


def _log_failure(note: Deliverable, outcome: AttemptOutcome) -> None:
    """One line per failed delivery, with what the operator needs to find it."""
    log.info("delivery failed", extra={
        "notification_id": str(note.notification_id), "webhook_id": str(note.webhook_id),
        "group_key": str(note.group_key), "attempt": note.attempts + 1,
        "status_code": outcome.response_status_code, "reason": outcome.cause,
        "gone": outcome.effect is Effect.GONE, "retried": outcome.effect is Effect.FAILURE,
    })  # fmt: skip
