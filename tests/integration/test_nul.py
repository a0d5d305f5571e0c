"""Text the database cannot hold: PostgreSQL refuses the NUL character (U+0000) in text, SQLite
keeps it. Both stores must give the same answer to the same input: every text input that reaches
the database is refused with a 400 naming the field before it gets there, and records (kept as
`json`, where NUL travels escaped as \\u0000) are accepted and delivered intact on both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.receiver import Receiver
from tests.tenant import (
    STORES,
    Tenant,
    add_tenant,
    event_body,
    hook_body,
    open_tenant,
    refused,
    rule_body,
    settings_for,
)

NUL = "\x00"


@pytest.fixture(params=STORES)
async def tenant(
    request: pytest.FixtureRequest, tmp_path: Path, receiver: Receiver
) -> AsyncIterator[Tenant]:
    """A tenant whose webhook delivers to the receiver, once on each store."""
    settings = settings_for(request, tmp_path)
    async with open_tenant(settings, callback_url=receiver.url + "/hook") as opened:
        yield opened


BODIES = {
    "webhook-name": ("POST", "/api/v1/Webhooks", [hook_body(name=f"a{NUL}b")], "[0].name"),
    "webhook-partition-key": (
        "POST",
        "/api/v1/Webhooks",
        [hook_body(partitionKey=f"p{NUL}")],
        "[0].partitionKey",
    ),
    "webhook-callback-url": (
        "POST",
        "/api/v1/Webhooks",
        [hook_body(callbackUrl=f"http://127.0.0.1:9/{NUL}")],
        "[0].callbackUrl",
    ),
    "patch-name": ("PATCH", "{hook}", {"name": NUL}, "name"),
    "patch-partition-key": ("PATCH", "{hook}", {"partitionKey": f"{NUL}x"}, "partitionKey"),
    "patch-callback-url": (
        "PATCH",
        "{hook}",
        {"callbackUrl": f"http://127.0.0.1/{NUL}"},
        "callbackUrl",
    ),
    "rule-table-key": (
        "POST",
        "/api/v1/WebhookRules",
        [rule_body("{id}", tableKey=f"Invoice{NUL}")],
        "[0].tableKey",
    ),
    "rule-filter-in-quotes": (
        "POST",
        "/api/v1/WebhookRules",
        [rule_body("{id}", filter=f"total eq '{NUL}'")],
        "[0].filter",
    ),
    "rule-filter-bare": (
        "POST",
        "/api/v1/WebhookRules",
        [rule_body("{id}", filter=f"total eq a{NUL}")],
        "[0].filter",
    ),
    "patch-rule-table-key": ("PATCH", "{rule}", {"tableKey": f"{NUL}"}, "tableKey"),
    "patch-rule-filter": ("PATCH", "{rule}", {"filter": f"id eq '{NUL}'"}, "filter"),
    "event-table-key": (
        "POST",
        "/api/v1/Events",
        event_body(tableKey=f"Invoice{NUL}"),
        "[0].tableKey",
    ),
    "event-type": ("POST", "/api/v1/Events", event_body(eventType=f"U{NUL}"), "[0].eventType"),
}


async def stored_text_refused(
    tenant: Tenant, receiver: Receiver, method: str, path: str, body: Any, field: str
) -> None:
    path = path.replace("{hook}", f"/api/v1/Webhooks/{tenant.hook_id}")
    path = path.replace("{rule}", f"/api/v1/WebhookRules/{tenant.rule_id}")
    content = orjson.dumps(body).replace(b"{id}", tenant.hook_id.encode())
    # A callback that passes the handshake, so that only the NUL can be refused.
    content = content.replace(b"http://127.0.0.1:9/hook", f"{receiver.url}/hook".encode())
    headers = {"content-type": "application/json"}
    answer = await refused(tenant, method, path, 400, content=content, headers=headers)
    assert list(answer["errors"]) == [field], answer
    if field.endswith(("name", "partitionKey", "filter")):
        assert "U+0000" in answer["errors"][field][0]


async def each_case(tenant: Tenant, receiver: Receiver, cases: dict[str, Any], check: Any) -> None:
    """Run `check` on every case with a tenant of its own on this gateway; report every case
    that failed, not only the first (one gateway per store keeps the file fast)."""
    failed = {}
    for number, (name, case) in enumerate(cases.items()):
        own = await add_tenant(tenant.gateway, f"case-{number}", receiver.url + "/hook")
        try:
            await check(own, *case)
        except AssertionError as exc:
            failed[name] = str(exc).splitlines()[0]
    assert failed == {}


async def test_nul_in_a_stored_text_is_400_naming_the_field(
    tenant: Tenant, receiver: Receiver
) -> None:
    async def check(own: Tenant, *case: Any) -> None:
        await stored_text_refused(own, receiver, *case)

    await each_case(tenant, receiver, BODIES, check)


QUERIES = ["/api/v1/Webhooks/query", "/api/v1/WebhookRules/query", "history"]
PARAMETERS = {
    "filter-quoted": ("filter", f"name eq '{NUL}'"),
    "filter-bare": ("filter", f"name eq x{NUL}"),
    "filter-field": ("filter", f"na{NUL}me eq 'x'"),
    "order": ("order", f"created{NUL} desc"),
    "include": ("include", f"webhookrules{NUL}"),
}


CASES = {
    f"{path.split('/')[-2] if '/' in path else path}-{case}": (path, name, value)
    for path in QUERIES
    for case, (name, value) in PARAMETERS.items()
    # Rules have nothing to include, and their query declares no include.
    if (path, name) != ("/api/v1/WebhookRules/query", "include")
}
CASES["retrieve-include"] = ("retrieve", "include", f"webhookrules{NUL}")


async def query_parameter_refused(tenant: Tenant, path: str, name: str, value: str) -> None:
    if path == "retrieve":
        path = f"/api/v1/Webhooks/{tenant.hook_id}"
    if path == "history":
        path = f"/api/v1/Webhooks/{tenant.hook_id}/history/query"
        value = value.replace("name", "eventType").replace("created", "timestamp")
        value = value.replace("webhookrules", "records")
    if path == "/api/v1/WebhookRules/query":
        value = value.replace("name", "tableKey")
    answer = await refused(tenant, "GET", path, 400, params={name: value})
    assert list(answer["errors"]) == [name], answer


async def test_nul_in_a_query_parameter_is_400_naming_it(
    tenant: Tenant, receiver: Receiver
) -> None:
    await each_case(tenant, receiver, CASES, query_parameter_refused)


HISTORY_ONLY = {
    "select": ("select", f"eventType{NUL}"),
    "select-list": ("select", f"records,{NUL}"),
    "azure-datetime": ("filter", f"timestamp eq datetime'{NUL}'"),
    "azure-guid": ("filter", f"webhookId eq guid'{NUL}'"),
}


async def test_nul_in_a_history_select_or_azure_literal_is_400(
    tenant: Tenant, receiver: Receiver
) -> None:
    async def check(own: Tenant, name: str, value: str) -> None:
        path = f"/api/v1/Webhooks/{own.hook_id}/history/query"
        answer = await refused(own, "GET", path, 400, params={name: value})
        assert list(answer["errors"]) == [name], answer

    await each_case(tenant, receiver, HISTORY_ONLY, check)


async def test_nul_in_records_is_accepted_and_delivered_intact(
    tenant: Tenant, receiver: Receiver
) -> None:
    """Records are stored as `json`, which keeps \\u0000 escaped on PostgreSQL: the same 202 on
    both stores, the same records delivered, and the same records in the history."""
    records = [{"id": f"1{NUL}", f"k{NUL}ey": f"va{NUL}lue", "nested": [{NUL: NUL}]}]
    body = {"tableKey": "Invoice", "eventType": "U", "records": records}
    accepted = await tenant.call("POST", "/api/v1/Events", json=body)
    assert accepted.status_code == 202, accepted.text
    await tenant.gateway.worker().drain()
    (seen,) = receiver.notifications()
    assert orjson.loads(seen.body)["records"] == records
    path = f"/api/v1/Webhooks/{tenant.hook_id}/history/query"
    history = await tenant.call("GET", path, params={"include": "records"})
    assert history.status_code == 200, history.text
    (row,) = history.json()["records"]
    assert orjson.loads(row["records"]) == records and row["isSuccessful"] is True


async def test_the_same_parameters_without_nul_are_taken(tenant: Tenant) -> None:
    """The control for the refusals above."""
    for path, value, order in [
        ("/api/v1/Webhooks/query", "name eq 'x'", "created desc"),
        ("/api/v1/WebhookRules/query", "tableKey eq 'x'", "created desc"),
        (f"/api/v1/Webhooks/{tenant.hook_id}/history/query", "eventType eq 'x'", "timestamp"),
    ]:
        params = {"filter": value, "order": order}
        answer = await tenant.call("GET", path, params=params)
        assert answer.status_code == 200, answer.text
    created = await tenant.call(
        "POST", "/api/v1/WebhookRules", json=[rule_body(tenant.hook_id, filter="total eq 'x'")]
    )
    assert created.status_code == 200, created.text
