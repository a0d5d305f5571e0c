"""MockTransport, the unit tests' stand-in for the guarded aiohttp client: it records what it
was asked, answers from its handler, and reads answers as the real one does (body capped at
`max_body`, header names in any case)."""

from __future__ import annotations

from uuid import uuid4

import pytest

from gateway.errors import OutboundTimeout
from gateway.transport import MockTransport, OutboundRequest, OutboundResponse, respond


async def test_every_request_is_recorded_in_order_with_all_it_was_sent_with() -> None:
    group = uuid4()
    transport = MockTransport(lambda request: respond(204))
    await transport.send(
        "POST", "http://h/a", headers={"x": "1"}, body=b"{}", timeout=2, max_body=10, group=group
    )
    await transport.send("GET", "http://h/b", timeout=5)
    assert transport.requests == [
        OutboundRequest("POST", "http://h/a", {"x": "1"}, b"{}", 2, 10, group),
        OutboundRequest("GET", "http://h/b", {}, None, 5, 65536, None),
    ]


async def test_the_handler_answers_each_request_and_may_be_async() -> None:
    async def by_path(request: OutboundRequest) -> OutboundResponse:
        return respond(200 if request.url.endswith("/ok") else 404, request.url.encode())

    transport = MockTransport(by_path)
    ok = await transport.send("GET", "http://h/ok", timeout=1)
    missing = await transport.send("GET", "http://h/nope", timeout=1)
    assert (ok.status, ok.body) == (200, b"http://h/ok")
    assert (missing.status, missing.body) == (404, b"http://h/nope")


@pytest.mark.parametrize(
    ("max_body", "answered", "read", "truncated"),
    [
        (5, b"12345", b"12345", False),
        (5, b"123456", b"12345", True),
        (0, b"1", b"", True),
        (0, b"", b"", False),
    ],
)
async def test_an_answer_is_cut_at_max_body_and_marked_as_cut(
    max_body: int, answered: bytes, read: bytes, truncated: bool
) -> None:
    transport = MockTransport(lambda request: respond(200, answered))
    response = await transport.send("GET", "http://h/", timeout=1, max_body=max_body)
    assert (response.body, response.truncated) == (read, truncated)


async def test_header_names_of_an_answer_match_in_any_case() -> None:
    transport = MockTransport(lambda request: respond(429, headers={"Retry-After": "30"}))
    response = await transport.send("GET", "http://h/", timeout=1)
    assert response.headers["retry-after"] == response.headers.get("RETRY-AFTER") == "30"
    assert dict(response.headers) == {"retry-after": "30"}


async def test_a_handler_raising_an_outbound_error_stands_for_no_answer() -> None:
    def hangs(request: OutboundRequest) -> OutboundResponse:
        raise OutboundTimeout(f"timed out after {request.timeout:g} s")

    transport = MockTransport(hangs)
    with pytest.raises(OutboundTimeout, match=r"^timed out after 3 s$"):
        await transport.send("POST", "http://h/", body=b"{}", timeout=3)
    assert [r.url for r in transport.requests] == ["http://h/"]  # it was still asked


async def test_a_mock_told_not_to_keep_requests_still_answers_them() -> None:
    transport = MockTransport(
        lambda request: respond(200, request.url.encode()), keep_requests=False
    )
    response = await transport.send("GET", "http://h/x", timeout=1)
    assert (response.status, response.body, transport.requests) == (200, b"http://h/x", [])
