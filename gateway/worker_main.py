"""`gateway worker`: the delivery worker alone, so API and delivery can scale apart."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from gateway.config import Settings
from gateway.delivery import Worker
from gateway.netguard import AddressPolicy
from gateway.outbound import Outbound
from gateway.store import store_for_url

log = logging.getLogger(__name__)


async def _run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        # SIGTERM: stop claiming, finish or release what is in flight, exit.
        loop.add_signal_handler(signum, stop.set)
    policy = AddressPolicy(settings.allowed_callback_networks)
    async with store_for_url(settings.database_url) as store, Outbound(policy=policy) as outbound:
        await Worker(settings, store, outbound).run(stop)


def run_worker(settings: Settings) -> int:
    """Run the worker until SIGTERM or SIGINT, on uvloop like `gateway serve` (uvicorn picks it
    when installed): the delivery loop spends most of its time in the event loop's socket calls."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_run(settings))
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # not on every platform; the standard loop works, only slower
        return None
    return uvloop.new_event_loop
