"""What only the PostgreSQL store promises: migrations, and several processes on one database.

Each "process" here is a store with its own connection pool, as a `gateway` process would have;
they run concurrently in one event loop, so their transactions really interleave on the server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import pytest

from gateway import notices
from gateway.errors import StoreError
from gateway.models import DeliveryOrder, Webhook, utcnow
from gateway.store import store_for_url
from gateway.store.base import WebhookEdit
from gateway.store.postgres import MIGRATIONS, POOL_SIZE, PostgresStore
from tests.factories import T0, make_event, make_notification, make_rule, make_webhook
from tests.gateway_server import gateway_settings, run_gateway
from tests.integration.test_store_contract import (
    ACTIVATE,
    LEASE,
    PAUSE,
    add_hook,
    failure,
    publish,
)
from tests.migrations import declared_objects, migration_versions
from tests.postgres import notification_updates

pytestmark = pytest.mark.postgres


async def schema_objects(url: str) -> tuple[set[str], list[int]]:
    conn = await asyncpg.connect(url)
    try:
        names = {
            row[0]
            for row in await conn.fetch(
                "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace"
            )
        }
        versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")]
    finally:
        await conn.close()
    return names, sorted(versions)


async def test_migrating_an_empty_schema_gives_the_current_schema(postgres_url: str) -> None:
    async with PostgresStore(postgres_url) as opened:
        assert opened.applied_migrations == migration_versions(MIGRATIONS) != []
        assert await opened.migrate() == []
        hook = await add_hook(opened)
    names, versions = await schema_objects(postgres_url)
    core = {"api_keys", "webhooks", "webhook_rules", "events", "notifications"}
    assert core | declared_objects(MIGRATIONS) | {"schema_migrations"} <= names
    assert versions == migration_versions(MIGRATIONS)
    async with PostgresStore(postgres_url) as again:
        assert again.applied_migrations == []
        assert await again.get_webhook(hook.group_key, hook.webhook_id) == hook


async def test_processes_starting_together_apply_each_migration_once(postgres_url: str) -> None:
    stores = [PostgresStore(postgres_url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        applied = sorted(v for s in stores for v in s.applied_migrations)
        assert applied == migration_versions(MIGRATIONS)
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_an_unreachable_database_is_a_store_error() -> None:
    with pytest.raises(StoreError):
        # Port 9 (discard) on loopback: nothing listens there.
        await PostgresStore("postgresql://postgres@127.0.0.1:9/none").open()


async def test_concurrent_publishers_never_share_a_sequence_number(postgres_url: str) -> None:
    stores = [PostgresStore(postgres_url) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        one = await add_hook(stores[0])
        two = await add_hook(stores[0], one.group_key)

        async def publish_many(store: PostgresStore) -> list[UUID]:
            ids = []
            for _ in range(10):
                event = make_event(one.group_key)
                # Both webhooks in both orders, so unordered row locks would deadlock.
                hooks = [one, two, two, one]
                notes = [make_notification(h, event, next_attempt_at=T0) for h in hooks]
                await store.add_events([event], notes)
                ids += [n.notification_id for n in notes if n.webhook_id == one.webhook_id]
            return ids

        batches = await asyncio.gather(*(publish_many(s) for s in stores))
        sequences = []
        for notification_id in (n for batch in batches for n in batch):
            found = await stores[1].get_notification(one.group_key, one.webhook_id, notification_id)
            assert found is not None
            sequences.append(found.sequence)
        assert sorted(sequences) == list(range(1, 61))
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_concurrent_claims_never_take_the_same_notification(postgres_url: str) -> None:
    stores = [PostgresStore(postgres_url) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        hooks = [await add_hook(stores[0]) for _ in range(4)]
        published = {n for hook in hooks for n in await publish(stores[0], hook, 50)}

        async def claim_all(store: PostgresStore, owner: str) -> list[UUID]:
            claimed: list[UUID] = []
            while batch := await store.claim_due(T0, 7, owner, T0 + LEASE):
                claimed += [n.notification_id for n in batch]
            return claimed

        results = await asyncio.gather(*(claim_all(s, f"w{i}") for i, s in enumerate(stores)))
        every = [n for claimed in results for n in claimed]
        assert len(every) == len(set(every)) == len(published)
        assert set(every) == published
        assert all(results), "each process got a share"
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_new_work_in_one_process_wakes_the_workers_of_another(postgres_url: str) -> None:
    async with PostgresStore(postgres_url) as api, PostgresStore(postgres_url) as worker:
        woken = asyncio.Event()
        await worker.watch_new_work(woken.set)
        hook = await add_hook(api)
        await publish(api, hook)
        async with asyncio.timeout(10):
            await woken.wait()


async def count(url: str, where: str) -> int:
    """How many of the database's connections (the test's own aside) match `where`."""
    conn = await asyncpg.connect(url)
    try:
        found: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            f"AND pid <> pg_backend_pid() AND {where}"
        )
        return found
    finally:
        await conn.close()


def test_store_for_url_sizes_the_pool(postgres_url: str) -> None:
    default, sized = store_for_url(postgres_url), store_for_url(postgres_url, pool_size=3)
    assert isinstance(default, PostgresStore) and isinstance(sized, PostgresStore)
    assert (default.pool_size, sized.pool_size) == (POOL_SIZE, 3)


async def test_the_pool_opens_at_most_database_pool_size_connections(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = gateway_settings(tmp_path, database_url=postgres_url, database_pool_size=2)
    async with run_gateway(settings) as gateway:
        store = gateway.ctx.store
        hook = await add_hook(store)
        blocker = await asyncpg.connect(postgres_url)
        try:
            async with blocker.transaction():
                await blocker.execute("LOCK TABLE webhooks IN ACCESS EXCLUSIVE MODE")
                # Four reads at once, each needing a connection, all held up by the lock.
                reads = [asyncio.create_task(store.get_webhook(hook.group_key, hook.webhook_id))
                         for _ in range(4)]  # fmt: skip
                async with asyncio.timeout(10):
                    while await count(postgres_url, "wait_event_type = 'Lock'") < 2:
                        await asyncio.sleep(0.02)
            assert await asyncio.gather(*reads) == [hook] * 4
        finally:
            await blocker.close()
        # A pool of 10 would have opened one connection per read; this one shared two.
        assert await count(postgres_url, "backend_type = 'client backend'") == 2


async def test_claims_rewrite_their_rows_in_place(postgres_url: str) -> None:
    """A claim is a heap-only update: no index covers the lease it writes and the row's page
    has room (migration 0015). Claims that added an entry to every index cost three times as
    much server time (issue 21)."""
    async with PostgresStore(postgres_url) as store:
        hook = await add_hook(store)
        published = await publish(store, hook, 300)
    async with PostgresStore(postgres_url) as store:
        claimed = []
        while batch := await store.claim_due(T0, 50, "w", T0 + LEASE):
            claimed += [n.notification_id for n in batch]
    assert sorted(claimed) == sorted(published)
    # The stores closed, so their backends have exited and reported every update.
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await notification_updates(conn, len(published)) == (300, 300)
    finally:
        await conn.close()


async def test_a_publish_inserts_its_rows_in_one_statement_a_table(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events and notifications go in as one INSERT over arrays each (postgres_queries.unnested),
    not one per row through executemany, which cost the server more in messages than in
    inserting; Strict webhooks' rows (INSERT_WAITING, with its constant) too. Each row reads
    back as it was given."""
    async with PostgresStore(postgres_url) as store:
        group = uuid4()
        strict = await add_hook(store, group, delivery_order=DeliveryOrder.STRICT)
        unordered = await add_hook(store, group)
        events = [make_event(group, created=T0, records=({"id": str(i)},)) for i in range(3)]
        notes = [
            make_notification(hook, event, next_attempt_at=T0)
            for event in events
            for hook in (strict, unordered)
        ]
        many: list[str] = []

        async def executemany(self: asyncpg.Connection, query: str, *args: object) -> None:
            many.append(query)

        monkeypatch.setattr(asyncpg.Connection, "executemany", executemany)
        await store.add_events(events, notes)
        assert many == []
        for given in notes:
            stored = await store.get_notification(group, given.webhook_id, given.notification_id)
            assert stored is not None
            assert (stored.event_id, stored.records, stored.created) == (
                given.event_id, given.records, given.created)  # fmt: skip
        heads = await store.claim_due(T0, 10, "w", T0 + LEASE)
    # The Strict webhook's first is due, the rest wait in its queue; the other's are all due.
    assert sorted(n.sequence for n in heads if n.webhook_id == strict.webhook_id) == [1]
    assert len([n for n in heads if n.webhook_id == unordered.webhook_id]) == 3


async def test_a_connection_goes_back_to_the_pool_without_a_reset_query(postgres_url: str) -> None:
    """The pool sends nothing on release (asyncpg's default reset query was a round trip for
    each transaction): each idle connection's last statement is the store's own."""
    async with PostgresStore(postgres_url) as store:
        hook = await add_hook(store)
        await asyncio.gather(*(publish(store, hook) for _ in range(4)))
        conn = await asyncpg.connect(postgres_url)
        try:
            last = [row[0] for row in await conn.fetch(
                "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )]  # fmt: skip
        finally:
            await conn.close()
    assert last and not [query for query in last if "RESET ALL" in query]
    assert "COMMIT;" in last  # as asyncpg ends a transaction


async def test_status_changes_beside_publishes_to_a_notice_subscriber_never_deadlock(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A pause publishes a lifecycle notice, which locks the group's notice subscriber; a
    publish to the group locks every webhook it reaches in id order, the subscriber (lowest id)
    first. Locked one after the other, the two deadlocked: 16 times in a 20 s probe over HTTP,
    each costing a publish a second. Bounded: two seconds of both at once."""

    async def pausing(store: PostgresStore, hook: Webhook) -> int:
        for change in (PAUSE, ACTIVATE):
            await store.edit_webhook(
                hook.group_key, hook.webhook_id, WebhookEdit({}, status=change), utcnow()
            )
        return 2

    await _beside_publishes(postgres_url, caplog, pausing)


async def test_failures_that_error_webhooks_beside_publishes_to_a_notice_subscriber_never_deadlock(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The same with a worker's failures making the webhooks Errored (and their owner
    reactivating them): the settlement locks the subscriber with them, in one order."""

    async def failing(store: PostgresStore, hook: Webhook) -> int:
        owner = f"w-{hook.webhook_id}"
        due = await store.claim_due(
            utcnow(), 50, owner, utcnow() + LEASE, exclude_webhooks=[SUBSCRIBER]
        )
        recorded = await store.record_attempts([failure(n.notification_id, owner) for n in due])
        await store.edit_webhook(
            hook.group_key, hook.webhook_id, WebhookEdit({}, status=ACTIVATE), utcnow()
        )
        return len(recorded.changes)

    await _beside_publishes(postgres_url, caplog, failing)


SUBSCRIBER = UUID(int=1)  # the lowest id: a publish locks it first


async def _beside_publishes(
    postgres_url: str,
    caplog: pytest.LogCaptureFixture,
    change: Callable[[PostgresStore, Webhook], Awaitable[int]],
) -> None:
    """Three publishers to a group of five webhooks, one of them subscribed to its lifecycle
    notices, beside `change` run over and over on each of the other four (it says how many
    status changes it made), for two seconds: no transaction may deadlock."""
    caplog.set_level(logging.INFO, logger="gateway.store.postgres_retry")
    group = uuid4()
    subscriber = make_webhook(group, webhook_id=SUBSCRIBER)
    others = [make_webhook(group, webhook_id=UUID(int=2**127 + i), retry_count=0) for i in range(4)]
    hooks = [subscriber, *others]
    notice_rule = make_rule(subscriber, table_key=notices.TABLE_KEY, event_type=notices.EVENT_TYPE)
    published, changed = [0], [0]
    async with PostgresStore(postgres_url, pool_size=8) as store:
        await store.add_webhooks(hooks, rules=[*map(make_rule, hooks), notice_rule])
        end = asyncio.get_running_loop().time() + 2.0

        async def publishing() -> None:
            while asyncio.get_running_loop().time() < end:
                event = make_event(group)
                await store.add_events([event], [make_notification(h, event) for h in hooks])
                published[0] += 1

        async def changing(hook: Webhook) -> None:
            while asyncio.get_running_loop().time() < end:
                changed[0] += await change(store, hook)

        await asyncio.gather(*[publishing() for _ in range(3)], *map(changing, others))
    assert published[0] > 20 and changed[0] > 20  # both ran, many times
    retried = [r.getMessage() for r in caplog.records if "Deadlock" in r.getMessage()]
    assert retried == []
