"""HTTPS callbacks for real on loopback: a test CA (trustme) issues the receiver's certificate
for localhost and 127.0.0.1, and the gateway trusts that CA only through `ca_bundle`.

With it, handshakes and deliveries go through, to the name the URL gives (SNI and the name
checked) though the address guard pins the connection to the address it resolved. Without it,
the TLS handshake is refused, and the create's 400 and the delivery history name the
certificate problem.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from gateway.errors import OutboundConnectionError
from gateway.netguard import IP, AddressPolicy
from gateway.outbound import Outbound, tls_context
from gateway.store.base import Query
from tests.gateway_server import RunningGateway, gateway_settings, run_gateway
from tests.partner import Partner, drain_until, invoice_update
from tests.receiver import Receiver, run_receiver
from tests.tenant import add_tenant, problem

LOOPBACK = AddressPolicy(["127.0.0.0/8"])
UNTRUSTED = "unable to get local issuer certificate"  # OpenSSL's words for an unknown CA


@dataclass
class PrivateCA:
    """A private CA's PEM file, and the receiver's TLS context with a certificate it issued
    for localhost and 127.0.0.1, which records the server name (SNI) each client asked for."""

    bundle: str
    server: ssl.SSLContext
    server_names: list[str | None] = field(default_factory=list)


class LoopbackNames:
    """The only resolver here: the names below are 127.0.0.1, nothing else resolves."""

    NAMES = ("localhost", "partner.test")

    async def resolve(self, host: str, port: int) -> list[IP]:
        if host not in self.NAMES:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ipaddress.ip_address("127.0.0.1")]


@pytest.fixture
def private_ca(tmp_path: Path) -> PrivateCA:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server)
    bundle = tmp_path / "private-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    found = PrivateCA(str(bundle), server)
    server.sni_callback = lambda _sock, name, _ctx: found.server_names.append(name)
    return found


@pytest.fixture
async def tls_receiver(private_ca: PrivateCA) -> AsyncIterator[Receiver]:
    async with run_receiver(tls=private_ca.server) as running:
        yield running


def named(receiver: Receiver, host: str, path: str = "/hook") -> str:
    """The receiver's URL for `path`, reached by this host name."""
    port = receiver.url.rsplit(":", 1)[1]
    return f"https://{host}:{port}{path}"


@pytest.fixture
async def trusting(
    tmp_path: Path, private_ca: PrivateCA, tls_receiver: Receiver
) -> AsyncIterator[RunningGateway]:
    """A gateway whose ca_bundle is the test CA, and which accepts only HTTPS callbacks."""
    settings = gateway_settings(tmp_path, ca_bundle=private_ca.bundle, require_https_callbacks=True)
    async with run_gateway(settings, resolver=LoopbackNames()) as running:
        yield running


@pytest.fixture
async def distrusting(tmp_path: Path, tls_receiver: Receiver) -> AsyncIterator[RunningGateway]:
    """A gateway without ca_bundle: the system's roots only, which never issued the test CA."""
    async with run_gateway(gateway_settings(tmp_path), resolver=LoopbackNames()) as running:
        yield running


async def create(gateway: RunningGateway, key: str, url: str) -> Any:
    body = {"name": "n", "requestContentType": "Full", "callbackHttpMethod": "POST",
            "callbackUrl": url, "retryCount": 0}  # fmt: skip
    async with gateway.client(key) as api:
        return await api.post("/api/v1/Webhooks", json=[body])


async def test_with_the_ca_bundle_handshakes_and_deliveries_go_through(
    trusting: RunningGateway, tls_receiver: Receiver, private_ca: PrivateCA
) -> None:
    key, _ = await trusting.add_key("acme")
    created = await create(trusting, key, named(tls_receiver, "localhost"))
    assert created.status_code == 200, created.text
    hook = created.json()[0]
    assert [seen.is_handshake for seen in tls_receiver.seen] == [True]
    async with trusting.client(key) as api:
        rule = {"webhookId": hook["webhookId"], "tableKey": "Invoice", "eventType": "U"}
        assert (await api.post("/api/v1/WebhookRules", json=[rule])).status_code == 200
    partner = Partner(trusting, tls_receiver, key, hook, "/hook")
    await partner.publish(invoice_update())
    await drain_until(trusting.worker(), lambda: tls_receiver.notifications("/hook"))
    [delivered] = tls_receiver.notifications("/hook")
    assert partner.verify(delivered)
    [row] = (await partner.history())["records"]
    assert row["isSuccessful"] is True
    # The guard dialled 127.0.0.1, yet TLS asked for the URL's name.
    assert set(private_ca.server_names) == {"localhost"}


async def test_without_it_the_handshake_is_refused_naming_the_certificate_problem(
    distrusting: RunningGateway, tls_receiver: Receiver
) -> None:
    key, record = await distrusting.add_key("acme")
    answer = problem(await create(distrusting, key, named(tls_receiver, "localhost")))
    assert answer["detail"] == (
        f"callback verification failed: item 0: could not connect: TLS certificate not "
        f"accepted: {UNTRUSTED}"
    )
    assert tls_receiver.seen == [], "no request goes over a connection that is not trusted"
    assert (await distrusting.ctx.store.query_webhooks(record.group_key, Query())).records == []


async def test_without_it_deliveries_fail_and_the_history_says_why(
    distrusting: RunningGateway, tls_receiver: Receiver
) -> None:
    # Stored as if created while the CA was trusted: its deliveries now meet an unknown CA.
    tenant = await add_tenant(distrusting, callback_url=named(tls_receiver, "localhost"))
    published = await tenant.call("POST", "/api/v1/Events", json=[invoice_update()])
    assert published.status_code == 202, published.text
    await distrusting.worker().drain()
    history = await tenant.call("GET", f"/api/v1/Webhooks/{tenant.hook_id}/history/query")
    [row] = history.json()["records"]
    assert row["isSuccessful"] is False
    assert f"TLS certificate not accepted: {UNTRUSTED}" in row["processResultMessage"]
    assert tls_receiver.seen == []


@pytest.fixture
async def verifying(private_ca: PrivateCA) -> AsyncIterator[Outbound]:
    """The outbound client as the gateway makes it with the test CA as ca_bundle."""
    names = LoopbackNames()
    async with Outbound(policy=LOOPBACK, resolver=names, ca_bundle=private_ca.bundle) as client:
        yield client


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "2130706433"])
async def test_the_certificate_is_checked_for_the_host_the_url_names(
    verifying: Outbound, tls_receiver: Receiver, host: str
) -> None:
    # A name, an IP, and an IP the guard respells as 127.0.0.1 before dialling: the certificate
    # names localhost and 127.0.0.1, so each is accepted.
    answer = await verifying.send("POST", named(tls_receiver, host), body=b"{}", timeout=5)
    assert answer.status == 200


async def test_a_certificate_for_another_name_is_refused_at_the_same_address(
    verifying: Outbound, tls_receiver: Receiver
) -> None:
    # partner.test resolves to the receiver's address, whose certificate does not name it.
    with pytest.raises(OutboundConnectionError, match="Hostname mismatch") as refused:
        await verifying.send("POST", named(tls_receiver, "partner.test"), timeout=5)
    assert "TLS certificate not accepted" in refused.value.detail
    assert tls_receiver.seen == []


def test_the_bundle_adds_roots_to_the_systems() -> None:
    ca = trustme.CA()
    system = ssl.create_default_context()
    with ca.cert_pem.tempfile() as bundle:
        context = tls_context(bundle)
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    stats = context.cert_store_stats()
    assert stats["x509_ca"] == system.cert_store_stats()["x509_ca"] + 1
    assert tls_context(None) is True  # aiohttp's verifying default
