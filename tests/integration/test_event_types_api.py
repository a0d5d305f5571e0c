"""/api/v1/EventTypes over real HTTP on each store, and the catalogue enforced on publishes and
rules (enforce_event_types)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.models import Scope
from tests.gateway_server import gateway_settings
from tests.tenant import PROBLEM, STORES, Tenant, open_tenant, settings_for

TYPES = "/api/v1/EventTypes"
EVENTS = "/api/v1/Events"
INVOICE_SCHEMA = {
    "type": "object",
    "required": ["id", "total"],
    "properties": {
        "id": {"type": "string"},
        "total": {"type": "number", "minimum": 0},
        "customer": {"type": "object", "properties": {"email": {"type": "string"}}},
    },
}


def declared(**extra: Any) -> dict[str, Any]:
    return {"tableKey": "Invoice", "eventType": "U", "name": "Invoice updated", **extra}


def event(*records: Any, **extra: Any) -> dict[str, Any]:
    return {"tableKey": "Invoice", "eventType": "U", "records": list(records), **extra}


@pytest.fixture(params=STORES)
async def tenant(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Tenant]:
    """A tenant (a webhook with an Invoice.U rule) on a gateway that enforces the catalogue."""
    async with open_tenant(settings_for(request, tmp_path, enforce_event_types=True)) as opened:
        yield opened


@pytest.fixture
async def lax(tmp_path: Path) -> AsyncIterator[Tenant]:
    """The same on a gateway that does not (the default)."""
    async with open_tenant(gateway_settings(tmp_path)) as opened:
        yield opened


async def call(tenant: Tenant, key: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with tenant.gateway.client(key) as api:
        return await api.request(method, path, **kwargs)


def problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    body: dict[str, Any] = answer.json()
    return body


async def history_size(tenant: Tenant) -> int:
    return len((await tenant.state())[2])


# -- The resource ------------------------------------------------------------------------------
async def test_the_platform_declares_and_partners_read(tenant: Tenant) -> None:
    platform, _ = await tenant.gateway.add_key("acme", frozenset({Scope.EVENTS}))
    partner, _ = await tenant.gateway.add_key("acme", frozenset({Scope.WEBHOOKS}))
    bodies = [
        declared(description="An invoice changed", category="Billing", schema=INVOICE_SCHEMA),
        declared(tableKey="Payment", eventType="Insert", name="Payment received"),
    ]
    created = await call(tenant, platform, "POST", TYPES, json=bodies)
    assert created.status_code == 200, created.text
    invoice, payment = created.json()
    assert invoice["schema"] == INVOICE_SCHEMA and invoice["category"] == "Billing"
    assert invoice["groupKey"] == str(tenant.record.group_key) and not invoice["deprecated"]
    assert payment["eventType"] == "I" and payment["schema"] is None
    assert payment["description"] is None and payment["category"] is None

    one = f"{TYPES}/{invoice['eventTypeId']}"
    assert (await call(tenant, partner, "GET", one)).json() == invoice
    found = await call(
        tenant, partner, "GET", f"{TYPES}/query", params={"filter": "category eq 'Billing'"}
    )
    assert found.json()["records"] == [invoice] and found.json()["totalCount"] == 1

    # Partners read only.
    for method, path, body in [("POST", TYPES, bodies), ("PATCH", one, {"deprecated": True}),
                               ("DELETE", one, None)]:  # fmt: skip
        refused = problem(await call(tenant, partner, method, path, json=body), 403)
        assert "'events' scope" in refused["detail"]

    patched = await call(tenant, platform, "PATCH", one, json={"deprecated": True, "schema": None})
    assert patched.status_code == 200, patched.text
    assert patched.json()["deprecated"] and patched.json()["schema"] is None
    assert patched.json()["name"] == "Invoice updated"  # what the PATCH did not name stays
    assert (await call(tenant, partner, "GET", one)).json() == patched.json()

    assert (await call(tenant, platform, "DELETE", one)).status_code == 200
    problem(await call(tenant, partner, "GET", one), 404)
    listed = await call(tenant, partner, "GET", f"{TYPES}/query")
    assert [t["tableKey"] for t in listed.json()["records"]] == ["Payment"]


async def test_a_pair_declared_already_is_a_409_and_the_batch_adds_nothing(
    tenant: Tenant,
) -> None:
    assert (await tenant.call("POST", TYPES, json=[declared()])).status_code == 200
    answer = await tenant.call("POST", TYPES, json=[declared(tableKey="Payment"), declared()])
    body = problem(answer, 409)
    assert "Invoice.U is declared already" in body["detail"]
    listed = (await tenant.call("GET", f"{TYPES}/query")).json()
    assert [t["tableKey"] for t in listed["records"]] == ["Invoice"]


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"type": "objekt"}, "at /type"),
        ({"properties": {"total": {"minimum": "0"}}}, "at /properties/total/minimum"),
        ({"$ref": "http://127.0.0.1:9/schema.json"}, "cannot be used"),
        ("not an object", "dictionary"),
    ],
)
async def test_a_schema_that_is_not_a_usable_json_schema_is_a_400(
    tenant: Tenant, schema: Any, named: str
) -> None:
    answer = await tenant.call(
        "POST", TYPES, json=[declared(tableKey="Good"), declared(schema=schema)]
    )
    body = problem(answer, 400)
    assert list(body["errors"]) == ["[1].schema"]
    assert named in body["errors"]["[1].schema"][0], body
    assert (await tenant.call("GET", f"{TYPES}/query")).json()["totalCount"] == 0


async def test_a_patch_cannot_move_an_event_type_to_another_pair(tenant: Tenant) -> None:
    (created,) = (await tenant.call("POST", TYPES, json=[declared()])).json()
    one = f"{TYPES}/{created['eventTypeId']}"
    for change in [{"tableKey": "Payment"}, {"EventType": "D", "name": "x"}]:
        body = problem(await tenant.call("PATCH", one, json=change), 400)
        assert "delete this event type and declare another" in body["detail"]
    problem(await tenant.call("PATCH", one, json={"schema": {"type": 1}}), 400)
    assert (await tenant.call("GET", one)).json() == created


# -- Enforced ----------------------------------------------------------------------------------
async def test_a_publish_of_an_undeclared_type_is_refused_whole(tenant: Tenant) -> None:
    await tenant.call("POST", TYPES, json=[declared()])
    batch = [event({"id": "1", "total": 1}), event({"id": "2"}, eventType="D")]
    body = problem(await tenant.call("POST", EVENTS, json=batch), 400)
    assert list(body["errors"]) == ["[1].eventType"]
    assert "Invoice.D is not a declared event type" in body["detail"]
    assert await history_size(tenant) == 0  # not even the declared event's notification
    accepted = await tenant.call("POST", EVENTS, json=batch[:1])
    assert accepted.status_code == 202 and accepted.json()["notificationCount"] == 1


async def test_a_record_that_fails_its_schema_is_named_with_its_path(tenant: Tenant) -> None:
    await tenant.call("POST", TYPES, json=[declared(schema=INVOICE_SCHEMA)])
    batch = [
        event({"id": "1", "total": 1}),
        event({"id": "2", "total": 2}, {"id": "3", "total": 3, "customer": {"email": 7}}),
    ]
    body = problem(await tenant.call("POST", EVENTS, json=batch), 400)
    assert list(body["errors"]) == ["[1].records[1]"]
    message = body["errors"]["[1].records[1]"][0]
    assert message.startswith("fails the schema of Invoice.U at /customer/email: ")
    assert await history_size(tenant) == 0
    # A change through this process is enforced from the next request on.
    (entry,) = (await tenant.call("GET", f"{TYPES}/query")).json()["records"]
    loose = {**INVOICE_SCHEMA, "properties": {}}
    await tenant.call("PATCH", f"{TYPES}/{entry['eventTypeId']}", json={"schema": loose})
    assert (await tenant.call("POST", EVENTS, json=batch)).status_code == 202
    assert await history_size(tenant) == 2  # a notification an event


async def test_a_deprecated_type_is_still_published_and_subscribed_to(tenant: Tenant) -> None:
    await tenant.call("POST", TYPES, json=[declared(deprecated=True)])
    assert (await tenant.call("POST", EVENTS, json=event({"id": "1"}))).status_code == 202
    rule = {"webhookId": tenant.hook_id, "tableKey": "Invoice", "eventType": "U"}
    assert (await tenant.call("POST", "/api/v1/WebhookRules", json=[rule])).status_code == 200


async def test_a_rule_for_an_undeclared_type_is_refused(tenant: Tenant) -> None:
    await tenant.call("POST", TYPES, json=[declared()])
    rules = "/api/v1/WebhookRules"
    good = {"webhookId": tenant.hook_id, "tableKey": "Invoice", "eventType": "U"}
    body = problem(await tenant.call("POST", rules, json=[good, {**good, "eventType": "I"}]), 400)
    assert list(body["errors"]) == ["[1].eventType"]
    assert "Invoice.I is not a declared event type" in body["detail"]
    before = await tenant.state()
    path = f"{rules}/{tenant.rule_id}"
    body = problem(await tenant.call("PATCH", path, json={"tableKey": "Payment"}), 400)
    assert list(body["errors"]) == ["eventType"]
    assert await tenant.state() == before
    # A PATCH that leaves the pair alone is not checked again.
    assert (await tenant.call("PATCH", path, json={"filter": "total gt 1"})).status_code == 200


async def test_without_enforcement_the_catalogue_only_documents(lax: Tenant) -> None:
    await lax.call("POST", TYPES, json=[declared(schema=INVOICE_SCHEMA)])
    batch = [event({"id": "1", "total": -1}), event({"id": "2"}, tableKey="Undeclared")]
    assert (await lax.call("POST", EVENTS, json=batch)).status_code == 202
    rule = {"webhookId": lax.hook_id, "tableKey": "Undeclared", "eventType": "D"}
    assert (await lax.call("POST", "/api/v1/WebhookRules", json=[rule])).status_code == 200
