"""Bad and oversized input: every refusal is a problem+json naming what was wrong, and changes
nothing. The per-key rate limit answers 429 with Retry-After without touching other keys.

The limits are set small (see TIGHT) so a test can cross them with a few hundred bytes.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.config import Settings
from gateway.netguard import IP
from tests.factories import make_webhook
from tests.gateway_server import gateway_settings, run_gateway
from tests.receiver import Receiver
from tests.tenant import (
    STORES,
    Tenant,
    event_body,
    hook_body,
    open_tenant,
    problem,
    refused,
    rule_body,
    settings_for,
)

TIGHT = {
    "max_body_bytes": 4096,
    "max_batch_size": 2,
    "max_events_per_request": 2,
    "max_records_per_event": 3,
    "max_filter_length": 60,
    "max_filter_depth": 3,
    "max_record_depth": 4,
}


@pytest.fixture
async def tenant(tmp_path: Path) -> AsyncIterator[Tenant]:
    async with open_tenant(gateway_settings(tmp_path, **TIGHT)) as opened:
        yield opened


# -- Body size --------------------------------------------------------------------------------


def padded_event(size: int) -> bytes:
    """An otherwise valid event whose JSON is exactly `size` bytes."""
    empty = orjson.dumps(event_body(pad=""))
    return orjson.dumps(event_body(pad="x" * (size - len(empty))))


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/v1/Events"), ("POST", "/api/v1/Webhooks"), ("POST", "/api/v1/WebhookRules")],
)
async def test_a_body_over_the_limit_is_413(tenant: Tenant, method: str, path: str) -> None:
    body = padded_event(TIGHT["max_body_bytes"] + 1)
    answer = await refused(tenant, method, path, 413, content=body)
    assert "4096 bytes" in answer["detail"]


async def test_a_chunked_body_over_the_limit_is_413(tenant: Tenant) -> None:
    """Without a Content-Length the limit is counted as the body streams in."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    await refused(tenant, "POST", "/api/v1/Events", 413, content=chunks())


async def test_a_patch_body_over_the_limit_is_413(tenant: Tenant) -> None:
    body = orjson.dumps({"name": "n" * TIGHT["max_body_bytes"]})
    await refused(tenant, "PATCH", f"/api/v1/Webhooks/{tenant.hook_id}", 413, content=body)


async def test_a_body_exactly_at_the_limit_is_accepted(tenant: Tenant) -> None:
    body = padded_event(TIGHT["max_body_bytes"])
    assert len(body) == TIGHT["max_body_bytes"]
    # `pad` is not a known property, so the answer is a 400 about it, not a 413.
    answer = problem(await tenant.call("POST", "/api/v1/Events", content=body))
    assert "pad" in answer["detail"]


# -- Counts -------------------------------------------------------------------------------------


async def test_too_many_webhooks_in_one_batch(tenant: Tenant) -> None:
    batch = [hook_body(name=f"h{i}") for i in range(TIGHT["max_batch_size"] + 1)]
    answer = await refused(tenant, "POST", "/api/v1/Webhooks", 400, json=batch)
    assert "between 1 and 2" in answer["errors"]["body"][0]


async def test_too_many_rules_in_one_batch(tenant: Tenant) -> None:
    batch = [rule_body(tenant.hook_id) for _ in range(TIGHT["max_batch_size"] + 1)]
    answer = await refused(tenant, "POST", "/api/v1/WebhookRules", 400, json=batch)
    assert "between 1 and 2" in answer["errors"]["body"][0]
    # The control: a batch at the limit is accepted.
    accepted = await tenant.call("POST", "/api/v1/WebhookRules", json=batch[:2])
    assert accepted.status_code == 200 and len(accepted.json()) == 2


@pytest.mark.parametrize("path", ["/api/v1/Webhooks", "/api/v1/WebhookRules", "/api/v1/Events"])
async def test_an_empty_batch_is_refused(tenant: Tenant, path: str) -> None:
    answer = await refused(tenant, "POST", path, 400, json=[])
    assert "body" in answer["errors"]


async def test_too_many_events_in_one_request(tenant: Tenant) -> None:
    events = [event_body() for _ in range(TIGHT["max_events_per_request"] + 1)]
    answer = await refused(tenant, "POST", "/api/v1/Events", 400, json=events)
    assert "between 1 and 2 events" in answer["errors"]["body"][0]


async def test_too_many_records_in_one_event(tenant: Tenant) -> None:
    # The first event is fine; the second is over: neither is stored.
    events = [event_body(), event_body(TIGHT["max_records_per_event"] + 1)]
    answer = await refused(tenant, "POST", "/api/v1/Events", 400, json=events)
    assert answer["errors"] == {"[1].records": ["at most 3 records"]}
    accepted = await tenant.call("POST", "/api/v1/Events", json=event_body(3))
    assert accepted.status_code == 202 and accepted.json()["notificationCount"] == 1


# -- Records the renderer could not encode ---------------------------------------------------------


def nested_record(depth: int) -> dict[str, Any]:
    """A record `depth` levels deep (a flat record is 1), nesting arrays and objects in turn."""
    value: Any = "leaf"
    for level in range(depth - 1):
        value = {"n": value} if level % 2 else [value]
    return {"id": "1", "n": value}


async def test_a_record_deeper_than_the_limit_is_400(tenant: Tenant) -> None:
    deep = event_body()
    deep["records"] = [{"id": "2"}, nested_record(TIGHT["max_record_depth"] + 1)]
    answer = await refused(tenant, "POST", "/api/v1/Events", 400, json=[event_body(), deep])
    assert answer["errors"] == {"[1].records": ["record 1 is nested deeper than 4 levels"]}
    # The control: a record at the limit is accepted.
    at_limit = event_body()
    at_limit["records"] = [nested_record(TIGHT["max_record_depth"])]
    accepted = await tenant.call("POST", "/api/v1/Events", json=at_limit)
    assert accepted.status_code == 202, accepted.text


@pytest.fixture(params=STORES)
async def partner(
    request: pytest.FixtureRequest, tmp_path: Path, receiver: Receiver
) -> AsyncIterator[Tenant]:
    """A tenant with the default limits whose webhook delivers to the receiver, on each store."""
    settings = settings_for(request, tmp_path)
    async with open_tenant(settings, callback_url=receiver.url + "/hook") as opened:
        yield opened


async def delivered_records(tenant: Tenant, receiver: Receiver) -> list[Any]:
    """Deliver what is due; the records of the one notification the receiver got."""
    await tenant.gateway.worker().drain()
    (seen,) = receiver.notifications()
    records: list[Any] = orjson.loads(seen.body)["records"]
    return records


async def test_records_too_deep_to_render_are_refused_on_each_store(
    partner: Tenant, receiver: Receiver
) -> None:
    """The encoder refuses more than 254 levels and a notification wraps its records in two
    (the envelope and its records array): 253 was accepted and never sent, 254 and more were
    a 500. Now all are a 400, and a record at the limit is delivered."""
    for depth in [33, 251, 252, 253, 254, 255, 300]:
        body = event_body()
        body["records"] = [nested_record(depth)]
        answer = await refused(partner, "POST", "/api/v1/Events", 400, json=body)
        expected = {"[0].records": ["record 0 is nested deeper than 32 levels"]}
        assert answer["errors"] == expected, depth
    record = nested_record(Settings().max_record_depth)
    body = event_body()
    body["records"] = [record]
    accepted = await partner.call("POST", "/api/v1/Events", json=body)
    assert accepted.status_code == 202, accepted.text
    assert await delivered_records(partner, receiver) == [record]


# What orjson.loads makes of numbers and strings at JSON's edges, and so what is delivered: an
# integer beyond 64 bits becomes a double (as in JavaScript), one too large for a double or a
# lone surrogate is malformed JSON; everything loads accepts here, dumps encodes.
EDGES = {
    "u64-max": (b"18446744073709551615", 18446744073709551615),
    "i64-min": (b"-9223372036854775808", -9223372036854775808),
    "beyond-u64": (b"18446744073709551616", 1.8446744073709552e19),
    "beyond-i64": (b"-9223372036854775809", -9.223372036854776e18),
    "long-integer": (b"1" + b"0" * 40, 1e40),
    "underflow": (b"1e-400", 0.0),
    "escaped-astral": (b'"\\ud83d\\ude00"', "\U0001f600"),
}


def event_with_values(*raws: bytes) -> bytes:
    """An event whose record i has id i and the raw JSON value `raws[i]` as its `v`."""
    records = b", ".join(b'{"id": "%d", "v": %s}' % (i, raw) for i, raw in enumerate(raws))
    return b'{"tableKey": "Invoice", "eventType": "U", "records": [' + records + b"]}"


async def test_json_edges_are_delivered_as_parsed(partner: Tenant, receiver: Receiver) -> None:
    body = event_with_values(*(raw for raw, _ in EDGES.values()))
    accepted = await partner.call("POST", "/api/v1/Events", content=body)
    assert accepted.status_code == 202, accepted.text
    records = await delivered_records(partner, receiver)
    delivered = {name: r["v"] for name, r in zip(EDGES, records, strict=True)}
    expected = {name: value for name, (_, value) in EDGES.items()}
    assert delivered == expected
    assert [type(v) for v in delivered.values()] == [type(v) for v in expected.values()]


MALFORMED_EDGES = {
    "overflow": b"1e400",
    "negative-overflow": b"-1e400",
    "lone-high-surrogate": b'"\\ud800"',
    "lone-low-surrogate": b'"\\udc00"',
    "surrogate-key": b'{"\\ud800": 1}',
    "nan": b"NaN",
}


async def test_json_the_decoder_refuses_is_400(partner: Tenant) -> None:
    for name, raw in MALFORMED_EDGES.items():
        answer = await refused(
            partner, "POST", "/api/v1/Events", 400, content=event_with_values(raw)
        )
        assert list(answer["errors"]) == ["body"], name


# -- Filters and paging -------------------------------------------------------------------------

LONG_FILTER = "name eq '" + "x" * TIGHT["max_filter_length"] + "'"
DEEP_FILTER = "((((name eq 'a'))))"  # four levels of parentheses, one over the limit


@pytest.mark.parametrize(
    ("text", "message"),
    [(LONG_FILTER, "longer than 60 characters"), (DEEP_FILTER, "nest deeper than 3")],
    ids=["too-long", "too-deep"],
)
@pytest.mark.parametrize(
    "path", ["/api/v1/Webhooks/query", "/api/v1/WebhookRules/query", "history"]
)
async def test_a_query_filter_over_the_limits_is_400(
    tenant: Tenant, path: str, text: str, message: str
) -> None:
    if path == "history":
        path = f"/api/v1/Webhooks/{tenant.hook_id}/history/query"
    answer = await refused(tenant, "GET", path, 400, params={"filter": text})
    assert message in answer["errors"]["filter"][0]


@pytest.mark.parametrize(("text", "message"), [(LONG_FILTER, "longer"), (DEEP_FILTER, "deeper")])
async def test_a_rule_filter_over_the_limits_is_400(
    tenant: Tenant, text: str, message: str
) -> None:
    created = await refused(
        tenant, "POST", "/api/v1/WebhookRules", 400, json=[rule_body(tenant.hook_id, filter=text)]
    )
    assert message in created["errors"]["[0].filter"][0]
    path = f"/api/v1/WebhookRules/{tenant.rule_id}"
    patched = await refused(tenant, "PATCH", path, 400, json={"filter": text})
    assert message in patched["errors"]["filter"][0]


async def test_a_filter_at_the_limits_is_accepted(tenant: Tenant) -> None:
    text = "(((name eq '" + "x" * 40 + "')))"
    assert len(text) <= TIGHT["max_filter_length"]
    answer = await tenant.call("GET", "/api/v1/Webhooks/query", params={"filter": text})
    assert answer.status_code == 200 and answer.json()["totalCount"] == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [("pageSize", "0"), ("pageSize", "501"), ("pageSize", "many"), ("pageNumber", "-1")],
)
@pytest.mark.parametrize(
    "path", ["/api/v1/Webhooks/query", "/api/v1/WebhookRules/query", "history"]
)
async def test_a_page_out_of_range_is_400(tenant: Tenant, path: str, name: str, value: str) -> None:
    if path == "history":
        path = f"/api/v1/Webhooks/{tenant.hook_id}/history/query"
    answer = await refused(tenant, "GET", path, 400, params={name: value})
    assert list(answer["errors"]) == [name]


async def test_page_size_500_is_the_largest_accepted(tenant: Tenant) -> None:
    answer = await tenant.call("GET", "/api/v1/Webhooks/query", params={"pageSize": 500})
    assert answer.status_code == 200 and answer.json()["pageSize"] == 500


# -- Malformed JSON and wrong types --------------------------------------------------------------

MALFORMED = {
    "truncated": b'[{"name": "n"',
    "not-json": b"{not json",
    "empty": b"",
    "not-utf8": b'{"name": "\xff\xfe"}',
    "too-deep": b"[" * 2000 + b"]" * 2000,
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("path", ["/api/v1/Webhooks", "/api/v1/WebhookRules", "/api/v1/Events"])
async def test_malformed_json_is_400(tenant: Tenant, path: str, body: bytes) -> None:
    headers = {"content-type": "application/json"}
    answer = await refused(tenant, "POST", path, 400, content=body, headers=headers)
    assert list(answer["errors"]) == ["body"]


WRONG_TYPES = [
    ("/api/v1/Webhooks", [hook_body(retryCount="x")], "[0].retryCount"),
    ("/api/v1/Webhooks", [hook_body(name=5)], "[0].name"),
    ("/api/v1/Webhooks", [hook_body(callbackHttpMethod=7)], "[0].callbackHttpMethod"),
    ("/api/v1/Webhooks", [hook_body(expirationDate="soon")], "[0].expirationDate"),
    ("/api/v1/Webhooks", [hook_body(), "not an object"], "[1]"),
    ("/api/v1/WebhookRules", [rule_body("not-a-uuid")], "[0].webhookId"),
    ("/api/v1/WebhookRules", [rule_body("{hook}", eventType=["U"])], "[0].eventType"),
    ("/api/v1/WebhookRules", [rule_body("{hook}", filter=5)], "[0].filter"),
    ("/api/v1/Events", event_body(records="no"), "[0].records"),
    ("/api/v1/Events", event_body(records=[1, 2]), "[0].records.0"),
    ("/api/v1/Events", event_body(tableKey=5), "[0].tableKey"),
    ("/api/v1/Events", [event_body(), event_body(eventType="X")], "[1].eventType"),
    ("/api/v1/Events", 42, "[0]"),
]


@pytest.mark.parametrize(("path", "body", "field"), WRONG_TYPES)
async def test_a_wrong_type_is_400_naming_the_field(
    tenant: Tenant, path: str, body: Any, field: str
) -> None:
    body = orjson.loads(orjson.dumps(body).replace(b"{hook}", tenant.hook_id.encode()))
    answer = await refused(tenant, "POST", path, 400, json=body)
    assert field in answer["errors"], answer["errors"]


PATCHES = [
    ("webhook", {"retryCount": "x"}, "retryCount"),
    ("webhook", {"retryCount": 6}, "retryCount"),
    ("webhook", {"name": None}, "name"),
    ("webhook", {"callbackUrl": "ftp://example.test/"}, "callbackUrl"),
    ("webhook", {"statusCode": "Sleeping"}, "statusCode"),
    ("webhook", ["name"], "body"),
    ("rule", {"eventType": "X"}, "eventType"),
    ("rule", {"tableKey": 5}, "tableKey"),
    ("rule", {"colour": "red"}, "colour"),
]


@pytest.mark.parametrize(("what", "body", "field"), PATCHES)
async def test_a_bad_patch_is_400_naming_the_field(
    tenant: Tenant, what: str, body: Any, field: str
) -> None:
    path = f"/api/v1/Webhooks/{tenant.hook_id}"
    if what == "rule":
        path = f"/api/v1/WebhookRules/{tenant.rule_id}"
    answer = await refused(tenant, "PATCH", path, 400, json=body)
    assert field in answer["errors"], answer["errors"]


# -- Rate limit ---------------------------------------------------------------------------------


async def test_the_rate_limit_is_per_key(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, rate_limit_per_second=1, rate_limit_burst=2)
    async with run_gateway(settings) as gateway:
        busy, _ = await gateway.add_key("acme")
        other, _ = await gateway.add_key("acme")
        async with gateway.client(busy) as api:
            first = await api.get("/api/v1/Status")
            second = await api.get("/api/v1/Webhooks/query")
            third = await api.get("/api/v1/Status")
        assert (first.status_code, second.status_code) == (200, 200)
        problem(third, 429)
        wait = int(third.headers["retry-after"])
        assert 1 <= wait <= 2
        async with gateway.client(other) as api:
            assert (await api.get("/api/v1/Status")).status_code == 200
        # Retry-After is honest: after waiting that long, the busy key gets through again.
        await asyncio.sleep(wait)
        async with gateway.client(busy) as api:
            assert (await api.get("/api/v1/Status")).status_code == 200


# -- Callback URLs that are not what they seem ----------------------------------------------------


class RefusingResolver:
    """Every name resolves to a documentation address the policy refuses: no DNS, no packet."""

    async def resolve(self, host: str, port: int) -> list[IP]:
        """192.0.2.1 for any name."""
        return [ipaddress.ip_address("192.0.2.1")]


ODD_CALLBACKS = {
    "port-too-big": ("http://127.0.0.1:99999/hook", "invalid port"),
    "port-not-a-number": ("http://127.0.0.1:8a/hook", "invalid port"),
    "port-in-arabic-digits": ("http://127.0.0.1:\u0668\u0660/hook", "invalid port"),
    "crlf-in-path": ("{receiver}/x\r\nX-Injected: 1", "control characters"),
    "crlf-in-query": ("{receiver}/x?a=\r\nX-Injected: 1", "control characters"),
    "space-in-path": ("{receiver}/a b", "control characters"),
    "tab-in-host": ("http://exa\tmple.com/", "control characters"),
    "delete-char": ("{receiver}/\x7f", "control characters"),
    "nul": ("{receiver}/\x00", "control characters"),
    "credentials": ("http://user:pw@example.com/", "credentials"),
    "no-host": ("http:///hook", "absolute http or https URL"),
    "not-http": ("ftp://example.com/", "absolute http or https URL"),
    "too-long": ("http://example.com/" + "x" * 240, "at most 250 characters"),
}


@pytest.mark.parametrize(("url", "message"), ODD_CALLBACKS.values(), ids=ODD_CALLBACKS.keys())
async def test_an_odd_callback_url_is_refused_before_any_request(
    tmp_path: Path, receiver: Receiver, url: str, message: str
) -> None:
    """Refused by validation (400 naming callbackUrl), not by a failed handshake or a 500: the
    URL is sent as written, so a space or CR LF would break or split the request line."""
    url = url.replace("{receiver}", receiver.url)
    async with run_gateway(gateway_settings(tmp_path), resolver=RefusingResolver()) as gateway:
        key, record = await gateway.add_key()
        hook = make_webhook(record.group_key)
        await gateway.ctx.store.add_webhooks([hook])
        async with gateway.client(key) as api:
            created = await api.post("/api/v1/Webhooks", json=[hook_body(callbackUrl=url)])
            patched = await api.patch(
                f"/api/v1/Webhooks/{hook.webhook_id}", json={"callbackUrl": url}
            )
            listed = (await api.get("/api/v1/Webhooks/query")).json()
    assert message in problem(created)["errors"]["[0].callbackUrl"][0]
    assert message in problem(patched)["errors"]["callbackUrl"][0]
    assert listed["totalCount"] == 1 and listed["records"][0]["callbackUrl"] == hook.callback_url
    assert receiver.seen == []
