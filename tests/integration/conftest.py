"""Fixtures the integration tests share: a gateway on each store, and a loopback outbound client
with handshake codes."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.handshake import HandshakeCodes
from gateway.netguard import AddressPolicy
from gateway.outbound import Outbound
from gateway.store import Store
from tests.gateway_server import RunningGateway, gateway_settings, run_gateway

LOOPBACK = AddressPolicy(allowed_networks=["127.0.0.0/8"])
HANDSHAKE_KEY = "test-secret-key"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def gateway_on_each_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[RunningGateway]:
    """A gateway (no worker of its own) on SQLite, and on PostgreSQL: the same tests on both."""
    settings = gateway_settings(tmp_path)
    if request.param == "postgres":
        settings = dataclasses.replace(
            settings, database_url=request.getfixturevalue("postgres_url")
        )
    async with run_gateway(settings) as running:
        yield running


@pytest.fixture
async def outbound() -> AsyncIterator[Outbound]:
    """The guarded outbound client, allowed to reach loopback."""
    async with Outbound(policy=LOOPBACK) as client:
        yield client


@pytest.fixture
def codes(store: Store) -> HandshakeCodes:
    return HandshakeCodes(HANDSHAKE_KEY, store)
