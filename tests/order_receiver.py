"""A partner endpoint that records the order notifications arrive in: uvicorn on a loopback
port, in the test's event loop (the tests of strict per-webhook ordering, issue 22).

Each path is one webhook's callback. Every notification becomes an `Arrival`: its `sequence`
and notification id (from the body), the answer it got, when it arrived and when it was
answered, the port it came from, and how many other requests to the same path were being
answered when it arrived. Each request is held `hold` seconds before its answer, so two sends
of one webhook at once overlap here, and a strict webhook's must never.

It echoes the handshake's `code`, answers 200 by default, and by plan answers the first
attempts of a given sequence with other statuses (`plan`); it can also hold the first attempt
of one sequence until the test lets it go (`catch`), e.g. while it kills the worker sending it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import PlainTextResponse

from tests.receiver import serve_on_loopback

HOLD = 0.03  # seconds each request is held before its answer


@dataclass
class Arrival:
    """One notification request, as it arrived."""

    path: str
    sequence: int
    notification_id: str
    status: int  # the answer given (decided on arrival)
    arrived: float  # time.monotonic()
    overlapping: int  # other requests to this path being answered when it arrived
    client: str  # the sender's address:port
    answered: float | None = None  # time.monotonic(), None while it is held


class OrderReceiver:
    """Records arrivals by path and answers them by plan."""

    def __init__(self) -> None:
        self.url = ""
        self.arrivals: list[Arrival] = []
        self.handshakes: Counter[str] = Counter()
        self.holds: dict[str, float] = {}  # by path; HOLD when not given
        self._plans: dict[tuple[str, int], list[int]] = {}
        self._caught: dict[tuple[str, int], asyncio.Event] = {}
        self._in_flight: Counter[str] = Counter()
        self._changed = asyncio.Condition()
        self.closing = asyncio.Event()  # cuts held answers short at shutdown

    def plan(self, path: str, sequence: int, *statuses: int) -> None:
        """Answer the first attempts of `sequence` at `path` with these statuses, then 200."""
        self._plans[path, sequence] = list(statuses)

    def catch(self, path: str, sequence: int) -> asyncio.Event:
        """Hold the first attempt of `sequence` at `path` until the returned event is set."""
        release = asyncio.Event()
        self._caught[path, sequence] = release
        return release

    def of(self, path: str) -> list[Arrival]:
        """The notifications that arrived at `path`, in arrival order."""
        return [a for a in self.arrivals if a.path == path]

    def sequences(self, path: str) -> list[int]:
        """The sequences that arrived at `path`, in arrival order (each attempt)."""
        return [a.sequence for a in self.of(path)]

    def delivered(self, path: str) -> set[int]:
        """The sequences answered 2xx at `path` (the answer may still be held)."""
        return {a.sequence for a in self.of(path) if 200 <= a.status < 300}

    def in_flight(self, path: str) -> int:
        """Requests to `path` being answered now."""
        return self._in_flight[path]

    async def until(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        """Wait until `check()` holds after some arrival or answer; fail after `timeout`."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(check)
        except TimeoutError:
            seen = [(a.path, a.sequence, a.status) for a in self.arrivals]
            raise AssertionError(f"no {what} within {timeout} s; arrived: {seen}") from None

    async def until_delivered(self, path: str, count: int, timeout: float = 20.0) -> None:
        """Wait until sequences 1..count are answered 2xx at `path` and none is held."""
        wanted = set(range(1, count + 1))
        await self.until(
            f"delivery of sequences 1..{count} to {path}",
            lambda: self.delivered(path) >= wanted and not self._in_flight[path],
            timeout,
        )

    async def _changes(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _answer(self, path: str, sequence: int) -> int:
        plan = self._plans.get((path, sequence))
        return plan.pop(0) if plan else 200

    async def _hold(self, path: str, sequence: int) -> None:
        # Interruptible by `closing`, so an answer still held never holds the shutdown.
        release = self._caught.pop((path, sequence), None)
        waits = {asyncio.ensure_future(self.closing.wait())}
        if release is not None:
            waits.add(asyncio.ensure_future(release.wait()))
        delay = self.holds.get(path, HOLD) if release is None else None
        try:
            await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        path = request.url.path
        code = request.query_params.get("code")
        if code is not None:  # the handshake
            self.handshakes[path] += 1
            await PlainTextResponse(code)(scope, receive, send)
            return
        body = json.loads(await request.body())
        host, port = scope["client"]
        arrival = Arrival(
            path, body["sequence"], body["notificationId"], self._answer(path, body["sequence"]),
            time.monotonic(), self._in_flight[path], f"{host}:{port}",
        )  # fmt: skip
        self.arrivals.append(arrival)
        self._in_flight[path] += 1
        await self._changes()
        try:
            await self._hold(path, arrival.sequence)
        finally:
            self._in_flight[path] -= 1
            arrival.answered = time.monotonic()
        await self._changes()
        await PlainTextResponse("ok", arrival.status)(scope, receive, send)


@contextlib.asynccontextmanager
async def run_order_receiver() -> AsyncIterator[OrderReceiver]:
    """An OrderReceiver on 127.0.0.1 (free port) in this event loop."""
    receiver = OrderReceiver()
    async with serve_on_loopback(receiver, closing=receiver.closing) as url:
        receiver.url = url
        yield receiver
