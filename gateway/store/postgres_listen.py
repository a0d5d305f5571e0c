"""The PostgreSQL store's LISTEN connection, which comes back when it drops.

When the connection drops (the server restarted, an operator ran `pg_terminate_backend`, the
network blinked) `Listener` reconnects with backoff. Workers find new work at their polls
meanwhile, and are woken once it is back, for whatever was committed while nobody listened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg

from gateway.store.postgres_retry import DRIVER_ERRORS

log = logging.getLogger(__name__)
FIRST_PAUSE = 0.1  # seconds before the first reconnect; each later pause up to twice as long
MAX_PAUSE = 10.0
CONNECT_TIMEOUT = 10.0


class Listener:
    """LISTENs on `channel` on a connection of its own, calling `notify()` for each NOTIFY,
    and reconnects with backoff whenever that connection drops, until `close()`.

    `others` are more channels on the same connection, each with its handler, called with the
    NOTIFY's payload; after a reconnect, with None (anything may have happened meanwhile)."""

    def __init__(
        self,
        url: str,
        channel: str,
        notify: Callable[[], None],
        *,
        others: Mapping[str, Callable[[str | None], None]] | None = None,
    ) -> None:
        self.url = url
        self.channel = channel
        self.notify = notify
        self.others = dict(others or {})
        self._conn: asyncpg.Connection | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        """Listen now if the server lets us; else keep trying in the background."""
        try:
            await self._connect()
        except DRIVER_ERRORS as exc:
            # Not fatal: workers still find new work at their next poll.
            log.warning("cannot LISTEN for new work (%s); workers poll meanwhile", exc)
            self._reconnect_later()

    async def close(self) -> None:
        """Stop listening and reconnecting."""
        self._closed = True
        task, self._reconnecting = self._reconnecting, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.remove_termination_listener(self._lost)
            with contextlib.suppress(*DRIVER_ERRORS):
                await conn.close()

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT)
        try:
            await conn.add_listener(self.channel, self._notified)
            for channel in self.others:
                await conn.add_listener(channel, self._other)
        except BaseException:
            with contextlib.suppress(*DRIVER_ERRORS):
                await conn.close()
            raise
        if self._closed:  # closed while connecting
            await conn.close()
            return
        conn.add_termination_listener(self._lost)
        self._conn = conn

    def _notified(self, *_args: Any) -> None:
        self.notify()

    def _other(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        self.others[channel](payload)

    def _lost(self, conn: asyncpg.Connection) -> None:
        if conn is not self._conn or self._closed:
            return
        self._conn = None
        log.warning("LISTEN connection lost; reconnecting, and workers poll meanwhile")
        self._reconnect_later()

    def _reconnect_later(self) -> None:
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        ceiling = FIRST_PAUSE
        tries = 0
        while not self._closed:
            await asyncio.sleep(random.uniform(ceiling / 2, ceiling))
            tries += 1
            try:
                await self._connect()
            except DRIVER_ERRORS as exc:
                log.info("LISTEN reconnect failed (%s)", exc, extra={"tries": tries})
                ceiling = min(ceiling * 2, MAX_PAUSE)
                continue
            log.warning("LISTEN connection restored", extra={"tries": tries})
            # Whatever was committed while nobody listened goes out now, not at the next poll.
            self.notify()
            for handler in self.others.values():
                handler(None)
            return
