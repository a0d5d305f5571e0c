"""The management API over real HTTP, with real handshakes against a loopback receiver."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from gateway.models import WebhookStatus, utcnow
from tests.factories import set_expiration
from tests.gateway_server import RunningGateway
from tests.receiver import Answer, Receiver


def hook_body(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "invoices",
        "requestContentType": "Full",
        "callbackHttpMethod": "POST",
        "callbackUrl": url,
        "retryCount": 2,
        **extra,
    }


async def create(gateway: RunningGateway, key: str, *bodies: dict[str, Any]) -> Any:
    async with gateway.client(key) as api:
        return await api.post("/api/v1/Webhooks", json=list(bodies))


@pytest.fixture
async def key(gateway: RunningGateway) -> str:
    return (await gateway.add_key("acme"))[0]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH"])
async def test_handshake_passes_with_each_method(
    gateway: RunningGateway, receiver: Receiver, key: str, method: str
) -> None:
    content = "Id" if method == "GET" else "Full"
    url = receiver.plan("/hook?tenant=7")
    answer = await create(
        gateway, key, hook_body(url, callbackHttpMethod=method, requestContentType=content)
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()[0]["statusCode"] == "Active"
    handshake = receiver.seen[-1]
    assert handshake.method == method and handshake.is_handshake
    assert handshake.params["tenant"] == ["7"]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (Answer(status=404), "callback answered HTTP 404"),
        (Answer(body="not the code"), "body did not match the code"),
        (Answer(delay=3.0), "timed out after 2 s"),
        (Answer(status=302, headers={"location": "/echo"}), "redirects are not followed"),
    ],
)
async def test_failed_handshake_creates_nothing(
    gateway: RunningGateway, receiver: Receiver, key: str, answer: Answer, message: str
) -> None:
    good = receiver.plan("/good")
    bad = receiver.plan("/bad", answer)
    result = await create(gateway, key, hook_body(good), hook_body(bad))
    assert result.status_code == 400
    problem = result.json()
    assert result.headers["content-type"] == "application/problem+json"
    assert message in problem["errors"]["[1].callbackUrl"][0]
    assert "[0].callbackUrl" not in problem["errors"]
    assert not [s for s in receiver.seen if s.path == "/echo"], "the redirect was followed"
    async with gateway.client(key) as api:
        assert (await api.get("/api/v1/Webhooks/query")).json()["totalCount"] == 0


async def test_handshake_to_a_refused_address_says_why(tmp_path: Any, receiver: Receiver) -> None:
    from tests.gateway_server import gateway_settings, run_gateway

    closed = dataclasses.replace(gateway_settings(tmp_path), allowed_callback_networks=())
    async with run_gateway(closed) as strict:
        key, _ = await strict.add_key()
        result = await create(strict, key, hook_body(receiver.plan("/x")))
    assert result.status_code == 400
    detail = result.json()["errors"]["[0].callbackUrl"][0]
    assert detail.startswith("callback address 127.0.0.1 is not allowed (loopback); ")
    # What to change, where, for someone trying the gateway on one machine.
    assert "GATEWAY_ALLOWED_CALLBACK_NETWORKS" in detail
    assert "allowed_callback_networks in the config file" in detail
    assert receiver.seen == [], "a refused address must not be contacted"


async def test_patch_to_a_failing_url_changes_nothing(
    gateway: RunningGateway, receiver: Receiver, key: str
) -> None:
    hook = (await create(gateway, key, hook_body(receiver.plan("/a")))).json()[0]
    failing = receiver.plan("/moved", Answer(status=500))
    async with gateway.client(key) as api:
        result = await api.patch(
            f"/api/v1/Webhooks/{hook['webhookId']}",
            json={"callbackUrl": failing, "name": "renamed"},
        )
        after = (await api.get(f"/api/v1/Webhooks/{hook['webhookId']}")).json()
    assert result.status_code == 400 and "HTTP 500" in result.json()["detail"]
    assert after == hook


async def test_a_name_change_needs_no_handshake(
    gateway: RunningGateway, receiver: Receiver, key: str
) -> None:
    hook = (await create(gateway, key, hook_body(receiver.plan("/a")))).json()[0]
    handshakes = len(receiver.seen)
    async with gateway.client(key) as api:
        result = await api.patch(f"/api/v1/Webhooks/{hook['webhookId']}", json={"NAME": "b"})
    assert result.status_code == 200 and result.json()["name"] == "b"
    assert len(receiver.seen) == handshakes


async def test_pause_and_reactivate_with_handshake(
    gateway: RunningGateway, receiver: Receiver, key: str
) -> None:
    hook = (await create(gateway, key, hook_body(receiver.plan("/a")))).json()[0]
    path = f"/api/v1/Webhooks/{hook['webhookId']}"
    async with gateway.client(key) as api:
        paused = (await api.patch(path, json={"statusCode": "Inactive"})).json()
        assert (paused["statusCode"], paused["statusMessage"]) == ("Inactive", "paused by owner")
        receiver.plan("/a", Answer(status=503))
        refused = await api.patch(path, json={"statusCode": "Active"})
        assert refused.status_code == 400
        assert (await api.get(path)).json()["statusCode"] == "Inactive"
        receiver.plan("/a", Answer())
        resumed = await api.patch(path, json={"statusCode": "Active"})
        assert resumed.json()["statusCode"] == "Active"
        errored = await api.patch(path, json={"statusCode": "Errored"})
        assert errored.status_code == 400 and "statusCode" in errored.json()["errors"]


async def test_a_status_filter_sees_an_expired_webhook_as_inactive(
    gateway: RunningGateway, receiver: Receiver, key: str
) -> None:
    """Before the periodic sweep has run, filters and orders on the status still agree with
    what the records say."""
    bodies = [hook_body(receiver.plan("/a")), hook_body(receiver.plan("/b"))]
    made = (await create(gateway, key, *bodies)).json()
    stored = await gateway.ctx.store.get_webhook_any_group(UUID(made[0]["webhookId"]))
    assert stored is not None
    past = utcnow() - timedelta(minutes=1)
    await set_expiration(gateway.ctx.store, stored, past)

    async def names(**params: str) -> list[tuple[str, str]]:
        async with gateway.client(key) as api:
            found = (await api.get("/api/v1/Webhooks/query", params=params)).json()
        return [(h["webhookId"], h["statusCode"]) for h in found["records"]]

    expired, live = made[0]["webhookId"], made[1]["webhookId"]
    assert await names(filter="statusCode eq 'Active'") == [(live, "Active")]
    assert await names(filter="statusCode eq 'Inactive'") == [(expired, "Inactive")]
    assert await names(order="statusCode asc") == [(live, "Active"), (expired, "Inactive")]


async def test_an_expired_webhook_never_reads_as_active(
    gateway: RunningGateway, receiver: Receiver, key: str
) -> None:
    hook = (await create(gateway, key, hook_body(receiver.plan("/a")))).json()[0]
    stored = await gateway.ctx.store.get_webhook_any_group(UUID(hook["webhookId"]))
    assert stored is not None
    past = utcnow() - timedelta(minutes=1)
    await set_expiration(gateway.ctx.store, stored, past)
    async with gateway.client(key) as api:
        read = (await api.get(f"/api/v1/Webhooks/{hook['webhookId']}")).json()
        assert read["statusCode"] == "Inactive" and read["statusMessage"].startswith("expired")
        swept = await gateway.ctx.store.expire_webhooks(utcnow())
        assert [h.webhook_id for h in swept] == [stored.webhook_id]
        assert swept[0].status_message == read["statusMessage"]  # one rule, one message
        again = await api.patch(
            f"/api/v1/Webhooks/{hook['webhookId']}", json={"statusCode": "Active"}
        )
        assert again.status_code == 400 and "expirationDate" in again.json()["errors"]
        future = (utcnow() + timedelta(days=1)).isoformat()
        back = await api.patch(
            f"/api/v1/Webhooks/{hook['webhookId']}",
            json={"statusCode": "Active", "expirationDate": future},
        )
        assert back.json()["statusCode"] == "Active"
    current = await gateway.ctx.store.get_webhook_any_group(UUID(hook["webhookId"]))
    assert current is not None and current.status_code is WebhookStatus.ACTIVE


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"callbackHttpMethod": "GET", "requestContentType": "Full"}, "[0].requestContentType"),
        ({"expirationDate": "2001-01-01T00:00:00Z"}, "[0].expirationDate"),
        ({"retryCount": 9}, "[0].retryCount"),
        ({"callbackUrl": "not a url"}, "[0].callbackUrl"),
    ],
)
async def test_invalid_creates_name_the_field(
    gateway: RunningGateway, key: str, body: dict[str, Any], field: str
) -> None:
    result = await create(gateway, key, hook_body("http://127.0.0.1:9/x", **body))
    assert result.status_code == 400
    assert field in result.json()["errors"]


async def test_query_filters_orders_and_pages(
    gateway: RunningGateway, receiver: Receiver, key: str
) -> None:
    names = ["alpha", "beta", "gamma", "delta"]
    await create(gateway, key, *[hook_body(receiver.plan(f"/{n}"), name=n) for n in names])
    async with gateway.client(key) as api:
        page = (
            await api.get(
                "/api/v1/Webhooks/query",
                params={
                    "filter": "name ne 'beta'",
                    "order": "name DESC",
                    "pageSize": 2,
                    "pageNumber": 1,
                },
            )
        ).json()
        assert page["totalCount"] == 3
        assert [r["name"] for r in page["records"]] == ["alpha"]
        bad = await api.get("/api/v1/Webhooks/query", params={"filter": "colour eq red"})
        assert bad.status_code == 400 and "unknown field 'colour'" in bad.json()["detail"]
        absent = await api.get("/api/v1/Webhooks/query", params={"filter": "None", "order": ""})
        assert absent.json()["totalCount"] == 4


async def test_errors_are_problem_json(gateway: RunningGateway, key: str) -> None:
    async with gateway.client(key) as api:
        for response in (
            await api.post(
                "/api/v1/Webhooks",
                content=b"{not json",
                headers={"content-type": "application/json"},
            ),
            await api.get("/api/v1/Webhooks/00000000-0000-0000-0000-000000000000"),
            await api.get("/api/v1/Nothing"),
        ):
            assert response.headers["content-type"] == "application/problem+json"
            assert {"type", "title", "status", "detail"} <= set(response.json())
    async with gateway.client() as anonymous:
        assert (await anonymous.get("/api/v1/Status")).status_code == 401


async def test_health_readiness_and_openapi(gateway: RunningGateway) -> None:
    async with gateway.client() as api:
        assert (await api.get("/healthz")).json() == {"status": "ok"}
        assert (await api.get("/readyz")).json() == {"status": "ready"}
        spec = (await api.get("/openapi.json")).json()
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    from gateway.app import API_ROUTES

    served = {(m, r.path) for r in API_ROUTES for m in (r.methods or ()) if m != "HEAD"}
    assert served == documented


async def test_inline_rules_are_created_with_their_webhook(
    gateway_on_each_store: RunningGateway, receiver: Receiver
) -> None:
    gateway = gateway_on_each_store
    key = (await gateway.add_key("acme"))[0]
    rules = [
        # As an ADS client may echo a rule: any case, with read-only properties.
        {"TableKey": "Invoice", "eventType": "Update", "webhookId": "x", "created": "y"},
        {"tableKey": "Payment", "eventType": "I", "filter": "total gt 100"},
    ]
    answer = await create(gateway, key, hook_body(receiver.plan("/hook"), webhookRules=rules))
    assert answer.status_code == 200, answer.text
    [hook] = answer.json()
    made = hook["webhookRules"]
    assert [(r["tableKey"], r["eventType"], r["filter"]) for r in made] == [
        ("Invoice", "U", None),
        ("Payment", "I", "total gt 100"),
    ]
    assert {r["webhookId"] for r in made} == {hook["webhookId"]}
    async with gateway.client(key) as api:
        path = f"/api/v1/Webhooks/{hook['webhookId']}"
        read = (await api.get(path, params={"include": "WebhookRules"})).json()

        def by_id(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return sorted(rules, key=lambda r: str(r["webhookRuleId"]))

        assert by_id(read["webhookRules"]) == by_id(made)
        event = {"tableKey": "Invoice", "eventType": "U", "records": [{"id": "1"}]}
        assert (await api.post("/api/v1/Events", json=event)).status_code == 202
        bare = await create(gateway, key, hook_body(receiver.plan("/bare")))
        assert "webhookRules" not in bare.json()[0], "as a GET without include shows it"
        empty = await create(gateway, key, hook_body(receiver.plan("/e"), webhookRules=[]))
        assert empty.json()[0]["webhookRules"] == []
        null = await create(gateway, key, hook_body(receiver.plan("/n"), webhookRules=None))
        assert null.status_code == 200 and "webhookRules" not in null.json()[0]
    await gateway.worker().drain()
    assert len(receiver.notifications("/hook")) == 1


async def test_a_bad_inline_rule_refuses_the_whole_create(
    gateway_on_each_store: RunningGateway, receiver: Receiver
) -> None:
    gateway = gateway_on_each_store
    key = (await gateway.add_key("acme"))[0]
    good = hook_body(receiver.plan("/good"), webhookRules=[{"tableKey": "A", "eventType": "U"}])
    bad_rules = [{"tableKey": "Invoice", "eventType": "U"}, {"tableKey": "B", "filter": "x gt"}]
    bad = hook_body(receiver.plan("/bad"), webhookRules=bad_rules)
    answer = await create(gateway, key, good, bad)
    assert answer.status_code == 400, answer.text
    errors = answer.json()["errors"]
    assert set(errors) == {"[1].webhookRules.1.eventType", "[1].webhookRules.1.filter"}
    assert receiver.seen == [], "nothing is verified for a create bound to be refused"
    async with gateway.client(key) as api:
        assert (await api.get("/api/v1/Webhooks/query")).json()["totalCount"] == 0
        assert (await api.get("/api/v1/WebhookRules/query")).json()["totalCount"] == 0
        # A handshake that fails leaves no rule behind either.
        failing = hook_body(receiver.plan("/down", Answer(status=500)), webhookRules=bad_rules[:1])
        assert (await create(gateway, key, failing)).status_code == 400
        assert (await api.get("/api/v1/WebhookRules/query")).json()["totalCount"] == 0


async def test_inline_rules_need_declared_event_types_when_enforced(
    tmp_path: Any, receiver: Receiver
) -> None:
    from tests.gateway_server import gateway_settings, run_gateway

    enforcing = dataclasses.replace(gateway_settings(tmp_path), enforce_event_types=True)
    async with run_gateway(enforcing) as strict:
        key, _ = await strict.add_key()
        rules = [{"tableKey": "Invoice", "eventType": "U"}]
        answer = await create(strict, key, hook_body(receiver.plan("/x"), webhookRules=rules))
        assert answer.status_code == 400, answer.text
        assert "[0].webhookRules.0.eventType" in answer.json()["errors"]
        async with strict.client(key) as api:
            assert (await api.get("/api/v1/Webhooks/query")).json()["totalCount"] == 0
    assert receiver.seen == []


async def test_a_get_of_a_collection_path_says_where_listing_is(
    gateway: RunningGateway, receiver: Receiver, key: str
) -> None:
    hook = (await create(gateway, key, hook_body(receiver.plan("/a")))).json()[0]
    async with gateway.client(key) as api:
        for resource in ("Webhooks", "WebhookRules", "Authentications", "EventTypes"):
            answer = await api.get(f"/api/v1/{resource}")
            assert answer.status_code == 405 and answer.headers["allow"] == "POST"
            assert answer.headers["content-type"] == "application/problem+json"
            assert f"list with GET /api/v1/{resource}/query" in answer.json()["detail"]
        history = await api.get(f"/api/v1/Webhooks/{hook['webhookId']}/history")
        assert history.status_code == 404
        listing = f"GET /api/v1/Webhooks/{hook['webhookId']}/history/query"
        assert listing in history.json()["detail"]
        # Other mistakes keep the plain answer.
        assert (await api.delete("/api/v1/Webhooks")).json()["detail"] == "Method Not Allowed"
        assert (await api.get("/api/v1/Events")).json()["detail"] == "Method Not Allowed"


async def test_the_root_points_to_the_docs_the_document_and_the_portal(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as anonymous:
        found = await anonymous.get("/")
        page = await anonymous.get("/", headers={"accept": "text/html,*/*;q=0.8"})
    assert found.status_code == 200
    links = found.json()["links"]
    assert {links[k] for k in ("docs", "openapi", "portal", "status")} == {
        "/docs", "/openapi.json", "/portal", "/api/v1/Status",
    }  # fmt: skip
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<a href="/docs">' in page.text and '<a href="/openapi.json">' in page.text
