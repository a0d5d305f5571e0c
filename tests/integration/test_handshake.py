"""The verification handshake against a real receiver on loopback, through the real Outbound."""

from __future__ import annotations

import asyncio
import socket
import sys
from datetime import timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from itsdangerous import URLSafeTimedSerializer
from prometheus_client import REGISTRY

from gateway.errors import HandshakeFailed
from gateway.handshake import ALLOW_HINT, SALT, HandshakeCodes, verify_callback
from gateway.models import utcnow
from gateway.netguard import AddressPolicy
from gateway.outbound import Outbound
from gateway.store import Store, store_for_url
from tests.gateway_server import gateway_settings, run_gateway
from tests.integration.conftest import HANDSHAKE_KEY as KEY
from tests.receiver import Answer, Receiver
from tests.throwaway import column


def handshakes(outcome: str) -> float:
    return REGISTRY.get_sample_value("gateway_handshakes_total", {"outcome": outcome}) or 0.0


async def fails(outbound: Outbound, codes: HandshakeCodes, url: str, **kwargs: float) -> str:
    """Run a handshake that must fail; its detail."""
    with pytest.raises(HandshakeFailed) as caught:
        await verify_callback(outbound, codes, uuid4(), "POST", url, **kwargs)
    assert caught.value.status == 400
    return caught.value.detail


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH"])
async def test_passes_when_the_callback_echoes_the_code(
    outbound: Outbound, codes: HandshakeCodes, receiver: Receiver, method: str
) -> None:
    passed = handshakes("passed")
    await verify_callback(outbound, codes, uuid4(), method, receiver.plan("/hook"))
    [seen] = receiver.seen
    assert (seen.method, seen.path, seen.body) == (method, "/hook", b"")
    assert len(seen.params["code"]) == 1
    if method != "GET":
        assert seen.headers.get("content-length") == "0"
    assert handshakes("passed") == passed + 1


async def test_code_arrives_alongside_existing_query_parameters(
    outbound: Outbound, codes: HandshakeCodes, receiver: Receiver
) -> None:
    url = receiver.plan("/hook") + "?tenant=7&name=a%20b"
    await verify_callback(outbound, codes, uuid4(), "GET", url)
    [seen] = receiver.seen
    assert seen.query.startswith("tenant=7&name=a%20b&code=")
    assert seen.params["tenant"] == ["7"] and seen.params["name"] == ["a b"]


async def test_each_handshake_sends_a_fresh_single_use_code(
    outbound: Outbound, codes: HandshakeCodes, receiver: Receiver
) -> None:
    hook, url = uuid4(), receiver.plan("/hook")
    await verify_callback(outbound, codes, hook, "POST", url)
    await verify_callback(outbound, codes, hook, "POST", url)
    first, second = (s.params["code"][0] for s in receiver.seen)
    assert first != second
    with pytest.raises(HandshakeFailed, match="already used"):
        await codes.verify(first, hook)


async def test_fails_on_404(outbound: Outbound, codes: HandshakeCodes, receiver: Receiver) -> None:
    failed = handshakes("failed")
    url = receiver.plan("/missing", Answer(status=404))
    assert await fails(outbound, codes, url) == "callback answered HTTP 404"
    assert handshakes("failed") == failed + 1


async def test_fails_on_a_2xx_with_the_wrong_body(
    outbound: Outbound, codes: HandshakeCodes, receiver: Receiver
) -> None:
    url = receiver.plan("/wrong", Answer(body="hello"))
    assert await fails(outbound, codes, url) == "body did not match the code"


async def test_fails_when_the_callback_is_slower_than_the_timeout(
    outbound: Outbound, codes: HandshakeCodes, receiver: Receiver
) -> None:
    url = receiver.plan("/slow", Answer(delay=3))
    assert await fails(outbound, codes, url, timeout=0.5) == "timed out after 0.5 s"


async def test_redirects_are_not_followed(
    outbound: Outbound, codes: HandshakeCodes, receiver: Receiver
) -> None:
    echo = receiver.plan("/echo")
    url = receiver.plan("/moved", Answer(status=302, headers={"location": echo}))
    detail = await fails(outbound, codes, url)
    assert detail == "callback answered HTTP 302 (redirects are not followed)"
    assert [s.path for s in receiver.seen] == ["/moved"]


async def test_fails_when_the_address_is_not_allowed(
    codes: HandshakeCodes, receiver: Receiver
) -> None:
    async with Outbound(policy=AddressPolicy()) as strict:
        detail = await fails(strict, codes, receiver.plan("/hook"))
    assert detail == f"callback address 127.0.0.1 is not allowed (loopback); {ALLOW_HINT}"
    assert receiver.seen == [], "a refused address must never be contacted"


async def test_fails_when_nothing_listens(outbound: Outbound, codes: HandshakeCodes) -> None:
    with socket.socket() as probe:  # a loopback port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    detail = await fails(outbound, codes, f"http://127.0.0.1:{port}/hook")
    assert detail == "could not connect: connection refused"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One database that several stores (as several processes would) open."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite:///{tmp_path}/shared.db"


async def refused(codes: HandshakeCodes, code: str, hook: UUID) -> str:
    with pytest.raises(HandshakeFailed) as caught:
        await codes.verify(code, hook)
    return caught.value.detail


async def test_a_code_accepted_through_one_store_is_refused_through_another(
    database_url: str,
) -> None:
    async with store_for_url(database_url) as one, store_for_url(database_url) as two:
        first, second = HandshakeCodes(KEY, one), HandshakeCodes(KEY, two)
        hook = uuid4()
        code = first.issue(hook)
        await second.verify(code, hook)  # any process knows the key, so any may accept it
        assert await refused(first, code, hook) == "code was already used"
        assert await refused(second, code, hook) == "code was already used"
        await first.verify(first.issue(hook), hook)  # other codes still pass


async def test_of_one_code_verified_at_once_through_several_stores_one_passes(
    database_url: str,
) -> None:
    stores = [store_for_url(database_url) for _ in range(4)]
    for store in stores:
        await store.open()
    try:
        hook = uuid4()
        code = HandshakeCodes(KEY, stores[0]).issue(hook)
        results = await asyncio.gather(
            *(HandshakeCodes(KEY, store).verify(code, hook) for store in stores),
            return_exceptions=True,
        )
        passed = [r for r in results if r is None]
        assert len(passed) == 1
        assert {str(r) for r in results if r is not None} == {"code was already used"}
    finally:
        for store in stores:
            await store.close()


VERIFY_IN_ANOTHER_PROCESS = """
import asyncio, sys
from uuid import UUID
from gateway.errors import HandshakeFailed
from gateway.handshake import HandshakeCodes
from gateway.store import store_for_url

async def verify(url, key, code, hook):
    async with store_for_url(url) as store:
        try:
            await HandshakeCodes(key, store).verify(code, UUID(hook))
        except HandshakeFailed as exc:
            return exc.detail
    return "accepted"

print(asyncio.run(verify(*sys.argv[1:])))
"""


async def verify_in_another_process(database_url: str, code: str, hook: UUID) -> str:
    """Verify the code in a new Python process on the same database; what it answered."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", VERIFY_IN_ANOTHER_PROCESS, database_url, KEY, code, str(hook),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(child.communicate(), 30)
    assert child.returncode == 0, err.decode()
    return out.decode().strip()


async def test_a_code_accepted_in_another_process_is_refused_in_this_one(
    database_url: str,
) -> None:
    async with store_for_url(database_url) as store:
        codes, hook = HandshakeCodes(KEY, store), uuid4()
        code = codes.issue(hook)
        assert await verify_in_another_process(database_url, code, hook) == "accepted"
        assert await refused(codes, code, hook) == "code was already used"


async def test_the_gateway_keeps_used_nonces_in_its_store_and_prunes_expired_ones(
    tmp_path: Path, receiver: Receiver, store: Store
) -> None:
    await store.take_handshake_nonce("expired", utcnow() - timedelta(seconds=1))
    async with run_gateway(gateway_settings(tmp_path), store=store) as gateway:
        # Housekeeping runs as the gateway starts.
        async with asyncio.timeout(10):
            while "expired" in column(store, "SELECT nonce FROM handshake_nonces"):
                await asyncio.sleep(0.01)
        key, _ = await gateway.add_key()
        body = {"name": "n", "requestContentType": "Full", "callbackHttpMethod": "POST",
                "callbackUrl": receiver.plan("/hook")}  # fmt: skip
        async with gateway.client(key) as api:
            assert (await api.post("/api/v1/Webhooks", json=[body])).status_code == 200
        [nonce] = column(store, "SELECT nonce FROM handshake_nonces")  # before the store closes
    [code] = [seen.params["code"][0] for seen in receiver.seen]
    assert nonce == URLSafeTimedSerializer(KEY, salt=SALT).loads(code)["n"]  # the code's own
