"""The benchmarks' receiver: answers 200 to anything, counts requests, times what it is sent.

    python -m bench.receiver PORT

- A request with a `code` query parameter (the gateway's handshake) gets the code back.
- Any path under `/hang/` answers handshakes but never answers a notification: the
  unresponsive partner of the isolation benchmark. Under `/hang-all/` it answers nothing,
  handshakes included. Under `/fail/` it answers handshakes and 503 to every notification
  (counted like any other): a partner that is down.
- Under `/order/` it also notes each body's `"sequence": <n>`: an arrival whose sequence is
  below one that arrived earlier on the same path is out of order, and
  `GET /disorder?prefix=/order/...` answers how many were.
- Every other request is counted under its path. `GET /count` answers the total;
  `GET /count?prefix=/hook/3` the total under that prefix; `GET /last?prefix=/hook/3` the
  wall-clock time (unix seconds) of the latest request under it, 0 if none.
- A body holding `"sentAt": <unix seconds>` adds `now - sentAt` to the latencies that
  `GET /latencies` answers as a JSON list (and `GET /latencies?reset=1` clears).

A bare ASGI app under uvicorn + httptools: as cheap as a Python receiver gets, so that the
gateway and the baselines it is compared with pay the same for the other end.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import uvicorn

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

SENT_AT = re.compile(rb'"sentAt":\s*([0-9.]+)')
SEQUENCE = re.compile(rb'"sequence":\s*([0-9]+)')
seen: Counter[str] = Counter()
last: dict[str, float] = {}  # the latest arrival's time on each path
highest: dict[str, int] = {}  # the highest sequence seen on each path under /order/
disorder: Counter[str] = Counter()  # arrivals under a higher sequence, by path
latencies: list[float] = []
never = asyncio.Event()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    received = time.time()
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    path: str = scope["path"]
    query = parse_qs(scope["query_string"].decode())
    if path.startswith("/hang-all/"):
        await never.wait()
        return
    if "code" in query:
        body = query["code"][0].encode()
    elif path == "/count":
        prefix = query.get("prefix", [""])[0]
        body = str(sum(n for p, n in seen.items() if p.startswith(prefix))).encode()
    elif path == "/last":
        prefix = query.get("prefix", [""])[0]
        body = repr(max((t for p, t in last.items() if p.startswith(prefix)), default=0.0)).encode()
    elif path == "/disorder":
        prefix = query.get("prefix", [""])[0]
        body = str(sum(n for p, n in disorder.items() if p.startswith(prefix))).encode()
    elif path == "/latencies":
        body = json.dumps(latencies).encode()
        if "reset" in query:
            latencies.clear()
    elif path.startswith("/hang/"):
        await never.wait()
        return
    else:
        seen[path] += 1
        last[path] = received
        found = SENT_AT.search(b"".join(chunks))
        if found:
            latencies.append(received - float(found.group(1)))
        if path.startswith("/order/"):
            note_order(path, b"".join(chunks))
        body = b"ok"
    status = 503 if path.startswith("/fail/") and "code" not in query else 200
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def note_order(path: str, body: bytes) -> None:
    """Count the arrival as out of order if an earlier one on `path` had a higher sequence."""
    found = SEQUENCE.search(body)
    if found is None:
        return
    sequence = int(found.group(1))
    if sequence < highest.get(path, -1):
        disorder[path] += 1
    else:
        highest[path] = sequence


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        http="httptools",
        access_log=False,
    )
