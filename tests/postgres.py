"""A PostgreSQL database for the test run, and a fresh schema in it for each test.

The run creates `gateway_test_<hex>` on 127.0.0.1:5432 (user postgres; GATEWAY_TEST_POSTGRES_URL
names another server) and drops it at the end. Each test gets an empty schema of its own, named
in the URL (`?search_path=...`, which asyncpg passes to the server), so stores opened on it, in
this process or in a `gateway` subprocess, migrate into that schema.

Without a reachable server the PostgreSQL tests skip, saying why; under CI (CI=true) they fail.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import asyncpg
import pytest

ADMIN_URL = os.environ.get(
    "GATEWAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CONNECT_TIMEOUT = 5.0
T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a loop of its own, in another thread, so that it works
    whether or not the caller's thread is running an event loop (fixtures are called both ways)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def with_database(url: str, database: str, **query: str) -> str:
    """The same server URL, naming another database (and query parameters)."""
    parts = urlsplit(url)
    encoded = "&".join(f"{k}={v}" for k, v in query.items())
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", encoded, ""))


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def create_database() -> str:
    """Create a uniquely named database for this run; return its URL. Skips (or, under CI,
    fails) when no server answers."""
    name = f"gateway_test_{uuid4().hex}"
    try:
        run_sync(_admin(ADMIN_URL, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        reason = f"PostgreSQL not reachable at {ADMIN_URL} ({type(exc).__name__}: {exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true requires the PostgreSQL tests", pytrace=False)
        pytest.skip(f"{reason}; PostgreSQL tests skipped (CI=true makes them required)")
    return with_database(ADMIN_URL, name)


def drop_database(url: str) -> None:
    """Drop the run's database, closing any connection a test left behind."""
    name = urlsplit(url).path.lstrip("/")
    run_sync(_admin(ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def create_schema(database_url: str) -> str:
    """An empty schema in the run's database; return a URL whose connections use it."""
    schema = f"t_{uuid4().hex}"
    run_sync(_admin(database_url, f'CREATE SCHEMA "{schema}"'))
    name = urlsplit(database_url).path.lstrip("/")
    return with_database(database_url, name, search_path=schema)


def drop_schema(url: str) -> None:
    """Drop a test's schema with everything in it."""
    schema = dict(p.split("=", 1) for p in urlsplit(url).query.split("&"))["search_path"]
    base = url.split("?", 1)[0]
    run_sync(_admin(base, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


UPDATES = """
SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'notifications'::regclass
"""


async def notification_updates(conn: asyncpg.Connection, at_least: int) -> tuple[int, int]:
    """(updates, heap-only updates) the server counted on the notifications of `conn`'s
    schema, once at least `at_least` have reached its statistics (a backend reports its own as
    it exits, so close the stores that made them first)."""
    async with asyncio.timeout(10):
        while True:
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            updates, in_place = await conn.fetchrow(UPDATES)
            if updates >= at_least:
                return updates, in_place
            await asyncio.sleep(0.05)
