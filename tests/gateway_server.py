"""A real gateway for tests: uvicorn on a loopback port, in the test's own event loop.

Running in the same loop lets a test drive the delivery worker directly (`drain()`), so no test
sleeps waiting for a poll. The database is a real SQLite file unless a store is given.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

import httpx
import uvicorn

from gateway.api.common import Context, hash_key
from gateway.app import create_app
from gateway.config import Settings
from gateway.delivery import Worker
from gateway.models import ApiKey, Scope, utcnow
from gateway.netguard import Resolver
from gateway.store import Store

SERVER_START_TIMEOUT = 10.0


def gateway_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test gateway: loopback callbacks allowed, fast retries, no own worker."""
    base = Settings(
        database_url=f"sqlite:///{tmp_path}/gateway.db",
        secret_key="test-secret-key",
        allowed_callback_networks=("127.0.0.0/8", "::1/128"),
        handshake_timeout=2.0,
        delivery_timeout=2.0,
        retry_schedule=(0.01,),
        retry_jitter=0.0,
        run_worker=False,
        rate_limit_per_second=0,
        expiry_sweep_interval=3600,
    )
    return dataclasses.replace(base, **overrides)


@dataclass
class RunningGateway:
    """A started gateway: its URL, its context, and helpers to act on it."""

    url: str
    ctx: Context

    def client(self, key: str | None = None) -> httpx.AsyncClient:
        """An HTTP client for the API, authenticated with `key` if given."""
        headers = {"Api-Key": key} if key else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10.0)

    async def add_key(
        self, group: str = "acme", scopes: frozenset[Scope] = frozenset(Scope)
    ) -> tuple[str, ApiKey]:
        """Create an API key directly in the store; returns (key, record)."""
        from uuid import uuid5

        from gateway.cli import GROUP_NAMESPACE

        key = f"gwk_test_{uuid4().hex}"
        group_key = uuid5(GROUP_NAMESPACE, group)
        record = ApiKey(uuid4(), group_key, group, hash_key(key), scopes, utcnow())
        await self.ctx.store.add_api_key(record)
        return key, record

    def worker(self) -> Worker:
        """A delivery worker on this gateway's store and outbound client."""
        return Worker(self.ctx.settings, self.ctx.store, self.ctx.outbound)


@contextlib.asynccontextmanager
async def run_gateway(
    settings: Settings, store: Store | None = None, resolver: Resolver | None = None
) -> AsyncIterator[RunningGateway]:
    """Start the gateway on 127.0.0.1 (a free port) and stop it afterwards.

    `resolver` replaces the system resolver for outbound host names (e.g. a fake in tests).
    """
    app = create_app(settings, store, resolver)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(SERVER_START_TIMEOUT):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield RunningGateway(f"http://127.0.0.1:{port}", app.state.ctx)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, SERVER_START_TIMEOUT)


T = TypeVar("T")


@dataclass
class ThreadedGateway:
    """A gateway serving from its own event loop in a background thread, for synchronous
    callers such as schemathesis (which sends with `requests`)."""

    gateway: RunningGateway
    loop: asyncio.AbstractEventLoop

    @property
    def url(self) -> str:
        """The gateway's base URL."""
        return self.gateway.url

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = SERVER_START_TIMEOUT) -> T:
        """Run a coroutine on the gateway's loop (e.g. `add_key`, store calls); its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@contextlib.contextmanager
def run_gateway_in_thread(
    settings: Settings, store: Store | None = None, resolver: Resolver | None = None
) -> Iterator[ThreadedGateway]:
    """`run_gateway` in a thread with its own event loop; stopped and joined afterwards."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="gateway-loop", daemon=True)
    thread.start()
    started: concurrent.futures.Future[RunningGateway] = concurrent.futures.Future()
    stop = asyncio.Event()

    async def serve() -> None:
        try:
            async with run_gateway(settings, store, resolver) as running:
                started.set_result(running)
                await stop.wait()
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            raise

    serving = asyncio.run_coroutine_threadsafe(serve(), loop)
    try:
        yield ThreadedGateway(started.result(SERVER_START_TIMEOUT), loop)
    finally:
        loop.call_soon_threadsafe(stop.set)
        try:
            serving.result(SERVER_START_TIMEOUT)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(SERVER_START_TIMEOUT)
            loop.close()
