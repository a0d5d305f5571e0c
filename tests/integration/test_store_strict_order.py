"""The store keeps a Strict webhook's queue (gateway.ordering), on every store of
tests/integration/test_store_contract.py: a claim never takes two of its notifications, nor a
later one while an earlier one is pending (not due, or leased), parked or in flight; a retry keeps
its place; a permanent failure moves the queue on; pausing parks it in order and reactivation
resumes it in order; a switch of deliveryOrder waits for what is in flight; an expired lease
gives the same head to the next claim; and concurrent claims of two stores never hold two."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from uuid import UUID

import pytest

from gateway import lifecycle, ordering
from gateway.models import (
    DeliveryOrder,
    Due,
    NotificationState,
    Webhook,
    WebhookStatus,
    utcnow,
)
from gateway.outcomes import AttemptOutcome, Effect
from gateway.store import Store
from gateway.store.base import INVARIANTS, Requeue, WebhookEdit
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.factories import T0, make_event, make_notification
from tests.integration.test_store_contract import (
    LEASE,
    STORE_MARKS,
    STORES,
    add_hook,
    failure,
    note,
    outcome,
)

PENDING, PARKED = NotificationState.PENDING, NotificationState.PARKED
WAITING, SUCCEEDED, FAILED = (
    NotificationState.WAITING, NotificationState.SUCCEEDED, NotificationState.FAILED)  # fmt: skip
STRICT, UNORDERED = DeliveryOrder.STRICT, DeliveryOrder.UNORDERED
CLEAN = dict.fromkeys(INVARIANTS, 0)


@pytest.fixture(params=[pytest.param(name, marks=STORE_MARKS.get(name, [])) for name in STORES])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    async with STORES[request.param](request) as opened:
        yield opened


async def strict_hook(store: Store, **overrides: object) -> Webhook:
    return await add_hook(store, delivery_order=STRICT, **overrides)


async def publish(store: Store, hook: Webhook, count: int = 1, at: datetime = T0) -> list[UUID]:
    """One event with `count` notifications to `hook`, published at `at`; their ids in order."""
    event = make_event(hook.group_key, created=at)
    notes = [make_notification(hook, event, next_attempt_at=at, created=at) for _ in range(count)]
    await store.add_events([event], notes)
    return [n.notification_id for n in notes]


async def states(store: Store, hook: Webhook, ids: list[UUID]) -> list[NotificationState]:
    return [(await note(store, hook, i)).state for i in ids]


async def claim(store: Store, at: datetime = T0, owner: str = "w") -> list[UUID]:
    """What one claim at `at` leases (for LEASE), in order."""
    return [n.notification_id for n in await store.claim_due(at, 100, owner, at + LEASE)]


async def edit(store: Store, hook: Webhook, at: datetime = T0, **change: object) -> Webhook:
    status = change.pop("status", None)
    edited = await store.edit_webhook(
        hook.group_key, hook.webhook_id, WebhookEdit(change, status=status), at
    )  # type: ignore[arg-type]
    assert edited is not None
    return edited


async def test_a_strict_webhook_has_one_notification_pending_the_others_wait(store: Store) -> None:
    hook = await strict_hook(store)
    first, second, third = await publish(store, hook, 3)
    assert await states(store, hook, [first, second, third]) == [PENDING, WAITING, WAITING]
    waiting = await note(store, hook, second)
    assert waiting.process_result_message == ordering.WAITING_MESSAGE
    assert (waiting.lease_owner, waiting.lease_until) == (None, None)
    assert await claim(store) == [first]
    # The head is in flight: neither this owner nor another gets anything of the webhook.
    assert await claim(store, owner="other") == []
    more = await publish(store, hook, 2)
    assert await states(store, hook, more) == [WAITING, WAITING]
    assert await claim(store, T0 + timedelta(seconds=1), owner="other") == []


async def test_unordered_webhooks_beside_it_are_claimed_as_before(store: Store) -> None:
    hook, plain = await strict_hook(store), await add_hook(store)
    strict_ids = await publish(store, hook, 3)
    plain_ids = await publish(store, plain, 3)
    assert await states(store, plain, plain_ids) == [PENDING] * 3
    assert sorted(await claim(store)) == sorted([strict_ids[0], *plain_ids])


async def test_the_head_is_retried_in_its_place_before_anything_after_it(store: Store) -> None:
    hook = await strict_hook(store)
    first, second = await publish(store, hook, 2)
    assert await claim(store) == [first]
    recorded = await store.record_attempts([failure(first, "w")], T0)  # retry at T0 + LEASE
    assert not recorded.queue_due
    assert await states(store, hook, [first, second]) == [PENDING, WAITING]
    assert await claim(store, T0 + LEASE - timedelta(seconds=1)) == []  # not due yet
    assert await claim(store, T0 + LEASE) == [first]
    recorded = await store.record_attempts([outcome(first, "w")], T0 + LEASE)
    assert recorded.queue_due
    assert await states(store, hook, [first, second]) == [SUCCEEDED, PENDING]
    assert (await note(store, hook, second)).next_attempt_at == T0 + LEASE  # due once the head
    assert await claim(store, T0 + LEASE) == [second]


@pytest.mark.parametrize("effect", [Effect.PERMANENT_FAILURE, Effect.UNDELIVERABLE])
async def test_a_permanent_failure_lets_the_queue_move_on(store: Store, effect: Effect) -> None:
    hook = await strict_hook(store)
    first, second, third = await publish(store, hook, 3)
    await claim(store)
    recorded = await store.record_attempts([outcome(first, "w", effect=effect, cause="x")], T0)
    assert recorded.queue_due
    assert await states(store, hook, [first, second, third]) == [FAILED, PENDING, WAITING]
    assert await claim(store) == [second]


async def test_a_pause_parks_the_head_and_reactivation_resumes_in_order(store: Store) -> None:
    hook = await strict_hook(store)
    ids = await publish(store, hook, 3)
    await edit(store, hook, status=lifecycle.PAUSE)
    assert await states(store, hook, ids) == [PARKED, WAITING, WAITING]
    assert await claim(store) == []
    later = await publish(store, hook, 1)  # published while paused: it waits too
    assert await states(store, hook, later) == [WAITING]
    later_still = T0 + timedelta(minutes=1)
    await edit(store, hook, later_still, status=lifecycle.ACTIVATE)
    assert await states(store, hook, [*ids, *later]) == [PENDING, WAITING, WAITING, WAITING]
    order = []
    for _ in range(4):
        [head] = await claim(store, later_still)
        assert await claim(store, later_still, owner="other") == []
        await store.record_attempts([outcome(head, "w")], later_still)
        order.append(head)
    assert order == [*ids, *later]


async def test_a_paused_strict_webhook_parks_its_first_notification_only(store: Store) -> None:
    hook = await strict_hook(store, status_code=WebhookStatus.INACTIVE,
                             status_message="paused by owner")  # fmt: skip
    ids = await publish(store, hook, 3)
    assert await states(store, hook, ids) == [PARKED, WAITING, WAITING]
    parked = await note(store, hook, ids[0])
    assert parked.process_result_message == "parked: webhook is Inactive (paused by owner)"


async def test_an_errored_strict_webhook_keeps_its_queue_in_order(store: Store) -> None:
    hook = await strict_hook(store, retry_count=0)
    first, second = await publish(store, hook, 2)
    await claim(store)
    recorded = await store.record_attempts([failure(first, "w")], T0)
    assert recorded.not_active == {hook.webhook_id}
    # The failed head is parked where it stood; the one behind it still waits.
    assert await states(store, hook, [first, second]) == [PARKED, WAITING]
    await edit(store, hook, T0 + LEASE, status=lifecycle.ACTIVATE)
    assert await states(store, hook, [first, second]) == [PENDING, WAITING]
    assert await claim(store, T0 + LEASE) == [first]


async def test_a_head_parked_in_flight_is_not_sent_twice_after_reactivation(store: Store) -> None:
    """Paused while its head was being sent and reactivated at once: the head stays leased to
    the worker that is sending it, which settles it; no second send starts meanwhile."""
    hook = await strict_hook(store)
    first, second = await publish(store, hook, 2)
    await claim(store, owner="sending")
    await edit(store, hook, status=lifecycle.PAUSE)
    await edit(store, hook, status=lifecycle.ACTIVATE)
    assert await claim(store, owner="other") == []
    await store.record_attempts([outcome(first, "sending")], T0)
    assert await claim(store, owner="other") == [second]


async def test_a_switch_to_strict_waits_for_the_notifications_in_flight(store: Store) -> None:
    hook = await add_hook(store)
    ids = await publish(store, hook, 5)
    leased = await store.claim_due(T0, 2, "w", T0 + LEASE)
    assert [n.notification_id for n in leased] == ids[:2]
    await edit(store, hook, delivery_order=STRICT)
    assert await states(store, hook, ids) == [PENDING, PENDING, WAITING, WAITING, WAITING]
    assert await claim(store, owner="other") == []
    # The first in flight fails: it is retried, in its place, once nothing is in flight.
    await store.record_attempts([failure(ids[0], "w")], T0)
    assert await claim(store, T0 + LEASE - timedelta(seconds=1), owner="other") == []
    await store.record_attempts([outcome(ids[1], "w")], T0)
    assert await states(store, hook, ids) == [PENDING, SUCCEEDED, WAITING, WAITING, WAITING]
    assert await claim(store, T0 + LEASE, owner="other") == [ids[0]]


async def test_after_the_switch_an_earlier_retry_waits_for_later_ones_in_flight(
    store: Store,
) -> None:
    """Unordered, the first failed and waits for its retry while later ones are being sent;
    made Strict then, it goes first, but only once none of those is in flight."""
    hook = await add_hook(store)
    ids = await publish(store, hook, 4)
    await store.claim_due(T0, 1, "w", T0 + LEASE)
    await store.record_attempts([failure(ids[0], "w")], T0)  # due again at T0 + LEASE
    await store.claim_due(T0, 2, "w", T0 + 2 * LEASE)  # the second and third: in flight
    await edit(store, hook, delivery_order=STRICT)
    assert await states(store, hook, ids) == [WAITING, PENDING, PENDING, WAITING]
    assert await claim(store, T0 + LEASE, owner="other") == []
    await store.record_attempts([outcome(ids[1], "w"), outcome(ids[2], "w")], T0 + LEASE)
    assert await claim(store, T0 + LEASE, owner="other") == [ids[0]]


async def test_after_the_switch_the_lowest_goes_once_those_in_flight_settle(store: Store) -> None:
    hook = await add_hook(store)
    ids = await publish(store, hook, 4)
    await store.claim_due(T0, 1, "w", T0 + LEASE)  # the first: in flight
    await edit(store, hook, delivery_order=STRICT)
    recorded = await store.record_attempts([outcome(ids[0], "w")], T0)
    assert recorded.queue_due
    assert await states(store, hook, ids) == [SUCCEEDED, PENDING, WAITING, WAITING]
    assert await claim(store) == [ids[1]]


async def test_a_switch_to_unordered_releases_every_waiting_notification(store: Store) -> None:
    hook = await strict_hook(store)
    ids = await publish(store, hook, 3)
    await edit(store, hook, delivery_order=UNORDERED)
    assert await states(store, hook, ids) == [PENDING] * 3
    assert (await note(store, hook, ids[2])).process_result_message == ordering.UNORDERED_MESSAGE
    assert sorted(await claim(store)) == sorted(ids)

    paused = await strict_hook(store)
    parked = await publish(store, paused, 2)
    await edit(store, paused, status=lifecycle.PAUSE)
    await edit(store, paused, delivery_order=UNORDERED)
    assert await states(store, paused, parked) == [PARKED, PARKED]
    assert await store.check_invariants(T0, repair=False) == CLEAN


async def test_an_edit_that_keeps_the_order_changes_no_queue(store: Store) -> None:
    hook = await add_hook(store)
    ids = await publish(store, hook, 2)
    await edit(store, hook, delivery_order=UNORDERED, name="renamed")
    assert await states(store, hook, ids) == [PENDING, PENDING]


async def test_an_expired_lease_gives_the_same_head_to_the_next_claim(store: Store) -> None:
    hook = await strict_hook(store)
    first, second = await publish(store, hook, 2)
    assert await claim(store, owner="dies") == [first]
    await publish(store, hook, 1, at=T0 + LEASE - timedelta(seconds=1))  # still in flight
    assert await claim(store, T0 + LEASE - timedelta(seconds=1), owner="next") == []
    assert await claim(store, T0 + LEASE, owner="next") == [first]  # the lease ran out
    # The worker that lost the lease reports late: dropped; the new holder settles.
    assert (await store.record_attempts([outcome(first, "dies")], T0 + LEASE)).count == 0
    assert await claim(store, T0 + LEASE, owner="other") == []
    await store.record_attempts([outcome(first, "next")], T0 + LEASE)
    assert await claim(store, T0 + LEASE, owner="other") == [second]


async def test_a_new_notification_joins_a_queue_whose_head_lease_ran_out(store: Store) -> None:
    """Publishing while the head's lease has run out (its worker died): the head stays the
    head, pending, and the next claim takes it, not the new one."""
    hook = await strict_hook(store)
    [first] = await publish(store, hook, 1)
    await claim(store, owner="dies")
    [late] = await publish(store, hook, 1, at=T0 + 2 * LEASE)
    assert await states(store, hook, [first, late]) == [PENDING, WAITING]
    assert await claim(store, T0 + 2 * LEASE, owner="next") == [first]


async def test_a_hand_retry_joins_the_queue_in_its_sequence_place(store: Store) -> None:
    hook = await strict_hook(store)
    first, second, third = await publish(store, hook, 3)
    await claim(store)
    await store.record_attempts([outcome(first, "w", effect=Effect.PERMANENT_FAILURE)], T0)
    assert await states(store, hook, [first, second, third]) == [FAILED, PENDING, WAITING]
    at = T0 + timedelta(seconds=5)
    assert await store.requeue_notification(hook.group_key, hook.webhook_id, first, at) is (
        Requeue.QUEUED)  # fmt: skip
    # The earlier one goes first again; the head it overtook waits.
    assert await states(store, hook, [first, second, third]) == [PENDING, WAITING, WAITING]
    assert await claim(store, at) == [first]
    # A hand retry of the one in flight leaves it to its worker.
    assert await store.requeue_notification(hook.group_key, hook.webhook_id, first, at) is (
        Requeue.QUEUED)  # fmt: skip
    assert (await note(store, hook, first)).lease_owner == "w"
    assert await claim(store, at, owner="other") == []
    await store.record_attempts([outcome(first, "w")], at)
    assert await claim(store, at) == [second]


async def test_a_leased_notification_handed_over_joins_the_queue_unleased(store: Store) -> None:
    """The hand-off never leases a Strict webhook's notification: one handed over by a
    publish that read the webhook before it became Strict is stored in the queue, unleased."""
    hook = await strict_hook(store)
    event = make_event(hook.group_key, created=T0)
    notes = [make_notification(hook, event, created=T0, next_attempt_at=T0, lease_owner="pub",
                               lease_until=T0 + LEASE) for _ in range(2)]  # fmt: skip
    added = await store.add_events([event], notes)
    assert added.queued == {hook.webhook_id}
    assert added.due
    assert not any(added.pending(n) for n in notes)
    assert await claim(store, owner="other") == [notes[0].notification_id]


async def test_released_leases_leave_the_head_to_the_next_claim(store: Store) -> None:
    hook = await strict_hook(store)
    first, _ = await publish(store, hook, 2)
    await claim(store, owner="leaving")
    assert await store.release_leases("leaving", T0) == 1
    assert await claim(store, owner="next") == [first]


async def test_released_leases_of_several_in_flight_leave_one_head(store: Store) -> None:
    """A worker held three when the webhook became Strict and gives them back (shutting
    down): they are not all claimable at once; the lowest goes first."""
    hook = await add_hook(store)
    ids = await publish(store, hook, 3)
    await store.claim_due(T0, 10, "leaving", T0 + LEASE)
    await edit(store, hook, delivery_order=STRICT)
    assert await store.release_leases("leaving", T0) == 3
    assert await states(store, hook, ids) == [PENDING, WAITING, WAITING]
    assert await claim(store, owner="next") == [ids[0]]


async def queued(store: Store) -> int:
    """How many notifications the index of queues holds (the column `queued` set)."""
    rows = await store._rows("SELECT count(*) FROM notifications WHERE queued IS NOT NULL")
    return int(rows[0][0])


async def test_what_leaves_a_queue_leaves_its_index(store: Store) -> None:
    """Settled heads, and a queue whose webhook became Unordered, leave the index of queues:
    it stays as small as the queues, and an Unordered webhook's rows are never in it."""
    hook, plain = await strict_hook(store), await add_hook(store)
    plain_ids = await publish(store, plain, 3)
    assert await claim(store, owner="b") == plain_ids
    await store.record_attempts([outcome(plain_ids[0], "b")], T0)
    ids = await publish(store, hook, 3)
    assert await queued(store) == 3
    for _ in ids:
        [head] = await claim(store, owner="a")
        await store.record_attempts([outcome(head, "a")], T0)
    assert await queued(store) == 0
    await publish(store, hook, 3)
    await edit(store, hook, delivery_order=UNORDERED)
    assert await queued(store) == 0


async def test_a_deleted_strict_webhook_takes_its_queue_with_it(store: Store) -> None:
    hook = await strict_hook(store)
    ids = await publish(store, hook, 3)
    assert await store.delete_webhook(hook.group_key, hook.webhook_id)
    assert await store.delivery_stats(T0) == {**await store.delivery_stats(T0), "waiting": 0}
    assert await claim(store) == []
    assert await store.get_notification(hook.group_key, hook.webhook_id, ids[1]) is None


# -- The periodic check -----------------------------------------------------------------------
async def force(
    store: Store, notification_id: UUID, state: NotificationState, **more: object
) -> None:
    """Break the rule behind the store's back, as a bug would."""
    sets = ", ".join(f"{column} = :{column}" for column in ["state", *more])
    await store._write(
        f"UPDATE notifications SET {sets} WHERE notification_id = :id",
        {"state": state.value, "id": notification_id, **more},
    )


async def test_check_invariants_finds_and_repairs_broken_queues(store: Store) -> None:
    headless, doubled, unordered = (
        await strict_hook(store),
        await strict_hook(store),
        await add_hook(store),
    )
    stranded = await publish(store, headless, 2)
    await force(store, stranded[0], WAITING, queued=1)  # no head, none in flight
    two = await publish(store, doubled, 3)
    await force(store, two[2], PENDING, queued=2)  # a second head
    [left] = await publish(store, unordered, 1)
    await force(store, left, WAITING, queued=1)  # an Unordered webhook's row waits: never claimed
    broken = {**CLEAN, "queue_without_head": 1, "queue_extra_heads": 1, "waiting_of_unordered": 1}
    assert await store.check_invariants(T0, repair=False) == broken
    assert await states(store, headless, stranded) == [WAITING, WAITING]  # counted, not touched
    assert await store.check_invariants(T0, repair=True) == broken
    assert await states(store, headless, stranded) == [PENDING, WAITING]
    assert await states(store, doubled, two) == [PENDING, WAITING, WAITING]
    assert await states(store, unordered, [left]) == [PENDING]
    assert await store.check_invariants(T0, repair=True) == CLEAN


async def test_check_invariants_finds_a_head_behind_a_lower_waiting_one(store: Store) -> None:
    hook = await strict_hook(store)
    first, second = await publish(store, hook, 2)
    await force(store, first, WAITING, queued=1)
    await force(store, second, PENDING, queued=2)
    assert await store.check_invariants(T0, repair=True) == {**CLEAN, "queue_extra_heads": 1}
    assert await states(store, hook, [first, second]) == [PENDING, WAITING]


async def test_check_invariants_leaves_a_queue_waiting_for_its_flight(store: Store) -> None:
    hook = await add_hook(store)
    ids = await publish(store, hook, 3)
    await store.claim_due(T0, 1, "w", T0 + LEASE)
    await edit(store, hook, delivery_order=STRICT)
    assert await store.check_invariants(T0, repair=False) == CLEAN
    # Its lease ran out: the one that was in flight is the head now, and nothing is broken.
    assert await store.check_invariants(T0 + LEASE, repair=False) == CLEAN
    assert await claim(store, T0 + LEASE) == [ids[0]]


# -- Concurrent claims ------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def two_stores(request: pytest.FixtureRequest, store: Store) -> AsyncIterator[Store]:
    """A second store on the same database: another connection (SQLite), another pool
    (PostgreSQL), as another worker process has."""
    if isinstance(store, PostgresStore):
        other: Store = PostgresStore(request.getfixturevalue("postgres_url"))
    else:
        assert isinstance(store, SqliteStore)
        other = SqliteStore(request.getfixturevalue("tmp_path") / "contract.db")
    async with other:
        yield other


async def test_concurrent_claims_never_hold_two_of_a_strict_webhook(
    request: pytest.FixtureRequest, store: Store
) -> None:
    """Four claimers on two stores claim and settle as fast as they can while a fifth task
    publishes more; each claimer checks, as it claims, that no other holds a notification of
    the webhook (one that is not settling yet is leased for sure) and that it is the next in
    sequence. A third of the attempts fail and are due again at once, so the head often stays
    the head."""
    # Failures never make them Errored here (the store takes any retryCount).
    hooks = [await strict_hook(store, retry_count=1000) for _ in range(4)]
    first, later = 20, 10  # notifications per webhook, before the claims and during them
    for hook in hooks:
        await publish(store, hook, first, at=utcnow())
    held: dict[UUID, tuple[str, bool]] = {}  # webhook -> its holder, and whether settling
    delivered: dict[UUID, list[int]] = {hook.webhook_id: [] for hook in hooks}
    rng = random.Random(7)

    def take(claimed: Due, name: str) -> None:
        holder = held.get(claimed.webhook_id)
        assert holder is None or holder[1], f"two of one Strict webhook held: {holder}, {name}"
        done = delivered[claimed.webhook_id]
        assert claimed.sequence == (done[-1] if done else 0) + 1, "out of sequence"
        held[claimed.webhook_id] = (name, False)

    def settled(on: Store, name: str, claimed: Due) -> AttemptOutcome:
        held[claimed.webhook_id] = (name, True)  # the next may be claimed any moment now
        if rng.random() < 0.3:
            return outcome(claimed.notification_id, name, effect=Effect.FAILURE,
                           retry_at=utcnow(), cause="HTTP 500")  # fmt: skip
        delivered[claimed.webhook_id].append(claimed.sequence)
        return outcome(claimed.notification_id, name)

    async def claimer(on: Store, name: str) -> None:
        while sum(map(len, delivered.values())) < (first + later) * len(hooks):
            now = utcnow()
            batch: list[Due] = await on.claim_due(now, 10, name, now + LEASE)
            for claimed in batch:
                take(claimed, name)
            await asyncio.sleep(0)  # the others claim meanwhile
            if not batch:
                await asyncio.sleep(0.001)
                continue
            await on.record_attempts([settled(on, name, claimed) for claimed in batch])
            for claimed in batch:
                if held.get(claimed.webhook_id) == (name, True):
                    del held[claimed.webhook_id]

    async def publisher(on: Store) -> None:
        for _ in range(later):
            for hook in hooks:
                await publish(on, hook, 1, at=utcnow())
            await asyncio.sleep(0.001)

    async with two_stores(request, store) as other:
        async with asyncio.timeout(60):
            await asyncio.gather(
                publisher(other),
                *(claimer(s, f"{'ab'[s is other]}{i}") for s in (store, other) for i in range(2)),
            )
    for hook in hooks:
        assert delivered[hook.webhook_id] == list(range(1, first + later + 1))
    assert await store.check_invariants(utcnow(), repair=False) == CLEAN
