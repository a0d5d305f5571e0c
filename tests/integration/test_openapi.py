"""The OpenAPI document says what the server does: what it declares valid the server takes, what
the server refuses the document calls invalid, every query parameter the server reads is
declared and none it ignores, every path's methods answer a 405's Allow, and every answer has
the shape its closed response schema gives.

Each table row is a request with the status the server gives it; the document's verdict on the
same input (jsonschema-rs, formats checked) must agree. Rows marked LENIENT are input the server
takes although the document does not describe it (other spellings it also accepts): there only
the server's answer is checked.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from gateway.models import NotificationState
from gateway.store.base import Query
from tests.factories import make_event, make_event_type, make_notification
from tests.gateway_server import gateway_settings
from tests.receiver import Receiver
from tests.tenant import Tenant, add_tenant, open_tenant

LENIENT = "lenient"
PATHS = {
    "webhooks": "/api/v1/Webhooks",
    "webhook": "/api/v1/Webhooks/{webhookId}",
    "rules": "/api/v1/WebhookRules",
    "rule": "/api/v1/WebhookRules/{webhookRuleId}",
    "events": "/api/v1/Events",
    "authentications": "/api/v1/Authentications",
    "authentication": "/api/v1/Authentications/{authenticationId}",
    "eventTypes": "/api/v1/EventTypes",
    "eventType": "/api/v1/EventTypes/{eventTypeId}",
}


@pytest.fixture
async def tenant(tmp_path: Path, receiver: Receiver) -> AsyncIterator[Tenant]:
    """A tenant whose webhook's callback passes handshakes."""
    async with open_tenant(gateway_settings(tmp_path), receiver.url + "/hook") as opened:
        yield opened


@pytest.fixture
async def doc(tenant: Tenant) -> dict[str, Any]:
    answer = await tenant.call("GET", "/openapi.json")
    assert answer.status_code == 200
    document: dict[str, Any] = answer.json()
    return document


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> jsonschema_rs.Validator:
    """A validator of `schema`, whose $refs point into the document's components."""
    root = {**schema, "components": doc["components"]}
    return jsonschema_rs.Draft202012Validator(root, validate_formats=True)


def operation(doc: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    found: dict[str, Any] = doc["paths"][path][method.lower()]
    return found


def body_schema(doc: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    found: dict[str, Any] = operation(doc, path, method)["requestBody"]["content"][
        "application/json"
    ]["schema"]
    return found


def parameter_schema(doc: dict[str, Any], path: str, name: str) -> dict[str, Any] | None:
    """The schema of a GET operation's query parameter, None if it declares none by that name."""
    for parameter in operation(doc, path, "GET").get("parameters", []):
        if parameter["in"] == "query" and parameter["name"] == name:
            found: dict[str, Any] = parameter["schema"]
            return found
    return None


def response_schema(doc: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    response = operation(doc, path, method)["responses"][str(status)]
    (content,) = response["content"].values()
    found: dict[str, Any] = content["schema"]
    return found


def concrete(tenant: Tenant, receiver: Receiver, path: str, body: Any) -> tuple[str, Any]:
    """The path and body with the tenant's ids and the receiver's callback filled in."""
    ids = {"{webhookId}": tenant.hook_id, "{webhookRuleId}": tenant.rule_id,
           "{authenticationId}": tenant.auth_id}  # fmt: skip
    filled = path
    for name, value in ids.items():
        filled = filled.replace(name, value)

    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        if value == "{callback}":
            return receiver.url + "/hook"
        return ids.get(value, value) if isinstance(value, str) else value

    return filled, fill(body)


def hook(**extra: Any) -> dict[str, Any]:
    base = {
        "name": "n",
        "requestContentType": "Full",
        "callbackHttpMethod": "POST",
        "callbackUrl": "{callback}",
    }
    return {**base, **extra}


def rule(**extra: Any) -> dict[str, Any]:
    return {"webhookId": "{webhookId}", "tableKey": "Invoice", "eventType": "U", **extra}


def basic(**extra: Any) -> dict[str, Any]:
    return {"name": "b", "kind": "Basic", "username": "u", "password": "p", **extra}


def header(**extra: Any) -> dict[str, Any]:
    return {"name": "h", "kind": "Header", "headerName": "X-Key", "headerValue": "v", **extra}


def event(*records: Any, **extra: Any) -> dict[str, Any]:
    return {"tableKey": "Invoice", "eventType": "U", "records": list(records), **extra}


def event_type(**extra: Any) -> dict[str, Any]:
    return {"tableKey": "Invoice", "eventType": "U", "name": "Invoice updated", **extra}


SETTINGS = {
    "headers": [{"name": "X-Key", "value": "a b"}],
    "config": {"k": [1]},
    "failureWindow": {"count": 100, "seconds": 86400},
}
BODIES: list[Any] = [
    # Creating webhooks: what may be null, which statuses may be asked for, GET carries no body.
    ("POST", "webhooks", [hook()], 200),
    ("POST", "webhooks", [hook(expirationDate=None, partitionKey=None, statusCode=None)], 200),
    ("POST", "webhooks", [hook(statusCode="Inactive")], 200),
    ("POST", "webhooks", [hook(statusCode="Active")], 200),
    ("POST", "webhooks", [hook(statusCode="Errored")], 400),
    ("POST", "webhooks", [hook(callbackHttpMethod="GET", requestContentType="Id")], 200),
    ("POST", "webhooks", [hook(callbackHttpMethod="GET", requestContentType="Full")], 400),
    ("POST", "webhooks", [hook(retryCount=None)], 400),
    ("POST", "webhooks", [hook(retryCount=6)], 400),
    ("POST", "webhooks", [hook(name=None)], 400),
    ("POST", "webhooks", [hook(name="")], 400),
    ("POST", "webhooks", [hook(name="x" * 101)], 400),
    ("POST", "webhooks", [hook(callbackUrl="ftp://example.test/")], 400),
    ("POST", "webhooks", [hook(callbackUrl="http://127.0.0.1:99999/")], 400),
    ("POST", "webhooks", [hook(callbackUrl="http://u:p@example.test/")], 400),
    ("POST", "webhooks", [hook(callbackUrl="http://example.test/a b")], 400),
    ("POST", "webhooks", [], 400),
    # Signature schemes: a header only with an HMAC scheme, never one the gateway sets.
    ("POST", "webhooks", [hook(signatureScheme="StandardWebhooksEd25519")], 200),
    ("POST", "webhooks", [hook(signatureScheme="HmacSha256Hex", signatureHeader=None)], 200),
    ("POST", "webhooks", [hook(signatureScheme="HmacSha512Base64", signatureHeader="X-Sig")], 200),
    ("POST", "webhooks", [hook(signatureHeader="X-Sig")], 400),
    ("POST", "webhooks", [hook(signatureScheme="StandardWebhooks", signatureHeader="X-S")], 400),
    (
        "POST",
        "webhooks",
        [hook(signatureScheme="HmacSha256Hex", signatureHeader="content-TYPE")],
        400,
    ),
    (
        "POST",
        "webhooks",
        [hook(signatureScheme="HmacSha256Hex", signatureHeader="Webhook-Sig")],
        400,
    ),
    ("POST", "webhooks", [hook(signatureScheme="HmacSha256Hex", signatureHeader="X Sig")], 400),
    ("POST", "webhooks", [hook(signatureScheme="HmacSha256Hex", signatureHeader="")], 400),
    ("POST", "webhooks", [hook(signatureScheme="Hmac")], 400),
    ("POST", "webhooks", [hook(signatureScheme=None)], 400),
    ("POST", "webhooks", [hook(successPolicy="Only200", retryPolicy="ServerErrorsOnly")], 200),
    ("POST", "webhooks", [hook(successPolicy="Any2xx", retryPolicy="AllFailures")], 200),
    ("POST", "webhooks", [hook(successPolicy="Only201")], 400),
    ("POST", "webhooks", [hook(retryPolicy=None)], 400),
    ("POST", "webhooks", [hook(successPolicy="only200", retryPolicy="allfailures")], LENIENT),
    ("POST", "webhooks", [hook(callbackHttpMethod="post", emitFormat="full")], LENIENT),
    ("POST", "webhooks", [{**hook(), "Name": "pascal", "webhookId": "echoed back"}], LENIENT),
    # Changing a webhook: only expirationDate and partitionKey may be cleared with null.
    ("PATCH", "webhook", {}, 200),
    ("PATCH", "webhook", {"expirationDate": None}, 200),
    ("PATCH", "webhook", {"partitionKey": None}, 200),
    ("PATCH", "webhook", {"name": "renamed", "retryCount": 0}, 200),
    ("PATCH", "webhook", {"statusCode": "Inactive"}, 200),
    ("PATCH", "webhook", {"statusCode": "Errored"}, 400),
    ("PATCH", "webhook", {"retryCount": None}, 400),
    ("PATCH", "webhook", {"name": None}, 400),
    ("PATCH", "webhook", {"statusCode": None}, 400),
    ("PATCH", "webhook", {"callbackUrl": None}, 400),
    ("PATCH", "webhook", {"callbackHttpMethod": None}, 400),
    ("PATCH", "webhook", {"requestContentType": None}, 400),
    ("PATCH", "webhook", {"callbackHttpMethod": "GET", "requestContentType": "Id"}, 200),
    ("PATCH", "webhook", {"callbackHttpMethod": "PUT"}, 200),
    ("PATCH", "webhook", {"signatureScheme": "StandardWebhooksEd25519"}, 200),
    ("PATCH", "webhook", {"signatureScheme": "HmacSha256Hex", "signatureHeader": "X-A"}, 200),
    ("PATCH", "webhook", {"signatureScheme": "StandardWebhooks", "signatureHeader": "X-A"}, 400),
    ("PATCH", "webhook", {"signatureScheme": "HmacSha256Hex", "signatureHeader": "Host"}, 400),
    ("PATCH", "webhook", {"signatureScheme": None}, 400),
    ("PATCH", "webhook", {"successPolicy": "Only200", "retryPolicy": "ServerErrorsOnly"}, 200),
    ("PATCH", "webhook", {"successPolicy": None}, 400),
    ("PATCH", "webhook", {"retryPolicy": "Sometimes"}, 400),
    # Request settings: headers the gateway does not set itself, a config, a failure window.
    ("POST", "webhooks", [hook(**SETTINGS)], 200),
    # Authorization is the owner's while no authentication sets it.
    ("POST", "webhooks", [hook(headers=[{"name": "authorization", "value": "v"}])], 200),
    ("POST", "webhooks", [hook(headers=[{"name": "Idempotency-Key", "value": "v"}])], 400),
    ("POST", "webhooks", [hook(headers=[{"name": "Webhook-Id", "value": "v"}])], 400),
    ("POST", "webhooks", [hook(headers=[{"name": "Host", "value": "v"}])], 400),
    ("POST", "webhooks", [hook(headers=[{"name": "X Key", "value": "v"}])], 400),
    ("POST", "webhooks", [hook(headers=[{"name": "X-Key", "value": "a\r\nb"}])], 400),
    ("POST", "webhooks", [hook(headers=[{"name": "X-Key", "value": "a "}])], 400),
    ("POST", "webhooks", [hook(headers=[{"name": "X-Key"}])], 400),
    ("POST", "webhooks", [hook(config=[1])], 400),
    ("POST", "webhooks", [hook(failureWindow={"count": 0, "seconds": 60})], 400),
    ("POST", "webhooks", [hook(failureWindow={"count": 1, "seconds": 604801})], 400),
    ("POST", "webhooks", [hook(failureWindow={"Count": 1, "SECONDS": 1})], LENIENT),
    ("PATCH", "webhook", {"headers": [], "config": None, "failureWindow": None}, 200),
    ("PATCH", "webhook", {"headers": None}, 400),
    # Rules: a filter may be null (and cleared with null); a table key and event type not.
    ("POST", "rules", [rule(filter=None)], 200),
    ("POST", "rules", [rule(filter="total gt 5")], 200),
    ("POST", "rules", [rule(tableKey=None)], 400),
    ("POST", "rules", [rule(eventType="Update")], LENIENT),
    ("PATCH", "rule", {"filter": None}, 200),
    ("PATCH", "rule", {"tableKey": "Payment", "eventType": "D"}, 200),
    ("PATCH", "rule", {"tableKey": None}, 400),
    ("PATCH", "rule", {"eventType": None}, 400),
    ("PATCH", "rule", {"tableKey": "1nvoice"}, 400),
    # Authentications: a kind's own fields, all of them, and no other kind's.
    ("POST", "authentications", [basic(), header()], 200),
    ("POST", "authentications", [basic(password="", headerName=None, headerValue=None)], 200),
    ("POST", "authentications", [basic(headerName="X-Key")], 400),
    ("POST", "authentications", [basic(password=None)], 400),
    ("POST", "authentications", [{"name": "b", "kind": "Basic", "username": "u"}], 400),
    ("POST", "authentications", [header(headerValue=None)], 400),
    ("POST", "authentications", [header(headerName="Content-Type")], 400),
    ("POST", "authentications", [header(headerName="WEBHOOK-ID")], 400),
    ("POST", "authentications", [header(headerName="X Key")], 400),
    ("POST", "authentications", [header(headerValue="a\r\nb")], 400),
    ("POST", "authentications", [header(headerValue=" v")], 400),
    ("POST", "authentications", [basic(username="u:v")], 400),
    ("POST", "authentications", [basic(kind="Digest")], 400),
    ("POST", "authentications", [basic(kind="basic")], LENIENT),
    ("PATCH", "authentication", {"name": "renamed", "password": "new"}, 200),
    ("PATCH", "authentication", {"kind": "Header", "headerName": "X-Key", "headerValue": "v"}, 200),
    ("PATCH", "authentication", {"kind": "Basic", "headerName": "X-Key"}, 400),
    ("PATCH", "authentication", {"name": None}, 400),
    ("PATCH", "authentication", {"password": None}, 400),
    # A webhook sends with an authentication of its group, or none.
    ("POST", "webhooks", [hook(authenticationId="{authenticationId}")], 200),
    ("POST", "webhooks", [hook(authenticationId=None)], 200),
    ("PATCH", "webhook", {"authenticationId": "{authenticationId}"}, 200),
    ("PATCH", "webhook", {"authenticationId": None}, 200),
    ("PATCH", "webhook", {"authenticationId": "not a uuid"}, 400),
    # Events: every record needs an id that is neither null nor an object or array.
    ("POST", "events", event({"id": "1"}, {"id": 2, "total": 3}), 202),
    ("POST", "events", [event({"id": "1"}), event({"id": "2"}, eventType="D")], 202),
    ("POST", "events", event({}), 400),
    ("POST", "events", event({"total": 1}), 400),
    ("POST", "events", event({"id": None}), 400),
    ("POST", "events", event({"id": {"nested": 1}}), 400),
    ("POST", "events", event({"id": [1]}), 400),
    ("POST", "events", event(), 400),
    ("POST", "events", event({"id": "1"}, tableKey="1nvoice"), 400),
    ("POST", "events", event({"invoiceId": "1"}, {"ID": 2}), LENIENT),
    # Event types: a schema is an object or null; deprecated a boolean.
    ("POST", "eventTypes", [event_type()], 200),
    ("POST", "eventTypes", [event_type(schema={"type": "object"}, deprecated=True)], 200),
    ("POST", "eventTypes", [event_type(schema=None, description=None, category=None)], 200),
    ("POST", "eventTypes", event_type(category="Billing", description="d"), 200),
    ("POST", "eventTypes", [event_type(name="")], 400),
    ("POST", "eventTypes", [event_type(name=None)], 400),
    ("POST", "eventTypes", [event_type(tableKey=None)], 400),
    ("POST", "eventTypes", [event_type(deprecated="yes")], 400),
    ("POST", "eventTypes", [event_type(deprecated=None)], 400),
    ("POST", "eventTypes", [event_type(schema=[1])], 400),
    ("POST", "eventTypes", [event_type(category="x" * 101)], 400),
    ("POST", "eventTypes", [event_type(eventType="Update", eventTypeId="echoed")], LENIENT),
]


async def test_the_document_and_the_server_agree_on_bodies(
    tenant: Tenant, receiver: Receiver, doc: dict[str, Any]
) -> None:
    """Every row runs against a tenant of its own (a fresh group, webhook and rule)."""
    mismatches = []
    for number, (method, where, body, status) in enumerate(BODIES):
        own = await add_tenant(tenant.gateway, f"row-{number}", receiver.url + "/hook")
        template = PATHS[where]
        path, filled = concrete(own, receiver, template, body)
        answer = await own.call(method, path, json=filled)
        valid = validator(doc, body_schema(doc, template, method)).is_valid(filled)
        if status == LENIENT:
            agrees = answer.status_code < 300
        else:
            agrees = answer.status_code == status and valid == (status < 300)
        if not agrees:
            verdict = "valid" if valid else "invalid"
            mismatches.append(f"{method} {where} {body}: {answer.text[:200]}, document: {verdict}")
    assert mismatches == []


QUERIES = [
    "/api/v1/Webhooks/query",
    "/api/v1/WebhookRules/query",
    "/api/v1/Authentications/query",
    "/api/v1/Webhooks/{webhookId}/history/query",
    "/api/v1/EventTypes/query",
]


async def test_the_document_gives_the_page_bounds_the_server_keeps(
    tenant: Tenant, receiver: Receiver, doc: dict[str, Any]
) -> None:
    mismatches = []
    for template, name in itertools.product(QUERIES, ["pageSize", "pageNumber"]):
        schema = parameter_schema(doc, template, name)
        assert schema is not None, (template, name)
        (number,) = [s for s in schema["anyOf"] if s.get("type") == "integer"]
        low, high = number.get("minimum"), number.get("maximum")
        assert low is not None and high is not None, (template, name)
        check = validator(doc, schema)
        path = concrete(tenant, receiver, template, None)[0]
        for value, accepted in [(low, True), (high, True), (low - 1, False), (high + 1, False)]:
            answer = await tenant.call("GET", path, params={name: value})
            if (
                answer.status_code != (200 if accepted else 400)
                or check.is_valid(value) != accepted
            ):
                mismatches.append((template, name, value, answer.status_code))
    assert mismatches == []


# A value each parameter cannot take, if the server reads it.
UNREADABLE = {
    "filter": "(",
    "order": "nosuchfield",
    "include": "nosuchthing",
    "select": "nosuchfield",
    "pageSize": "x",
    "pageNumber": "x",
}


async def test_a_query_parameter_is_declared_exactly_when_the_server_reads_it(
    tenant: Tenant, receiver: Receiver, doc: dict[str, Any]
) -> None:
    mismatches = []
    for template, name in itertools.product([*QUERIES, "/api/v1/Webhooks/{webhookId}"], UNREADABLE):
        params = {name: UNREADABLE[name]}
        path = concrete(tenant, receiver, template, None)[0]
        answer = await tenant.call("GET", path, params=params)
        read = answer.status_code == 400 and name in answer.json()["errors"]
        assert read or answer.status_code == 200, answer.text
        schema = parameter_schema(doc, template, name)
        if (schema is not None) != read:
            mismatches.append(f"{template} {name}: {'' if read else 'not '}read by the server")
        # The document refuses it too, unless only the filter language can tell.
        elif schema is not None and name not in ("filter", "order"):
            if validator(doc, schema).is_valid(UNREADABLE[name]):
                mismatches.append(f"{template} {name}: the document allows {UNREADABLE[name]!r}")
    assert mismatches == []


async def test_the_include_values_the_document_allows_are_taken(
    tenant: Tenant, doc: dict[str, Any]
) -> None:
    schema = parameter_schema(doc, "/api/v1/Webhooks/{webhookId}", "include")
    assert schema is not None
    check = validator(doc, schema)
    for value in ["WebhookRules", "webhookrules", " none ", "", "NULL", "webhookRules, ,"]:
        assert check.is_valid(value), value
        params = {"include": value}
        answer = await tenant.call("GET", f"/api/v1/Webhooks/{tenant.hook_id}", params=params)
        assert answer.status_code == 200, (value, answer.text)
    for value in ["none,webhookrules", "webhookrule", "rules"]:
        assert not check.is_valid(value), value
        params = {"include": value}
        answer = await tenant.call("GET", f"/api/v1/Webhooks/{tenant.hook_id}", params=params)
        assert answer.status_code == 400, (value, answer.text)


async def test_every_method_of_a_path_is_in_its_405s_allow(
    tenant: Tenant, receiver: Receiver, doc: dict[str, Any]
) -> None:
    for template, operations in doc["paths"].items():
        declared = {m.upper() for m in operations}
        expected = declared | ({"HEAD"} if "GET" in declared else set())
        path = concrete(tenant, receiver, template, None)[0]
        # No path serves these, so no other route's template can take the request instead.
        for method in ["OPTIONS", "PUT"]:
            answer = await tenant.call(method, path)
            assert answer.status_code == 405, (method, template)
            allowed = {m.strip() for m in answer.headers["allow"].split(",")}
            assert allowed == expected, (method, template)


async def seed_history(tenant: Tenant) -> str:
    """A failed notification of the tenant's webhook; its id."""
    store = tenant.gateway.ctx.store
    (webhook,) = (await store.query_webhooks(tenant.record.group_key, Query())).records
    event = make_event(tenant.record.group_key)
    note = make_notification(webhook, event, state=NotificationState.FAILED, attempts=1)
    await store.add_events([event], [note])
    return str(note.notification_id)


SENT_ON_REQUEST = {"webhookRules", "errors"}


async def answers(tenant: Tenant, receiver: Receiver) -> list[tuple[str, str, int, Any]]:
    """One real answer of each operation (and of its refusals): (path, method, status, body)."""
    history_id = await seed_history(tenant)
    declared = make_event_type(tenant.record.group_key, table_key="Catalogued")
    await tenant.gateway.ctx.store.add_event_types([declared])
    type_path = f"/api/v1/EventTypes/{declared.event_type_id}"
    hook_path = f"/api/v1/Webhooks/{tenant.hook_id}"
    rule_path = f"/api/v1/WebhookRules/{tenant.rule_id}"
    auth_path = f"/api/v1/Authentications/{tenant.auth_id}"
    history = f"{hook_path}/history/query"
    calls: list[tuple[str, str, str, dict[str, Any]]] = [
        ("/api/v1/Status", "GET", "/api/v1/Status", {}),
        ("/api/v1/Webhooks", "POST", "/api/v1/Webhooks", {"json": [hook(partitionKey="p")]}),
        ("/api/v1/Webhooks", "POST", "/api/v1/Webhooks", {"json": [hook(**SETTINGS)]}),
        ("/api/v1/Webhooks", "POST", "/api/v1/Webhooks", {"json": [hook(name="")]}),
        ("/api/v1/Webhooks/query", "GET", "/api/v1/Webhooks/query", {}),
        (
            "/api/v1/Webhooks/query",
            "GET",
            "/api/v1/Webhooks/query",
            {"params": {"include": "WebhookRules"}},
        ),
        ("/api/v1/Webhooks/query", "GET", "/api/v1/Webhooks/query", {"params": {"filter": "("}}),
        (PATHS["webhook"], "GET", hook_path, {"params": {"include": "WebhookRules"}}),
        (PATHS["webhook"], "GET", hook_path + "0", {}),
        (PATHS["webhook"], "PATCH", hook_path, {"json": {"name": "x"}}),
        (
            f"{PATHS['webhook']}/regenerate-client-secret",
            "PATCH",
            f"{hook_path}/regenerate-client-secret",
            {},
        ),
        ("/api/v1/WebhookRules", "POST", "/api/v1/WebhookRules", {"json": [rule(filter="a eq 1")]}),
        ("/api/v1/WebhookRules/query", "GET", "/api/v1/WebhookRules/query", {}),
        (PATHS["rule"], "GET", rule_path, {}),
        (PATHS["rule"], "PATCH", rule_path, {"json": {"filter": None}}),
        (PATHS["events"], "POST", PATHS["events"], {"json": event({"id": "1"})}),
        (PATHS["events"], "POST", PATHS["events"], {"json": event({"total": 1})}),
        (PATHS["webhook"] + "/history/query", "GET", history, {}),
        (
            PATHS["webhook"] + "/history/query",
            "GET",
            history,
            {"params": {"include": "records,requestMessage,responseMessage"}},
        ),
        (
            PATHS["webhook"] + "/history/query",
            "GET",
            history,
            {"params": {"select": "eventType,isSuccessful"}},
        ),
        (
            PATHS["webhook"] + "/history/{webhookHistoryId}/retry",
            "GET",
            f"{hook_path}/history/{history_id}/retry",
            {},
        ),
        (PATHS["webhook"] + "/test", "POST", f"{hook_path}/test", {}),
        (PATHS["authentications"], "POST", PATHS["authentications"], {"json": [basic(), header()]}),
        (PATHS["authentications"], "POST", PATHS["authentications"], {"json": [basic(name="")]}),
        (f"{PATHS['authentications']}/query", "GET", f"{PATHS['authentications']}/query", {}),
        (PATHS["authentication"], "GET", auth_path, {}),
        (PATHS["authentication"], "GET", auth_path + "0", {}),
        (PATHS["authentication"], "PATCH", auth_path, {"json": {"password": "new"}}),
        (PATHS["webhook"], "PATCH", hook_path, {"json": {"authenticationId": tenant.auth_id}}),
        (PATHS["authentication"], "DELETE", auth_path, {}),
        (PATHS["eventTypes"], "POST", PATHS["eventTypes"], {"json": [event_type(schema={})]}),
        (PATHS["eventTypes"], "POST", PATHS["eventTypes"], {"json": [event_type()]}),  # 409
        (PATHS["eventTypes"], "POST", PATHS["eventTypes"], {"json": [event_type(name="")]}),
        ("/api/v1/EventTypes/query", "GET", "/api/v1/EventTypes/query", {}),
        (PATHS["eventType"], "GET", type_path, {}),
        (PATHS["eventType"], "GET", type_path + "0", {}),
        (PATHS["eventType"], "PATCH", type_path, {"json": {"deprecated": True}}),
        (PATHS["eventType"], "DELETE", type_path, {}),
        (PATHS["rule"], "DELETE", rule_path, {}),
        (PATHS["webhook"], "DELETE", hook_path, {}),
        (PATHS["authentication"], "DELETE", auth_path, {}),
    ]
    out = []
    for template, method, path, kwargs in [
        (t, m, p, {**k, "json": concrete(tenant, receiver, t, k["json"])[1]} if "json" in k else k)
        for t, m, p, k in calls
    ]:
        answer = await tenant.call(method, path, **kwargs)
        out.append((template, method, answer.status_code, answer.json()))
    return out


async def test_every_answer_has_the_shape_its_closed_schema_gives(
    tenant: Tenant, receiver: Receiver, doc: dict[str, Any]
) -> None:
    seen = await answers(tenant, receiver)
    assert {status for *_, status, _ in seen} >= {200, 202, 400, 404, 409}
    for template, method, status, body in seen:
        check = validator(doc, response_schema(doc, template, method, status))
        errors = [e.message for e in check.iter_errors(body)]
        assert errors == [], (method, template, status, body)
        for where in ("top", "record"):
            changed = copy.deepcopy(body)
            target = changed[0] if isinstance(changed, list) else changed
            if where == "record":
                if not target.get("records"):
                    continue
                target = target["records"][0]
            # Closed: a field the document does not name is caught, at the top and in a record.
            target["undocumented"] = 1
            assert not check.is_valid(changed), (method, template, status, where)
            del target["undocumented"]
            # Required: a field missing from an answer is caught, unless it is sent only on
            # request (include, select) or only by some answers (a problem's errors).
            if "/history/query" in template and where == "record":
                continue
            for name in set(target) - SENT_ON_REQUEST:
                value = target.pop(name)
                assert not check.is_valid(changed), (method, template, status, where, name)
                target[name] = value
