"""The store contract for authentications, on every store of tests/integration/
test_store_contract.py: scoped to their group, replaced whole, refused deletion while a webhook
uses one, listed by every field a query may name, and never left dangling under a webhook."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import asyncpg
import pytest

from gateway import wire
from gateway.errors import Conflict, StoreError, ValidationError
from gateway.models import AuthenticationKind
from gateway.store import Store
from gateway.store.base import Query
from gateway.store.postgres import PostgresStore
from tests.factories import T0, make_authentication
from tests.integration.test_store_contract import (
    LEASE,
    STORE_MARKS,
    STORES,
    add_hook,
    answers_every_field,
    query,
)

FIELDS = wire.AuthenticationModel.queryable()


@pytest.fixture(params=[pytest.param(name, marks=STORE_MARKS.get(name, [])) for name in STORES])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    async with STORES[request.param](request) as opened:
        yield opened


async def test_an_authentication_is_found_in_its_own_group_only(store: Store) -> None:
    auth = make_authentication()
    await store.add_authentications([auth])
    assert await store.get_authentication(auth.group_key, auth.authentication_id) == auth
    assert await store.get_authentication(uuid4(), auth.authentication_id) is None
    assert await store.get_authentication(auth.group_key, uuid4()) is None


async def test_a_batch_is_added_whole_or_not_at_all(store: Store) -> None:
    first = make_authentication()
    again = dataclasses.replace(make_authentication(first.group_key),
                                authentication_id=first.authentication_id)  # fmt: skip
    with pytest.raises(StoreError):
        await store.add_authentications([make_authentication(first.group_key), first, again])
    assert (await store.query_authentications(first.group_key, Query())).total_count == 0


async def test_an_update_replaces_it_and_names_the_webhooks_that_use_it(store: Store) -> None:
    auth = make_authentication()
    await store.add_authentications([auth])
    users = [await add_hook(store, auth.group_key, authentication_id=auth.authentication_id)
             for _ in range(2)]  # fmt: skip
    await add_hook(store, auth.group_key)  # another webhook of the group, without it
    changed = dataclasses.replace(
        auth, name="renamed", kind=AuthenticationKind.HEADER, username=None,
        header_name="X-Api-Key", sealed_secret="v1.other", modified=T0 + LEASE,
    )  # fmt: skip
    found = await store.update_authentication(changed)
    assert sorted(found or []) == sorted(h.webhook_id for h in users)
    assert await store.get_authentication(auth.group_key, auth.authentication_id) == changed


async def test_an_update_in_another_group_changes_nothing(store: Store) -> None:
    auth = make_authentication()
    await store.add_authentications([auth])
    planted = dataclasses.replace(auth, group_key=uuid4(), name="planted")
    assert await store.update_authentication(planted) is None
    assert await store.get_authentication(auth.group_key, auth.authentication_id) == auth


async def test_one_in_use_is_not_deleted_and_its_webhooks_are_named(store: Store) -> None:
    auth = make_authentication()
    await store.add_authentications([auth])
    hook = await add_hook(store, auth.group_key, name="orders",
                          authentication_id=auth.authentication_id)  # fmt: skip
    with pytest.raises(Conflict) as refused:
        await store.delete_authentication(auth.group_key, auth.authentication_id)
    assert str(hook.webhook_id) in refused.value.detail and "'orders'" in refused.value.detail
    assert await store.get_authentication(auth.group_key, auth.authentication_id) == auth
    assert await store.delete_webhook(hook.group_key, hook.webhook_id)
    assert await store.delete_authentication(auth.group_key, auth.authentication_id)
    assert await store.get_authentication(auth.group_key, auth.authentication_id) is None
    assert not await store.delete_authentication(auth.group_key, auth.authentication_id)


async def test_another_groups_delete_finds_nothing(store: Store) -> None:
    auth = make_authentication()
    await store.add_authentications([auth])
    assert not await store.delete_authentication(uuid4(), auth.authentication_id)
    assert await store.get_authentication(auth.group_key, auth.authentication_id) == auth


async def test_a_webhook_cannot_name_an_authentication_that_is_not_stored(store: Store) -> None:
    """The API refuses it first; the store refuses what slips past (one deleted meanwhile)
    with the same 400, read in the writing transaction, before the foreign key would."""
    with pytest.raises(ValidationError, match="no authentication"):
        await add_hook(store, authentication_id=uuid4())


async def test_queries_filter_and_order_by_every_field(store: Store) -> None:
    group = uuid4()
    made = [
        make_authentication(group, name="a", username="u1", modified=T0 + 3 * LEASE),
        make_authentication(group, name="b'", kind=AuthenticationKind.HEADER, username=None,
                            header_name="X-Api-Key", created=T0, modified=T0 + 4 * LEASE),
    ]  # fmt: skip
    await store.add_authentications([*made, make_authentication(name="another group's")])

    async def listing(q: Query) -> list[UUID]:
        page = await store.query_authentications(group, q)
        return [a.authentication_id for a in page.records]

    shown = {a.authentication_id: wire.authentication(a) for a in made}
    await answers_every_field(FIELDS, shown, listing)
    assert await listing(query("kind eq 'Header'", FIELDS)) == [made[1].authentication_id]
    assert await listing(query(order="name desc", fields=FIELDS, page_size=1, page_number=1)) == [
        made[0].authentication_id]  # fmt: skip
    page = await store.query_authentications(group, Query(page_size=1))
    assert page.total_count == 2
    assert "sealedsecret" not in FIELDS and "password" not in FIELDS


@pytest.mark.postgres
async def test_other_processes_hear_of_the_webhooks_an_update_changes(postgres_url: str) -> None:
    """On PostgreSQL the update tells every process's workers, as an owner's change of a
    webhook does (`watch_webhook_changes`)."""
    async with PostgresStore(postgres_url) as api, PostgresStore(postgres_url) as worker:
        heard: asyncio.Queue[UUID | None] = asyncio.Queue()
        await worker.watch_webhook_changes(heard.put_nowait)
        auth = make_authentication()
        await api.add_authentications([auth])
        hook = await add_hook(api, auth.group_key, authentication_id=auth.authentication_id)
        await api.update_authentication(dataclasses.replace(auth, name="renamed"))
        async with asyncio.timeout(10):
            while (changed := await heard.get()) != hook.webhook_id:
                assert changed is None  # only "any may have changed" (a reconnect) besides


@pytest.mark.postgres
async def test_a_delete_racing_a_webhook_that_names_it_is_refused_as_in_use(
    postgres_url: str,
) -> None:
    """A webhook write holds its authentication (FOR SHARE) until it commits. A DELETE that
    read no users before that commit would then fail the foreign key (a StoreError, 503); it
    holds the authentication first instead, so it reads the users after the commit: a 409."""
    async with PostgresStore(postgres_url) as store:
        auth = make_authentication()
        await store.add_authentications([auth])
        hook = await add_hook(store, auth.group_key)
        writer = await asyncpg.connect(postgres_url)
        try:
            async with writer.transaction():
                await writer.execute(
                    "SELECT 1 FROM authentications WHERE authentication_id = $1 FOR SHARE",
                    auth.authentication_id,
                )
                deleting = asyncio.create_task(
                    store.delete_authentication(auth.group_key, auth.authentication_id)
                )
                await _waits_for_a_lock(writer)
                await writer.execute(
                    "UPDATE webhooks SET authentication_id = $1 WHERE webhook_id = $2",
                    auth.authentication_id, hook.webhook_id,
                )  # fmt: skip
            with pytest.raises(Conflict, match=str(hook.webhook_id)):
                await asyncio.wait_for(deleting, 10)
        finally:
            await writer.close()
        assert await store.get_authentication(auth.group_key, auth.authentication_id) == auth


async def _waits_for_a_lock(conn: asyncpg.Connection) -> None:
    """Return once another session of this database is waiting for a row lock."""
    async with asyncio.timeout(10):
        while not await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        ):
            await asyncio.sleep(0.01)
