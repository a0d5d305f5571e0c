"""A partner as the tests see one: a subscribed webhook, the means to act on it through the API,
and the checks a partner makes of what arrives. Shared by the delivery, contract, integrity and
PostgreSQL outage tests."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from standardwebhooks.webhooks import Webhook as Verifier

from gateway.delivery import Worker
from gateway.models import utcnow
from tests.gateway_server import RunningGateway
from tests.receiver import Receiver, Seen

INVOICES = [{"id": "1", "total": 50}, {"id": "2", "total": 500}, {"invoiceId": "3", "total": 900}]


@dataclasses.dataclass
class Partner:
    """One subscribed webhook and the means to act on it."""

    gateway: RunningGateway
    receiver: Receiver
    key: str
    hook: dict[str, Any]
    path: str

    @property
    def id(self) -> UUID:
        return UUID(self.hook["webhookId"])

    async def publish(self, *events: dict[str, Any]) -> dict[str, Any]:
        async with self.gateway.client(self.key) as api:
            answer = await api.post("/api/v1/Events", json=list(events))
        assert answer.status_code == 202, answer.text
        result: dict[str, Any] = answer.json()
        return result

    async def stored(self) -> Any:
        return await self.gateway.ctx.store.get_webhook_any_group(self.id)

    async def patch(self, **changes: Any) -> Any:
        async with self.gateway.client(self.key) as api:
            return await api.patch(f"/api/v1/Webhooks/{self.id}", json=changes)

    async def history(self, **params: Any) -> dict[str, Any]:
        async with self.gateway.client(self.key) as api:
            answer = await api.get(f"/api/v1/Webhooks/{self.id}/history/query", params=params)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def verify(self, seen: Seen, secret: str | None = None) -> dict[str, Any]:
        """Check the signature like a partner; return the notification's fields."""
        verifier = Verifier(secret or self.hook["clientSecret"])
        if seen.method != "GET":
            data: dict[str, Any] = verifier.verify(seen.body, seen.headers)
            return data
        # verify() JSON-decodes what it checked, which a query string is not; so for GET, ask
        # the package for the signature of the exact query string and find it in the header.
        stamp = datetime.fromtimestamp(int(seen.headers["webhook-timestamp"]), UTC)
        expected = verifier.sign(seen.headers["webhook-id"], stamp, seen.query)
        assert expected in seen.headers["webhook-signature"].split(" ")
        assert abs((utcnow() - stamp).total_seconds()) < 300
        return {k: v[0] for k, v in seen.params.items()}


async def subscribe(
    gateway: RunningGateway,
    receiver: Receiver,
    *,
    method: str = "POST",
    content: str = "Full",
    retry_count: int = 2,
    rule_filter: str | None = None,
    path: str = "/hook",
    key: str | None = None,
    **extra: Any,
) -> Partner:
    """Create a webhook (handshake included) with one rule for Invoice updates; `extra` are
    more properties of the webhook, by wire name."""
    key = key or (await gateway.add_key("acme"))[0]
    url = receiver.plan(path)
    body = {
        "name": "n",
        "requestContentType": content,
        "callbackHttpMethod": method,
        "callbackUrl": url,
        "retryCount": retry_count,
        **extra,
    }
    async with gateway.client(key) as api:
        created = await api.post("/api/v1/Webhooks", json=[body])
        assert created.status_code == 200, created.text
        hook = created.json()[0]
        rule = {
            "webhookId": hook["webhookId"],
            "tableKey": "Invoice",
            "eventType": "U",
            "filter": rule_filter,
        }
        assert (await api.post("/api/v1/WebhookRules", json=[rule])).status_code == 200
    return Partner(gateway, receiver, key, hook, path)


def invoice_update(records: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"tableKey": "Invoice", "eventType": "U", "records": records or INVOICES}


async def drain_until(worker: Worker, done: Callable[[], Any], timeout: float = 15.0) -> None:
    """Run the worker until `done()` is true (retries come due after a few milliseconds)."""
    async with asyncio.timeout(timeout):
        while True:
            await worker.drain()
            if await done() if asyncio.iscoroutinefunction(done) else done():
                return
            await asyncio.sleep(0.01)
