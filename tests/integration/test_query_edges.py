"""Values at the edges of what a query or a body may hold, over real HTTP on both stores, with
the same answers on each: case-insensitive operators in every alphabet, nulls in an order, and
times whose UTC lies outside years 1 to 9999 (a 400 naming them, never a 5xx)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.models import EventType
from tests.factories import make_event_type, make_webhook
from tests.gateway_server import RunningGateway
from tests.receiver import Receiver

# 9999-12-31T23:00-05:00 is 10000-01-01T04:00 in UTC; 0001-01-01T01:00+05:00 is in year 0.
BEYOND = ("9999-12-31T23:00:00-05:00", "0001-01-01T01:00:00+05:00")


@pytest.fixture
async def gateway(gateway_on_each_store: RunningGateway) -> RunningGateway:
    return gateway_on_each_store


async def names(gateway: RunningGateway, key: str, path: str, **params: Any) -> list[str]:
    async with gateway.client(key) as api:
        answer = await api.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return [record["name"] for record in answer.json()["records"]]


@pytest.mark.parametrize(
    ("condition", "found"),
    [
        ("name contains 'É'", ["école", "ÉCOLE"]),
        ("name contains 'é'", ["école", "ÉCOLE"]),
        ("name startswith 'ÉC'", ["école", "ÉCOLE"]),
        ("name endswith 'ßE'", ["STRAßE"]),
        ("name contains 'Ω'", ["ωmega"]),
        ("name contains 'x'", []),
    ],
)
async def test_case_is_ignored_in_every_alphabet(
    gateway: RunningGateway, condition: str, found: list[str]
) -> None:
    key, record = await gateway.add_key("acme")
    hooks = [
        make_webhook(record.group_key, name=name) for name in ("école", "ÉCOLE", "STRAßE", "ωmega")
    ]
    await gateway.ctx.store.add_webhooks(hooks)
    listed = await names(gateway, key, "/api/v1/Webhooks/query", filter=condition, order="name")
    assert sorted(listed) == sorted(found)


async def test_nulls_come_first_in_an_ascending_order_and_last_in_a_descending_one(
    gateway: RunningGateway,
) -> None:
    key, record = await gateway.add_key("acme")
    group = record.group_key
    await gateway.ctx.store.add_webhooks([
        make_webhook(group, name="keyed b", partition_key="b"),
        make_webhook(group, name="unkeyed", partition_key=None),
        make_webhook(group, name="keyed a", partition_key="a"),
    ])  # fmt: skip
    path = "/api/v1/Webhooks/query"
    assert await names(gateway, key, path, order="partitionKey") == [
        "unkeyed",
        "keyed a",
        "keyed b",
    ]
    assert await names(gateway, key, path, order="partitionKey desc") == [
        "keyed b", "keyed a", "unkeyed"]  # fmt: skip
    # A page of one holds the same record on both stores.
    assert await names(gateway, key, path, order="partitionKey", pageSize=1) == ["unkeyed"]
    await gateway.ctx.store.add_event_types([
        make_event_type(group, name="filed", category="billing"),
        make_event_type(group, name="unfiled", category=None, event_type=EventType.DELETE),
    ])  # fmt: skip
    types = "/api/v1/EventTypes/query"
    assert await names(gateway, key, types, order="category") == ["unfiled", "filed"]
    assert await names(gateway, key, types, order="category desc") == ["filed", "unfiled"]


@pytest.mark.parametrize("instant", BEYOND)
async def test_a_filter_on_a_time_outside_the_years_utc_can_hold_is_a_400(
    gateway: RunningGateway, instant: str
) -> None:
    key, record = await gateway.add_key("acme")
    hook = make_webhook(record.group_key)
    await gateway.ctx.store.add_webhooks([hook])
    queries = [
        ("/api/v1/Webhooks/query", f"created gt {instant}"),
        ("/api/v1/EventTypes/query", f"modified lt {instant}"),
        (f"/api/v1/Webhooks/{hook.webhook_id}/history/query", f"timestamp gt datetime'{instant}'"),
    ]
    async with gateway.client(key) as api:
        for path, condition in queries:
            answer = await api.get(path, params={"filter": condition})
            assert answer.status_code == 400, (path, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("instant", BEYOND[:1])
async def test_an_expiration_date_outside_the_years_utc_can_hold_is_a_400_before_any_handshake(
    gateway: RunningGateway, receiver: Receiver, instant: str
) -> None:
    key, record = await gateway.add_key("acme")
    hook = make_webhook(record.group_key)
    await gateway.ctx.store.add_webhooks([hook])
    body = {"name": "far", "requestContentType": "Full", "callbackHttpMethod": "POST",
            "callbackUrl": receiver.plan("/far"), "retryCount": 2,
            "expirationDate": instant}  # fmt: skip
    async with gateway.client(key) as api:
        created = await api.post("/api/v1/Webhooks", json=[body])
        patched = await api.patch(
            f"/api/v1/Webhooks/{hook.webhook_id}", json={"expirationDate": instant}
        )
    for answer, field in ((created, "[0].expirationDate"), (patched, "expirationDate")):
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert "outside years 1 to 9999" in answer.json()["errors"][field][0]
    assert not receiver.seen  # refused before the handshake
    assert await gateway.ctx.store.get_webhook(record.group_key, hook.webhook_id) == hook
