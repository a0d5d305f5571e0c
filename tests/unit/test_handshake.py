"""The handshake exchange on the mock transport: the request it makes (method, URL with the
code, body, limits, group), and what each kind of answer, or no answer, comes to. The same over
real loopback HTTP: tests/integration/test_handshake.py and test_handshake_requests.py."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID, uuid4

import pytest
from prometheus_client import REGISTRY

from gateway.errors import (
    AddressNotAllowed,
    HandshakeFailed,
    OutboundBusy,
    OutboundConnectionError,
    OutboundError,
    OutboundTimeout,
)
from gateway.handshake import HandshakeCodes, verify_callback
from gateway.store import Store
from gateway.transport import MockTransport, OutboundRequest, OutboundResponse, respond

URL = "https://partner.example/hook?tenant=7"


def code_of(request: OutboundRequest) -> str:
    """The code the handshake put in the URL."""
    [code] = parse_qs(urlsplit(request.url).query)["code"]
    return code


def echoing(reply: Callable[[str], bytes] = str.encode, status: int = 200) -> MockTransport:
    """A callback that answers `status` with `reply(code)` (by default the code itself)."""
    return MockTransport(lambda request: respond(status, reply(code_of(request))))


def answering(response: OutboundResponse) -> MockTransport:
    return MockTransport(lambda request: response)


def failing(error: OutboundError) -> MockTransport:
    def raises(request: OutboundRequest) -> OutboundResponse:
        raise error

    return MockTransport(raises)


@pytest.fixture
def codes(store: Store) -> HandshakeCodes:
    return HandshakeCodes("a key", store)


async def fails(transport: MockTransport, codes: HandshakeCodes, **kwargs: Any) -> str:
    """Run a handshake that must fail; its detail."""
    with pytest.raises(HandshakeFailed) as caught:
        await verify_callback(transport, codes, uuid4(), "POST", URL, **kwargs)
    return caught.value.detail


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
async def test_the_callback_is_called_with_its_own_method_and_the_code_added_to_its_url(
    codes: HandshakeCodes, method: str
) -> None:
    transport, group = echoing(), uuid4()
    await verify_callback(transport, codes, uuid4(), method, URL, group=group)
    [request] = transport.requests
    assert (request.method, request.headers) == (method, {})  # nothing signed, nothing added
    assert request.url == f"{URL}&code={code_of(request)}"
    assert (request.timeout, request.max_body, request.group) == (10.0, 4096, group)
    # A GET (or DELETE) announces no body, which some servers refuse (RFC 9110 §8.6); the
    # others send an empty one, as None or b"": the same bytes on the wire.
    assert request.body is None if method in ("GET", "DELETE") else not request.body


async def test_the_timeout_and_the_cap_on_the_answer_are_the_callers(
    codes: HandshakeCodes,
) -> None:
    transport = echoing()
    await verify_callback(transport, codes, uuid4(), "POST", URL, timeout=2.5, max_body=1000)
    [request] = transport.requests
    assert (request.timeout, request.max_body, request.group) == (2.5, 1000, None)


async def test_a_passed_handshake_uses_its_code_up(codes: HandshakeCodes) -> None:
    transport, hook = echoing(), uuid4()
    await verify_callback(transport, codes, hook, "POST", URL)
    with pytest.raises(HandshakeFailed, match=r"^code was already used$"):
        await codes.verify(code_of(transport.requests[0]), hook)


@pytest.mark.parametrize("status", [200, 201, 204, 299])
async def test_any_2xx_echoing_the_code_passes(codes: HandshakeCodes, status: int) -> None:
    await verify_callback(echoing(status=status), codes, uuid4(), "POST", URL)


@pytest.mark.parametrize(
    ("status", "detail"),
    [
        (301, "callback answered HTTP 301 (redirects are not followed)"),
        (308, "callback answered HTTP 308 (redirects are not followed)"),
        (199, "callback answered HTTP 199"),
        (404, "callback answered HTTP 404"),
        (410, "callback answered HTTP 410"),
        (500, "callback answered HTTP 500"),
    ],
)
async def test_an_answer_other_than_2xx_fails_saying_what_came_back(
    codes: HandshakeCodes, status: int, detail: str
) -> None:
    # Even with the code in its body: only a 2xx passes.
    assert await fails(echoing(status=status), codes) == detail


async def test_whitespace_around_the_echoed_code_is_ignored(codes: HandshakeCodes) -> None:
    transport = echoing(lambda code: f"\r\n  {code}\n".encode())
    await verify_callback(transport, codes, uuid4(), "POST", URL)


@pytest.mark.parametrize(
    "reply",
    [
        lambda code: b"",
        lambda code: code[:-1].encode(),
        lambda code: f'"{code}"'.encode(),
        lambda code: code.encode() + b"\xff",
        lambda code: f"{code} {code}".encode(),
    ],
)
async def test_anything_but_the_code_fails(
    codes: HandshakeCodes, reply: Callable[[str], bytes]
) -> None:
    assert await fails(echoing(reply), codes) == "body did not match the code"


async def test_a_code_cut_off_by_the_cap_on_the_answer_fails(codes: HandshakeCodes) -> None:
    assert await fails(echoing(), codes, max_body=20) == "body did not match the code"


@pytest.mark.parametrize(
    ("error", "detail"),
    [
        (OutboundTimeout("timed out after 10 s"), "timed out after 10 s"),
        (OutboundBusy("timed out after 10 s waiting"), "timed out after 10 s waiting"),
        (AddressNotAllowed("address not allowed"), "address not allowed"),
        (OutboundConnectionError("connection refused"), "could not connect: connection refused"),
        (OutboundError("something else"), "callback request failed: something else"),
    ],
)
async def test_no_answer_fails_saying_why(
    codes: HandshakeCodes, error: OutboundError, detail: str
) -> None:
    assert await fails(failing(error), codes) == detail


def handshakes(outcome: str) -> float:
    return REGISTRY.get_sample_value("gateway_handshakes_total", {"outcome": outcome}) or 0.0


async def test_each_handshake_is_counted_by_its_outcome(codes: HandshakeCodes) -> None:
    passed, failed = handshakes("passed"), handshakes("failed")
    await verify_callback(echoing(), codes, uuid4(), "POST", URL)
    await fails(answering(respond(500)), codes)
    await fails(failing(OutboundTimeout("timed out after 10 s")), codes)
    assert (handshakes("passed"), handshakes("failed")) == (passed + 1, failed + 2)


def handshake_logs(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, Any]]]:
    fields = ("webhook_id", "detail")
    return [
        (r.getMessage(), {f: getattr(r, f) for f in fields if hasattr(r, f)})
        for r in caplog.records
        if r.name == "gateway.handshake"
    ]


async def test_the_operator_log_says_which_webhook_passed(
    codes: HandshakeCodes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.handshake")
    hook = uuid4()
    await verify_callback(echoing(), codes, hook, "POST", URL)
    assert handshake_logs(caplog) == [("handshake passed", {"webhook_id": str(hook)})]


async def test_the_operator_log_says_which_webhook_failed_and_why(
    codes: HandshakeCodes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.handshake")
    hook: UUID = uuid4()
    with pytest.raises(HandshakeFailed):
        await verify_callback(echoing(lambda code: b"nope"), codes, hook, "POST", URL)
    expected = {"webhook_id": str(hook), "detail": "body did not match the code"}
    assert handshake_logs(caplog) == [("handshake failed", expected)]
