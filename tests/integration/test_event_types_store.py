"""The store contract of the event-type catalogue, on every store of the contract suite
(tests/integration/test_store_contract.py's STORES)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from gateway import wire
from gateway.errors import Conflict
from gateway.models import EventType
from gateway.store import Store
from gateway.store.base import Query
from tests.factories import T0, make_event_type
from tests.integration.test_store_contract import STORE_MARKS, STORES, answers_every_field, query

FIELDS = wire.EventTypeModel.queryable()
SCHEMA = {
    "type": "object",
    "properties": {"total": {"type": "number", "minimum": 0}, "naïve": {"const": 1.5}},
    "required": ["total"],
}


@pytest.fixture(params=[pytest.param(name, marks=STORE_MARKS.get(name, [])) for name in STORES])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    async with STORES[request.param](request) as opened:
        yield opened


async def test_an_event_type_round_trips_every_field(store: Store) -> None:
    declared = make_event_type(
        description="An invoice changed", category="Billing", record_schema=SCHEMA,
        deprecated=True,
    )  # fmt: skip
    bare = make_event_type(declared.group_key, table_key="Payment")
    await store.add_event_types([declared, bare])
    assert await store.get_event_type(declared.group_key, declared.event_type_id) == declared
    assert await store.get_event_type(bare.group_key, bare.event_type_id) == bare
    assert await store.event_types_of_group(declared.group_key) == [declared, bare]


async def test_a_declared_pair_is_a_conflict_and_nothing_of_the_batch_is_added(
    store: Store,
) -> None:
    first = make_event_type()
    await store.add_event_types([first])
    group = first.group_key
    fresh = make_event_type(group, table_key="Payment")
    again = make_event_type(group, name="the same pair")
    with pytest.raises(Conflict) as caught:
        await store.add_event_types([fresh, again])
    assert "Invoice.U is declared already" in caught.value.detail
    assert list(caught.value.errors) == ["[1].eventType"]
    assert await store.event_types_of_group(group) == [first]
    # Twice in one batch is the same conflict.
    twice = [make_event_type(group, table_key="Order"), make_event_type(group, table_key="Order")]
    with pytest.raises(Conflict):
        await store.add_event_types(twice)
    assert await store.event_types_of_group(group) == [first]
    # The pair is declared per group; another event type of the table is another pair.
    other_group = make_event_type()
    deleted = make_event_type(group, event_type=EventType.DELETE)
    await store.add_event_types([deleted])
    await store.add_event_types([other_group])
    assert await store.event_types_of_group(group) == [deleted, first]


async def test_update_writes_what_a_patch_may_change_and_never_the_pair(store: Store) -> None:
    declared = make_event_type()
    await store.add_event_types([declared])
    changed = dataclasses.replace(
        declared, name="renamed", description="d", category="c", record_schema=SCHEMA,
        deprecated=True, modified=T0, modified_user_id=uuid4(),
    )  # fmt: skip
    assert await store.update_event_type(changed)
    assert await store.get_event_type(declared.group_key, declared.event_type_id) == changed
    moved = dataclasses.replace(changed, table_key="Payment", event_type=EventType.INSERT)
    assert await store.update_event_type(moved)
    assert await store.get_event_type(declared.group_key, declared.event_type_id) == changed
    cleared = dataclasses.replace(changed, description=None, category=None, record_schema=None)
    assert await store.update_event_type(cleared)
    assert await store.get_event_type(declared.group_key, declared.event_type_id) == cleared


async def test_another_groups_event_type_is_not_found_changed_or_deleted(store: Store) -> None:
    declared = make_event_type()
    await store.add_event_types([declared])
    stranger = uuid4()
    assert await store.get_event_type(stranger, declared.event_type_id) is None
    assert not await store.update_event_type(
        dataclasses.replace(declared, group_key=stranger, name="hijacked")
    )
    assert not await store.delete_event_type(stranger, declared.event_type_id)
    assert await store.event_types_of_group(stranger) == []
    assert (await store.query_event_types(stranger, Query())).total_count == 0
    assert await store.get_event_type(declared.group_key, declared.event_type_id) == declared
    assert await store.delete_event_type(declared.group_key, declared.event_type_id)
    assert await store.get_event_type(declared.group_key, declared.event_type_id) is None
    assert not await store.delete_event_type(declared.group_key, declared.event_type_id)


async def test_query_event_types_filters_orders_and_pages(store: Store) -> None:
    group = uuid4()
    entries = [
        make_event_type(group, table_key="Payment", category="Billing"),
        make_event_type(group, table_key="Invoice", event_type=EventType.DELETE),
        make_event_type(group, table_key="Invoice", category="Billing", deprecated=True),
    ]
    await store.add_event_types([*entries, make_event_type()])
    listed = await store.query_event_types(group, Query())
    # By table, then event type, unless asked otherwise.
    assert listed.records == [entries[1], entries[2], entries[0]] and listed.total_count == 3
    billing = await store.query_event_types(group, query("category eq 'Billing'", FIELDS))
    assert billing.records == [entries[2], entries[0]]
    live = await store.query_event_types(group, query("deprecated eq false", FIELDS))
    assert live.records == [entries[1], entries[0]]
    page = await store.query_event_types(group, query(order="tableKey desc", page_size=1))
    assert page.records == [entries[0]] and page.total_count == 3


async def test_queries_filter_and_order_by_every_field_of_an_event_type(store: Store) -> None:
    group = uuid4()
    entries = [
        make_event_type(group, name="a", description="one", category="x", created=T0,
                        modified=T0 + timedelta(seconds=3)),
        make_event_type(group, table_key="Payment", event_type=EventType.INSERT, name="b'",
                        description="two", category="y", deprecated=True,
                        created=T0 + timedelta(seconds=1), modified=T0 + timedelta(seconds=4)),
    ]  # fmt: skip
    await store.add_event_types([*entries, make_event_type()])

    async def listing(q: Query) -> list[UUID]:
        return [e.event_type_id for e in (await store.query_event_types(group, q)).records]

    shown = {e.event_type_id: wire.event_type(e) for e in entries}
    await answers_every_field(FIELDS, shown, listing)
    assert "schema" not in FIELDS  # a JSON object: neither filtered nor ordered on
