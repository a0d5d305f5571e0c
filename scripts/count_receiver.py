"""A minimal receiver for benchmarks: answers 200 to anything and counts the requests.

    python scripts/count_receiver.py PORT

`GET /count` answers the number of other requests seen so far. A request with a `code` query
parameter (the gateway's handshake) gets the code back.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import uvicorn

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
seen = 0


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Count, answer handshakes, and report the count (a bare ASGI app: as cheap as it gets)."""
    global seen
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    query = parse_qs(scope["query_string"].decode())
    if scope["path"] == "/count":
        body = str(seen).encode()
    elif "code" in query:
        body = query["code"][0].encode()
    else:
        seen += 1
        body = b"ok"
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        http="httptools",
        access_log=False,
    )
