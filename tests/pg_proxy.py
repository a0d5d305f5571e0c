"""A loopback TCP proxy in front of PostgreSQL that fails on cue, for tests of what the store
does when connections are refused or cut at the worst moment."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit


class Proxy:
    """A loopback TCP proxy to PostgreSQL that fails on cue. It hangs up on the next `refuse`
    connections as they open. Once `armed`, it cuts the client's connection at the next COMMIT:
    before forwarding it (`answer_only=False`: the server never sees it) or after the server
    has answered it (`answer_only=True`: committed, and the client cannot know)."""

    def __init__(self, database_url: str, *, answer_only: bool = True) -> None:
        self.database_url = database_url
        parts = urlsplit(database_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.answer_only = answer_only
        self.refuse = 0
        self.armed = False
        self.cut = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self.refuse:
            self.refuse -= 1
            client_w.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        server_r, server_w = await asyncio.open_connection(*self.upstream)
        committing = asyncio.Event()
        try:
            await asyncio.gather(
                self._upstream(client_r, server_w, client_w, committing),
                self._downstream(server_r, client_w, committing),
            )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for writer in (client_w, server_w):
                writer.close()
            self._tasks.discard(task)

    def _cut(self, client: asyncio.StreamWriter) -> None:
        client.transport.abort()
        self.cut.set()

    async def _upstream(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
        committing: asyncio.Event,
    ) -> None:
        while data := await src.read(65536):
            # asyncpg sends COMMIT as a simple query of its own ("Q", length, "COMMIT;").
            if self.armed and b"COMMIT;" in data:
                self.armed = False
                if not self.answer_only:
                    self._cut(client)
                    break
                committing.set()
            dst.write(data)
            await dst.drain()
        dst.close()

    async def _downstream(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, committing: asyncio.Event
    ) -> None:
        while data := await src.read(65536):
            if committing.is_set():
                # Every earlier answer was relayed before the client sent COMMIT: this is
                # COMMIT's own. The server has committed; the client never hears of it.
                self._cut(dst)
                return
            dst.write(data)
            await dst.drain()
        dst.close()

    @property
    def url(self) -> str:
        """The database URL through this proxy, unencrypted so that it can read COMMIT."""
        parts = urlsplit(self.database_url)
        user = parts.netloc.rsplit("@", 1)[0]
        query = "&".join(filter(None, [parts.query, "sslmode=disable"]))
        return urlunsplit(parts._replace(netloc=f"{user}@127.0.0.1:{self.port}", query=query))
