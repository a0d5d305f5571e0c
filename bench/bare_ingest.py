"""S4's baseline server: a bare Starlette endpoint that parses the events body and answers 202.

    python -m bench.bare_ingest PORT

`POST /api/v1/Events` reads the body, parses it with orjson (the gateway's parser) and answers
202 with a count; `GET /healthz` answers 200. uvicorn runs it with the settings `gateway serve`
uses (default loop and HTTP implementation, access log off), so the two differ only in what the
gateway does with the events.
"""

from __future__ import annotations

import sys

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def publish(request: Request) -> Response:
    """Parse the events and accept them."""
    body = orjson.loads(await request.body())
    items = body if isinstance(body, list) else [body]
    return Response(orjson.dumps({"accepted": len(items)}), 202, media_type="application/json")


async def healthz(request: Request) -> Response:
    """Up."""
    return Response(b"ok")


app = Starlette(routes=[Route("/api/v1/Events", publish, methods=["POST"]),
                        Route("/healthz", healthz)])  # fmt: skip

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
