"""The outbound transport seam: what handshakes, test sends and deliveries call to send one
request, and an in-memory transport that answers from a function.

    Transport           the interface: `send(...)` -> OutboundResponse, or an OutboundError
    ├── Outbound        gateway.outbound: aiohttp behind the address guard (every real request)
    └── MockTransport   here: answers from a handler, records what was asked; sends nothing

The mock is shipped in the package, so unit tests and benchmarks share it without the product
importing test code. Its handler returns the answer, or raises an
OutboundError (OutboundTimeout, OutboundConnectionError, ...) to stand for no answer; the mock
cuts the body at `max_body` as the real transport does, so callers see the same shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Protocol
from uuid import UUID

from gateway.models import record


@record
class OutboundResponse:
    """What came back: status, headers, at most `max_body` bytes of body, and the time taken."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed: float
    truncated: bool


@record
class OutboundRequest:
    """One request as a transport was asked to send it (what MockTransport records)."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None
    timeout: float
    max_body: int
    group: UUID | None


class Transport(Protocol):
    """Sends one request and returns the answer; raises an OutboundError when none came."""

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float,
        max_body: int = 65536,
        group: UUID | None = None,
    ) -> OutboundResponse:
        """One request, never redirected, within `timeout` seconds; with `group`, counted
        against that group's share of the transport if it has one."""
        ...


Handler = Callable[[OutboundRequest], OutboundResponse | Awaitable[OutboundResponse]]


def respond(
    status: int, body: bytes = b"", headers: Mapping[str, str] | None = None
) -> OutboundResponse:
    """An answer for a MockTransport handler to return; its header names match in any case,
    as in the real transport's answers."""
    return OutboundResponse(status, AnyCase(headers or {}), body, 0.0, False)


class AnyCase(Mapping[str, str]):
    """Headers looked up by name in any case (HTTP names are case-insensitive; aiohttp's
    answers are read that way, `retry-after` finding a Retry-After)."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._by_name = {name.lower(): value for name, value in headers.items()}

    def __getitem__(self, name: str) -> str:
        return self._by_name[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)


class MockTransport:
    """A Transport that sends nothing: `handler` answers each request (or raises an
    OutboundError), and `requests` keeps every request in the order it was asked for.

    A benchmark passes `keep_requests=False`: thousands of requests kept alive cost the cyclic
    collector more than the rest of the mock (callgrind, 4,000 sends: 11,700 instructions a
    send kept, 4,400 not; the stand-in it replaced cost 5,500).
    """

    def __init__(self, handler: Handler, *, keep_requests: bool = True) -> None:
        self.handler = handler
        self.requests: list[OutboundRequest] = []
        self._keep = keep_requests

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float,
        max_body: int = 65536,
        group: UUID | None = None,
    ) -> OutboundResponse:
        """The handler's answer to this request, its body cut at `max_body`."""
        request = OutboundRequest(method, url, headers or {}, body, timeout, max_body, group)
        if self._keep:
            self.requests.append(request)
        answer = self.handler(request)
        if not isinstance(answer, OutboundResponse):
            answer = await answer  # an async handler
        if len(answer.body) > max_body:
            return _cut(answer, max_body)
        return answer


def _cut(response: OutboundResponse, max_body: int) -> OutboundResponse:
    """The answer as the real transport reads a longer one: `max_body` bytes, marked as cut."""
    return OutboundResponse(
        response.status, response.headers, response.body[:max_body], response.elapsed, True
    )
