"""A webhook's request settings over real HTTP: its owner's headers on handshakes, test sends and
notifications, `Idempotency-Key`, the write-only `config` echoed in bodies, `failureWindow` in
answers, and a clear 400 for every setting the gateway refuses."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from gateway.models import FailureWindow, Header
from tests.gateway_server import RunningGateway
from tests.partner import drain_until, invoice_update, subscribe
from tests.receiver import Answer, Receiver
from tests.tenant import add_tenant, hook_body, refused

HEADERS = [
    {"name": "X-Tribe-Key", "value": "k1 with inner spaces"},
    {"name": "x-tenant", "value": "7"},
]
CONFIG = {"partnerSecret": "s3cr3t", "nested": {"list": [1, 2.5, None, True, "é"]}}


@pytest.fixture
def each_store(gateway_on_each_store: RunningGateway) -> RunningGateway:
    """The gateway of conftest, once on SQLite and once on PostgreSQL (the same tests)."""
    return gateway_on_each_store


def owner_headers_of(seen: Any) -> dict[str, str]:
    return {name: seen.headers.get(name) for name in ("x-tribe-key", "x-tenant")}


SENT = {"x-tribe-key": "k1 with inner spaces", "x-tenant": "7"}


async def test_owner_headers_and_config_reach_the_handshake_the_test_send_and_a_delivery(
    each_store: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(each_store, receiver, headers=HEADERS, config=CONFIG)
    [handshake] = [seen for seen in receiver.seen if seen.is_handshake]
    assert owner_headers_of(handshake) == SENT
    # No notification, so neither a signature nor an Idempotency-Key.
    assert "idempotency-key" not in handshake.headers
    assert "webhook-signature" not in handshake.headers
    async with each_store.client(partner.key) as api:
        tested = await api.post(f"/api/v1/Webhooks/{partner.id}/test")
    assert tested.status_code == 200 and tested.json()["isSuccessful"], tested.text
    await partner.publish(invoice_update())
    await each_store.worker().drain()
    test_send, delivery = receiver.notifications("/hook")
    for seen in (test_send, delivery):
        data = partner.verify(seen)  # the config is signed with the rest of the body
        assert owner_headers_of(seen) == SENT
        assert seen.headers["idempotency-key"] == seen.headers["webhook-id"]
        assert data["config"] == CONFIG
    assert partner.verify(delivery)["records"] == invoice_update()["records"]
    assert partner.verify(test_send)["tableKey"] == "Test"


async def test_a_retry_repeats_its_idempotency_key(
    each_store: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(each_store, receiver, retry_count=5)
    receiver.plan("/hook", Answer(status=500), Answer())
    await partner.publish(invoice_update(), invoice_update())
    await drain_until(each_store.worker(), lambda: len(receiver.notifications("/hook")) >= 3)
    keys = [seen.headers["idempotency-key"] for seen in receiver.notifications("/hook")]
    ids = [seen.headers["webhook-id"] for seen in receiver.notifications("/hook")]
    assert keys == ids and len(set(keys)) == 2


@pytest.mark.parametrize(("method", "content"), [("PUT", "Id"), ("GET", "Id")])
async def test_the_config_goes_in_bodies_only_and_no_answer_shows_it(
    each_store: RunningGateway, receiver: Receiver, method: str, content: str
) -> None:
    partner = await subscribe(each_store, receiver, method=method, content=content, config=CONFIG)
    await partner.publish(invoice_update())
    await each_store.worker().drain()
    [seen] = receiver.notifications("/hook")
    data = partner.verify(seen)
    if method == "GET":  # a query string is logged by every server and proxy on the way
        assert "config" not in data and "s3cr3t" not in seen.query
    else:
        assert data["config"] == CONFIG and data["ids"] == ["1", "2", "3"]
    async with each_store.client(partner.key) as api:
        answers = [
            await api.get(f"/api/v1/Webhooks/{partner.id}"),
            await api.get("/api/v1/Webhooks/query"),
            await api.patch(f"/api/v1/Webhooks/{partner.id}", json={"name": "renamed"}),
            await api.get(
                f"/api/v1/Webhooks/{partner.id}/history/query",
                params={"include": "RequestMessage,Attempts"},
            ),
        ]
    texts = [partner.hook, *(answer.json() for answer in answers)]
    assert all(answer.status_code == 200 for answer in answers)
    assert not any("s3cr3t" in str(text) or "'config'" in str(text) for text in texts)
    if method != "GET":  # the history keeps the body sent, the config hidden
        [row] = answers[3].json()["records"]
        assert '"config":"(write-only)"' in row["requestMessage"]
    assert (await partner.stored()).config == CONFIG


async def test_settings_are_answered_changed_and_cleared(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    window = {"count": 100, "seconds": 86400}
    partner = await subscribe(
        gateway, receiver, headers=HEADERS, config=CONFIG, failureWindow=window
    )
    assert (partner.hook["headers"], partner.hook["failureWindow"]) == (HEADERS, window)
    stored = await partner.stored()
    assert stored.headers == tuple(Header(**h) for h in HEADERS)
    assert (stored.config, stored.failure_window) == (CONFIG, FailureWindow(100, 86400))
    # Left out: unchanged. Property names inside are taken in any case.
    renamed = await partner.patch(name="renamed")
    assert (renamed.json()["headers"], renamed.json()["failureWindow"]) == (HEADERS, window)
    changed = await partner.patch(
        headers=[{"Name": "X-Other", "VALUE": ""}], failureWindow={"Count": 3, "seconds": 60}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["headers"] == [{"name": "X-Other", "value": ""}]
    assert changed.json()["failureWindow"] == {"count": 3, "seconds": 60}
    assert (await partner.stored()).config == CONFIG
    cleared = await partner.patch(headers=[], config=None, failureWindow=None)
    assert cleared.status_code == 200, cleared.text
    assert (cleared.json()["headers"], cleared.json()["failureWindow"]) == ([], None)
    stored = await partner.stored()
    assert (stored.headers, stored.config, stored.failure_window) == ((), None, None)


async def test_new_headers_go_on_the_handshake_of_a_new_callback(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    partner = await subscribe(gateway, receiver, headers=HEADERS)
    moved = receiver.plan("/moved")
    headers = [{"name": "X-Tribe-Key", "value": "k2"}]
    answer = await partner.patch(callbackUrl=moved, headers=headers)
    assert answer.status_code == 200, answer.text
    handshake = receiver.seen[-1]
    assert handshake.path == "/moved" and handshake.is_handshake
    assert owner_headers_of(handshake) == {"x-tribe-key": "k2", "x-tenant": None}


def header(name: str = "X-Key", value: str = "v") -> dict[str, Any]:
    return {"headers": [{"name": name, "value": value}]}


# A setting the gateway refuses, the field its 400 names (a create's under "[0].") and a part
# of the message.
REFUSED: list[tuple[dict[str, Any], str, str]] = [
    ({"headers": "X-Key: v"}, "headers", "tuple"),
    ({"headers": [{"name": f"X-{i}", "value": "v"} for i in range(21)]}, "headers", "20"),
    (header("X Key"), "headers.0.name", "HTTP token"),
    (header("X-Key\r\nX-Injected"), "headers.0.name", "HTTP token"),
    (header("X-Kéy"), "headers.0.name", "HTTP token"),
    (header(""), "headers.0.name", "at least 1"),
    (header("X-" + "k" * 99), "headers.0.name", "at most 100"),
    (header(value="v\r\nX-Injected: 1"), "headers.0.value", "control characters"),
    (header(value="v\nw"), "headers.0.value", "control characters"),
    (header(value="tab\there"), "headers.0.value", "control characters"),
    (header(value="nul\x00"), "headers.0.value", "control characters"),
    (header(value="café"), "headers.0.value", "ASCII"),
    (header(value=" padded"), "headers.0.value", "either end"),
    (header(value="v" * 1001), "headers.0.value", "at most 1000"),
    ({"headers": [{"name": "X-Key"}]}, "headers.0.value", "required"),
    ({"headers": [{"name": "X-Key", "value": "v", "other": 1}]}, "headers.0.other",
     "not permitted"),
    ({"headers": [{"name": "X-Key", "value": "1"}, {"name": "x-KEY", "value": "2"}]},
     "headers", "x-KEY is given twice"),
    ({"config": [1]}, "config", "dictionary"),
    ({"config": "text"}, "config", "dictionary"),
    ({"config": {"pad": "x" * 2040}}, "config", "at most 2048 bytes"),
    ({"failureWindow": {"count": 0, "seconds": 60}}, "failureWindow.count", "greater than"),
    ({"failureWindow": {"count": 1001, "seconds": 60}}, "failureWindow.count", "less than"),
    ({"failureWindow": {"count": 5, "seconds": 0}}, "failureWindow.seconds", "greater than"),
    ({"failureWindow": {"count": 5, "seconds": 604_801}}, "failureWindow.seconds", "less than"),
    ({"failureWindow": {"count": 5}}, "failureWindow.seconds", "required"),
    ({"failureWindow": {"count": 5, "seconds": 60, "x": 1}}, "failureWindow.x", "not permitted"),
    ({"failureWindow": 5}, "failureWindow", "FailureWindowIn"),
]  # fmt: skip
RESERVED = ["Host", "content-length", "Content-Type", "Transfer-Encoding", "CONNECTION",
            "Keep-Alive", "Idempotency-Key", "webhook-signature", "Webhook-Id",
            "webhook-timestamp", "webhook-anything"]  # fmt: skip
REFUSED += [(header(name), "headers.0.name", f"{name} is set by the gateway") for name in RESERVED]


def nested(levels: int) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for _ in range(levels - 1):
        config = {"a": config}
    return config


REFUSED.append(({"config": nested(33)}, "config", "at most 32 levels"))


@pytest.mark.parametrize(("given", "field", "message"), REFUSED)
async def test_each_refused_setting_is_a_400_naming_it_that_changes_nothing(
    gateway: RunningGateway, given: dict[str, Any], field: str, message: str
) -> None:
    tenant = await add_tenant(gateway)
    path = f"/api/v1/Webhooks/{tenant.hook_id}"
    patched = await refused(tenant, "PATCH", path, 400, json=given)
    assert message in " ".join(patched["errors"][field]), patched
    created = await refused(tenant, "POST", "/api/v1/Webhooks", 400, json=[hook_body(**given)])
    assert message in " ".join(created["errors"][f"[0].{field}"]), created


async def test_an_authorization_header_is_the_owners_only_while_no_authentication_sets_it(
    gateway: RunningGateway,
) -> None:
    tenant = await add_tenant(gateway)
    path = f"/api/v1/Webhooks/{tenant.hook_id}"
    bearer = [{"name": "Authorization", "value": "Bearer partner-token"}]
    taken = await tenant.call("PATCH", path, json={"headers": bearer})
    assert taken.status_code == 200, taken.text
    # An authentication sets Authorization itself: beside one the header is refused, whether
    # the request names the header, the authentication or both.
    with_auth = {"authenticationId": tenant.auth_id}
    answer = await refused(tenant, "PATCH", path, 400, json=with_auth)
    assert "authenticationId" in " ".join(answer["errors"]["headers"]), answer
    body = hook_body(headers=bearer, **with_auth)
    created = await refused(tenant, "POST", "/api/v1/Webhooks", 400, json=[body])
    assert "authenticationId" in " ".join(created["errors"]["[0].headers"]), created


async def test_a_patch_clears_the_headers_with_an_empty_list_not_null(
    gateway: RunningGateway,
) -> None:
    tenant = await add_tenant(gateway)
    path = f"/api/v1/Webhooks/{tenant.hook_id}"
    answer = await refused(tenant, "PATCH", path, 400, json={"headers": None})
    assert answer["errors"]["headers"] == ["cannot be null"]


async def test_a_config_just_within_the_limits_is_taken(gateway: RunningGateway) -> None:
    tenant = await add_tenant(gateway)
    path = f"/api/v1/Webhooks/{tenant.hook_id}"
    largest = {"pad": "x" * (2048 - len('{"pad":""}'))}
    for config in (largest, nested(32), {}):
        answer = await tenant.call("PATCH", path, json={"config": config})
        assert answer.status_code == 200, answer.text
        assert "config" not in answer.json()
        stored = await gateway.ctx.store.get_webhook(tenant.record.group_key, UUID(tenant.hook_id))
        assert stored is not None and stored.config == config


@pytest.mark.parametrize(
    "scheme",
    [{"signatureScheme": "HmacSha256Hex"},
     {"signatureScheme": "HmacSha512Base64", "signatureHeader": "X-Tribe-Signature"}],
)  # fmt: skip
async def test_an_owners_header_is_never_the_signature_header(
    gateway: RunningGateway, scheme: dict[str, str]
) -> None:
    tenant = await add_tenant(gateway)
    name = scheme.get("signatureHeader", "X-Webhook-Signature").lower()
    body = hook_body(**scheme, **header(name))
    created = await refused(tenant, "POST", "/api/v1/Webhooks", 400, json=[body])
    assert created["errors"]["[0].headers"] == [f"{name} is the signature header (signatureHeader)"]
    path = f"/api/v1/Webhooks/{tenant.hook_id}"
    # A PATCH is judged with the stored scheme: the header alone, or the scheme alone.
    assert (await tenant.call("PATCH", path, json=header(name))).status_code == 200
    patched = await refused(tenant, "PATCH", path, 400, json=scheme)
    assert patched["errors"]["headers"] == [f"{name} is the signature header (signatureHeader)"]
    assert (await tenant.call("PATCH", path, json={**scheme, **header()})).status_code == 200
    again = await refused(tenant, "PATCH", path, 400, json=header(name))
    assert "headers" in again["errors"]
