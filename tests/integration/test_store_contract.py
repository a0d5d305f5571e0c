"""The store contract: one suite, run against every store implementation.

To add a backend, add a factory to STORES (and marks to STORE_MARKS, e.g. `postgres`); each
factory takes the test's fixture request (for fixtures such as `tmp_path` or `postgres_url`) and
returns an async context manager that opens a fresh, empty store and closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from gateway import lifecycle, wire
from gateway.errors import Conflict, FilterError, LimitReached, StoreError
from gateway.filters import FieldType, parse_filter
from gateway.models import (
    ContentType,
    DeliveryOrder,
    Due,
    EventType,
    FailureWindow,
    Header,
    HttpMethod,
    Notification,
    NotificationState,
    StatusReason,
    Webhook,
    WebhookStatus,
)
from gateway.outcomes import AttemptOutcome, Effect
from gateway.store import Store, store_for_url
from gateway.store.base import INVARIANTS, Query, Requeue, WebhookEdit
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import MIGRATIONS, SqliteStore, ThrowawaySqliteStore
from tests.factories import (
    T0,
    make_api_key,
    make_event,
    make_notification,
    make_rule,
    make_webhook,
    recipient,
)
from tests.migrations import declared_objects, migration_versions

StoreFactory = Callable[[pytest.FixtureRequest], contextlib.AbstractAsyncContextManager[Store]]

STORES: dict[str, StoreFactory] = {
    "sqlite": lambda request: SqliteStore(request.getfixturevalue("tmp_path") / "contract.db"),
    "postgres": lambda request: PostgresStore(request.getfixturevalue("postgres_url")),
}
STORE_MARKS: dict[str, list[pytest.MarkDecorator]] = {"postgres": [pytest.mark.postgres]}

PENDING, PARKED = NotificationState.PENDING, NotificationState.PARKED
WAITING, STRICT = NotificationState.WAITING, DeliveryOrder.STRICT
SUCCEEDED, FAILED = NotificationState.SUCCEEDED, NotificationState.FAILED
LEASE = timedelta(minutes=5)
DUE_FIELDS = [f.name for f in dataclasses.fields(Due)]
CLEAN = dict.fromkeys(INVARIANTS, 0)  # what check_invariants finds when nothing is broken
PAUSE, ACTIVATE = lifecycle.PAUSE, lifecycle.ACTIVATE
# What a query may name: the wire models' fields, as the API reads them.
WEBHOOK_FIELDS = wire.WebhookModel.queryable()
RULE_FIELDS = wire.WebhookRuleModel.queryable()
HISTORY_FIELDS = wire.WebhookHistoryTableStorageModel.queryable()


@pytest.fixture(params=[pytest.param(name, marks=STORE_MARKS.get(name, [])) for name in STORES])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    async with STORES[request.param](request) as opened:
        yield opened


def query(text: str = "", fields: Collection[str] = WEBHOOK_FIELDS, **page: object) -> Query:
    node = parse_filter(text, fields=set(fields), azure_literals=True)
    return Query(node, **page)  # type: ignore[arg-type]


async def add_hook(store: Store, group_key: UUID | None = None, **overrides: object) -> Webhook:
    hook = make_webhook(group_key or uuid4(), **overrides)
    await store.add_webhooks([hook])
    return hook


async def add_paused(store: Store, group_key: UUID | None = None, **overrides: object) -> Webhook:
    """A webhook its owner paused."""
    paused = {"status_code": WebhookStatus.INACTIVE, "status_message": "paused by owner",
              "status_reason": StatusReason.PAUSED}  # fmt: skip
    return await add_hook(store, group_key, **{**paused, **overrides})


async def publish(store: Store, hook: Webhook, count: int = 1, **overrides: object) -> list[UUID]:
    """One event with `count` notifications to `hook`; their ids in order."""
    event = make_event(hook.group_key, created=T0)
    fields = {"next_attempt_at": T0, **overrides}
    notes = [make_notification(hook, event, **fields) for _ in range(count)]
    await store.add_events([event], notes)
    return [n.notification_id for n in notes]


async def note(store: Store, hook: Webhook, notification_id: UUID) -> Notification:
    found = await store.get_notification(hook.group_key, hook.webhook_id, notification_id)
    assert found is not None
    return found


def outcome(notification_id: UUID, owner: str, **overrides: object) -> AttemptOutcome:
    base = AttemptOutcome(
        notification_id=notification_id,
        lease_owner=owner,
        effect=Effect.SUCCESS,
        cause="HTTP 200",
        retry_at=None,
        response_status_code="200",
        request_message="POST /hook",
        response_message="ok",
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def failure(notification_id: UUID, owner: str, cause: str = "HTTP 500") -> AttemptOutcome:
    return outcome(
        notification_id,
        owner,
        effect=Effect.FAILURE,
        cause=cause,
        retry_at=T0 + LEASE,
        response_status_code=cause.removeprefix("HTTP "),
    )


# -- API keys ---------------------------------------------------------------------------------
async def test_api_keys_are_found_by_hash_listed_oldest_first_and_revoked(store: Store) -> None:
    newer = make_api_key(group_name="acme", created=T0 + timedelta(seconds=1))
    older = make_api_key(group_name="acme", group_key=newer.group_key, created=T0)
    await store.add_api_key(newer)
    await store.add_api_key(older)

    assert await store.api_key_by_hash(newer.key_hash) == newer
    assert await store.api_key_by_hash("0" * 64) is None
    assert await store.list_api_keys() == [older, newer]
    assert await store.revoke_api_key(older.api_key_id, T0 + LEASE)
    assert not await store.revoke_api_key(uuid4(), T0)
    revoked = await store.api_key_by_hash(older.key_hash)
    assert revoked is not None and revoked.revoked == T0 + LEASE


async def test_group_key_for_name(store: Store) -> None:
    key = make_api_key(group_name="acme")
    await store.add_api_key(key)
    assert await store.group_key_for_name("acme") == key.group_key
    assert await store.group_key_for_name("other") is None


async def test_a_key_hash_is_unique(store: Store) -> None:
    key = make_api_key()
    await store.add_api_key(key)
    with pytest.raises(StoreError):
        await store.add_api_key(make_api_key(key_hash=key.key_hash))


# -- Webhooks ---------------------------------------------------------------------------------
async def test_webhook_round_trips_every_field(store: Store) -> None:
    hook = make_webhook(
        expiration_date=T0, partition_key="p1", failure_count=2, previous_secret="whsec_old",
        previous_secret_expires=T0 + LEASE, status_code=WebhookStatus.ERRORED,
        status_message="HTTP 500", status_reason=StatusReason.FAILING,
        headers=(Header("X-Key", "v 1"), Header("x-b", "")),
        config={"k": ["é", 1.5, None, "nul\x00"]},
        failure_window=FailureWindow(3, 60), window_start=T0,
    )  # fmt: skip
    await store.add_webhooks([hook])
    assert await store.get_webhook(hook.group_key, hook.webhook_id) == hook
    assert await store.get_webhook_any_group(hook.webhook_id) == hook
    assert await store.get_webhook_any_group(uuid4()) is None


async def test_webhooks_are_read_many_at_once_whatever_their_group(store: Store) -> None:
    hooks = [make_webhook(), make_webhook(), make_webhook()]
    await store.add_webhooks(hooks[:1])
    await store.add_webhooks(hooks[1:2])  # another group's
    await store.add_webhooks(hooks[2:])
    wanted = [hooks[0].webhook_id, uuid4(), hooks[1].webhook_id]
    found = await store.get_webhooks_any_group(wanted)
    assert sorted(found, key=lambda hook: hook.webhook_id) == sorted(
        hooks[:2], key=lambda hook: hook.webhook_id
    )
    assert await store.get_webhooks_any_group([]) == []


async def test_add_webhooks_is_all_or_nothing(store: Store) -> None:
    existing = await add_hook(store)
    fresh = make_webhook(existing.group_key)
    with pytest.raises(StoreError):
        await store.add_webhooks([fresh, dataclasses.replace(existing, name="again")])
    assert await store.get_webhook(fresh.group_key, fresh.webhook_id) is None
    assert await store.get_webhook(existing.group_key, existing.webhook_id) == existing


async def test_an_edit_writes_only_the_fields_it_names(store: Store) -> None:
    hook = await add_hook(store, failure_count=2)
    edit = WebhookEdit({"name": "renamed", "retry_count": 0, "modified": T0})
    changed = await store.edit_webhook(hook.group_key, hook.webhook_id, edit, T0)
    expected = dataclasses.replace(hook, name="renamed", retry_count=0, modified=T0)
    assert changed == expected
    assert await store.get_webhook(hook.group_key, hook.webhook_id) == expected
    assert await store.edit_webhook(hook.group_key, uuid4(), edit, T0) is None


async def test_an_edit_leaves_alone_what_others_changed_since_it_read(store: Store) -> None:
    """The race of issue 17 §1: a PATCH of the name must not write back a status, a failure
    count or a secret that the worker or another request changed after the PATCH read."""
    hook = await add_hook(store, retry_count=0)
    [notification_id] = await publish(store, hook)
    await store.claim_due(T0, 10, "w", T0 + LEASE)
    await store.record_attempts([failure(notification_id, "w")])  # Errored now
    renewed = await store.regenerate_secret(
        hook.group_key, hook.webhook_id, "whsec_bmV3", T0 + LEASE, T0, uuid4()
    )
    assert renewed is not None
    edit = WebhookEdit({"name": "renamed", "modified": T0})
    after = await store.edit_webhook(hook.group_key, hook.webhook_id, edit, T0)
    assert after is not None
    assert (after.name, after.status_code, after.failure_count, after.client_secret) == (
        "renamed", WebhookStatus.ERRORED, 1, "whsec_bmV3",
    )  # fmt: skip
    assert (await note(store, hook, notification_id)).state is PARKED


async def test_an_edit_whose_expectation_no_longer_holds_is_a_conflict(store: Store) -> None:
    hook = await add_hook(store)
    moved = WebhookEdit({"callback_url": "http://127.0.0.1:9/moved"})
    await store.edit_webhook(hook.group_key, hook.webhook_id, moved, T0)
    stale = WebhookEdit(
        {"callback_http_method": HttpMethod.PUT}, expect={"callback_url": hook.callback_url}
    )
    with pytest.raises(Conflict, match="callback_url"):
        await store.edit_webhook(hook.group_key, hook.webhook_id, stale, T0)
    after = await store.get_webhook(hook.group_key, hook.webhook_id)
    assert after is not None and after.callback_http_method is hook.callback_http_method
    fresh = WebhookEdit(stale.values, expect={"callback_url": "http://127.0.0.1:9/moved"})
    assert await store.edit_webhook(hook.group_key, hook.webhook_id, fresh, T0) is not None


def test_an_edit_names_only_editable_fields() -> None:
    owned = ("webhook_id", "group_key", "created", "created_user_id", "status_code",
             "status_message", "status_reason", "client_secret", "previous_secret",
             "previous_secret_expires", "failure_count")  # fmt: skip
    for field in (*owned, "x; DROP"):
        with pytest.raises(ValueError, match="not editable"):
            WebhookEdit({field: None})
        with pytest.raises(ValueError, match="not editable"):
            WebhookEdit({}, expect={field: None})


async def test_pausing_parks_pending_notifications_in_the_same_transaction(store: Store) -> None:
    hook = await add_hook(store)
    pending, leased = await publish(store, hook, 2)
    await store.claim_due(T0, 1, "w", T0 + LEASE)  # the first: a send in flight
    paused = await store.edit_webhook(
        hook.group_key, hook.webhook_id, WebhookEdit({}, status=lifecycle.PAUSE), T0
    )
    assert paused is not None
    assert (paused.status_code, paused.status_message, paused.status_reason) == (
        WebhookStatus.INACTIVE, "paused by owner", StatusReason.PAUSED,
    )  # fmt: skip
    for notification_id in (pending, leased):
        parked = await note(store, hook, notification_id)
        assert parked.state is PARKED
        assert parked.process_result_message == "parked: webhook is Inactive (paused by owner)"
    # The send in flight keeps its lease, so its outcome is still recorded (and parked).
    assert (await note(store, hook, pending)).lease_owner == "w"
    recorded = await store.record_attempts([outcome(pending, "w")])
    assert recorded.count == 1 and recorded.not_active == {hook.webhook_id}
    assert await store.claim_due(T0 + LEASE * 2, 10, "x", T0 + LEASE * 3) == []


async def test_regenerations_at_once_chain_and_neither_is_lost(store: Store) -> None:
    hook = await add_hook(store)
    first, second = await asyncio.gather(*(
        store.regenerate_secret(hook.group_key, hook.webhook_id, secret, T0 + LEASE, T0, uuid4())
        for secret in ("whsec_b25l", "whsec_dHdv")
    ))  # fmt: skip
    assert first is not None and second is not None
    after = await store.get_webhook(hook.group_key, hook.webhook_id)
    assert after is not None
    # Whichever went last holds the current secret and the other's as the previous one.
    assert {after.client_secret, after.previous_secret} == {"whsec_b25l", "whsec_dHdv"}
    assert await store.regenerate_secret(uuid4(), hook.webhook_id, "x", T0, T0, uuid4()) is None


async def test_delete_webhook(store: Store) -> None:
    hook = await add_hook(store)
    assert await store.delete_webhook(hook.group_key, hook.webhook_id)
    assert await store.get_webhook(hook.group_key, hook.webhook_id) is None
    assert not await store.delete_webhook(hook.group_key, hook.webhook_id)


async def test_deleting_a_webhook_deletes_its_rules_and_history(store: Store) -> None:
    hook = await add_hook(store)
    rule = make_rule(hook)
    await store.add_rules([rule])
    [notification_id] = await publish(store, hook)
    assert await store.delete_webhook(hook.group_key, hook.webhook_id)
    assert await store.get_rule(hook.group_key, rule.webhook_rule_id) is None
    assert await store.get_notification(hook.group_key, hook.webhook_id, notification_id) is None
    assert await store.claim_due(T0, 10, "w", T0 + LEASE) == []


async def test_another_groups_webhook_is_not_found_and_not_changed(store: Store) -> None:
    hook = await add_hook(store)
    intruder = uuid4()
    assert await store.get_webhook(intruder, hook.webhook_id) is None
    edit = WebhookEdit({"name": "x"})
    assert await store.edit_webhook(intruder, hook.webhook_id, edit, T0) is None
    assert await store.regenerate_secret(intruder, hook.webhook_id, "x", T0, T0, uuid4()) is None
    assert not await store.delete_webhook(intruder, hook.webhook_id)
    assert (await store.query_webhooks(intruder, Query())).total_count == 0
    assert await store.get_webhook(hook.group_key, hook.webhook_id) == hook


async def test_query_webhooks_filters_orders_and_pages(store: Store) -> None:
    group = uuid4()
    hooks = [
        await add_hook(store, group, name=name, created=T0 + timedelta(minutes=i),
                       status_code=WebhookStatus.INACTIVE if name == "c" else WebhookStatus.ACTIVE)
        for i, name in enumerate(["b", "a", "d", "c"])
    ]  # fmt: skip
    await add_hook(store, name="other group")

    page = await store.query_webhooks(group, Query())
    assert page.records == hooks and page.total_count == 4
    by_name = await store.query_webhooks(group, query(order="name DESC"))
    assert [h.name for h in by_name.records] == ["d", "c", "b", "a"]
    active = await store.query_webhooks(group, query("statusCode eq 'Active'", order="name"))
    assert [h.name for h in active.records] == ["a", "b", "d"]
    later = await store.query_webhooks(group, query(f"created ge {(T0 + LEASE).isoformat()}"))
    assert later.records == []
    since = await store.query_webhooks(group, query("created gt 2030-01-01T12:01:00Z"))
    assert [h.name for h in since.records] == ["d", "c"]
    second = await store.query_webhooks(group, query(order="name", page_size=3, page_number=1))
    assert [h.name for h in second.records] == ["d"] and second.total_count == 4


async def test_query_webhooks_refuses_an_unknown_order_field(store: Store) -> None:
    with pytest.raises(FilterError):
        await store.query_webhooks(uuid4(), Query(order="clientSecret"))


async def test_filters_bind_values_by_field_type(store: Store) -> None:
    hook = await add_hook(store, retry_count=2)
    upper = f"webhookId eq '{str(hook.webhook_id).upper()}'"
    assert (await store.query_webhooks(hook.group_key, query(upper))).records == [hook]
    assert (await store.query_webhooks(hook.group_key, query("retryCount ge '2'"))).total_count
    with pytest.raises(FilterError):
        await store.query_webhooks(hook.group_key, query("retryCount eq many"))
    with pytest.raises(FilterError):
        await store.query_webhooks(hook.group_key, query("created lt yesterday"))


async def test_expire_webhooks_makes_only_expired_active_ones_inactive(store: Store) -> None:
    expired = await add_hook(store, expiration_date=T0 - LEASE)
    due_now = await add_hook(store, expiration_date=T0)
    future = await add_hook(store, expiration_date=T0 + LEASE)
    paused = await add_hook(store, expiration_date=T0 - LEASE, status_code=WebhookStatus.INACTIVE)
    never = await add_hook(store)
    [waiting] = await publish(store, expired, next_attempt_at=T0 - LEASE)

    swept = await store.expire_webhooks(T0)
    assert sorted(h.webhook_id for h in swept) == sorted([expired.webhook_id, due_now.webhook_id])
    for hook in (expired, due_now):
        after = await store.get_webhook(hook.group_key, hook.webhook_id)
        assert after is not None and after in swept
        # The status and message readers saw before the sweep: one rule, one message.
        seen = lifecycle.effective_status(hook, T0)
        assert after == dataclasses.replace(
            hook, status_code=seen[0], status_message=seen[1], modified=T0,
            status_reason=StatusReason.EXPIRED,
        )  # fmt: skip
    assert (await note(store, expired, waiting)).state is PARKED
    for hook in (future, paused, never):
        assert await store.get_webhook(hook.group_key, hook.webhook_id) == hook
    assert await store.expire_webhooks(T0) == []


# -- Rules ------------------------------------------------------------------------------------
async def test_rule_crud_and_group_isolation(store: Store) -> None:
    hook = await add_hook(store)
    rule = make_rule(hook, filter="total gt 5")
    await store.add_rules([rule])
    assert await store.get_rule(hook.group_key, rule.webhook_rule_id) == rule
    assert await store.get_rule(uuid4(), rule.webhook_rule_id) is None
    assert not await store.delete_rule(uuid4(), rule.webhook_rule_id)

    changed = dataclasses.replace(rule, table_key="Payment", event_type=EventType.DELETE)
    assert await store.update_rule(changed)
    assert await store.get_rule(hook.group_key, rule.webhook_rule_id) == changed
    assert not await store.update_rule(dataclasses.replace(changed, group_key=uuid4()))
    assert not await store.update_rule(make_rule(hook))
    assert await store.delete_rule(hook.group_key, rule.webhook_rule_id)
    assert await store.get_rule(hook.group_key, rule.webhook_rule_id) is None


async def test_add_webhooks_stores_their_rules_in_the_same_transaction(store: Store) -> None:
    """A create's inline webhookRules: stored with their webhooks, or neither (here a group
    past its limit refuses the webhooks, and their rules go with them)."""
    hooks = [make_webhook(), make_webhook()]
    group = hooks[1].group_key
    rules = [make_rule(hooks[0]), make_rule(hooks[0], table_key="Payment"), make_rule(hooks[1])]
    await store.add_webhooks(hooks[:1], rules=rules[:2])
    found = await store.rules_for_webhooks(hooks[0].group_key, [hooks[0].webhook_id])
    assert sorted(r.webhook_rule_id for r in found[hooks[0].webhook_id]) == sorted(
        r.webhook_rule_id for r in rules[:2]
    )
    await add_hook(store, group_key=group)
    with pytest.raises(LimitReached):
        await store.add_webhooks(hooks[1:], most_per_group=1, rules=rules[2:])
    assert await store.get_webhook(group, hooks[1].webhook_id) is None
    assert await store.get_rule(group, rules[2].webhook_rule_id) is None


async def test_a_test_send_is_kept_finished_without_a_sequence_number(store: Store) -> None:
    hook = await add_hook(store)
    event = make_event(hook.group_key, table_key="Test")
    tested = make_notification(
        hook, event, state=FAILED, attempts=1, request_sent=True, response_status_code="500",
        process_result_message="HTTP 500", is_test=True,
    )  # fmt: skip
    assert await store.record_test_send(event, tested)
    ids = (hook.group_key, hook.webhook_id, tested.notification_id)
    assert await store.get_notification(*ids) == tested
    # Never claimed, never queued by hand, never counted by a failure window.
    later = T0 + timedelta(days=3650)
    assert await store.claim_due(later, 10, "w", later + LEASE) == []
    requeue = store.requeue_notification
    assert await requeue(hook.group_key, hook.webhook_id, tested.notification_id, T0) is (
        Requeue.TEST
    )
    # The next real notification is the webhook's first.
    real = make_event(hook.group_key)
    added = await store.add_events([real], [make_notification(hook, real)])
    assert added.sequences == [1]
    found = await store.query_history(hook.group_key, hook.webhook_id, Query(None))
    assert sorted(n.is_test for n in found.records) == [False, True]
    gone = make_notification(make_webhook(hook.group_key), event, is_test=True)
    assert not await store.record_test_send(make_event(hook.group_key), gone)


async def test_add_rules_is_all_or_nothing(store: Store) -> None:
    hook = await add_hook(store)
    good, orphan = make_rule(hook), make_rule(hook, webhook_id=uuid4())
    with pytest.raises(StoreError):
        await store.add_rules([good, orphan])
    assert await store.get_rule(hook.group_key, good.webhook_rule_id) is None


async def test_query_rules(store: Store) -> None:
    hook = await add_hook(store)
    rules = [make_rule(hook, table_key=t, created=T0 + timedelta(seconds=i))
             for i, t in enumerate(["Invoice", "Payment", "Invoice"])]  # fmt: skip
    await store.add_rules(rules)
    page = await store.query_rules(hook.group_key, query("tableKey eq 'Invoice'", RULE_FIELDS))
    assert page.records == [rules[0], rules[2]] and page.total_count == 2
    desc = await store.query_rules(hook.group_key, query(order="created desc", page_size=1))
    assert desc.records == [rules[2]] and desc.total_count == 3
    assert (await store.query_rules(uuid4(), Query())).total_count == 0


async def test_rules_for_webhooks(store: Store) -> None:
    one = await add_hook(store)
    two, bare = await add_hook(store, one.group_key), await add_hook(store, one.group_key)
    rules = [make_rule(one, created=T0), make_rule(two), make_rule(one, created=T0 + LEASE)]
    await store.add_rules(rules)
    found = await store.rules_for_webhooks(one.group_key, [one.webhook_id, bare.webhook_id])
    assert found.get(one.webhook_id) == [rules[0], rules[2]]
    assert not found.get(bare.webhook_id)
    assert two.webhook_id not in found
    assert not (await store.rules_for_webhooks(uuid4(), [one.webhook_id])).get(one.webhook_id)


async def test_matching_rules_only_for_that_group_table_and_event_type(store: Store) -> None:
    hook = await add_hook(store)
    match = make_rule(hook, created=T0)
    also = make_rule(hook, created=T0 + LEASE, filter="total gt 5")
    other_table = make_rule(hook, table_key="Payment")
    other_type = make_rule(hook, event_type=EventType.INSERT)
    stranger = await add_hook(store)
    await store.add_rules([also, match, other_table, other_type, make_rule(stranger)])
    found = await store.matching_rules(hook.group_key, "Invoice", "U")
    assert found == [(None, recipient(hook)), ("total gt 5", recipient(hook))]
    assert await store.matching_rules(hook.group_key, "Invoice", "D") == []


# -- Events and notifications -----------------------------------------------------------------
async def test_add_events_numbers_each_webhooks_notifications_in_order(store: Store) -> None:
    one = await add_hook(store)
    two = await add_hook(store, one.group_key)
    event = make_event(one.group_key)
    notes = [make_notification(hook, event, sequence=99) for hook in (one, two, one, one)]
    added = await store.add_events([event], notes)
    assert added.sequences == [1, 1, 2, 3]
    assert added.active == {one.webhook_id: True, two.webhook_id: True}
    later = await publish(store, one)
    sequences = [(await note(store, one, n.notification_id)).sequence for n in notes[::2]]
    assert sequences == [1, 2]
    assert (await note(store, one, notes[3].notification_id)).sequence == 3
    assert (await note(store, two, notes[1].notification_id)).sequence == 1
    assert (await note(store, one, later[0])).sequence == 4


async def test_add_events_round_trips_a_notification(store: Store) -> None:
    hook = await add_hook(store)
    event = make_event(hook.group_key, records=({"id": "7", "lines": [{"n": 1.5}], "x": None},))
    sent = make_notification(hook, event, sequence=1, lease_owner="w", lease_until=T0)
    await store.add_events([event], [sent])
    assert await note(store, hook, sent.notification_id) == sent


@pytest.mark.parametrize("proposed", [PENDING, PARKED])
async def test_add_events_decides_the_state_from_the_webhook_in_its_transaction(
    store: Store, proposed: NotificationState
) -> None:
    """A publish reads the webhooks before it writes; a pause (or a reactivation) in between
    must not leave a pending notification of a paused webhook, nor a parked one of an Active
    webhook. The store decides, from the webhook as its transaction sees it."""
    active = await add_hook(store)
    paused = await add_paused(store, active.group_key)
    expired = await add_hook(store, active.group_key, expiration_date=T0)
    event = make_event(active.group_key, created=T0)
    notes = [
        make_notification(h, event, state=proposed, created=T0, lease_owner="w", lease_until=T0)
        for h in (active, paused, expired)
    ]
    added = await store.add_events([event], notes)
    assert added.active == {active.webhook_id: True, paused.webhook_id: False,
                            expired.webhook_id: False}  # fmt: skip
    stored = [
        await note(store, h, n.notification_id)
        for h, n in zip((active, paused, expired), notes, strict=True)
    ]
    assert [n.state for n in stored] == [PENDING, PARKED, PARKED]
    assert [n.process_result_message for n in stored] == [
        None,
        "parked: webhook is Inactive (paused by owner)",
        "parked: webhook is Inactive (expired on 2030-01-01T12:00:00Z)",
    ]
    # Pending as the store decided, it keeps the lease its publisher's worker took.
    assert [n.lease_owner for n in stored] == ["w", None, None]


async def test_add_events_is_all_or_nothing(store: Store) -> None:
    hook = await add_hook(store)
    other = await add_hook(store)
    event = make_event(hook.group_key)
    good = make_notification(hook, event)
    elsewhere = make_notification(hook, event, group_key=uuid4())  # its webhook, another group
    with pytest.raises(StoreError, match="not in the group"):
        await store.add_events([event], [good, elsewhere])
    theirs = make_notification(other, event, group_key=hook.group_key)
    with pytest.raises(StoreError, match=str(other.webhook_id)):
        await store.add_events([event], [good, theirs])
    assert (
        await store.get_notification(hook.group_key, hook.webhook_id, good.notification_id) is None
    )
    # The failed call took no sequence numbers and left its event out, so the retry succeeds.
    await store.add_events([event], [good])
    assert (await note(store, hook, good.notification_id)).sequence == 1


async def test_notifications_of_a_webhook_deleted_since_its_rules_were_read_are_not_stored(
    store: Store,
) -> None:
    """A publish matches rules before its transaction; a webhook deleted in between takes its
    notifications with it, as a delete after the publish would, and the rest are stored."""
    hook = await add_hook(store)
    gone = await add_hook(store, hook.group_key)
    event = make_event(hook.group_key)
    notes = [make_notification(gone, event), make_notification(hook, event),
             make_notification(gone, event)]  # fmt: skip
    assert await store.delete_webhook(gone.group_key, gone.webhook_id)
    added = await store.add_events([event], notes)
    assert added.dropped == {gone.webhook_id} and added.sequences == [0, 1, 0]
    assert [added.pending(n) for n in notes] == [False, True, False]
    assert added.stored(notes) == [notes[1]]
    assert (await note(store, hook, notes[1].notification_id)).sequence == 1
    claimed = await store.claim_due(T0 + LEASE, 10, "w", T0 + 2 * LEASE)
    assert [n.notification_id for n in claimed] == [notes[1].notification_id]


async def test_add_events_refuses_another_groups_webhook(store: Store) -> None:
    hook = await add_hook(store)
    event = make_event()
    with pytest.raises(StoreError):
        await store.add_events([event], [make_notification(hook, event, group_key=event.group_key)])


async def test_get_notification_is_scoped_to_group_and_webhook(store: Store) -> None:
    hook = await add_hook(store)
    sibling = await add_hook(store, hook.group_key)
    [notification_id] = await publish(store, hook)
    assert await store.get_notification(uuid4(), hook.webhook_id, notification_id) is None
    assert await store.get_notification(hook.group_key, sibling.webhook_id, notification_id) is None


async def test_claim_due_leases_due_pending_notifications_in_order(store: Store) -> None:
    hooks = sorted([await add_hook(store), await add_hook(store)], key=lambda h: h.webhook_id)
    second = await publish(store, hooks[1], 2)
    first = await publish(store, hooks[0], 2)
    await publish(store, hooks[0], next_attempt_at=T0 + LEASE)  # not due yet
    await publish(store, hooks[0], state=FAILED)
    await publish(store, await add_hook(store, status_code=WebhookStatus.INACTIVE))  # parked

    claimed = await store.claim_due(T0, 3, "worker-a", T0 + LEASE)
    assert [n.notification_id for n in claimed] == [*first, second[0]]
    assert all(n.lease_owner == "worker-a" and n.lease_until == T0 + LEASE for n in claimed)
    for due in claimed:  # what sending needs, as stored (the rest of the row is not read)
        stored = await store.get_notification(due.group_key, due.webhook_id, due.notification_id)
        assert stored is not None and stored.state is PENDING
        assert due == Due(**{name: getattr(stored, name) for name in DUE_FIELDS})
    rest = await store.claim_due(T0, 10, "worker-b", T0 + LEASE)
    assert [n.notification_id for n in rest] == [second[1]]
    assert await store.claim_due(T0, 10, "worker-c", T0 + LEASE) == []


async def test_claim_due_leases_the_longest_due_first(store: Store) -> None:
    early, late = sorted([await add_hook(store), await add_hook(store)], key=lambda h: h.webhook_id)
    backlog = await publish(store, early, 3)  # due at T0
    [waiting] = await publish(store, late, next_attempt_at=T0 - timedelta(seconds=1))

    claimed = await store.claim_due(T0, 2, "w", T0 + LEASE)
    # The later webhook's notification has waited longest; the batch comes back by webhook.
    assert [n.notification_id for n in claimed] == [backlog[0], waiting]


async def test_claim_due_skips_excluded_webhooks(store: Store) -> None:
    busy, idle = await add_hook(store), await add_hook(store)
    await publish(store, busy)
    [waiting] = await publish(store, idle)
    claimed = await store.claim_due(T0, 10, "w", T0 + LEASE, exclude_webhooks=[busy.webhook_id])
    assert [n.notification_id for n in claimed] == [waiting]


async def test_claim_due_skips_excluded_groups(store: Store) -> None:
    noisy, quiet = uuid4(), uuid4()
    for hook in [await add_hook(store, noisy), await add_hook(store, noisy)]:
        await publish(store, hook)
    [waiting] = await publish(store, await add_hook(store, quiet))
    claimed = await store.claim_due(T0, 10, "w", T0 + LEASE, exclude_groups=[noisy])
    assert [n.notification_id for n in claimed] == [waiting]
    assert len(await store.claim_due(T0, 10, "w", T0 + LEASE)) == 2  # left for other claims


async def test_an_expired_lease_can_be_claimed_again(store: Store) -> None:
    hook = await add_hook(store)
    [notification_id] = await publish(store, hook)
    await store.claim_due(T0, 10, "crashed", T0 + LEASE)
    assert await store.claim_due(T0 + LEASE / 2, 10, "other", T0 + 2 * LEASE) == []
    again = await store.claim_due(T0 + LEASE, 10, "other", T0 + 2 * LEASE)
    assert [(n.notification_id, n.lease_owner) for n in again] == [(notification_id, "other")]


async def test_a_notification_stored_leased_is_claimed_only_when_its_lease_ends(
    store: Store,
) -> None:
    # What a publish does for the worker of its own process: no claim takes it meanwhile.
    hook = await add_hook(store)
    [handed] = await publish(store, hook, lease_owner="own-worker", lease_until=T0 + LEASE)
    [other] = await publish(store, hook)
    claimed = await store.claim_due(T0, 10, "other-worker", T0 + 2 * LEASE)
    assert [n.notification_id for n in claimed] == [other]
    again = await store.claim_due(T0 + LEASE, 10, "other-worker", T0 + 2 * LEASE)
    assert [n.notification_id for n in again] == [handed]


async def test_record_attempts_writes_the_outcome_and_clears_the_lease(store: Store) -> None:
    hook = await add_hook(store)
    ok, retry = await publish(store, hook, 2)
    await store.claim_due(T0, 10, "w", T0 + LEASE)
    assert (
        await store.record_attempts([outcome(ok, "w"), failure(retry, "w", "HTTP 503")])
    ).count == 2

    done = await note(store, hook, ok)
    assert (done.state, done.attempts, done.is_successful, done.request_sent) == (
        SUCCEEDED,
        1,
        True,
        True,
    )
    assert (done.response_status_code, done.process_result_message) == ("200", "HTTP 200")
    assert (done.request_message, done.response_message) == ("POST /hook", "ok")
    assert (done.lease_owner, done.lease_until) == (None, None)
    again = await note(store, hook, retry)
    assert (again.state, again.next_attempt_at, again.attempts) == (PENDING, T0 + LEASE, 1)
    assert again.process_result_message == "HTTP 503"
    assert [n.notification_id for n in await store.claim_due(T0 + LEASE, 10, "w", T0)] == [retry]


async def test_record_attempts_drops_an_outcome_whose_lease_was_lost(store: Store) -> None:
    hook = await add_hook(store)
    [notification_id] = await publish(store, hook)
    await store.claim_due(T0, 10, "slow", T0 + LEASE)
    await store.claim_due(T0 + LEASE, 10, "fast", T0 + 2 * LEASE)
    assert (await store.record_attempts([failure(notification_id, "slow")])).count == 0
    kept = await note(store, hook, notification_id)
    assert (kept.state, kept.attempts, kept.lease_owner) == (PENDING, 0, "fast")
    assert await store.get_webhook(hook.group_key, hook.webhook_id) == hook
    assert (await store.record_attempts([outcome(uuid4(), "fast")])).count == 0


async def test_failures_count_in_the_store_until_the_webhook_errors(store: Store) -> None:
    hook = await add_hook(store, retry_count=1)
    first, second, third = await publish(store, hook, 3)
    # Two sends in flight at once: each failure counts, though both saw failure_count 0.
    await store.claim_due(T0, 2, "w", T0 + LEASE)
    assert (await store.record_attempts([failure(first, "w")])).count == 1
    counted = await store.get_webhook(hook.group_key, hook.webhook_id)
    assert counted == dataclasses.replace(hook, failure_count=1)
    assert (await store.record_attempts([failure(second, "w", "HTTP 502")])).count == 1
    after = await store.get_webhook(hook.group_key, hook.webhook_id)
    assert after is not None
    assert (after.status_code, after.failure_count) == (WebhookStatus.ERRORED, 2)
    assert after.status_message == "2 consecutive failed deliveries; last: HTTP 502"
    assert after.modified > hook.modified
    states = [(await note(store, hook, n)).state for n in (first, second, third)]
    assert states == [PARKED, PARKED, PARKED]  # the waiting retry parks with the rest


async def test_one_batch_settles_as_one_outcome_after_another(store: Store) -> None:
    hook = await add_hook(store, retry_count=1)
    first, second, third, fourth = await publish(store, hook, 4)
    await store.claim_due(T0, 4, "w", T0 + LEASE)
    batch = [failure(first, "w"), failure(second, "w", "HTTP 502"), failure(third, "w")]
    batch += [outcome(fourth, "w"), failure(first, "w")]  # the repeat finds no lease
    assert (await store.record_attempts(batch)).count == 4
    after = await store.get_webhook(hook.group_key, hook.webhook_id)
    assert after is not None
    # The second failure errs the webhook; the third then parks without counting, and the
    # success still resets the count without reviving the webhook.
    assert (after.status_code, after.failure_count) == (WebhookStatus.ERRORED, 0)
    assert after.status_message == "2 consecutive failed deliveries; last: HTTP 502"
    states = [(await note(store, hook, n)).state for n in (first, second, third, fourth)]
    assert states == [PARKED, PARKED, PARKED, SUCCEEDED]
    assert [(await note(store, hook, n)).attempts for n in (first, second)] == [1, 1]


async def test_one_batch_settles_in_order_as_if_recorded_one_by_one(store: Store) -> None:
    hook = await add_hook(store, retry_count=1)
    first, second, third, waiting = await publish(store, hook, 4)
    await store.claim_due(T0, 3, "w", T0 + LEASE)
    batch = [failure(first, "w"), failure(second, "w"), outcome(third, "w")]
    assert (await store.record_attempts(batch)).count == 3
    # The second failure errors the webhook and parks what was pending, the first's retry too;
    # the success after it still counts as delivered and resets the count.
    states = [(await note(store, hook, n)).state for n in (first, second, third, waiting)]
    assert states == [PARKED, PARKED, SUCCEEDED, PARKED]
    after = await store.get_webhook(hook.group_key, hook.webhook_id)
    assert after is not None and (after.status_code, after.failure_count) == (
        WebhookStatus.ERRORED,
        0,
    )


async def test_a_success_resets_the_failure_count(store: Store) -> None:
    hook = await add_hook(store, retry_count=3)
    first, second = await publish(store, hook, 2)
    await store.claim_due(T0, 2, "w", T0 + LEASE)
    await store.record_attempts([failure(first, "w")])
    await store.record_attempts([outcome(second, "w")])
    after = await store.get_webhook(hook.group_key, hook.webhook_id)
    assert after is not None and (after.failure_count, after.status_code) == (
        0,
        WebhookStatus.ACTIVE,
    )


async def test_gone_makes_the_webhook_inactive_and_parks_the_rest(store: Store) -> None:
    hook = await add_hook(store)
    neighbour = await add_hook(store, hook.group_key)
    sent, waiting = await publish(store, hook, 2)
    await store.claim_due(T0, 1, "w", T0 + LEASE)
    [unrelated] = await publish(store, neighbour)
    gone = outcome(sent, "w", effect=Effect.GONE, cause="HTTP 410", response_status_code="410")
    assert (await store.record_attempts([gone])).count == 1
    after = await store.get_webhook(hook.group_key, hook.webhook_id)
    assert after is not None and after.status_code is WebhookStatus.INACTIVE
    assert (await note(store, hook, sent)).state is PARKED
    assert (await note(store, hook, waiting)).state is PARKED
    assert (await note(store, neighbour, unrelated)).state is PENDING
    assert [n.notification_id for n in await store.claim_due(T0, 10, "w", T0)] == [unrelated]


async def test_a_webhook_that_is_not_active_parks_without_counting(store: Store) -> None:
    hook = await add_hook(store)
    [notification_id] = await publish(store, hook)
    await store.claim_due(T0, 1, "w", T0 + LEASE)
    await store.edit_webhook(hook.group_key, hook.webhook_id, WebhookEdit({}, status=PAUSE), T0)
    skipped = outcome(notification_id, "w", effect=Effect.NOT_SENT, cause="not sent")
    recorded = await store.record_attempts([skipped])
    assert (recorded.count, recorded.not_active, recorded.changes) == (1, {hook.webhook_id}, [])
    parked = await note(store, hook, notification_id)
    assert (parked.state, parked.attempts, parked.request_sent) == (PARKED, 0, False)
    assert parked.process_result_message == "parked: webhook is Inactive (paused by owner)"
    after = await store.get_webhook(hook.group_key, hook.webhook_id)
    assert after is not None and after.failure_count == 0


async def test_not_sent_to_an_active_webhook_is_due_again_not_parked(store: Store) -> None:
    """The worker's copy of the webhook said it was not Active, but the store's says it is:
    parking it would strand it (no parked notification belongs to an Active webhook)."""
    hook = await add_hook(store)
    [notification_id] = await publish(store, hook)
    await store.claim_due(T0, 1, "w", T0 + LEASE)
    skipped = outcome(notification_id, "w", effect=Effect.NOT_SENT, cause="not sent")
    recorded = await store.record_attempts([skipped])
    assert (recorded.count, recorded.not_active) == (1, set())
    again = await note(store, hook, notification_id)
    assert (again.state, again.attempts, again.lease_owner) == (PENDING, 0, None)
    assert again.process_result_message == "due again: the webhook is Active"
    assert [n.notification_id for n in await store.claim_due(T0, 10, "x", T0)] == [notification_id]


async def test_not_sent_keeps_the_last_attempts_record(store: Store) -> None:
    hook = await add_hook(store, retry_count=5)
    [notification_id] = await publish(store, hook)
    await store.claim_due(T0, 1, "w", T0 + LEASE)
    await store.record_attempts([failure(notification_id, "w", "HTTP 503")])
    await store.edit_webhook(hook.group_key, hook.webhook_id, WebhookEdit({}, status=PAUSE), T0)
    await store.edit_webhook(hook.group_key, hook.webhook_id, WebhookEdit({}, status=ACTIVATE), T0)
    await store.claim_due(T0 + LEASE, 1, "w", T0 + LEASE * 2)
    await store.edit_webhook(hook.group_key, hook.webhook_id, WebhookEdit({}, status=PAUSE), T0)
    skipped = outcome(notification_id, "w", effect=Effect.NOT_SENT, cause="not sent")
    assert (await store.record_attempts([skipped])).count == 1
    kept = await note(store, hook, notification_id)
    assert (kept.state, kept.attempts, kept.request_sent) == (PARKED, 1, True)
    assert (kept.response_status_code, kept.request_message) == ("503", "POST /hook")


async def test_every_failed_attempt_is_logged_and_a_success_stays_on_the_row(store: Store) -> None:
    hook = await add_hook(store, retry_count=5)
    [notification_id] = await publish(store, hook)
    for at, cause in enumerate(["HTTP 500", "timed out after 10 s"]):
        await store.claim_due(T0 + LEASE * at * 2, 1, "w", T0 + LEASE * (at * 2 + 1))
        await store.record_attempts([failure(notification_id, "w", cause)])
    await store.claim_due(T0 + LEASE * 4, 1, "w", T0 + LEASE * 5)
    await store.record_attempts([outcome(notification_id, "w")])
    logged = await store.attempts(hook.group_key, hook.webhook_id, [notification_id, uuid4()])
    attempts = logged[notification_id]
    assert [(a.attempt, a.response_status_code, a.process_result_message) for a in attempts] == [
        (1, "500", "HTTP 500"),
        (2, "timed out after 10 s".removeprefix("HTTP "), "timed out after 10 s"),
    ]
    assert all(a.request_message == "POST /hook" and a.response_message == "ok" for a in attempts)
    assert attempts[0].timestamp <= attempts[1].timestamp
    done = await note(store, hook, notification_id)
    assert (done.attempts, done.is_successful, done.process_result_message) == (3, True, "HTTP 200")
    # Another group sees none of them.
    assert (await store.attempts(uuid4(), hook.webhook_id, [notification_id])) == {
        notification_id: []
    }


async def test_an_undeliverable_notification_fails_for_good_without_counting(store: Store) -> None:
    hook = await add_hook(store, retry_count=0)
    [notification_id] = await publish(store, hook)
    await store.claim_due(T0, 1, "w", T0 + LEASE)
    broken = outcome(notification_id, "w", effect=Effect.UNDELIVERABLE,
                     cause="cannot be rendered: Recursion limit reached")  # fmt: skip
    recorded = await store.record_attempts([broken])
    assert (recorded.count, recorded.not_active) == (1, set())
    failed = await note(store, hook, notification_id)
    assert (failed.state, failed.attempts, failed.request_sent) == (FAILED, 0, False)
    assert failed.process_result_message == "cannot be rendered: Recursion limit reached"
    after = await store.get_webhook(hook.group_key, hook.webhook_id)
    assert after == hook
    assert await store.claim_due(T0 + LEASE * 2, 10, "w", T0 + LEASE * 3) == []


async def test_a_failure_not_retried_fails_for_good_counts_and_can_be_requeued(
    store: Store,
) -> None:
    """retryPolicy ServerErrorsOnly: a 4xx fails its notification, is logged, and counts; the
    one that makes the webhook Errored stays failed while the others park."""
    hook = await add_hook(store, retry_count=1)
    first, second, waiting = await publish(store, hook, 3)
    await store.claim_due(T0, 2, "w", T0 + LEASE)
    refused = [
        outcome(n, "w", effect=Effect.PERMANENT_FAILURE, cause=f"HTTP 40{i}",
                response_status_code=f"40{i}")
        for i, n in enumerate((first, second))
    ]  # fmt: skip
    recorded = await store.record_attempts(refused)
    assert (recorded.count, recorded.not_active) == (2, {hook.webhook_id})
    after = await store.get_webhook(hook.group_key, hook.webhook_id)
    assert after is not None
    assert (after.status_code, after.failure_count) == (WebhookStatus.ERRORED, 2)
    assert after.status_message == "2 consecutive failed deliveries; last: HTTP 401"
    failed = await note(store, hook, second)
    assert (failed.state, failed.attempts, failed.request_sent, failed.is_successful) == (
        FAILED, 1, True, False,
    )  # fmt: skip
    assert failed.process_result_message == (
        "HTTP 401: failed for good, not retried (retryPolicy ServerErrorsOnly)"
    )
    assert (await note(store, hook, waiting)).state is PARKED
    logged = await store.attempts(hook.group_key, hook.webhook_id, [first])
    assert [a.response_status_code for a in logged[first]] == ["400"]
    activate = WebhookEdit({"modified": T0 + LEASE}, status=ACTIVATE)
    await store.edit_webhook(hook.group_key, hook.webhook_id, activate, T0 + LEASE)
    # Reactivation releases the parked one only; a hand retry makes a failed one due.
    due = await store.claim_due(T0 + LEASE, 10, "w", T0 + 2 * LEASE)
    assert [n.notification_id for n in due] == [waiting]
    found = await store.requeue_notification(hook.group_key, hook.webhook_id, first, T0 + LEASE)
    assert found is Requeue.QUEUED
    due = await store.claim_due(T0 + LEASE, 10, "w", T0 + 2 * LEASE)
    assert [n.notification_id for n in due] == [first]


async def test_reactivation_releases_parked_notifications(store: Store) -> None:
    hook = await add_paused(store, failure_count=4)
    parked = await publish(store, hook, 2)
    [done] = await publish(store, hook, state=SUCCEEDED)
    await store.edit_webhook(hook.group_key, hook.webhook_id, WebhookEdit({"name": "off"}), T0)
    assert await store.claim_due(T0 + LEASE, 10, "w", T0 + 2 * LEASE) == []

    edit = WebhookEdit({"modified": T0 + LEASE}, status=ACTIVATE)
    active = await store.edit_webhook(hook.group_key, hook.webhook_id, edit, T0 + LEASE)
    assert active is not None
    assert (active.status_code, active.status_message, active.status_reason) == (
        WebhookStatus.ACTIVE, None, None,
    )  # fmt: skip
    assert (active.failure_count, active.name, active.modified) == (0, "off", T0 + LEASE)
    for notification_id in parked:
        released = await note(store, hook, notification_id)
        assert (released.state, released.next_attempt_at) == (PENDING, T0 + LEASE)
        assert released.process_result_message == lifecycle.RELEASED_MESSAGE
    assert (await note(store, hook, done)).state is SUCCEEDED
    claimed = await store.claim_due(T0 + LEASE, 10, "w", T0 + 2 * LEASE)
    assert [n.notification_id for n in claimed] == parked


async def test_release_clears_the_leases_of_what_a_pause_parked(store: Store) -> None:
    """A worker held these when the webhook was paused; once it is Active again they are due
    at once, not when that worker's lease would have ended."""
    hook = await add_hook(store)
    held = await publish(store, hook, 2)
    await store.claim_due(T0, 10, "gone-worker", T0 + LEASE)
    await store.edit_webhook(hook.group_key, hook.webhook_id, WebhookEdit({}, status=PAUSE), T0)
    await store.edit_webhook(hook.group_key, hook.webhook_id, WebhookEdit({}, status=ACTIVATE), T0)
    claimed = await store.claim_due(T0, 10, "new-worker", T0 + LEASE)
    assert sorted(n.notification_id for n in claimed) == sorted(held)


async def test_release_leases_frees_only_that_owners_claims(store: Store) -> None:
    hook = await add_hook(store)
    mine, theirs = await publish(store, hook, 2)
    await store.claim_due(T0, 1, "leaving", T0 + LEASE)
    await store.claim_due(T0, 1, "staying", T0 + LEASE)
    assert await store.release_leases("leaving") == 1
    assert await store.release_leases("nobody") == 0
    released = await note(store, hook, mine)
    assert (released.lease_owner, released.lease_until, released.state) == (None, None, PENDING)
    assert (await note(store, hook, theirs)).lease_owner == "staying"
    assert [n.notification_id for n in await store.claim_due(T0, 10, "new", T0 + LEASE)] == [mine]


async def test_requeue_notification(store: Store) -> None:
    hook = await add_hook(store)
    [failed] = await publish(store, hook, state=FAILED, next_attempt_at=T0 + 2 * LEASE)
    [done] = await publish(store, hook, state=SUCCEEDED)
    paused = await add_hook(store, hook.group_key, status_code=WebhookStatus.INACTIVE)
    [parked] = await publish(store, paused)

    def requeue(webhook: Webhook, notification_id: UUID, group: UUID | None = None) -> Any:
        return store.requeue_notification(
            group or webhook.group_key, webhook.webhook_id, notification_id, T0 + LEASE
        )

    assert await requeue(hook, failed) is Requeue.QUEUED
    assert await requeue(hook, done) is Requeue.SUCCEEDED
    assert await requeue(hook, failed, uuid4()) is Requeue.NOT_FOUND
    assert await requeue(hook, uuid4()) is Requeue.NOT_FOUND
    # Refused while its webhook is not Active: it stays parked, its record untouched.
    before = await note(store, paused, parked)
    assert await requeue(paused, parked) is Requeue.NOT_ACTIVE
    assert await note(store, paused, parked) == before
    requeued = await note(store, hook, failed)
    assert (requeued.state, requeued.next_attempt_at) == (PENDING, T0 + LEASE)
    claimed = await store.claim_due(T0 + LEASE, 10, "w", T0 + 2 * LEASE)
    assert [n.notification_id for n in claimed] == [failed]
    await store.edit_webhook(
        paused.group_key, paused.webhook_id, WebhookEdit({}, status=ACTIVATE), T0
    )
    assert await requeue(paused, parked) is Requeue.QUEUED
    expiring = await add_hook(store, hook.group_key, expiration_date=T0)
    [late] = await publish(store, expiring, state=FAILED)
    assert await requeue(expiring, late) is Requeue.NOT_ACTIVE  # expired: not Active


async def test_a_hand_retry_leaves_a_notification_in_flight_as_it_is(store: Store) -> None:
    """Clearing its lease would have the next claim send it a second time at once (and, after
    a switch to Strict, beside the queue's head)."""
    hook = await add_hook(store)
    [sending] = await publish(store, hook)
    await store.claim_due(T0, 10, "w", T0 + LEASE)
    before = await note(store, hook, sending)
    retry = functools.partial(store.requeue_notification, hook.group_key, hook.webhook_id, sending)
    assert await retry(T0 + LEASE / 2) is Requeue.QUEUED
    assert await note(store, hook, sending) == before
    assert await store.claim_due(T0 + LEASE / 2, 10, "other", T0 + LEASE) == []
    # Once its lease has run out (the worker died), a hand retry makes it due now.
    assert await retry(T0 + LEASE) is Requeue.QUEUED
    claimed = await store.claim_due(T0 + LEASE, 10, "other", T0 + 2 * LEASE)
    assert [n.notification_id for n in claimed] == [sending]


async def test_after_a_switch_to_strict_a_dead_workers_notifications_go_one_at_a_time(
    store: Store,
) -> None:
    """Those in flight when a webhook became Strict finish first, all of them heads of its
    queue; if their worker dies, their leases run out together, and a claim takes only the
    lowest (gateway.ordering: one in flight at a time, in sequence order)."""
    hook = await add_hook(store)
    ids = await publish(store, hook, 3)
    assert len(await store.claim_due(T0, 10, "dies", T0 + LEASE)) == 3
    strict = WebhookEdit({"delivery_order": DeliveryOrder.STRICT})
    await store.edit_webhook(hook.group_key, hook.webhook_id, strict, T0)
    for first in ids:  # each settles before the next goes, as the queue's head
        claimed = await store.claim_due(T0 + LEASE, 10, "next", T0 + 2 * LEASE)
        assert [n.notification_id for n in claimed] == [first]
        await store.record_attempts([outcome(first, "next")], T0 + LEASE)
    assert await store.claim_due(T0 + LEASE, 10, "next", T0 + 2 * LEASE) == []


# -- Invariants -------------------------------------------------------------------------------
async def force_state(store: Store, notification_id: UUID, state: NotificationState) -> None:
    """Break an invariant behind the store's back, as a bug would."""
    sql = "UPDATE notifications SET state = :state WHERE notification_id = :id"
    await store._write(sql, {"state": state.value, "id": notification_id})


async def test_check_invariants_finds_and_repairs_what_slipped_through(store: Store) -> None:
    active = await add_hook(store)
    paused = await add_paused(store)
    stranded, fine = await publish(store, active, 2)
    in_flight, stray, parked = await publish(store, paused, 3)
    await force_state(store, stranded, PARKED)
    await force_state(store, stray, PENDING)
    await force_state(store, in_flight, PENDING)
    await store.claim_due(T0, 1, "w", T0 + LEASE, exclude_webhooks=[active.webhook_id])
    assert (await note(store, paused, in_flight)).lease_owner == "w"  # possibly being sent

    expected = {**CLEAN, "parked_of_active": 1, "pending_of_inactive": 1}
    assert await store.check_invariants(T0, repair=False) == expected
    assert (await note(store, active, stranded)).state is PARKED  # counted, not touched
    assert await store.check_invariants(T0, repair=True) == expected
    assert (await note(store, active, stranded)).state is PENDING
    repaired = await note(store, paused, stray)
    assert repaired.state is PARKED
    assert repaired.process_result_message == "parked: webhook is Inactive (paused by owner)"
    assert (await note(store, paused, in_flight)).state is PENDING  # its lease runs
    assert (await note(store, paused, parked)).state is PARKED
    assert (await note(store, active, fine)).state is PENDING
    assert await store.check_invariants(T0, repair=True) == CLEAN
    # Once the lease has run out, the one that was in flight is parked too.
    assert (await store.check_invariants(T0 + LEASE, repair=True))["pending_of_inactive"] == 1


# -- History ----------------------------------------------------------------------------------
async def history_rows(store: Store, hook: Webhook) -> dict[str, UUID]:
    """Three history rows a minute apart: ok (oldest), failed, payment (newest)."""
    stamp = {name: T0 + timedelta(minutes=i) for i, name in enumerate(["ok", "failed", "pay"])}
    [ok] = await publish(store, hook, state=SUCCEEDED, is_successful=True, request_sent=True,
                         attempts=1, timestamp=stamp["ok"])  # fmt: skip
    [failed] = await publish(store, hook, state=FAILED, request_sent=True, attempts=3,
                             response_status_code="500", timestamp=stamp["failed"])  # fmt: skip
    event = make_event(hook.group_key, table_key="Payment", event_type=EventType.INSERT)
    pay = make_notification(hook, event, timestamp=stamp["pay"])
    await store.add_events([event], [pay])
    return {"ok": ok, "failed": failed, "pay": pay.notification_id}


async def test_query_history_filters_orders_and_pages(store: Store) -> None:
    hook = await add_hook(store)
    rows = await history_rows(store, hook)
    await publish(store, await add_hook(store, hook.group_key))  # another webhook's history

    async def ids(text: str = "", **page: object) -> list[UUID]:
        found = await store.query_history(hook.group_key, hook.webhook_id,
                                          query(text, HISTORY_FIELDS, **page))  # fmt: skip
        return [n.notification_id for n in found.records]

    assert await ids() == [rows["pay"], rows["failed"], rows["ok"]]
    assert await ids("isSuccessful eq false") == [rows["pay"], rows["failed"]]
    assert await ids("isSuccessful eq 1") == [rows["ok"]]
    assert await ids("isSuccessful eq 'TRUE'") == [rows["ok"]]  # quoted, any case
    assert await ids("isSuccessful ne 'False'") == [rows["ok"]]
    assert await ids("eventType eq 'Invoice.U'") == [rows["failed"], rows["ok"]]
    assert await ids("timestamp lt datetime'2030-01-01T12:01:00Z'") == [rows["ok"]]
    assert await ids("failureCount eq 3 and responseStatusCode eq '500'") == [rows["failed"]]
    assert await ids(order="timestamp asc", page_size=2, page_number=1) == [rows["pay"]]
    page = await store.query_history(hook.group_key, hook.webhook_id, Query(page_size=1))
    assert page.total_count == 3
    empty = await store.query_history(uuid4(), hook.webhook_id, Query())
    assert (empty.records, empty.total_count) == ([], 0)


# -- Every field a query may name -----------------------------------------------------------
def literal(value: object) -> str:
    """A wire value as a quoted filter literal, which every field type reads."""
    return "'" + str(value).replace("'", "''") + "'"


async def answers_every_field(
    fields: Mapping[str, FieldType],
    shown: Mapping[UUID, Mapping[str, Any]],
    listing: Callable[[Query], Awaitable[list[UUID]]],
) -> None:
    """Filter and order by each field: an equality filter on a record's own value, as the wire
    shows it (`shown`, by record id), finds the record; either order answers every record,
    the one reversed from the other where their values all differ. Each record holds in each
    field of a type a value no other field of that type holds, so that a field compiled over
    another column finds nothing."""
    wires = {own: {name.lower(): value for name, value in json.items()}
             for own, json in shown.items()}  # fmt: skip
    for name in fields:
        values = [json[name] for json in wires.values()]
        for own, json in wires.items():
            value = json[name]
            text = f"{name} is null" if value is None else f"{name} eq {literal(value)}"
            assert own in await listing(query(text, fields)), text
        asc = await listing(query(order=f"{name} asc", fields=fields))
        desc = await listing(query(order=f"{name} desc", fields=fields))
        assert sorted(asc) == sorted(shown), name
        if len(set(values)) == len(values):
            assert desc == asc[::-1], name


async def test_queries_filter_and_order_by_every_field_of_a_webhook(store: Store) -> None:
    group = uuid4()
    hooks = [
        await add_hook(store, group, name="a", status_message="fine", partition_key="p1",
                       expiration_date=T0 + LEASE, retry_count=1, modified=T0 + 3 * LEASE),
        await add_hook(store, group, name="b'", status_code=WebhookStatus.INACTIVE,
                       status_message="paused", request_content_type=ContentType.ID,
                       callback_http_method=HttpMethod.PUT, callback_url="http://127.0.0.1:9/b",
                       partition_key="p2", expiration_date=T0 + 2 * LEASE, retry_count=2,
                       created=T0, modified=T0 + 4 * LEASE),
    ]  # fmt: skip
    await add_hook(store, name="another group's")

    async def listing(q: Query) -> list[UUID]:
        return [h.webhook_id for h in (await store.query_webhooks(group, q)).records]

    shown = {h.webhook_id: wire.webhook(h, T0) for h in hooks}
    await answers_every_field(WEBHOOK_FIELDS, shown, listing)


async def test_queries_filter_and_order_by_every_field_of_a_rule(store: Store) -> None:
    hook = await add_hook(store)
    rules = [
        make_rule(hook, filter="total gt 5", modified=T0 + LEASE),
        make_rule(hook, table_key="Payment", event_type=EventType.INSERT, filter="id eq '4'",
                  created=T0, modified=T0 + 2 * LEASE),
    ]  # fmt: skip
    await store.add_rules([*rules, make_rule(await add_hook(store))])

    async def listing(q: Query) -> list[UUID]:
        return [r.webhook_rule_id for r in (await store.query_rules(hook.group_key, q)).records]

    shown = {r.webhook_rule_id: wire.rule(r) for r in rules}
    await answers_every_field(RULE_FIELDS, shown, listing)


async def test_queries_filter_and_order_by_every_field_of_a_history_entry(store: Store) -> None:
    hook = await add_hook(store)
    rows = await history_rows(store, hook)
    await publish(store, await add_hook(store, hook.group_key))  # another webhook's history
    notes = [await note(store, hook, notification_id) for notification_id in rows.values()]

    async def listing(q: Query) -> list[UUID]:
        found = await store.query_history(hook.group_key, hook.webhook_id, q)
        return [n.notification_id for n in found.records]

    shown = {n.notification_id: wire.history(n, (), None, 100) for n in notes}
    await answers_every_field(HISTORY_FIELDS, shown, listing)


async def test_prune_history_deletes_old_successes_only(store: Store) -> None:
    hook = await add_hook(store)
    rows = await history_rows(store, hook)
    [recent] = await publish(store, hook, state=SUCCEEDED, timestamp=T0 + LEASE)
    assert await store.prune_history(T0 + timedelta(minutes=3)) == 1
    assert await store.get_notification(hook.group_key, hook.webhook_id, rows["ok"]) is None
    for kept in (rows["failed"], rows["pay"], recent):
        assert await store.get_notification(hook.group_key, hook.webhook_id, kept) is not None
    assert await store.prune_history(T0 + timedelta(minutes=3)) == 0


async def test_delivery_stats(store: Store) -> None:
    assert await store.delivery_stats(T0) == {
        "pending": 0, "parked": 0, "waiting": 0, "failed": 0, "succeeded": 0,
        "overdue_seconds": 0,
    }  # fmt: skip
    hook = await add_hook(store)
    await publish(store, hook, 2, next_attempt_at=T0 - timedelta(seconds=30))
    await publish(store, hook, next_attempt_at=T0)
    # Older, but its retry is not due yet: it is not overdue.
    await publish(store, hook, created=T0 - timedelta(hours=2), next_attempt_at=T0 + LEASE)
    await publish(store, await add_paused(store), next_attempt_at=T0 - timedelta(hours=1))
    await publish(store, hook, 3, state=SUCCEEDED)
    # A Strict webhook's queue: its head pending, the others waiting behind it.
    await publish(store, await add_hook(store, delivery_order=STRICT), 3, created=T0)
    assert await store.delivery_stats(T0) == {
        "pending": 5, "parked": 1, "waiting": 2, "failed": 0, "succeeded": 3,
        "overdue_seconds": 30,
    }  # fmt: skip


# -- SQLite specifics -------------------------------------------------------------------------


def schema(path: Path) -> tuple[set[str], list[int]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        versions = [row[0] for row in db.execute("SELECT version FROM schema_migrations")]
    return names, versions


async def test_migrating_an_empty_sqlite_file_gives_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "gateway.db"
    async with SqliteStore(path) as opened:
        assert opened.applied_migrations == migration_versions(MIGRATIONS) != []
        assert await opened.migrate() == []
    names, versions = schema(path)
    core = {"api_keys", "webhooks", "webhook_rules", "events", "notifications", "notifications_due"}
    assert core | declared_objects(MIGRATIONS) | {"schema_migrations"} <= names
    assert versions == migration_versions(MIGRATIONS)
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_open_applies_only_the_missing_migrations(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    first = sorted(MIGRATIONS.glob("*.sql"))[0]
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(first.read_text())
        db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)")
        db.execute("INSERT INTO schema_migrations VALUES (1, '2024-01-01')")
        db.commit()
    async with SqliteStore(path) as opened:
        assert opened.applied_migrations == migration_versions(MIGRATIONS)[1:]
    names, versions = schema(path)
    assert declared_objects(MIGRATIONS) <= names and versions == migration_versions(MIGRATIONS)


async def test_opening_sqlite_again_keeps_data_and_applies_nothing(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    async with SqliteStore(path) as first:
        hook = await add_hook(first)
        await first.open()  # already open: nothing happens
    async with SqliteStore(path) as second:
        assert second.applied_migrations == []
        assert await second.get_webhook(hook.group_key, hook.webhook_id) == hook


async def test_a_database_without_this_gateways_schema_is_not_ready(store: Store) -> None:
    """Readiness: a database dropped and made again empty while the gateway ran answers its
    pings, but every request would fail."""
    await store.ping()
    latest = "(SELECT max(version) FROM schema_migrations)"
    await store._write(f"DELETE FROM schema_migrations WHERE version = {latest}", {})
    with pytest.raises(StoreError, match="lacks this gateway's schema"):
        await store.ping()
    await store._write("DROP TABLE schema_migrations", {})
    with pytest.raises(StoreError):
        await store.ping()


async def test_a_new_sqlite_database_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    """It holds client secrets and signing keys; its WAL holds them too. A file that exists
    keeps the mode its operator gave it."""
    path = tmp_path / "new.db"
    async with SqliteStore(path) as store:
        await add_hook(store)
        assert modes(tmp_path) == {"new.db": 0o600, "new.db-wal": 0o600, "new.db-shm": 0o600}
    shared = tmp_path / "shared.db"
    os.close(os.open(shared, os.O_CREAT | os.O_RDONLY))
    os.chmod(shared, 0o640)  # whatever the umask
    async with SqliteStore(shared):
        pass
    assert modes(tmp_path)["shared.db"] == 0o640


def modes(directory: Path) -> dict[str, int]:
    """Each file's permission bits, by name."""
    return {path.name: path.stat().st_mode & 0o777 for path in directory.iterdir()}


async def test_a_sqlite_write_waits_while_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    async with SqliteStore(path) as store:
        hook = make_webhook()
        other = sqlite3.connect(path, isolation_level=None)  # as another process would
        try:
            other.execute("BEGIN IMMEDIATE")
            writing = asyncio.create_task(store.add_webhooks([hook]))
            claiming = asyncio.create_task(store.claim_due(T0, 10, "w", T0 + LEASE))
            await asyncio.sleep(0.05)
            # Neither failed nor went past the other's lock.
            assert not writing.done() and not claiming.done()
            other.execute("COMMIT")
            await writing
            assert await claiming == []
        finally:
            other.close()
        assert await store.get_webhook(hook.group_key, hook.webhook_id) == hook


async def test_a_sqlite_write_gives_up_after_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    async with SqliteStore(path, busy_timeout=0.05) as store:
        hook = make_webhook()
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreError, match="locked"):
                await store.add_webhooks([hook])
            with pytest.raises(StoreError, match="locked"):  # a write run whole on the thread
                await store.claim_due(T0, 10, "w", T0 + LEASE)
            other.execute("COMMIT")
        finally:
            other.close()
        assert await store.get_webhook(hook.group_key, hook.webhook_id) is None
        await store.add_webhooks([hook])  # the writer is usable again
        assert await store.get_webhook(hook.group_key, hook.webhook_id) == hook


async def test_a_closed_sqlite_store_raises_store_error(tmp_path: Path) -> None:
    closed = SqliteStore(tmp_path / "gateway.db")
    with pytest.raises(StoreError):
        await closed.ping()


def test_store_for_url(tmp_path: Path) -> None:
    absolute = store_for_url(f"sqlite:///{tmp_path}/a.db")
    assert isinstance(absolute, SqliteStore) and absolute.path == tmp_path / "a.db"
    relative = store_for_url("sqlite:///data/gateway.db")
    assert isinstance(relative, SqliteStore) and relative.path == Path("data/gateway.db")
    assert isinstance(store_for_url("memory://"), ThrowawaySqliteStore)
    for url in ("postgresql://postgres@127.0.0.1/db", "postgres://u:p@db.example/gateway"):
        found = store_for_url(url)
        assert isinstance(found, PostgresStore) and found.url == url
    for bad in ("sqlite://", "mysql://db/x"):
        with pytest.raises(StoreError):
            store_for_url(bad)


async def test_a_memory_store_is_a_throwaway_sqlite_database_of_its_own() -> None:
    store = store_for_url("memory://")
    assert isinstance(store, ThrowawaySqliteStore)
    async with store:
        hook = await add_hook(store)
        assert store.path.is_file()
        async with store_for_url("memory://") as other:
            assert await other.get_webhook(hook.group_key, hook.webhook_id) is None
    assert not store.path.parent.exists()  # gone with its directory


async def test_an_edit_keeps_a_failure_count_recorded_after_it_read(store: Store) -> None:
    hook = await add_hook(store, retry_count=5)
    [notification_id] = await publish(store, hook)
    await store.claim_due(T0, 1, "w", T0 + LEASE)
    await store.record_attempts([failure(notification_id, "w")])
    after = await store.edit_webhook(
        hook.group_key, hook.webhook_id, WebhookEdit({"name": "renamed"}), T0
    )
    assert after is not None and (after.name, after.failure_count) == ("renamed", 1)
    edit = WebhookEdit({}, status=ACTIVATE)
    reset = await store.edit_webhook(hook.group_key, hook.webhook_id, edit, T0)
    assert reset is not None and reset.failure_count == 0


async def test_a_handshake_nonce_is_taken_once(store: Store) -> None:
    assert await store.take_handshake_nonce("n1", T0)
    assert not await store.take_handshake_nonce("n1", T0 + LEASE)
    assert await store.take_handshake_nonce("n2", T0)


async def test_prune_handshake_nonces_forgets_only_the_expired(store: Store) -> None:
    assert await store.take_handshake_nonce("old", T0)
    assert await store.take_handshake_nonce("new", T0 + LEASE)
    assert await store.prune_handshake_nonces(T0 - timedelta(microseconds=1)) == 0
    assert await store.prune_handshake_nonces(T0) == 1  # expired at T0, so gone by T0
    assert await store.take_handshake_nonce("old", T0 + LEASE)  # forgotten
    assert not await store.take_handshake_nonce("new", T0 + LEASE)  # kept
