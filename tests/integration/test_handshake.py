"""The verification handshake against a real receiver on loopback, through the real Outbound."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
from prometheus_client import REGISTRY

from gateway.errors import HandshakeFailed
from gateway.handshake import HandshakeCodes, verify_callback
from gateway.netguard import AddressPolicy
from gateway.outbound import Outbound
from tests.receiver import Answer, Receiver

LOOPBACK = AddressPolicy(allowed_networks=["127.0.0.0/8"])


@pytest.fixture
async def outbound() -> AsyncIterator[Outbound]:
    async with Outbound(policy=LOOPBACK) as client:
        yield client


@pytest.fixture
def codes() -> HandshakeCodes:
    return HandshakeCodes("test-secret-key")


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
        codes.verify(first, hook)


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
    assert detail == "callback address 127.0.0.1 is not allowed (loopback)"
    assert receiver.seen == [], "a refused address must never be contacted"


async def test_fails_when_nothing_listens(outbound: Outbound, codes: HandshakeCodes) -> None:
    with socket.socket() as probe:  # a loopback port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    detail = await fails(outbound, codes, f"http://127.0.0.1:{port}/hook")
    assert detail == "could not connect: connection refused"
