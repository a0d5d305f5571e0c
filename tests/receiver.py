"""A real partner endpoint for tests: uvicorn on a loopback port, recording every request.

By default it answers the handshake (echoes `code`) and 200s every notification. A test can
give a path a plan: a list of answers used in turn (the last one repeats), e.g. fail twice then
succeed, answer 410, redirect, sleep past a timeout, or send a wrong body.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

START_TIMEOUT = 10.0


@dataclass(frozen=True)
class Answer:
    """One planned answer."""

    status: int = 200
    body: str | None = None  # None: echo the handshake code, or "ok"
    raw: bytes | None = None  # these exact bytes instead of `body`, e.g. ones that are not UTF-8
    echo: Callable[[str], str] | None = None  # the body made from the handshake's code
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Seen:
    """One request as the receiver got it."""

    method: str
    path: str
    query: str  # raw, exactly as sent
    headers: dict[str, str]
    body: bytes

    @property
    def params(self) -> dict[str, list[str]]:
        """The query parameters."""
        return parse_qs(self.query)

    @property
    def is_handshake(self) -> bool:
        """Whether this was a verification handshake (it carries `code`)."""
        return "code" in self.params


class Receiver:
    """Records requests and answers them by plan."""

    def __init__(self) -> None:
        self.url = ""
        self.seen: list[Seen] = []
        self.plans: dict[str, list[Answer]] = {}
        self.arrived = asyncio.Condition()
        self.closing = asyncio.Event()  # cuts planned delays short at shutdown
        self.in_flight: Counter[str] = Counter()  # requests being answered, by path
        self.peak_in_flight: Counter[str] = Counter()

    def plan(self, path: str, *answers: Answer) -> str:
        """Answer requests to `path` with these in turn; returns the full URL.

        `path` may carry a query string; it becomes part of the URL, not of the plan's key.
        """
        self.plans[path.split("?", 1)[0]] = list(answers)
        return self.url + path

    def notifications(self, path: str | None = None) -> list[Seen]:
        """Non-handshake requests, optionally to one path."""
        return [s for s in self.seen if not s.is_handshake and (path is None or s.path == path)]

    async def wait_for(
        self, count: int, path: str | None = None, timeout: float = 10.0
    ) -> list[Seen]:
        """Wait until `count` notifications (to `path`) have arrived."""
        async with asyncio.timeout(timeout), self.arrived:
            await self.arrived.wait_for(lambda: len(self.notifications(path)) >= count)
        return self.notifications(path)

    def _next(self, path: str) -> Answer:
        plan = self.plans.get(path)
        if not plan:
            return Answer()
        return plan.pop(0) if len(plan) > 1 else plan[0]

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = await request.body()
        seen = Seen(
            request.method,
            request.url.path,
            scope["query_string"].decode(),
            {k.lower(): v for k, v in request.headers.items()},
            body,
        )
        self.seen.append(seen)
        async with self.arrived:
            self.arrived.notify_all()
        answer = self._next(seen.path)
        self.in_flight[seen.path] += 1
        self.peak_in_flight[seen.path] = max(
            self.peak_in_flight[seen.path], self.in_flight[seen.path]
        )
        try:
            if answer.delay:
                # Interruptible, so a slow answer left over by a test never holds the shutdown.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.closing.wait(), answer.delay)
        finally:
            self.in_flight[seen.path] -= 1
        text = answer.body
        if answer.echo is not None:
            text = answer.echo(seen.params["code"][0])
        elif text is None:
            text = seen.params["code"][0] if seen.is_handshake else "ok"
        content = text.encode() if answer.raw is None else answer.raw
        response: Response = PlainTextResponse(content, answer.status, headers=answer.headers)
        await response(scope, receive, send)


@contextlib.asynccontextmanager
async def serve_on_loopback(
    app: Any, tls: ssl.SSLContext | None = None, closing: asyncio.Event | None = None
) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 (free port) in this event loop; yields its
    base URL (https:// with `tls`, a server context holding its certificate). `closing` is set
    at shutdown, before the server stops, so the app can cut its slow answers short."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="off",
        ssl_context_factory=None if tls is None else lambda _config, _default: tls,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        scheme = "http" if tls is None else "https"
        yield f"{scheme}://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        if closing is not None:
            closing.set()
        server.should_exit = True
        # Sleeping answers would hold the shutdown; they are test leftovers.
        server.force_exit = True
        await asyncio.wait_for(task, START_TIMEOUT)


@contextlib.asynccontextmanager
async def run_receiver(tls: ssl.SSLContext | None = None) -> AsyncIterator[Receiver]:
    """Start a receiver on 127.0.0.1 (free port) in this event loop; with `tls` (a server
    context holding its certificate) it serves HTTPS, and its URL is https://."""
    receiver = Receiver()
    async with serve_on_loopback(receiver, tls, receiver.closing) as url:
        receiver.url = url
        yield receiver
