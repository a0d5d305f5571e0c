"""Fixtures shared by every layer of the suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.store import Store, store_for_url
from tests import postgres
from tests.gateway_server import RunningGateway, gateway_settings, run_gateway
from tests.receiver import Receiver, run_receiver


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    """A gateway on a real SQLite file, serving on a loopback port; no background worker."""
    async with run_gateway(gateway_settings(tmp_path)) as running:
        yield running


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    """An open memory:// store: the SQLite store on a throwaway database of this test's own."""
    async with store_for_url("memory://") as opened:
        yield opened


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A recording partner endpoint on a loopback port."""
    async with run_receiver() as running:
        yield running


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """This run's own PostgreSQL database (skips, or fails under CI, without a server)."""
    url = postgres.create_database()
    try:
        yield url
    finally:
        postgres.drop_database(url)


@pytest.fixture
def postgres_url(postgres_database: str) -> Iterator[str]:
    """A database URL on an empty schema of this test's own."""
    url = postgres.create_schema(postgres_database)
    try:
        yield url
    finally:
        postgres.drop_schema(url)
