"""The publish path's own work per event, HTTP server left out: what a change to ingest moves.

    python -m bench.publish_path [--events 10000] [--per-request 100] [--webhooks 1]
                                 [--setup-only] [--bare]

Opens the gateway's Starlette app (its lifespan, the store on a fresh SQLite file, no worker of
its own: serve's layout with `gateway worker` processes, whose wake-ups a stand-in counts here)
with one API key and `--webhooks` webhooks of its group, each with a rule for Invoice updates
(0: events only). Then it calls the app as uvicorn would, one ASGI request at a time, with S4's
bodies (`--per-request` Invoice update events of one record each, encoded beforehand), checks
each is answered 202, and prints the rate and the CPU per event. With `--bare`, the same
requests go to S4's baseline instead (bench/bare_ingest.py: orjson parses the body, 202).

Timings move by 10-20% between runs on a shared machine; instructions by well under 1%. To
count them, run it under callgrind twice, with and without `--setup-only` (everything but the
requests: the app opened, the rows seeded, the bodies encoded), and divide the difference by
the events:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m bench.publish_path [--setup-only]     # "Collected : N"

The same with `--bare` gives the framework's floor. Run against an older checkout of the gateway
(PYTHONPATH=that/checkout) for a baseline. No targets: this explains S4's and S1's serve figures,
it is not among them.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import orjson

from bench import bare_ingest
from bench.common import events
from gateway.api.common import Context, hash_key
from gateway.app import create_app
from gateway.config import Settings
from gateway.models import ApiKey, Scope, utcnow
from tests.factories import Wakes, make_rule, make_webhook

Message = MutableMapping[str, Any]
App = Callable[[Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
               Awaitable[None]]  # fmt: skip
KEY = "gwk_bench_publish_path"


async def post(app: App, body: bytes) -> int:
    """One POST /api/v1/Events through the ASGI interface, the body in one message as uvicorn
    gives a small one; the status answered."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/api/v1/Events", "raw_path": b"/api/v1/Events",
        "query_string": b"", "root_path": "", "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 50000),
        "headers": [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json"),
                    (b"api-key", KEY.encode()), (b"content-length", str(len(body)).encode())],
    }  # fmt: skip
    sent: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> Message:
        return sent.pop() if sent else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def seed(ctx: Context, webhooks: int) -> None:
    """The bench's API key, and `webhooks` webhooks of its group with a rule each."""
    group = uuid.uuid4()
    key = ApiKey(uuid.uuid4(), group, "bench", hash_key(KEY), frozenset(Scope), utcnow())
    await ctx.store.add_api_key(key)
    hooks = [make_webhook(group_key=group) for _ in range(webhooks)]
    if hooks:
        await ctx.store.add_webhooks(hooks)
        await ctx.store.add_rules([make_rule(hook) for hook in hooks])


async def run(directory: Path, args: argparse.Namespace) -> None:
    bodies = [
        orjson.dumps(events(args.per_request, start))
        for start in range(0, args.events, args.per_request)
    ]
    settings = Settings(
        database_url=f"sqlite:///{directory}/publish.db",
        secret_key="bench-secret-key",
        run_worker=False,
        expiry_sweep_interval=3600,
    )
    # The rate limit stays on, as in serve, out of reach: these requests come faster.
    settings = dataclasses.replace(settings, rate_limit_per_second=1e9, rate_limit_burst=10**9)
    wakes = Wakes()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        ctx: Context = app.state.ctx
        ctx.wakeup.attach(wakes)
        await seed(ctx, args.webhooks)
        target: App = bare_ingest.app if args.bare else app
        await post(target, bodies[0])  # imports and caches warmed either way
        if args.setup_only:
            return
        started, cpu = time.perf_counter(), time.process_time()
        for body in bodies[1:]:
            if (status := await post(target, body)) != 202:
                raise AssertionError(f"HTTP {status}")
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    sent = (len(bodies) - 1) * args.per_request
    side = "bare Starlette + orjson" if args.bare else f"gateway, {args.webhooks} webhook(s)"
    print(
        f"{side}: {sent:,} events (one more request to warm up), {sent / elapsed:,.0f} events/s, "
        f"{cpu / sent * 1e6:.1f} CPU-µs/event, {wakes.count} wake-ups"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000, help="(10,000)")
    parser.add_argument("--per-request", type=int, default=100, help="events a request (100)")
    parser.add_argument("--webhooks", type=int, default=1, help="subscribed, of one group (1)")
    parser.add_argument("--setup-only", action="store_true", help="stop before the requests")
    parser.add_argument("--bare", action="store_true", help="S4's baseline app instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(run(Path(directory), args))


if __name__ == "__main__":
    main()
