"""The hand-off: a publish leases its new notifications straight to the worker of its own
process, which queues them as if it had claimed them. That saves the claim's write and the
decoding of its rows.

    with promising(worker.handoff, now) as promises:
        promises.take(webhook) for each new pending notification: leased here, or left for a claim
        added = await store.add_events(events, notes)
        promises.keep(notes, added)    the worker queues those the store kept pending
    any other way out of the block (the store refused, the task was cancelled, a bug): every
    promise made in it is withdrawn

A promise holds room in the worker until it is kept or withdrawn: the worker counts it as held
when deciding whether to take more, so a publish never gives it more than a claim would, in all,
for one webhook or for one group. Publishing makes its promises only through `promising`, whose
block ends every one of them, so none outlives its publish and the worker's room cannot leak
(tests/unit/test_publishing.py fails the store and cancels a publish to show it).

A Strict webhook's notifications are never handed over: they join its queue and are claimed one
at a time as each becomes its head (gateway.ordering). The store refuses the lease of one it
finds Strict (switched since the publish read it), and `keep` then queues nothing of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID

from gateway.config import Settings
from gateway.models import Deliverable, DeliveryOrder, Notification, Recipient
from gateway.store.base import Added

_STRICT = DeliveryOrder.STRICT


class Holder(Protocol):
    """The worker, as the hand-off sees it."""

    settings: Settings
    owner: str

    @property
    def running(self) -> bool:
        """Delivering: only then does it take fresh notifications."""

    def lease_until(self, now: datetime) -> datetime:
        """The end of a lease taken at `now`."""

    def holding(self, webhook: int, group_key: UUID) -> tuple[int, int, int]:
        """Held here: in all, of this webhook, of this group."""

    def hold(self, notes: Sequence[Deliverable]) -> None:
        """Queue notifications leased to it."""


class HandOff:
    """The promises of the publishes in flight to one worker, by webhook and by group, and
    their sum (kept, not summed: `take_fresh` asks for it per notification). Webhooks and
    groups are keyed by their UUID's integer, as in the worker."""

    def __init__(self, worker: Holder) -> None:
        self._worker = worker
        settings = worker.settings
        self._limit = settings.holding_limit()
        # As for claims: one slow partner must not fill the worker, nor one tenant.
        self._per_webhook = 2 * settings.per_webhook_concurrency
        self._per_group = settings.group_holding_limit()
        self._promised: dict[int, int] = {}
        self._promised_groups: dict[int, int] = {}
        self._promised_total = 0

    @property
    def owner(self) -> str:
        """The lease owner of what is handed over: the worker."""
        return self._worker.owner

    def lease_until(self, now: datetime) -> datetime:
        """The end of the lease of what is handed over at `now`, as of a claim then."""
        return self._worker.lease_until(now)

    def take_fresh(self, webhook_id: UUID, group_key: UUID) -> bool:
        """Whether a new pending notification for this webhook (of this group), about to be
        stored, should be leased to the worker rather than wait for a claim; a yes is a
        promise (`promising` keeps or withdraws it)."""
        if not self._worker.running:
            return False
        webhook, group = webhook_id.int, group_key.int
        held, of_webhook, of_group = self._worker.holding(webhook, group_key)
        if held + self._promised_total >= self._limit:
            return False
        if of_webhook + self._promised.get(webhook, 0) >= self._per_webhook:
            return False
        if of_group + self._promised_groups.get(group, 0) >= self._per_group:
            return False
        self._promised[webhook] = self._promised.get(webhook, 0) + 1
        self._promised_groups[group] = self._promised_groups.get(group, 0) + 1
        self._promised_total += 1
        return True

    def forgo(self, notes: Iterable[Notification]) -> None:
        """These notifications will not reach the worker: withdraw the promises made for them
        (those leased to it)."""
        self._unpromise([(n.webhook_id, n.group_key) for n in notes if n.lease_owner == self.owner])

    def _adopt(self, notes: Sequence[Notification], added: Added) -> None:
        """The worker queues, as if claimed, those of the stored notifications leased to it
        that the store kept pending, with the sequence numbers the store gave."""
        if not self._worker.running:
            return  # stopping: release_leases gives them back, or their leases expire
        taken = [
            dataclasses.replace(note, sequence=sequence)
            for note, sequence in zip(notes, added.sequences, strict=True)
            if note.lease_owner == self.owner and added.pending(note)
        ]
        self._worker.hold(taken)

    def _unpromise(self, promises: Sequence[tuple[UUID, UUID]]) -> None:
        for webhook_id, group_key in promises:
            for promised, key in (
                (self._promised, webhook_id.int),
                (self._promised_groups, group_key.int),
            ):
                promised[key] -= 1
                if not promised[key]:
                    del promised[key]
        self._promised_total -= len(promises)


class Promises:
    """The promises of one publish (none without a worker in this process): the lease to
    give each notification handed over, and what was promised, to keep or withdraw."""

    def __init__(self, handoff: HandOff | None, now: datetime) -> None:
        self._handoff = handoff
        self.owner = handoff.owner if handoff else None
        self.lease_until = handoff.lease_until(now) if handoff else None
        self._made: list[tuple[UUID, UUID]] = []

    def take(self, hook: Recipient) -> bool:
        """Whether a new pending notification of this webhook goes to the worker, leased
        (`owner`, `lease_until`). Never a Strict webhook's: it joins its queue, and is claimed
        when it is the head (the store refuses the lease anyway: gateway.ordering)."""
        if self._handoff is None or hook.delivery_order is _STRICT:
            return False
        if not self._handoff.take_fresh(hook.webhook_id, hook.group_key):
            return False
        self._made.append((hook.webhook_id, hook.group_key))
        return True

    def keep(self, notes: Sequence[Notification], added: Added) -> None:
        """The store took these notifications: the worker queues those handed to it."""
        if self._handoff is None:
            return
        self._withdraw()  # the room promised becomes the room they hold
        self._handoff._adopt(notes, added)

    def _withdraw(self) -> None:
        if self._handoff is not None and self._made:
            made, self._made = self._made, []
            self._handoff._unpromise(made)


@contextlib.contextmanager
def promising(handoff: HandOff | None, now: datetime) -> Iterator[Promises]:
    """One publish's promises, each kept (`Promises.keep`) or withdrawn when the block ends."""
    promises = Promises(handoff, now)
    try:
        yield promises
    finally:
        promises._withdraw()  # those not kept
