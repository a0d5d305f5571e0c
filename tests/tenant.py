"""One tenant on a running gateway, and the helpers that check a refusal changed nothing.

Used by the tests of bad input (test_limits, test_nul, test_openapi): a gateway with one key, one
Active webhook with an Invoice.U rule and one (unused) Basic authentication, on SQLite or,
through `settings_for`, PostgreSQL.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import Settings
from gateway.models import ApiKey
from gateway.store.base import Query
from tests.factories import make_authentication, make_rule, make_webhook
from tests.gateway_server import RunningGateway, gateway_settings, run_gateway

PROBLEM = "application/problem+json"
STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@dataclass
class Tenant:
    """A gateway, one key, one Active webhook with an Invoice.U rule, one authentication."""

    gateway: RunningGateway
    key: str
    record: ApiKey
    hook_id: str
    rule_id: str
    auth_id: str

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with self.gateway.client(self.key) as api:
            return await api.request(method, path, **kwargs)

    async def state(self) -> tuple[Any, ...]:
        """All the group's webhooks, rules and history, as stored."""
        store, group = self.gateway.ctx.store, self.record.group_key
        hooks = await store.query_webhooks(group, Query())
        rules = await store.query_rules(group, Query())
        history = await store.query_history(group, hooks.records[0].webhook_id, Query())
        auths = await store.query_authentications(group, Query())
        return hooks.records, rules.records, history.records, auths.records


async def add_tenant(
    gateway: RunningGateway, group: str = "acme", callback_url: str | None = None
) -> Tenant:
    """A key of this group, an Active webhook with a rule and an authentication, seeded
    straight into the store."""
    key, record = await gateway.add_key(group)
    hook = make_webhook(record.group_key)
    if callback_url is not None:
        hook = dataclasses.replace(hook, callback_url=callback_url)
    rule = make_rule(hook)
    auth = make_authentication(record.group_key)
    await gateway.ctx.store.add_webhooks([hook])
    await gateway.ctx.store.add_rules([rule])
    await gateway.ctx.store.add_authentications([auth])
    ids = (str(hook.webhook_id), str(rule.webhook_rule_id), str(auth.authentication_id))
    return Tenant(gateway, key, record, *ids)


@contextlib.asynccontextmanager
async def open_tenant(settings: Settings, callback_url: str | None = None) -> AsyncIterator[Tenant]:
    """A gateway on these settings with one tenant seeded straight into the store."""
    async with run_gateway(settings) as gateway:
        yield await add_tenant(gateway, callback_url=callback_url)


def settings_for(request: pytest.FixtureRequest, tmp_path: Path, **overrides: Any) -> Settings:
    """Test settings on the store named by the fixture's parameter (see STORES)."""
    settings = gateway_settings(tmp_path, **overrides)
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        settings = dataclasses.replace(settings, database_url=url)
    return settings


def hook_body(**extra: Any) -> dict[str, Any]:
    return {
        "name": "n",
        "requestContentType": "Full",
        "callbackHttpMethod": "POST",
        "callbackUrl": "http://127.0.0.1:9/hook",
        **extra,
    }


def rule_body(webhook_id: str, **extra: Any) -> dict[str, Any]:
    return {"webhookId": webhook_id, "tableKey": "Invoice", "eventType": "U", **extra}


def event_body(count: int = 1, **extra: Any) -> dict[str, Any]:
    rows = [{"id": str(i)} for i in range(count)]
    return {"tableKey": "Invoice", "eventType": "U", "records": rows, **extra}


def problem(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    """The problem+json body of a refusal with this status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    return body


async def refused(tenant: Tenant, method: str, path: str, status: int, **kwargs: Any) -> Any:
    """Send a bad request; check it is refused with `status` and changed nothing."""
    before = await tenant.state()
    answer = problem(await tenant.call(method, path, **kwargs), status)
    assert await tenant.state() == before
    return answer
