"""The worker's fair shares (gateway.fairness): which ready notification a free sender takes,
and which groups claims pass over."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from gateway import config
from gateway.delivery import Worker
from gateway.errors import GatewayError
from gateway.fairness import Holdings, ReadyQueue
from gateway.models import Deliverable, Notification
from gateway.netguard import AddressPolicy
from gateway.outbound import Outbound
from gateway.store import Store
from tests.factories import T0, make_event, make_notification, make_webhook

A, B, C = uuid4(), uuid4(), uuid4()
LATER = timedelta(seconds=1)


def note(group: UUID) -> Notification:
    return make_notification(make_webhook(group))


def take_all(ready: ReadyQueue) -> list[Deliverable]:
    taken = []
    while (got := ready.get_nowait()) is not None:
        taken.append(got)
    return taken


def test_groups_take_turns_whatever_order_their_notifications_came_in() -> None:
    ready = ReadyQueue(senders=10, cap=10)
    a1, a2, a3, b1, b2, c1 = note(A), note(A), note(A), note(B), note(B), note(C)
    for each in (a1, a2, a3, b1, b2, c1):
        ready.put(each)
    assert take_all(ready) == [a1, b1, c1, a2, b2, a3]
    assert len(ready) == 0


def test_a_group_at_its_cap_waits_while_another_group_is_served() -> None:
    ready = ReadyQueue(senders=8, cap=2)
    a1, a2, a3, b1 = note(A), note(A), note(A), note(B)
    for each in (a1, a2, a3):
        ready.put(each)
    assert take_all(ready) == [a1, a2]  # two of A out: its cap
    ready.put(b1)
    assert take_all(ready) == [b1]
    ready.done(A)
    assert take_all(ready) == [a3]


def test_the_senders_are_split_equally_between_busy_groups() -> None:
    ready = ReadyQueue(senders=4, cap=3)
    assert ready.share() == 3  # one group alone: its cap
    for group in (A, B):
        for _ in range(4):
            ready.put(note(group))
    assert ready.share() == 2  # 4 senders, 2 groups busy
    assert [n.group_key for n in take_all(ready)] == [A, B, A, B]
    ready.put(note(C))
    assert ready.share() == 1  # 3 groups busy: A and B are over their share now
    assert [n.group_key for n in take_all(ready)] == [C]
    for group in (A, A, B, B, C):
        ready.done(group)
    assert ready.share() == 2  # C is idle again: A and B may have 2 out
    assert [n.group_key for n in take_all(ready)] == [A, B, A, B]


def test_every_busy_group_may_send_one_when_they_outnumber_the_senders() -> None:
    ready = ReadyQueue(senders=2, cap=1)
    for group in (A, B, C):
        ready.put(note(group))
    assert ready.share() == 1
    assert [n.group_key for n in take_all(ready)] == [A, B, C]


def test_a_finished_sender_keeps_its_slot_only_when_nothing_else_waits() -> None:
    ready = ReadyQueue(senders=4, cap=2)
    ready.put(note(A))
    assert ready.get_nowait() is not None
    assert ready.keeps_slot(A)
    ready.put(note(A))
    assert not ready.keeps_slot(A)  # another ready notification takes the free sender
    ready.get_nowait()
    for group in (B, C, C):
        ready.put(note(group))
    take_all(ready)
    # A has 2 out, but with 3 groups busy its share is 1: the slot goes back.
    assert not ready.keeps_slot(A)


async def test_an_idle_sender_wakes_for_a_notification_of_a_group_below_its_share() -> None:
    ready = ReadyQueue(senders=4, cap=1)
    first = note(A)
    ready.put(first)
    assert await ready.get() is first
    waiting = asyncio.create_task(ready.get())
    second = note(A)
    ready.put(second)  # A is at its cap: the sender keeps waiting
    await asyncio.sleep(0)
    assert not waiting.done()
    ready.done(A)
    assert await asyncio.wait_for(waiting, 5) is second


async def test_a_returning_sender_wakes_an_idle_one_for_what_it_leaves_ready() -> None:
    ready = ReadyQueue(senders=4, cap=4)
    ready.put(note(A))
    assert ready.get_nowait() is not None  # one sender sends
    for _ in range(2):  # twice: a wake is counted until the woken sender looks, then no more
        idle = asyncio.create_task(ready.get())
        await asyncio.sleep(0)
        ready.done(A, returning=True)  # it finished, and takes its next itself...
        mine, left = note(A), note(A)
        ready.put(mine)
        ready.put(left)
        assert ready.take_returning() is mine  # ...and wakes the idle one for the other
        assert await asyncio.wait_for(idle, 1) is left
        ready.done(A)


def test_clear_takes_what_is_ready_and_frees_the_shares() -> None:
    ready = ReadyQueue(senders=4, cap=4)
    notes = [note(A), note(B), note(B)]
    for each in notes:
        ready.put(each)
    ready.get_nowait()  # A's, out
    assert sorted(map(id, ready.clear())) == sorted(map(id, notes[1:]))
    assert len(ready) == 0 and ready.share() == 4  # only A busy (out)
    ready.done(A)
    assert ready.get_nowait() is None


def test_holdings_name_the_groups_at_their_limit() -> None:
    held = Holdings(limit=3)
    assert not held.all_full()  # nothing held
    held.add(B, 5)
    assert held.all_full()  # a claim now could only find another group
    held.add(A, 2)
    assert held.full() == {B} and not held.all_full()
    assert not held.remove(B, 2)  # 3: still at the limit
    assert held.remove(B)  # 2: below it, claims take B again
    assert held.full() == frozenset()
    held.add(A)  # 3: A reaches the limit by one
    assert held.full() == {A} and not held.remove(B, 2)
    assert held.all_full()  # B holds nothing now: only A is held, at its limit
    held.remove(A, 3)
    assert held.of(A) == 0 and held.of(B) == 0 and not held.all_full()


def test_a_groups_cap_is_half_the_senders_unless_set() -> None:
    # Half the default 128 senders: what the whole worker had before groups shared it.
    assert config.load(env={}).group_concurrency() == 64
    env = {"GATEWAY_WORKER_CONCURRENCY": "9"}
    assert config.load(env=env).group_concurrency() == 4
    assert config.load(env={**env, "GATEWAY_PER_GROUP_CONCURRENCY": "7"}).group_concurrency() == 7
    assert config.load(env={"GATEWAY_WORKER_CONCURRENCY": "1"}).group_concurrency() == 1


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PER_GROUP_CONCURRENCY", "0", "per_group_concurrency: must be auto or at least 1"),
        ("PER_GROUP_CONCURRENCY", "many", "per_group_concurrency: cannot use 'many'"),
        ("PER_GROUP_HANDSHAKES", "0", "per_group_handshakes: 0 is out of range"),
        ("PER_GROUP_HANDSHAKES", "129", "between 1 and 128, half of an API process's 256"),
    ],
)
def test_group_limits_out_of_range_are_refused(name: str, value: str, message: str) -> None:
    with pytest.raises(GatewayError, match=re.escape(message)):
        config.load(env={f"GATEWAY_{name}": value})
    config.load(env={"GATEWAY_PER_GROUP_HANDSHAKES": "128"})  # the largest allowed


async def test_a_search_past_more_groups_does_not_hold_back_a_claim_past_fewer(
    store: Store,
) -> None:
    """A worker holding only a noisy group's notifications (at its limit) must claim a healthy
    group's at once, though a search past both groups' rows ran a moment ago: in S5 the
    healthy group waited out that search's gap whenever it drained here (58% of its rate). A
    search past the same groups does wait."""
    settings = dataclasses.replace(
        config.Settings(), worker_concurrency=4, claim_batch_size=8, poll_interval=30.0
    )
    noisy, healthy = make_webhook(), make_webhook()
    await store.add_webhooks([noisy, healthy])
    for hook, due, count in ((noisy, T0, 32), (healthy, T0 + timedelta(seconds=1), 16)):
        event = make_event(hook.group_key)
        notes = [make_notification(hook, event, next_attempt_at=due) for _ in range(count)]
        await store.add_events([event], notes)
    everyone = frozenset({noisy.group_key, healthy.group_key})
    async with Outbound(policy=AddressPolicy()) as outbound:
        one, two = (Worker(settings, store, outbound, clock=lambda: T0 + LATER) for _ in "12")
        # The noisy group's, due first: at its limit (its 2 senders' worth and a claim) now.
        assert [await one._claim() for _ in "12"] == [8, 8]
        one._searched = (everyone, time.monotonic() + 100)
        assert await one._claim() == 8  # the healthy group's: passing over fewer groups
        assert [await two._claim() for _ in "12"] == [8, 8]  # the rest of the noisy group's
        two._searched = (frozenset({noisy.group_key}), time.monotonic() + 100)
        assert await two._claim() == 0  # a search past the same groups, too lately: it waits
        two._searched = None
        assert await two._claim() == 8  # the healthy group's rest was there all along


async def test_a_group_below_its_limit_never_stops_another_groups_claims(store: Store) -> None:
    """Claims go on while a group holds less than its limit, so it fills up to its limit and
    is passed over, and the next group due is claimed; then the worker's own limit stops
    them. (When a claim batch counted every group below its limit, a noisy group holding a
    batch stopped every claim until its sends ended.)"""
    # One sender per group and claims of 4: a group holds at most 5, the worker 10.
    settings = dataclasses.replace(
        config.Settings(), worker_concurrency=2, claim_batch_size=4, poll_interval=30.0
    )
    noisy, healthy = make_webhook(), make_webhook()
    await store.add_webhooks([noisy, healthy])
    for hook, due in ((noisy, T0), (healthy, T0 + LATER)):
        event = make_event(hook.group_key)
        notes = [make_notification(hook, event, next_attempt_at=due) for _ in range(20)]
        await store.add_events([event], notes)
    async with Outbound(policy=AddressPolicy()) as outbound:
        worker = Worker(settings, store, outbound, clock=lambda: T0 + 2 * LATER)
        assert [await worker._claim() for _ in range(4)] == [4, 4, 4, 0]
        assert worker.holding(0, noisy.group_key)[2] == 8  # at its limit after two claims
        assert worker.holding(0, healthy.group_key)[2] == 4
        assert worker.holding(0, healthy.group_key)[0] == 12  # over the worker's 10: no more
