"""Reusable authentications over real HTTP, on SQLite and PostgreSQL: the resource itself, its
secret kept sealed and never shown, and its credentials on every request to a callback that
uses it (handshake, test send, delivery), changed for all of them at once."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest

from gateway import credentials, sealed
from gateway.errors import ValidationError
from gateway.models import Authentication
from gateway.store.base import Query, WebhookEdit
from tests.gateway_server import RunningGateway
from tests.integration.test_secrets import every_logger_at_debug, logged_text
from tests.partner import drain_until
from tests.receiver import Receiver, Seen

AUTHS = "/api/v1/Authentications"
PASSWORD = "correct-horse-battery-staple"
TOKEN = "tok_live_5ecr3t-t0ken"
EVENT = {"tableKey": "Invoice", "eventType": "U", "records": [{"id": "1"}]}


def basic(**extra: Any) -> dict[str, Any]:
    return {"name": "partner basic", "kind": "Basic", "username": "partner",
            "password": PASSWORD, **extra}  # fmt: skip


def header(**extra: Any) -> dict[str, Any]:
    return {"name": "partner token", "kind": "Header", "headerName": "X-Api-Key",
            "headerValue": TOKEN, **extra}  # fmt: skip


def basic_pair(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@pytest.fixture
async def gateway(gateway_on_each_store: RunningGateway) -> RunningGateway:
    return gateway_on_each_store


@pytest.fixture
async def key(gateway: RunningGateway) -> str:
    return (await gateway.add_key("acme"))[0]


async def call(
    gateway: RunningGateway, key: str, method: str, path: str, body: Any = None, **params: Any
) -> httpx.Response:
    async with gateway.client(key) as api:
        return await api.request(method, path, json=body, params=params or None)


async def create(gateway: RunningGateway, key: str, *bodies: dict[str, Any]) -> list[Any]:
    answer = await call(gateway, key, "POST", AUTHS, list(bodies))
    assert answer.status_code == 200, answer.text
    made: list[Any] = answer.json()
    return made


async def subscribe(
    gateway: RunningGateway, key: str, receiver: Receiver, authentication_id: str | None
) -> dict[str, Any]:
    """A webhook (handshake included) sending with this authentication, with an Invoice.U rule."""
    body = {"name": "n", "requestContentType": "Full", "callbackHttpMethod": "POST",
            "callbackUrl": receiver.plan("/hook"),
            "authenticationId": authentication_id}  # fmt: skip
    made = await call(gateway, key, "POST", "/api/v1/Webhooks", [body])
    assert made.status_code == 200, made.text
    hook: dict[str, Any] = made.json()[0]
    rule = {"webhookId": hook["webhookId"], "tableKey": "Invoice", "eventType": "U"}
    assert (await call(gateway, key, "POST", "/api/v1/WebhookRules", [rule])).status_code == 200
    return hook


async def deliver(gateway: RunningGateway, key: str, receiver: Receiver) -> Seen:
    """Publish one event and run a worker until it arrives; the request as received."""
    count = len(receiver.notifications("/hook"))
    assert (await call(gateway, key, "POST", "/api/v1/Events", EVENT)).status_code == 202
    worker = gateway.ctx.worker or gateway.worker()
    await drain_until(worker, lambda: len(receiver.notifications("/hook")) > count)
    return receiver.notifications("/hook")[-1]


def without_secrets(answer: httpx.Response) -> None:
    assert PASSWORD not in answer.text and TOKEN not in answer.text
    for item in answer.json() if isinstance(answer.json(), list) else [answer.json()]:
        for record in item.get("records", [item]):
            assert not {"password", "headerValue", "sealedSecret"} & set(record)


# -- The resource ----------------------------------------------------------------------------


async def test_an_authentication_is_created_read_changed_and_listed_without_its_secret(
    gateway: RunningGateway, key: str
) -> None:
    answer = await call(gateway, key, "POST", AUTHS, [basic(), header()])
    assert answer.status_code == 200, answer.text
    without_secrets(answer)
    made_basic, made_header = answer.json()
    assert (made_basic["kind"], made_basic["username"], made_basic["headerName"]) == (
        "Basic", "partner", None)  # fmt: skip
    assert (made_header["kind"], made_header["username"], made_header["headerName"]) == (
        "Header", None, "X-Api-Key")  # fmt: skip
    path = f"{AUTHS}/{made_basic['authenticationId']}"
    read = await call(gateway, key, "GET", path)
    assert read.status_code == 200 and read.json() == made_basic
    headers = await call(gateway, key, "GET", f"{AUTHS}/query", filter="kind eq 'Header'")
    assert headers.status_code == 200, headers.text
    assert [r["authenticationId"] for r in headers.json()["records"]] == [
        made_header["authenticationId"]]  # fmt: skip
    by_name = await call(gateway, key, "GET", f"{AUTHS}/query", order="name DESC")
    assert [r["name"] for r in by_name.json()["records"]] == ["partner token", "partner basic"]
    without_secrets(by_name)
    renamed = await call(gateway, key, "PATCH", path, {"name": "renamed"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "renamed" and renamed.json()["username"] == "partner"
    assert renamed.json()["modified"] >= made_basic["modified"]
    switched = await call(gateway, key, "PATCH", path, header(name="renamed"))
    assert switched.status_code == 200, switched.text
    without_secrets(switched)
    assert (switched.json()["kind"], switched.json()["username"]) == ("Header", None)
    assert (await call(gateway, key, "GET", path)).json() == switched.json()


async def stored_secret(gateway: RunningGateway, authentication_id: str) -> str:
    """The sealed_secret column as the database holds it, read past the store."""
    url = gateway.ctx.settings.database_url
    select = "SELECT sealed_secret FROM authentications WHERE authentication_id = "
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            (value,) = db.execute(select + "?", (authentication_id,)).fetchone()
        return str(value)
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval(select + "$1", UUID(authentication_id)))
    finally:
        await conn.close()


async def test_the_secret_is_stored_sealed_with_the_gateways_key(
    gateway: RunningGateway, key: str
) -> None:
    made = await create(gateway, key, basic(), header())
    box = sealed.sealer(gateway.ctx.settings.secret_key)
    for item, secret in zip(made, (PASSWORD, TOKEN), strict=True):
        value = await stored_secret(gateway, item["authenticationId"])
        assert secret not in value
        # It is that secret, sealed: it opens with the gateway's key, bound to its own row.
        assert box.open(value, credentials.bound(UUID(item["authenticationId"]))) == secret
    url = gateway.ctx.settings.database_url
    if url.startswith("sqlite:///"):  # nowhere in the files: database, journal, shared memory
        for path in Path(url.removeprefix("sqlite:///")).parent.glob("gateway.db*"):
            raw = path.read_bytes()
            assert PASSWORD.encode() not in raw and TOKEN.encode() not in raw, path


async def test_an_authentication_in_use_is_not_deleted_and_its_webhooks_are_named(
    gateway: RunningGateway, key: str, receiver: Receiver
) -> None:
    (made,) = await create(gateway, key, basic())
    hook = await subscribe(gateway, key, receiver, made["authenticationId"])
    path = f"{AUTHS}/{made['authenticationId']}"
    refused = await call(gateway, key, "DELETE", path)
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert hook["webhookId"] in refused.json()["detail"]
    assert (await call(gateway, key, "GET", path)).status_code == 200
    hook_path = f"/api/v1/Webhooks/{hook['webhookId']}"
    freed = await call(gateway, key, "PATCH", hook_path, {"authenticationId": None})
    assert freed.status_code == 200 and freed.json()["authenticationId"] is None
    deleted = await call(gateway, key, "DELETE", path)
    assert deleted.status_code == 200, deleted.text
    assert (await call(gateway, key, "GET", path)).status_code == 404


# -- On the requests to the callback ---------------------------------------------------------


async def test_every_request_to_the_callback_carries_the_authentication(
    gateway: RunningGateway, key: str, receiver: Receiver
) -> None:
    made_basic, made_header = await create(gateway, key, basic(), header())
    hook = await subscribe(gateway, key, receiver, made_basic["authenticationId"])
    assert hook["authenticationId"] == made_basic["authenticationId"]
    (handshake,) = [seen for seen in receiver.seen if seen.is_handshake]
    assert handshake.headers["authorization"] == basic_pair("partner", PASSWORD)
    hook_path = f"/api/v1/Webhooks/{hook['webhookId']}"
    tested = await call(gateway, key, "POST", f"{hook_path}/test")
    assert tested.json()["isSuccessful"] is True, tested.text
    assert receiver.notifications("/hook")[-1].headers["authorization"] == basic_pair(
        "partner", PASSWORD)  # fmt: skip
    delivered = await deliver(gateway, key, receiver)
    assert delivered.headers["authorization"] == basic_pair("partner", PASSWORD)
    # Another authentication of the group, named by a PATCH: the next delivery sends with it.
    moved = await call(
        gateway, key, "PATCH", hook_path, {"authenticationId": made_header["authenticationId"]}
    )
    assert moved.status_code == 200, moved.text
    gateway.ctx.worker = gateway.worker()  # told of changes, as serve's worker is
    delivered = await deliver(gateway, key, receiver)
    assert delivered.headers["x-api-key"] == TOKEN and "authorization" not in delivered.headers
    # The signature headers are the gateway's own, as before.
    assert {"webhook-id", "webhook-signature", "webhook-timestamp"} <= set(delivered.headers)
    history = await call(
        gateway, key, "GET", f"{hook_path}/history/query", include="RequestMessage"
    )
    # Two notifications and the test send, which history keeps too: none shows a credential.
    assert history.status_code == 200 and history.json()["totalCount"] == 3
    assert PASSWORD not in history.text and TOKEN not in history.text


async def test_a_change_of_an_authentication_reaches_every_webhook_from_its_next_request(
    gateway: RunningGateway, key: str, receiver: Receiver
) -> None:
    (made,) = await create(gateway, key, basic())
    await subscribe(gateway, key, receiver, made["authenticationId"])
    gateway.ctx.worker = gateway.worker()  # told of changes, as serve's worker is
    first = await deliver(gateway, key, receiver)
    assert first.headers["authorization"] == basic_pair("partner", PASSWORD)
    path = f"{AUTHS}/{made['authenticationId']}"
    changed = await call(gateway, key, "PATCH", path, {"password": "new-" + PASSWORD})
    assert changed.status_code == 200, changed.text
    # The worker read the webhook (and its authentication) just now; it is told to read again.
    second = await deliver(gateway, key, receiver)
    assert second.headers["authorization"] == basic_pair("partner", "new-" + PASSWORD)
    renamed = await call(gateway, key, "PATCH", path, {"username": "someone-else"})
    assert renamed.status_code == 200, renamed.text
    third = await deliver(gateway, key, receiver)
    assert third.headers["authorization"] == basic_pair("someone-else", "new-" + PASSWORD)


async def test_a_secret_that_does_not_open_fails_the_delivery_and_says_why(
    gateway: RunningGateway, key: str, receiver: Receiver
) -> None:
    """Under another secret key (an operator lost the old one), nothing is sent without the
    credentials: the notification fails, saying to set the secret again."""
    (made,) = await create(gateway, key, header())
    hook = await subscribe(gateway, key, receiver, made["authenticationId"])
    store = gateway.ctx.store
    found = await store.get_authentication(UUID(made["groupKey"]), UUID(made["authenticationId"]))
    assert isinstance(found, Authentication)
    other = sealed.Sealer("another-secret-key")
    resealed = dataclasses.replace(
        found, sealed_secret=credentials.seal(TOKEN, found.authentication_id, other)
    )
    assert await store.update_authentication(resealed) == [UUID(hook["webhookId"])]
    assert (await call(gateway, key, "POST", "/api/v1/Events", EVENT)).status_code == 202
    await gateway.worker().drain()
    assert receiver.notifications("/hook") == []
    history = await call(gateway, key, "GET", f"/api/v1/Webhooks/{hook['webhookId']}/history/query")
    (entry,) = history.json()["records"]
    assert entry["requestSent"] is False and "secret key" in entry["processResultMessage"]
    tested = await call(gateway, key, "POST", f"/api/v1/Webhooks/{hook['webhookId']}/test")
    assert tested.status_code == 409 and "secret key" in tested.json()["detail"]


# -- Bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (basic(headerName="X-Api-Key"), "[0].headerName"),
        ({k: v for k, v in basic().items() if k != "password"}, "[0].password"),
        ({k: v for k, v in header().items() if k != "headerValue"}, "[0].headerValue"),
        (basic(password=None), "[0].password"),
        (header(headerName="Content-Type"), "[0].headerName"),
        (header(headerName="webhook-signature"), "[0].headerName"),
        (header(headerName="Idempotency-Key"), "[0].headerName"),
        (header(headerName="X Api Key"), "[0].headerName"),
        (header(headerValue="a\r\nX-Injected: 1"), "[0].headerValue"),
        (basic(username="part:ner"), "[0].username"),
        (basic(password="line\nbreak" + PASSWORD), "[0].password"),
        (basic(kind="Digest"), "[0].kind"),
        (basic(name=""), "[0].name"),
        (basic(secret="x"), "[0].secret"),
    ],
)
async def test_a_bad_authentication_is_refused_naming_the_field(
    gateway_on_each_store: RunningGateway, body: dict[str, Any], field: str
) -> None:
    gateway = gateway_on_each_store
    key, record = await gateway.add_key("acme")
    answer = await call(gateway, key, "POST", AUTHS, [header(), body])
    shifted = field.replace("[0]", "[1]")
    assert answer.status_code == 400, answer.text
    assert shifted in answer.json()["errors"], answer.json()
    assert PASSWORD not in answer.text and TOKEN not in answer.text
    assert (await gateway.ctx.store.query_authentications(record.group_key, Query())).records == []


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"headerName": "X-Api-Key"}, {"headerName"}),
        ({"kind": "Header"}, {"headerName", "headerValue"}),
        ({"kind": "Header", "headerName": "X-Api-Key"}, {"headerValue"}),
        ({"password": None}, {"password"}),
        ({"username": "a:b"}, {"username"}),
    ],
)
async def test_a_bad_change_is_refused_naming_the_field_and_changes_nothing(
    gateway: RunningGateway, key: str, change: dict[str, Any], fields: set[str]
) -> None:
    (made,) = await create(gateway, key, basic())
    path = f"{AUTHS}/{made['authenticationId']}"
    answer = await call(gateway, key, "PATCH", path, change)
    assert answer.status_code == 400, answer.text
    assert set(answer.json()["errors"]) == fields
    assert (await call(gateway, key, "GET", path)).json() == made


async def test_a_webhook_naming_no_authentication_of_its_group_is_refused(
    gateway: RunningGateway, key: str, receiver: Receiver
) -> None:
    unknown = str(uuid4())
    body = {"name": "n", "requestContentType": "Full", "callbackHttpMethod": "POST",
            "callbackUrl": receiver.plan("/hook"), "authenticationId": unknown}  # fmt: skip
    answer = await call(gateway, key, "POST", "/api/v1/Webhooks", [body])
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"] == {"[0].authenticationId": [f"no authentication {unknown}"]}
    assert receiver.seen == []  # refused before any handshake
    hook = await subscribe(gateway, key, receiver, None)
    path = f"/api/v1/Webhooks/{hook['webhookId']}"
    patched = await call(gateway, key, "PATCH", path, {"authenticationId": unknown})
    assert patched.status_code == 400, patched.text
    assert set(patched.json()["errors"]) == {"authenticationId"}
    assert (await call(gateway, key, "GET", path)).json()["authenticationId"] is None


async def test_an_authentication_deleted_before_the_webhook_is_written_is_a_400(
    gateway: RunningGateway, key: str, receiver: Receiver
) -> None:
    """The race the API's check cannot see: the authentication is deleted after that check
    passed, before the store writes the webhook naming it. The store checks again in the
    transaction that writes, so the webhook is refused as naming no authentication (not a
    foreign-key failure, a 503) and nothing is written."""
    store = gateway.ctx.store
    (made,) = await create(gateway, key, basic())
    gone = UUID(made["authenticationId"])
    hook = await subscribe(gateway, key, receiver, None)
    stored = await store.get_webhook(UUID(hook["groupKey"]), UUID(hook["webhookId"]))
    assert stored is not None
    assert (await call(gateway, key, "DELETE", f"{AUTHS}/{gone}")).status_code == 200
    new = dataclasses.replace(stored, webhook_id=uuid4(), authentication_id=gone)
    with pytest.raises(ValidationError) as created:
        await store.add_webhooks([new])
    assert created.value.errors == {"[0].authenticationId": [f"no authentication {gone}"]}
    assert await store.get_webhook(new.group_key, new.webhook_id) is None
    edit = WebhookEdit({"authentication_id": gone})
    with pytest.raises(ValidationError) as patched:
        await store.edit_webhook(stored.group_key, stored.webhook_id, edit, stored.modified)
    assert patched.value.errors == {"authenticationId": [f"no authentication {gone}"]}
    after = await store.get_webhook(stored.group_key, stored.webhook_id)
    assert after is not None and after.authentication_id is None


# -- Logs ------------------------------------------------------------------------------------


@pytest.fixture
async def logged(
    gateway: RunningGateway, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[pytest.LogCaptureFixture]:
    """Every logger at DEBUG into caplog (the gateway started first: a start resets uvicorn's)."""
    caplog.set_level(logging.DEBUG)
    with every_logger_at_debug(caplog.handler):
        yield caplog


async def test_no_credential_is_ever_logged(
    gateway: RunningGateway, key: str, receiver: Receiver, logged: pytest.LogCaptureFixture
) -> None:
    made_basic, made_header = await create(gateway, key, basic(), header())
    hook = await subscribe(gateway, key, receiver, made_basic["authenticationId"])
    hook_path = f"/api/v1/Webhooks/{hook['webhookId']}"
    await call(gateway, key, "POST", f"{hook_path}/test")
    await deliver(gateway, key, receiver)
    new = {"password": "rotated-" + PASSWORD}
    await call(gateway, key, "PATCH", f"{AUTHS}/{made_basic['authenticationId']}", new)
    await call(gateway, key, "POST", AUTHS, [header(headerValue="bad\n" + TOKEN)])
    await call(
        gateway, key, "PATCH", hook_path, {"authenticationId": made_header["authenticationId"]}
    )
    await deliver(gateway, key, receiver)
    await asyncio.sleep(0)
    records = logged.records
    text = logged_text(records)
    assert "gateway.api.authentications" in {r.name for r in records}  # the capture ran
    pair = base64.b64encode(f"partner:{PASSWORD}".encode()).decode()
    for secret in (PASSWORD, TOKEN, pair):
        assert secret not in text
