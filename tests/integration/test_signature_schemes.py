"""Signature schemes (issue 19), each verified the way its partners verify it, with code that is
not ours: the `standardwebhooks` package for v1, the `cryptography` package's Ed25519 for v1a,
Node's `crypto.createHmac('sha256', secret)` in a subprocess for HmacSha256Hex, and Tribe
CRM's recipe written out here with hashlib for HmacSha512Base64.

Deliveries and test sends go to a real receiver on loopback, from a gateway on SQLite and on
PostgreSQL (the Ed25519 key pair is kept by the store).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks.webhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from gateway import signing
from gateway.models import Webhook
from tests.gateway_server import RunningGateway, gateway_settings, run_gateway
from tests.integration.test_secrets import every_logger_at_debug, logged_text
from tests.partner import drain_until, invoice_update
from tests.receiver import Receiver, Seen

Launch = Callable[..., contextlib.AbstractAsyncContextManager[RunningGateway]]
NODE_TIMEOUT = 30.0
# A receiver of the SaaS platforms, as their documentation writes it: the header's value must
# be "sha256=" + the hex HMAC-SHA256 of the raw body, keyed by the secret as given. During a
# rotation the header lists one value per secret, comma-separated: any one may match.
NODE_VERIFIER = """
const crypto = require('crypto');
const [secret, header] = process.argv.slice(1);
const chunks = [];
process.stdin.on('data', (chunk) => chunks.push(chunk));
process.stdin.on('end', () => {
  const digest = crypto.createHmac('sha256', secret).update(Buffer.concat(chunks)).digest('hex');
  const expected = Buffer.from('sha256=' + digest);
  const ok = header.split(',').map((v) => Buffer.from(v.trim()))
    .some((v) => v.length === expected.length && crypto.timingSafeEqual(v, expected));
  process.exit(ok ? 0 : 1);
});
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def launch(request: pytest.FixtureRequest, tmp_path: Path) -> Launch:
    """Starts a gateway with these setting overrides, on SQLite or on PostgreSQL."""
    database = request.getfixturevalue("postgres_url") if request.param == "postgres" else None

    @contextlib.asynccontextmanager
    async def started(**overrides: Any) -> AsyncIterator[RunningGateway]:
        if database is not None:
            overrides["database_url"] = database
        async with run_gateway(gateway_settings(tmp_path, **overrides)) as running:
            yield running

    return started


@pytest.fixture
async def gateway(launch: Launch) -> AsyncIterator[RunningGateway]:
    async with launch() as running:
        yield running


# -- The verifiers: each returns whether `seen` carries a valid signature by this credential --
def payload(seen: Seen) -> bytes:
    """What is signed: the exact body sent, or for GET the exact query string."""
    return seen.query.encode() if seen.method == "GET" else seen.body


async def node_accepts(seen: Seen, secret: str, header: str) -> bool:
    """Node's crypto, in a subprocess, given the secret, the header's value and the payload."""
    process = await asyncio.create_subprocess_exec(
        "node", "-e", NODE_VERIFIER, secret, seen.headers[header.lower()],
        stdin=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(NODE_TIMEOUT):
        await process.communicate(payload(seen))
    return process.returncode == 0


def tribe_accepts(seen: Seen, secret: str, header: str) -> bool:
    """Tribe CRM's recipe: Base64 of the HMAC-SHA512 digest of the payload, keyed by the
    secret's UTF-8 bytes; the raw 64-byte digest, as the wire contract says."""
    digest = hmac.new(secret.encode("utf-8"), payload(seen), hashlib.sha512).digest()
    expected = base64.b64encode(digest).decode()
    return expected in [value.strip() for value in seen.headers[header.lower()].split(",")]


def v1_accepts(seen: Seen, secret: str) -> bool:
    """The standardwebhooks package (for GET, its signature of the exact query string)."""
    verifier = Verifier(secret)
    try:
        if seen.method != "GET":
            verifier.verify(seen.body, seen.headers)
            return True
    except WebhookVerificationError:
        return False
    stamp = datetime.fromtimestamp(int(seen.headers["webhook-timestamp"]), UTC)
    expected = verifier.sign(seen.headers["webhook-id"], stamp, seen.query)
    return expected in seen.headers["webhook-signature"].split(" ")


def ed25519_accepts(seen: Seen, public_key: str) -> bool:
    """The cryptography package's Ed25519 over "id.timestamp.payload", for any v1a value."""
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    signed = f"{seen.headers['webhook-id']}.{seen.headers['webhook-timestamp']}.".encode()
    for value in seen.headers["webhook-signature"].split(" "):
        version, _, signature = value.partition(",")
        try:
            key.verify(base64.b64decode(signature), signed + payload(seen))
        except InvalidSignature:
            continue
        if version == "v1a":
            return True
    return False


async def accepts(seen: Seen, hook: dict[str, Any], secret: str | None = None) -> bool:
    """Whether a partner of this webhook's scheme accepts what arrived (with `secret`: the
    client secret or public key to verify with, else the webhook's own)."""
    scheme = hook["signatureScheme"]
    if scheme == "StandardWebhooksEd25519":
        return ed25519_accepts(seen, secret or hook["publicKey"])
    secret = secret or hook["clientSecret"]
    if scheme == "HmacSha256Hex":
        return await node_accepts(seen, secret, hook["signatureHeader"])
    if scheme == "HmacSha512Base64":
        return tribe_accepts(seen, secret, hook["signatureHeader"])
    return v1_accepts(seen, secret)


# -- Helpers -------------------------------------------------------------------------------
async def subscribe(
    gateway: RunningGateway, receiver: Receiver, path: str = "/hook", **profile: Any
) -> tuple[str, dict[str, Any]]:
    """A key and a webhook (POST, Full, unless `profile` says otherwise) with one rule."""
    key, _ = await gateway.add_key("acme")
    body = {"name": "n", "requestContentType": "Full", "callbackHttpMethod": "POST",
            "callbackUrl": receiver.plan(path), **profile}  # fmt: skip
    async with gateway.client(key) as api:
        created = await api.post("/api/v1/Webhooks", json=[body])
        assert created.status_code == 200, created.text
        hook: dict[str, Any] = created.json()[0]
        rule = {"webhookId": hook["webhookId"], "tableKey": "Invoice", "eventType": "U"}
        assert (await api.post("/api/v1/WebhookRules", json=[rule])).status_code == 200
    return key, hook


async def deliver_one(gateway: RunningGateway, receiver: Receiver, key: str, path: str) -> Seen:
    """Publish one event and run the worker until it arrived; what arrived."""
    before = len(receiver.notifications(path))
    async with gateway.client(key) as api:
        assert (await api.post("/api/v1/Events", json=invoice_update())).status_code == 202
    await drain_until(gateway.worker(), lambda: len(receiver.notifications(path)) > before)
    return receiver.notifications(path)[-1]


async def send_test(gateway: RunningGateway, receiver: Receiver, key: str, hook_id: str) -> Seen:
    """A test send through the API; what arrived."""
    async with gateway.client(key) as api:
        answer = await api.post(f"/api/v1/Webhooks/{hook_id}/test")
    assert answer.json()["isSuccessful"] is True, answer.text
    return receiver.notifications()[-1]


async def regenerate(gateway: RunningGateway, key: str, hook_id: str) -> dict[str, Any]:
    async with gateway.client(key) as api:
        answer = await api.patch(f"/api/v1/Webhooks/{hook_id}/regenerate-client-secret")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def stored(gateway: RunningGateway, hook: dict[str, Any]) -> Webhook:
    found = await gateway.ctx.store.get_webhook_any_group(UUID(hook["webhookId"]))
    assert found is not None
    return found


PROFILES = {
    "StandardWebhooks": {},
    "StandardWebhooksEd25519": {"signatureScheme": "StandardWebhooksEd25519"},
    "HmacSha256Hex": {"signatureScheme": "HmacSha256Hex"},
    "HmacSha512Base64": {"signatureScheme": "HmacSha512Base64", "signatureHeader": "X-Tribe-Sig"},
}


# -- Tests ---------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", PROFILES)
@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_each_scheme_signs_deliveries_and_test_sends_as_its_partners_verify(
    gateway: RunningGateway, receiver: Receiver, scheme: str, method: str
) -> None:
    content = "Id" if method == "GET" else "Full"
    profile = {**PROFILES[scheme], "callbackHttpMethod": method, "requestContentType": content}
    key, hook = await subscribe(gateway, receiver, **profile)
    assert hook["signatureScheme"] == scheme
    delivered = await deliver_one(gateway, receiver, key, "/hook")
    tested = await send_test(gateway, receiver, key, hook["webhookId"])
    for seen in (delivered, tested):
        assert seen.method == method
        assert await accepts(seen, hook), (scheme, seen.headers)
        assert seen.headers["webhook-id"] and seen.headers["webhook-timestamp"]
    # Another secret or key is refused: the verifiers above really check.
    other = {**hook, "clientSecret": signing.generate_secret(),
             "publicKey": signing.generate_key_pair()[1]}  # fmt: skip
    assert not await accepts(delivered, other)
    # The handshake is not signed: the partner learns the secret from the create's answer.
    [handshake] = [s for s in receiver.seen if s.is_handshake]
    assert not {"webhook-signature", "x-webhook-signature", "x-tribe-sig"} & set(handshake.headers)


async def test_the_hmac_schemes_sign_the_body_alone_in_their_header(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key, hook = await subscribe(gateway, receiver, **PROFILES["HmacSha256Hex"])
    assert hook["signatureHeader"] == "X-Webhook-Signature"
    seen = await deliver_one(gateway, receiver, key, "/hook")
    assert "webhook-signature" not in seen.headers
    assert seen.headers["x-webhook-signature"].startswith("sha256=")
    _, tribe = await subscribe(gateway, receiver, "/tribe", **PROFILES["HmacSha512Base64"])
    seen = await deliver_one(gateway, receiver, key, "/tribe")
    value = seen.headers["x-tribe-sig"]
    # The raw 64-byte digest, not its 128 hex characters read as bytes (176 in Base64).
    assert len(base64.b64decode(value, validate=True)) == 64
    hexed = hmac.new(tribe["clientSecret"].encode(), seen.body, hashlib.sha512).hexdigest()
    assert value != base64.b64encode(hexed.encode()).decode()


@pytest.mark.parametrize("scheme", ["HmacSha256Hex", "HmacSha512Base64", "StandardWebhooks"])
async def test_during_a_rotation_both_client_secrets_sign(
    gateway: RunningGateway, receiver: Receiver, scheme: str
) -> None:
    key, hook = await subscribe(gateway, receiver, **PROFILES[scheme])
    renewed = await regenerate(gateway, key, hook["webhookId"])
    seen = await deliver_one(gateway, receiver, key, "/hook")
    separator = " " if scheme == "StandardWebhooks" else ", "
    header = "webhook-signature" if scheme == "StandardWebhooks" else hook["signatureHeader"]
    assert len(seen.headers[header.lower()].split(separator)) == 2
    for secret in (hook["clientSecret"], renewed["clientSecret"]):
        assert await accepts(seen, hook, secret)


async def test_an_ed25519_rotation_makes_a_new_key_pair_and_the_old_key_signs_meanwhile(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key, hook = await subscribe(gateway, receiver, **PROFILES["StandardWebhooksEd25519"])
    before = await stored(gateway, hook)
    renewed = await regenerate(gateway, key, hook["webhookId"])
    assert renewed["publicKey"].startswith("whpk_") and renewed["publicKey"] != hook["publicKey"]
    after = await stored(gateway, hook)
    assert after.previous_signing_key == before.signing_key != after.signing_key
    seen = await deliver_one(gateway, receiver, key, "/hook")
    assert [v.split(",")[0] for v in seen.headers["webhook-signature"].split(" ")] == ["v1a"] * 2
    for public_key in (hook["publicKey"], renewed["publicKey"]):
        assert await accepts(seen, hook, public_key)


async def test_once_the_grace_period_ends_only_the_new_ed25519_key_signs(
    launch: Launch, receiver: Receiver
) -> None:
    async with launch(secret_grace_period=0.0) as gateway:
        key, hook = await subscribe(gateway, receiver, **PROFILES["StandardWebhooksEd25519"])
        renewed = await regenerate(gateway, key, hook["webhookId"])
        seen = await deliver_one(gateway, receiver, key, "/hook")
    assert len(seen.headers["webhook-signature"].split(" ")) == 1
    assert await accepts(seen, hook, renewed["publicKey"])
    assert not await accepts(seen, hook, hook["publicKey"])


async def test_changing_the_scheme_makes_keeps_or_drops_the_key_pair_and_the_header(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key, hook = await subscribe(gateway, receiver)
    assert (hook["signatureScheme"], hook["signatureHeader"], hook["publicKey"]) == (
        "StandardWebhooks",
        None,
        None,
    )
    path = f"/api/v1/Webhooks/{hook['webhookId']}"
    steps: list[tuple[dict[str, Any], str | None, str]] = [
        # (PATCH, the signatureHeader shown after it, the publicKey: new, same or none)
        ({"signatureScheme": "StandardWebhooksEd25519"}, None, "new"),
        ({"signatureScheme": "StandardWebhooksEd25519", "name": "again"}, None, "same"),
        ({"signatureScheme": "HmacSha256Hex"}, "X-Webhook-Signature", "none"),
        ({"signatureHeader": "X-Tribe"}, "X-Tribe", "none"),
        ({"signatureScheme": "HmacSha512Base64"}, "X-Tribe", "none"),
        ({"signatureHeader": None}, "X-Webhook-Signature", "none"),
        ({"signatureScheme": "StandardWebhooksEd25519"}, None, "new"),
        ({"signatureScheme": "StandardWebhooks"}, None, "none"),
    ]
    public_key = None
    async with gateway.client(key) as api:
        for number, (change, header, keys) in enumerate(steps):
            answer = await api.patch(path, json=change)
            assert answer.status_code == 200, (number, answer.text)
            shown = answer.json()
            assert shown["signatureHeader"] == header, number
            if keys == "new":
                assert shown["publicKey"].startswith("whpk_") and shown["publicKey"] != public_key
            else:
                assert shown["publicKey"] == (public_key if keys == "same" else None), number
            public_key = shown["publicKey"]
            kept = await stored(gateway, hook)
            assert (kept.signing_key is None) == (keys == "none"), number
            assert (kept.signature_header, kept.public_key) == (header, public_key), number
            if keys == "new":  # what the answer shows verifies what the gateway signs
                seen = await deliver_one(gateway, receiver, key, "/hook")
                assert await accepts(seen, shown)


async def test_a_signature_header_is_refused_where_it_means_nothing(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key, hook = await subscribe(gateway, receiver)
    path = f"/api/v1/Webhooks/{hook['webhookId']}"
    refused = [
        {"signatureHeader": "X-Sig"},  # the stored scheme is StandardWebhooks
        {"signatureScheme": "StandardWebhooksEd25519", "signatureHeader": "X-Sig"},
        {"signatureScheme": "HmacSha256Hex", "signatureHeader": "Content-Type"},
        {"signatureScheme": "HmacSha256Hex", "signatureHeader": "webhook-signature"},
        {"signatureScheme": "HmacSha256Hex", "signatureHeader": "X-Sig\r\nX-Evil: 1"},
    ]
    before = await stored(gateway, hook)
    async with gateway.client(key) as api:
        for change in refused:
            answer = await api.patch(path, json=change)
            assert answer.status_code == 400, change
            assert list(answer.json()["errors"]) == ["signatureHeader"], answer.text
        created = await api.post("/api/v1/Webhooks", json=[{
            "name": "n", "requestContentType": "Full", "callbackHttpMethod": "POST",
            "callbackUrl": receiver.plan("/other"), "signatureHeader": "X-Sig",
        }])  # fmt: skip
    assert created.status_code == 400 and list(created.json()["errors"]) == ["[0].signatureHeader"]
    assert await stored(gateway, hook) == before


async def test_the_private_key_never_leaves_the_gateway(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Not in an answer (create, retrieve, query, PATCH, new secret, history, test send) and
    not in the log at DEBUG, current or previous."""
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []
    async with run_gateway(gateway_settings(tmp_path)) as gateway:
        with every_logger_at_debug(caplog.handler):
            key, hook = await subscribe(gateway, receiver, **PROFILES["StandardWebhooksEd25519"])
            first = (await stored(gateway, hook)).signing_key
            path = f"/api/v1/Webhooks/{hook['webhookId']}"
            async with gateway.client(key) as api:
                answers.append((await api.get(path)).text)
                answers.append((await api.get("/api/v1/Webhooks/query")).text)
                answers.append((await api.patch(path, json={"name": "m"})).text)
                answers.append((await api.patch(f"{path}/regenerate-client-secret")).text)
                await deliver_one(gateway, receiver, key, "/hook")
                answers.append((await api.post(f"{path}/test")).text)
                include = {"include": "RequestMessage,ResponseMessage"}
                history = await api.get(f"{path}/history/query", params=include)
                answers.append(history.text)
            second = (await stored(gateway, hook)).signing_key
        assert first and second and first != second
        private_keys = [first, second, first.removeprefix("whsk_"), second.removeprefix("whsk_")]
        text = "\n".join(answers) + logged_text(caplog.records)
        assert any(record.levelno == logging.DEBUG for record in caplog.records)
        assert [k for k in private_keys if k in text] == []
        assert "whsk_" not in "\n".join(answers)
