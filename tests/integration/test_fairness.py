"""Fair outbound capacity: one group's hanging callbacks never starve another group.

A noisy group's callbacks hang (they answer long after any timeout of the test); a healthy
group's notifications must still arrive, its webhook stay Active and its creates pass, while the
noisy group's requests are still in flight. Real receivers over loopback, real stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from gateway.config import Settings
from gateway.delivery import Worker
from gateway.errors import OutboundBusy
from gateway.models import utcnow
from gateway.netguard import AddressPolicy
from gateway.outbound import Outbound
from tests.gateway_server import RunningGateway, gateway_settings, run_gateway
from tests.receiver import Answer, Receiver

HANG = 60.0  # seconds a hanging callback takes to answer: longer than any wait here
WAIT = 20.0  # the most any wait of these tests lasts
LEASE = timedelta(minutes=5)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite file, or a fresh PostgreSQL schema: the same tests on both stores."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite:///{tmp_path}/gateway.db"


def hanging_delivery(receiver: Receiver, path: str) -> str:
    """A callback that passes its handshake, then never answers a notification in time."""
    return receiver.plan(path, Answer(), Answer(delay=HANG))


async def create(
    api: httpx.AsyncClient, urls: list[str], *, retry_count: int = 0, rule: bool = True
) -> httpx.Response:
    """One create request for webhooks at `urls`, each with a rule for Invoice updates when
    `rule` (and the create passed)."""
    hooks = [
        {
            "name": f"hook-{i}",
            "requestContentType": "Full",
            "callbackHttpMethod": "POST",
            "callbackUrl": url,
            "retryCount": retry_count,
        }
        for i, url in enumerate(urls)
    ]
    created = await api.post("/api/v1/Webhooks", json=hooks)
    if rule and created.status_code == 200:
        rules = [
            {"webhookId": h["webhookId"], "tableKey": "Invoice", "eventType": "U"}
            for h in created.json()
        ]
        assert (await api.post("/api/v1/WebhookRules", json=rules)).status_code == 200
    return created


async def publish(api: httpx.AsyncClient, events: int = 1) -> None:
    body = [
        {"tableKey": "Invoice", "eventType": "U", "records": [{"id": str(i)}]}
        for i in range(events)
    ]
    assert (await api.post("/api/v1/Events", json=body)).status_code == 202


async def webhook(api: httpx.AsyncClient, webhook_id: str) -> dict[str, Any]:
    answer = await api.get(f"/api/v1/Webhooks/{webhook_id}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def history(api: httpx.AsyncClient, webhook_id: str) -> list[dict[str, Any]]:
    answer = await api.get(f"/api/v1/Webhooks/{webhook_id}/history/query")
    assert answer.status_code == 200, answer.text
    records: list[dict[str, Any]] = answer.json()["records"]
    return records


def in_flight(receiver: Receiver, prefix: str) -> int:
    """Requests under `prefix` that the receiver is still answering."""
    return sum(n for path, n in receiver.in_flight.items() if path.startswith(prefix))


async def wait_until(check: Any, timeout: float = WAIT) -> None:
    """Poll `check()` (sync or async) until it is true, at most `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not (await check() if asyncio.iscoroutinefunction(check) else check()):
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[None]:
    """The worker delivering in the background; stopped (and its outcomes recorded) after."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT)


@dataclasses.dataclass
class Tenants:
    """Two groups on one gateway: `noisy`, whose callbacks hang, and `healthy`."""

    gateway: RunningGateway
    noisy: httpx.AsyncClient
    healthy: httpx.AsyncClient


@contextlib.asynccontextmanager
async def tenants(settings: Settings) -> AsyncIterator[Tenants]:
    async with run_gateway(settings) as gateway:
        noisy_key, _ = await gateway.add_key("noisy")
        healthy_key, _ = await gateway.add_key("healthy")
        async with gateway.client(noisy_key) as noisy, gateway.client(healthy_key) as healthy:
            noisy.timeout = healthy.timeout = httpx.Timeout(WAIT)
            yield Tenants(gateway, noisy, healthy)


def worker_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    """A worker with 8 senders (so 4 for one group), sends that never time out during a test,
    and a short shutdown, so stopping it cancels the hanging sends."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "worker_concurrency": 8,
        "per_webhook_concurrency": 2,
        "delivery_timeout": HANG * 2,
        "lease_seconds": HANG * 6,
        "shutdown_deadline": 0.2,
        **overrides,
    }
    return gateway_settings(tmp_path, **values)


async def deliveries_hang_beside_a_healthy_group(
    settings: Settings, receiver: Receiver, noisy_events: int, *, left_for_others: int = 0
) -> None:
    """The noisy group publishes first to 10 webhooks that hang, then the healthy group
    publishes one event; a worker (its own, outside the API) runs. The healthy notification
    arrives, is recorded delivered and leaves its webhook Active, while the noisy group still
    has exactly its share of the worker's senders (4 of 8) hanging; and at least
    `left_for_others` of the noisy notifications were left for other workers to claim."""
    async with tenants(settings) as t:
        urls = [hanging_delivery(receiver, f"/noisy/{i}") for i in range(10)]
        assert (await create(t.noisy, urls)).status_code == 200
        [healthy] = (await create(t.healthy, [receiver.plan("/healthy")])).json()
        await publish(t.noisy, noisy_events)
        await publish(t.healthy)
        policy = AddressPolicy(settings.allowed_callback_networks)
        async with Outbound(policy=policy) as outbound:
            async with running(Worker(settings, t.gateway.ctx.store, outbound)):
                await wait_until(lambda: in_flight(receiver, "/noisy/") >= 4)
                await receiver.wait_for(1, "/healthy", timeout=WAIT)
                assert in_flight(receiver, "/noisy/") == 4, "the noisy group holds its share"
                now = utcnow()
                spare = await t.gateway.ctx.store.claim_due(now, 100, "other", now + LEASE)
                assert len(spare) >= left_for_others
        # Stopped: the hanging sends were cancelled and the healthy outcome was recorded.
        [row] = await history(t.healthy, healthy["webhookId"])
        assert row["isSuccessful"] is True
        assert (await webhook(t.healthy, healthy["webhookId"]))["statusCode"] == "Active"


async def test_a_healthy_group_gets_a_sender_while_another_groups_sends_hang(
    tmp_path: Path, database_url: str, receiver: Receiver
) -> None:
    # One claim takes everything (20 noisy notifications, then the healthy one): what is
    # tested is which ready notification a free sender takes.
    settings = worker_settings(tmp_path, database_url)
    await deliveries_hang_beside_a_healthy_group(settings, receiver, noisy_events=2)


async def test_a_claim_passes_over_a_group_holding_its_share(
    tmp_path: Path, database_url: str, receiver: Receiver
) -> None:
    # Claims of 8: the noisy group's 50 notifications, published first, would fill every
    # claim; a claim must skip a group that holds its share (8: twice its 4 senders), or the
    # healthy one is read only once the worker holds the noisy group's whole backlog. Held at
    # most its share and one claim, so 34 or more of them are left for other workers.
    settings = worker_settings(tmp_path, database_url, claim_batch_size=8)
    await deliveries_hang_beside_a_healthy_group(
        settings, receiver, noisy_events=5, left_for_others=50 - 2 * 8
    )


def spy_on_sends(outbound: Outbound) -> list[str]:
    """The URLs of the requests asked of this outbound client from now on, as they start."""
    started: list[str] = []
    send = outbound.send

    async def spied(method: str, url: str, **kwargs: Any) -> Any:
        started.append(url)
        return await send(method, url, **kwargs)

    outbound.send = spied  # type: ignore[method-assign]
    return started


SLOT_WAIT = "waiting for one of this group's {} outbound request slots"


async def test_the_api_and_the_worker_in_serve_stay_fair_under_hanging_handshakes(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The case reported: with the worker inside serve, a group creating 600 webhooks whose
    handshakes hang (six batches of 100 at once) beside 40 of its own whose deliveries hang.
    While they hang, another group's create passes and its notification arrives, and its
    webhook stays Active (retryCount 0: one failed attempt would make it Errored); the noisy
    group has only its share of handshakes open (16), and its creates fail saying why."""
    # A delivery shorter than a handshake, as the bug showed: a delivery that waited for a
    # connection behind the hanging handshakes timed out, and the webhook went Errored.
    settings = gateway_settings(
        tmp_path, run_worker=True, handshake_timeout=6.0, delivery_timeout=2.0, lease_seconds=10
    )
    async with tenants(settings) as t:
        urls = [hanging_delivery(receiver, f"/noisy/{i}") for i in range(40)]
        assert (await create(t.noisy, urls)).status_code == 200
        [healthy] = (await create(t.healthy, [receiver.plan("/healthy")])).json()
        await publish(t.noisy, 2)  # 80 sends that hang: more than the worker's 64 senders
        await wait_until(lambda: in_flight(receiver, "/noisy/") > 0)
        hanging = receiver.plan("/noisy-handshake", Answer(delay=HANG))
        started = spy_on_sends(t.gateway.ctx.outbound)
        creates = [
            asyncio.create_task(create(t.noisy, [hanging] * 100, rule=False)) for _ in range(6)
        ]
        # Every handshake of the six creates has asked for its request, and some hang.
        await wait_until(lambda: sum("/noisy-handshake" in url for url in started) == 600)
        await wait_until(lambda: in_flight(receiver, "/noisy-handshake") >= 16)
        await publish(t.healthy)
        second = await create(t.healthy, [receiver.plan("/healthy-2")])
        assert second.status_code == 200, second.text
        assert second.json()[0]["statusCode"] == "Active"
        await receiver.wait_for(1, "/healthy", timeout=WAIT)
        assert in_flight(receiver, "/noisy-handshake") == 16, "the noisy group's share, open"
        for refused in await asyncio.gather(*creates):
            assert refused.status_code == 400
            reasons = [r for [r] in refused.json()["errors"].values()]
            assert len(reasons) == 100
            waited = f"timed out after 6 s {SLOT_WAIT.format(16)} (all in flight)"
            assert set(reasons) <= {"timed out after 6 s", waited}

        async def delivered() -> bool:
            rows = await history(t.healthy, healthy["webhookId"])
            return bool(rows) and rows[0]["isSuccessful"] is True

        await wait_until(delivered)
        assert (await webhook(t.healthy, healthy["webhookId"]))["statusCode"] == "Active"


async def test_test_sends_of_one_group_hold_at_most_its_share_of_connections(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Ten test sends of one group to a callback that hangs: 4 are open at a time (its share
    here) and none is delivered; another group's test send is delivered meanwhile."""
    settings = gateway_settings(tmp_path, per_group_handshakes=4, delivery_timeout=3.0)
    async with tenants(settings) as t:
        noisy_url = hanging_delivery(receiver, "/noisy")
        [noisy] = (await create(t.noisy, [noisy_url], rule=False)).json()
        [healthy] = (await create(t.healthy, [receiver.plan("/healthy")], rule=False)).json()
        path = f"/api/v1/Webhooks/{noisy['webhookId']}/test"
        sends = [asyncio.create_task(t.noisy.post(path)) for _ in range(10)]
        await wait_until(lambda: in_flight(receiver, "/noisy") >= 4)
        answer = await t.healthy.post(f"/api/v1/Webhooks/{healthy['webhookId']}/test")
        assert answer.status_code == 200 and answer.json()["isSuccessful"] is True
        assert in_flight(receiver, "/noisy") == 4, "the noisy group's share, open"
        results = [(await send).json() for send in sends]
        assert not any(r["isSuccessful"] for r in results)
        waited = f"timed out after 3 s {SLOT_WAIT.format(4)} (all in flight)"
        assert {r["processResultMessage"] for r in results} <= {"timed out after 3 s", waited}


async def test_a_group_over_its_slots_waits_then_fails_naming_the_reason(
    receiver: Receiver,
) -> None:
    """One request slot per group: another request of the group waits for the slot and,
    none freeing within its timeout, fails saying so; another group's request goes at once;
    the slot passes to the next in line once its holder ends (here, cancelled)."""
    hang = receiver.plan("/hang", Answer(delay=HANG))
    ok = receiver.plan("/ok")
    first, second = uuid4(), uuid4()
    policy = AddressPolicy(("127.0.0.0/8",))
    async with Outbound(policy=policy, per_group=1) as outbound:
        holder = asyncio.create_task(outbound.send("POST", hang, timeout=WAIT, group=first))
        await wait_until(lambda: in_flight(receiver, "/hang") == 1)
        patient = asyncio.create_task(outbound.send("POST", ok, timeout=WAIT, group=first))
        with pytest.raises(OutboundBusy) as refused:
            await outbound.send("POST", ok, timeout=0.5, group=first)
        assert (
            refused.value.detail == f"timed out after 0.5 s {SLOT_WAIT.format(1)} (all in flight)"
        )
        assert (await outbound.send("POST", ok, timeout=WAIT, group=second)).status == 200
        assert (await outbound.send("POST", ok, timeout=WAIT)).status == 200  # no group: no cap
        assert not patient.done()
        holder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holder
        assert (await patient).status == 200
    assert len(receiver.notifications("/ok")) == 3
