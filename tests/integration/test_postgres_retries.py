"""Transactions against a real PostgreSQL that deadlock, conflict or lose their connection.

The conflicts are real: two transactions lock two rows in opposite orders until the server
picks a victim, or a REPEATABLE READ transaction updates a row changed after its snapshot.
Connections are ended by the server (`pg_terminate_backend`), or by a loopback proxy
(tests/pg_proxy.py) that refuses them as they open or cuts them at COMMIT.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway.errors import StoreError
from gateway.store import postgres_retry
from gateway.store.postgres_retry import atomically, reading
from tests.pg_proxy import Proxy

pytestmark = pytest.mark.postgres
WAIT = 10.0  # seconds any step of these tests may wait for the other transaction


@contextlib.asynccontextmanager
async def pool_on(url: str, size: int = 2, **settings: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=size, server_settings=settings)
    try:
        await pool.execute("CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY, n int NOT NULL)")
        yield pool
    finally:
        await pool.close()


async def counts(pool: asyncpg.Pool) -> dict[int, int]:
    return {row["id"]: row["n"] for row in await pool.fetch("SELECT id, n FROM t")}


async def test_the_victim_of_a_real_deadlock_is_run_again(postgres_url: str) -> None:
    async with pool_on(postgres_url, deadlock_timeout="100ms") as pool:
        await pool.execute("INSERT INTO t VALUES (1, 0), (2, 0)")
        both_hold_one = asyncio.Barrier(2)
        tries: Counter[str] = Counter()

        def crossing(name: str, first: int, second: int) -> postgres_retry.Work[None]:
            async def work(conn: asyncpg.Connection) -> None:
                tries[name] += 1
                await conn.execute("UPDATE t SET n = n + 1 WHERE id = $1", first)
                if tries[name] == 1:  # the first tries cross; a second try just waits its turn
                    async with asyncio.timeout(WAIT):
                        await both_hold_one.wait()
                await conn.execute("UPDATE t SET n = n + 1 WHERE id = $1", second)

            return work

        await asyncio.gather(atomically(pool, crossing("a", 1, 2)),
                             atomically(pool, crossing("b", 2, 1)))  # fmt: skip
        assert max(tries.values()) >= 2  # the victim ran again
        assert await counts(pool) == {1: 2, 2: 2}  # and each transaction applied once


async def test_a_real_serialization_failure_is_run_again(postgres_url: str) -> None:
    async with pool_on(postgres_url, default_transaction_isolation="repeatable read") as pool:
        await pool.execute("INSERT INTO t VALUES (1, 0)")
        tries = 0

        async def work(conn: asyncpg.Connection) -> int:
            nonlocal tries
            tries += 1
            seen: int = await conn.fetchval("SELECT n FROM t WHERE id = 1")  # the snapshot
            if tries == 1:
                await pool.execute("UPDATE t SET n = n + 10 WHERE id = 1")  # commits after it
            await conn.execute("UPDATE t SET n = $1 WHERE id = 1", seen + 1)
            return seen

        assert await atomically(pool, work) == 10  # the second try saw the other's update
        assert tries == 2
        assert await counts(pool) == {1: 11}


async def test_tries_are_bounded_and_end_in_a_store_error(postgres_url: str) -> None:
    async with pool_on(postgres_url) as pool:
        tries = 0

        async def always_conflicts(conn: asyncpg.Connection) -> None:
            nonlocal tries
            tries += 1
            await conn.execute("INSERT INTO t VALUES ($1, 0)", tries)
            await conn.execute(
                "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = 'serialization_failure';"
                " END $$"
            )

        with pytest.raises(StoreError) as caught:
            await atomically(pool, always_conflicts)
        assert isinstance(caught.value.__cause__, asyncpg.exceptions.SerializationError)
        assert tries == postgres_retry.TRIES
        assert await counts(pool) == {}  # every try was rolled back


async def test_any_other_error_is_not_run_again(postgres_url: str) -> None:
    async with pool_on(postgres_url) as pool:
        tries = 0

        async def duplicate(conn: asyncpg.Connection) -> None:
            nonlocal tries
            tries += 1
            await conn.execute("INSERT INTO t VALUES (1, 0), (1, 0)")

        with pytest.raises(StoreError, match="duplicate key"):
            await atomically(pool, duplicate)
        assert tries == 1


async def terminate(admin: asyncpg.Pool, conn: asyncpg.Connection) -> None:
    """End `conn`'s server process, as an operator's pg_terminate_backend would."""
    # The second argument waits (up to 5 s) until the process has really gone.
    assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", conn.get_server_pid())


async def terminate_while_running(admin: asyncpg.Pool, conn: asyncpg.Connection) -> None:
    """End `conn`'s server process while it runs a statement (a sleep, for as long as that
    takes to see); the server answers the statement with its FATAL error and hangs up."""
    pid = conn.get_server_pid()

    async def when_sleeping() -> None:
        async with asyncio.timeout(WAIT):
            while not await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'",
                pid,
            ):
                await asyncio.sleep(0.01)
        await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)

    killer = asyncio.create_task(when_sleeping())
    try:
        await conn.execute("SELECT pg_sleep(30)")
    finally:
        await killer


@pytest.mark.parametrize(
    "when", ["between-statements", "mid-statement", "after-the-last-statement"]
)
async def test_a_transaction_whose_connection_is_lost_before_commit_is_run_again(
    postgres_url: str, when: str
) -> None:
    async with pool_on(postgres_url) as pool, pool_on(postgres_url, size=1) as admin:
        tries = 0

        async def work(conn: asyncpg.Connection) -> str:
            nonlocal tries
            tries += 1
            await conn.execute("INSERT INTO t VALUES (1, $1)", tries)
            if tries == 1 and when == "mid-statement":
                await terminate_while_running(admin, conn)
            elif tries == 1:
                await terminate(admin, conn)
            if when != "after-the-last-statement":
                await conn.execute("UPDATE t SET n = n + 10 WHERE id = 1")
            return "done"

        assert await atomically(pool, work) == "done"
        assert tries == 2
        # The first try's writes died with its connection.
        assert await counts(pool) == {1: 2 if when == "after-the-last-statement" else 12}


async def test_a_read_whose_connection_was_lost_is_run_again(postgres_url: str) -> None:
    async with pool_on(postgres_url, size=1) as pool, pool_on(postgres_url, size=1) as admin:
        await pool.execute("INSERT INTO t VALUES (1, 7)")
        tries = 0

        async def read(conn: asyncpg.Connection) -> int:
            nonlocal tries
            tries += 1
            if tries == 1:
                await terminate(admin, conn)
            value: int = await conn.fetchval("SELECT n FROM t WHERE id = 1")
            return value

        assert await reading(pool, read) == 7
        assert tries == 2


@pytest.mark.parametrize(
    ("answer_only", "expected_tries", "expected_rows"),
    [(True, 1, {1: 1}), (False, 2, {2: 1})],
    ids=["committed-answer-lost", "commit-never-arrived"],
)
async def test_an_unanswered_commit_is_looked_up_and_never_applied_twice(
    postgres_url: str, answer_only: bool, expected_tries: int, expected_rows: dict[int, int]
) -> None:
    async with (
        Proxy(postgres_url, answer_only=answer_only) as proxy,
        pool_on(proxy.url, size=1) as pool,
        pool_on(postgres_url, size=1) as direct,
    ):
        tries = 0

        async def work(conn: asyncpg.Connection) -> str:
            nonlocal tries
            tries += 1
            await conn.execute("INSERT INTO t VALUES ($1, 1)", tries)
            proxy.armed = tries == 1
            return f"try {tries}"

        # Committed: its result stands. Never arrived: the server rolled it back, and it ran again.
        assert await atomically(pool, work) == f"try {expected_tries}"
        assert proxy.cut.is_set()
        assert tries == expected_tries
        assert await counts(direct) == expected_rows


async def test_a_connection_refused_as_it_opens_is_tried_again(postgres_url: str) -> None:
    async with Proxy(postgres_url) as proxy, pool_on(proxy.url, size=1) as pool:
        await pool.execute("INSERT INTO t VALUES (1, 7)")
        await pool.expire_connections()  # the next read needs a new connection
        proxy.refuse = 2
        assert await reading(pool, lambda conn: conn.fetchval("SELECT n FROM t")) == 7
        assert proxy.refuse == 0


async def test_an_unanswered_commit_of_a_transaction_that_wrote_nothing_keeps_its_reads(
    postgres_url: str,
) -> None:
    async with Proxy(postgres_url) as proxy, pool_on(proxy.url, size=1) as pool:
        tries = 0

        async def work(conn: asyncpg.Connection) -> int:
            nonlocal tries
            tries += 1
            proxy.armed = tries == 1
            found: int = await conn.fetchval("SELECT count(*) FROM t")
            return found

        assert await atomically(pool, work) == 0
        assert proxy.cut.is_set()
        assert tries == 1  # it had no transaction id: nothing was left to commit
