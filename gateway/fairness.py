"""Fair shares of one delivery worker between groups (tenants).

One group's slow or hanging callbacks must not take the senders (and so the connections) that
the other groups need. Two rules, applied by the worker (gateway.delivery):

- **Sends.** A group has at most its share of the worker's senders in flight: the smaller of
  its cap (`Settings.group_concurrency()`, by default half the senders) and an equal split of
  the senders between the groups with notifications ready or in flight here (at least one
  each). A free sender takes the next ready notification of the next group in turn (round
  robin), passing over groups at their share (`ReadyQueue`). A share that shrinks because
  another group turned up is given back as that group's sends end, within a delivery timeout.
- **Claims.** A group holding its cap and a claim batch more here
  (`Settings.group_holding_limit()`) is passed over by claims (`Holdings`), and the worker
  claims while it holds less than two groups' limits (`Settings.holding_limit()`), so one
  group's backlog, claimed first because it came due first, never stops the other groups'
  notifications from being claimed.
"""

from __future__ import annotations

import asyncio
import collections
from uuid import UUID

from gateway.models import Deliverable


class ReadyQueue:
    """Notifications ready to send, by group, handed to senders in turn within each group's
    share; `get` takes one, `done` gives its group's slot back.

    Idle senders are woken only for a notification they may take: one woken for nothing (its
    group at its share) finds nothing and waits again, a future and a task switch spent for
    nothing. A sender that finished a send takes its next notification itself
    (`done(returning=True)`, then `take_returning`), without waking another.
    """

    def __init__(self, senders: int, cap: int) -> None:
        self._senders = senders
        self._cap = cap
        # Groups are keyed by their UUID's integer: hashing a uuid.UUID runs Python code, an
        # int's does not, and these dicts are read several times per notification.
        self._ready: dict[int, collections.deque[Deliverable]] = {}
        self._turns: collections.deque[int] = collections.deque()  # groups with any ready
        self._out: dict[int, int] = {}  # being sent, by group
        self._load: dict[int, int] = {}  # ready or being sent, by group: the busy groups
        self._share = cap  # share(), kept as the number of busy groups changes
        self._count = 0  # ready, all groups
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._woken = 0  # idle senders woken that have not looked yet
        self._returning = 0  # senders that finished a send and will take their next themselves

    def __len__(self) -> int:
        """Notifications ready and not yet taken."""
        return self._count

    def share(self) -> int:
        """The most sends a group may have in flight now."""
        return self._share

    def _reshare(self) -> None:
        self._share = min(self._cap, max(1, self._senders // max(1, len(self._load))))

    def put(self, note: Deliverable) -> None:
        """`note` is ready: a free sender will take it in its group's turn."""
        group = note.group_key.int
        queue = self._ready.get(group)
        if queue is None:
            queue = self._ready[group] = collections.deque()
            self._turns.append(group)
        queue.append(note)
        load = self._load.get(group, 0)
        self._load[group] = load + 1
        if not load:
            self._reshare()
        self._count += 1
        if not self._returning and self._out.get(group, 0) < self._share:
            self._wake(1)

    def get_nowait(self) -> Deliverable | None:
        """The next group's next ready notification, counted out; None if no group with
        ready notifications is below its share."""
        share = self._share
        turns = self._turns
        for _ in range(len(turns)):
            group = turns[0]
            out = self._out.get(group, 0)
            if out < share:
                turns.popleft()
                queue = self._ready[group]
                note = queue.popleft()
                if queue:
                    turns.append(group)  # its next one waits for the other groups' turns
                else:
                    del self._ready[group]
                self._out[group] = out + 1
                self._count -= 1
                return note
            turns.rotate(-1)
        return None

    async def get(self) -> Deliverable:
        """Wait for a notification that `get_nowait` would give."""
        while (note := self.get_nowait()) is None:
            waiter = asyncio.get_running_loop().create_future()
            self._idle.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._woken -= 1
                    self._wake(1)  # woken and cancelled at once: pass the wake on
                raise
            self._woken -= 1
        return note

    def keeps_slot(self, group_key: UUID) -> bool:
        """Whether a sender that finished a send of this group may send another of its
        notifications in the same slot: nothing else is ready, and the group is within its
        share (which shrinks as other groups turn up)."""
        return not self._count and self._out.get(group_key.int, 0) <= self._share

    def done(self, group_key: UUID, *, returning: bool = False) -> None:
        """A sender finished one of this group's notifications: its slot is free. `returning`:
        that sender calls `take_returning` next, before any other await."""
        group = group_key.int
        out = self._out[group] - 1
        if out:
            self._out[group] = out
        else:
            del self._out[group]
        if returning:
            self._returning += 1
        self._unload(group)
        if not returning and self._count:
            self._wake(1)  # the slot may be what a ready notification of this group waits for

    def take_returning(self) -> Deliverable | None:
        """For the sender that called `done(returning=True)`: its next notification (the next
        group's in turn), if any; an idle sender is woken if more could be taken."""
        self._returning -= 1
        note = self.get_nowait()
        # Not when the senders already woken could take all that is ready: one woken for
        # nothing finds nothing and waits again, a future and a task switch spent.
        if note is not None and self._count > self._woken and self._takeable():
            self._wake(1)
        return note

    def _takeable(self) -> bool:
        share, out, turns = self._share, self._out, self._turns
        if len(turns) == 1:  # one group (S1's shape): no generator
            return out.get(turns[0], 0) < share
        return any(out.get(group, 0) < share for group in turns)

    def clear(self) -> list[Deliverable]:
        """Take every ready notification away (stopping); those being sent stay counted."""
        taken = [note for queue in self._ready.values() for note in queue]
        for note in taken:
            self._unload(note.group_key.int)
        self._ready.clear()
        self._turns.clear()
        self._count = 0
        return taken

    def _unload(self, group: int) -> None:
        load = self._load[group] - 1
        if load:
            self._load[group] = load
        else:
            del self._load[group]
            self._reshare()
            # One busy group fewer: every share may have grown, so more senders may find work.
            if not self._returning:
                self._wake(self._count)

    def _wake(self, count: int) -> None:
        """Wake up to `count` idle senders to look again."""
        while count > 0 and self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._woken += 1
                count -= 1


class Holdings:
    """Notifications a worker holds (claimed, not yet attempted) by group, and the groups that
    hold `limit` or more: claims pass those over."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._by_group: dict[int, int] = {}  # by the group's UUID's integer, as ReadyQueue
        self._keys: dict[int, UUID] = {}  # the groups themselves, for `full`
        self._full = 0  # groups at or over the limit

    def add(self, group: UUID, count: int = 1) -> None:
        """`count` more held for `group`."""
        key = group.int
        before = self._by_group.get(key, 0)
        after = before + count
        self._by_group[key] = after
        if not before:
            self._keys[key] = group
        if before < self.limit <= after:
            self._full += 1

    def remove(self, group: UUID, count: int = 1) -> bool:
        """`count` fewer held for `group`; whether that took it below the limit (a claim that
        passed it over would now take it)."""
        key = group.int
        before = self._by_group[key]
        after = before - count
        if after:
            self._by_group[key] = after
        else:
            del self._by_group[key]
            del self._keys[key]
        if after < self.limit <= before:
            self._full -= 1
            return True
        return False

    def of(self, group: UUID) -> int:
        """Held for `group`."""
        return self._by_group.get(group.int, 0)

    def all_full(self) -> bool:
        """Whether something is held and every group holding it is at or over the limit."""
        return bool(self._by_group) and self._full == len(self._by_group)

    def full(self) -> frozenset[UUID]:
        """The groups at or over the limit."""
        if not self._full:
            return frozenset()
        return frozenset(self._keys[g] for g, held in self._by_group.items() if held >= self.limit)
