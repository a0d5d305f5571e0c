"""Secrets stay secret: API keys, client secrets and handshake codes never reach a log, keys
are stored hashed, and a client secret is shown only to its own group.

The scenario runs with every logger at DEBUG, so a secret logged at any level by the gateway
or by a library it drives (aiosqlite, aiohttp, uvicorn) is caught, in the records and in the
lines both log formats (gateway.logs) write from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from gateway import cli, logs
from gateway.signing import PREFIX
from tests.gateway_server import RunningGateway, gateway_settings, run_gateway
from tests.receiver import Answer, Receiver, run_receiver

INCLUDE = "RequestMessage,ResponseMessage,Records"


@contextlib.contextmanager
def every_logger_at_debug(handler: logging.Handler) -> Iterator[None]:
    """Every existing logger at DEBUG and reaching `handler`, even those that do not propagate
    (uvicorn's); restored afterwards."""
    named = [x for x in logging.root.manager.loggerDict.values() if isinstance(x, logging.Logger)]
    saved = [(x, x.level, x.disabled) for x in named]
    quiet = [x for x in named if not x.propagate]
    for logger in named:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
    for logger in quiet:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in quiet:
            logger.removeHandler(handler)
        for logger, level, disabled in saved:
            logger.setLevel(level)
            logger.disabled = disabled


def logged_text(records: list[logging.LogRecord]) -> str:
    """Everything a log handler could write: message, arguments, extra fields, tracebacks."""
    parts = []
    for record in records:
        parts += [record.getMessage(), repr(record.args), repr(vars(record))]
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


def rendered(records: list[logging.LogRecord], fmt: str) -> str:
    """The lines the gateway would write for these records in this log format."""
    formatter = logs.formatter(fmt)
    return "\n".join(formatter.format(record) for record in records)


def partners_own(record: logging.LogRecord) -> bool:
    """An access line of the test's receiver (it runs uvicorn in this process): the URL the
    partner was called at, handshake code included, as the partner's own log shows it."""
    args = record.args if isinstance(record.args, tuple) else ()
    return record.name == "uvicorn.access" and len(args) > 2 and str(args[2]).startswith("/hook")


def secret_forms(secret: str) -> list[str]:
    """A secret as written, and a client secret's base64 body without its prefix."""
    return [secret, secret.removeprefix(PREFIX)]


CONFIG_SECRET = "config-secret-7f3a"
CONFIG = {"partnerCheck": CONFIG_SECRET}


@dataclass
class Scenario:
    """What the full run produced: the secrets it handled and what was logged meanwhile."""

    gateway: RunningGateway
    receiver: Receiver
    api_key: str
    api_key_id: str
    other_key: str
    hook: dict[str, Any]
    old_secret: str
    new_secret: str
    history: dict[str, Any]
    records: list[logging.LogRecord]
    db_dir: Path


async def create_key_with_the_cli(database_url: str, group: str) -> dict[str, Any]:
    """`gateway keys create`, as an operator runs it (in a thread: it runs its own loop)."""
    argv = ["keys", "create", "--group", group, "--database-url", database_url]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert await asyncio.to_thread(cli.main, argv) == 0
    created: dict[str, Any] = json.loads(printed.getvalue())
    return created


async def run_scenario(
    gateway: RunningGateway, receiver: Receiver, caplog: pytest.LogCaptureFixture, db: Path
) -> Scenario:
    created = await create_key_with_the_cli(gateway.ctx.settings.database_url, "acme")
    key = created["apiKey"]
    other_key, _ = await gateway.add_key("other")
    url = receiver.plan("/hook")
    body = {
        "name": "n",
        "requestContentType": "Full",
        "callbackHttpMethod": "POST",
        "callbackUrl": url,
    }
    async with gateway.client(key) as api:
        # The config is write-only: echoed to the partner, never logged or answered.
        made = await api.post("/api/v1/Webhooks", json=[{**body, "config": CONFIG}])
        assert made.status_code == 200, made.text
        hook = made.json()[0]
        # A handshake that fails is logged with what came back, never with the code sent.
        refused = {**body, "callbackUrl": receiver.plan("/hook-refuses", Answer(status=500))}
        assert (await api.post("/api/v1/Webhooks", json=[refused])).status_code == 400
        # The first notification fails once, so the failure path is logged too.
        receiver.plan("/hook", Answer(status=500, body="try later"), Answer())
        hook_path = f"/api/v1/Webhooks/{hook['webhookId']}"
        rule = {"webhookId": hook["webhookId"], "tableKey": "Invoice", "eventType": "U"}
        assert (await api.post("/api/v1/WebhookRules", json=[rule])).status_code == 200
        event = {"tableKey": "Invoice", "eventType": "U", "records": [{"id": "1"}]}
        assert (await api.post("/api/v1/Events", json=event)).status_code == 202
        await drain_until_delivered(gateway, receiver, 2)
        regenerated = await api.patch(f"{hook_path}/regenerate-client-secret")
        assert regenerated.status_code == 200, regenerated.text
        new_secret = regenerated.json()["clientSecret"]
        assert (await api.post("/api/v1/Events", json=event)).status_code == 202
        await drain_until_delivered(gateway, receiver, 3)
        assert (await api.post(f"{hook_path}/test")).json()["isSuccessful"] is True
        history = await api.get(f"{hook_path}/history/query", params={"include": INCLUDE})
        assert history.status_code == 200, history.text
    await failing_auth_attempts(gateway, key, hook["clientSecret"])
    return Scenario(
        gateway=gateway,
        receiver=receiver,
        api_key=key,
        api_key_id=created["apiKeyId"],
        other_key=other_key,
        hook=hook,
        old_secret=hook["clientSecret"],
        new_secret=new_secret,
        history=history.json(),
        records=list(caplog.records),
        db_dir=db,
    )


async def drain_until_delivered(gateway: RunningGateway, receiver: Receiver, count: int) -> None:
    """Run the worker until `count` notifications arrived (a retry comes due in 10 ms)."""
    worker = gateway.worker()
    async with asyncio.timeout(15):
        while len(receiver.notifications("/hook")) < count:
            await worker.drain()
            await asyncio.sleep(0.01)


async def failing_auth_attempts(gateway: RunningGateway, key: str, secret: str) -> None:
    """A near-miss key, the client secret mistaken for a key, and a key with a bad scheme."""
    attempts = [{"Api-Key": key + "x"}, {"Api-Key": secret}, {"Authorization": f"Basic {key}"}]
    async with gateway.client() as api:
        for headers in attempts:
            answer = await api.get("/api/v1/Webhooks/query", headers=headers)
            assert answer.status_code == 401
            assert key not in answer.text and secret not in answer.text


@pytest.fixture
async def scenario(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Scenario]:
    caplog.set_level(logging.DEBUG)
    # Each uvicorn start resets uvicorn's loggers, so both servers start before the capture.
    async with run_receiver() as receiver, run_gateway(gateway_settings(tmp_path)) as gateway:
        with every_logger_at_debug(caplog.handler):
            yield await run_scenario(gateway, receiver, caplog, tmp_path)


async def test_no_key_or_client_secret_is_ever_logged(scenario: Scenario) -> None:
    text = logged_text(scenario.records)
    # The capture really ran at DEBUG, through the gateway, the database and the servers.
    names = {record.name for record in scenario.records}
    assert {"gateway.handshake", "aiosqlite"} <= names, names
    assert any(record.levelno == logging.DEBUG for record in scenario.records)
    leaked = {
        label: form
        for label, secret in [
            ("API key", scenario.api_key),
            ("other group's API key", scenario.other_key),
            ("old client secret", scenario.old_secret),
            ("new client secret", scenario.new_secret),
            ("webhook config", CONFIG_SECRET),
        ]
        for form in secret_forms(secret)
        if form in text
    }
    assert leaked == {}, f"secrets in the logs: {sorted(leaked)}"
    assert CONFIG_SECRET not in str(scenario.hook)
    first = scenario.receiver.notifications("/hook")[0]  # the scenario used the config
    assert Verifier(scenario.old_secret).verify(first.body, first.headers)["config"] == CONFIG


def handshake_codes(receiver: Receiver) -> list[str]:
    """Every code the gateway sent in a handshake, as the receiver got it."""
    return [seen.params["code"][0] for seen in receiver.seen if seen.is_handshake]


async def test_no_handshake_code_is_logged_by_the_gateway(scenario: Scenario) -> None:
    codes = handshake_codes(scenario.receiver)
    assert len(codes) == 2, "one handshake passed, one failed"
    names = {record.name for record in scenario.records}
    assert "gateway.handshake" in names, names
    ours = [record for record in scenario.records if not partners_own(record)]
    text = logged_text(ours)
    assert [code for code in codes if code in text] == []


@pytest.mark.parametrize("fmt", logs.FORMATS)
async def test_no_secret_reaches_a_line_of_either_log_format(scenario: Scenario, fmt: str) -> None:
    """What a log line is made from holds no secret (above); the formats must not add one, and
    must hide a URL carrying a code wherever one is logged: the receiver's access lines do."""
    codes = handshake_codes(scenario.receiver)
    assert all(code in logged_text(scenario.records) for code in codes), "no code to hide"
    text = rendered(scenario.records, fmt)
    assert "handshake passed" in text and "handshake failed" in text
    assert len(text.splitlines()) == len(scenario.records), "one line per record"
    leaked = [
        label
        for label, secret in [
            ("API key", scenario.api_key),
            ("other group's API key", scenario.other_key),
            ("old client secret", scenario.old_secret),
            ("new client secret", scenario.new_secret),
            *(("handshake code", code) for code in codes),
        ]
        for form in secret_forms(secret)
        if form in text
    ]
    assert leaked == [], f"secrets in the {fmt} log: {leaked}"


async def test_deliveries_were_signed_with_both_secrets_during_the_grace_period(
    scenario: Scenario,
) -> None:
    """The scenario did what it claims: the secrets the log check looks for were in use."""
    first, retried, after = scenario.receiver.notifications("/hook")[:3]
    Verifier(scenario.old_secret).verify(retried.body, retried.headers)
    for secret in (scenario.old_secret, scenario.new_secret):
        Verifier(secret).verify(after.body, after.headers)
    assert scenario.new_secret != scenario.old_secret
    assert first.headers["webhook-id"] == retried.headers["webhook-id"]


async def test_history_messages_carry_no_secrets(scenario: Scenario) -> None:
    rows = scenario.history["records"]
    # Two notifications and the test send, which history keeps too.
    assert [row["isTest"] for row in rows] == [True, False, False]
    assert all(row["requestMessage"] for row in rows)
    text = json.dumps(rows)
    for secret in (scenario.old_secret, scenario.new_secret, scenario.api_key, CONFIG_SECRET):
        for form in secret_forms(secret):
            assert form not in text
    # The request message is the method, URL and body sent; no signature header either
    # (signatures are not secrets, but nothing needs them in the history).
    assert "webhook-signature" not in text.lower() and "v1," not in text


async def test_api_keys_are_stored_as_sha256_only(scenario: Scenario) -> None:
    keys = await scenario.gateway.ctx.store.list_api_keys()
    [mine] = [k for k in keys if str(k.api_key_id) == scenario.api_key_id]
    assert mine.key_hash == hashlib.sha256(scenario.api_key.encode()).hexdigest()
    assert scenario.api_key not in repr(keys)
    # Nor anywhere in the database files, whatever column or page it might hide in.
    stored = b"".join(p.read_bytes() for p in scenario.db_dir.glob("gateway.db*"))
    assert mine.key_hash.encode() in stored, "looked in the wrong files"
    for plaintext in (scenario.api_key, scenario.other_key):
        assert plaintext.encode() not in stored


async def test_a_client_secret_is_shown_only_to_its_own_group(scenario: Scenario) -> None:
    hook_id = scenario.hook["webhookId"]
    async with scenario.gateway.client(scenario.api_key) as api:
        own = (await api.get(f"/api/v1/Webhooks/{hook_id}")).json()
    assert own["clientSecret"] == scenario.new_secret
    async with scenario.gateway.client(scenario.other_key) as api:
        answers = [
            await api.get(f"/api/v1/Webhooks/{hook_id}"),
            await api.get("/api/v1/Webhooks/query"),
            await api.get(f"/api/v1/Webhooks/{hook_id}/history/query", params={"include": INCLUDE}),
            await api.patch(f"/api/v1/Webhooks/{hook_id}/regenerate-client-secret"),
        ]
    assert [a.status_code for a in answers] == [404, 200, 404, 404]
    assert answers[1].json()["totalCount"] == 0
    for answer in answers:
        for secret in (scenario.old_secret, scenario.new_secret):
            assert secret not in answer.text
    stored = await scenario.gateway.ctx.store.get_webhook_any_group(UUID(hook_id))
    assert stored is not None and stored.client_secret == scenario.new_secret
