"""The one outbound HTTP client, for handshakes, test sends and deliveries (DESIGN §7, §9).

aiohttp, chosen by measurement (DESIGN §9), with one pooled session. Its resolver is replaced
by the address guard, so a connection goes to exactly the address that was checked (the name is
resolved once per new connection, by the guard; aiohttp's DNS cache is off). Hosts written as
IP literals never reach a resolver, so `send` judges them itself. Redirects are never followed
and at most `max_body` bytes of an answer are read.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDict
from yarl import URL

from gateway.errors import OutboundConnectionError, OutboundError, OutboundTimeout
from gateway.netguard import (
    AddressPolicy,
    Resolver,
    SystemResolver,
    check_host,
    parse_ip_literal,
)


@dataclass(frozen=True, slots=True)
class OutboundResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed: float
    truncated: bool


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that returns only addresses the policy allows."""

    def __init__(self, policy: AddressPolicy, resolver: Resolver) -> None:
        self.policy = policy
        self.resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve once, refuse the whole host if any address is refused."""
        addresses = await check_host(host, port, self.policy, self.resolver)
        return [
            ResolveResult(
                hostname=host,
                host=str(ip),
                port=port,
                family=socket.AF_INET if ip.version == 4 else socket.AF_INET6,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for ip in addresses
        ]

    async def close(self) -> None:
        """Nothing to release."""


class Outbound:
    """A pooled, guarded HTTP client; open it with `async with`."""

    def __init__(
        self,
        *,
        policy: AddressPolicy,
        resolver: Resolver | None = None,
        max_connections: int = 256,
        max_per_host: int = 0,
        user_agent: str = "webhook-gateway",
    ) -> None:
        self.policy = policy
        self.resolver = resolver or SystemResolver()
        self._limits = (max_connections, max_per_host)
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(
            limit=self._limits[0],
            limit_per_host=self._limits[1],
            use_dns_cache=False,
            resolver=GuardedResolver(self.policy, self.resolver),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"user-agent": self._user_agent},
            auto_decompress=False,
            skip_auto_headers=("content-type",),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float,
        max_body: int = 65536,
    ) -> OutboundResponse:
        """One request; OutboundError subclasses for every way it can fail to get an answer."""
        if self._session is None:
            raise RuntimeError("Outbound is not open")
        target = URL(url, encoded=True)
        if target.scheme not in ("http", "https") or not target.host:
            raise OutboundConnectionError(f"cannot send to {url!r}")
        port = target.port or (443 if target.scheme == "https" else 80)
        if parse_ip_literal(target.host) is not None:
            # aiohttp never hands IP literals to the resolver, so judge them here.
            await check_host(target.host, port, self.policy, self.resolver)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                return await self._exchange(method, target, headers, body, max_body, started)
        except TimeoutError as exc:
            raise OutboundTimeout(f"timed out after {timeout:g} s") from exc
        except OutboundError:
            raise
        except (aiohttp.ClientError, OSError) as exc:
            raise OutboundConnectionError(_describe(exc)) from exc

    async def _exchange(
        self,
        method: str,
        target: URL,
        headers: Mapping[str, str] | None,
        body: bytes | None,
        max_body: int,
        started: float,
    ) -> OutboundResponse:
        assert self._session is not None
        async with self._session.request(
            method, target, headers=headers, data=body, allow_redirects=False
        ) as response:
            data, truncated = await _read_capped(response, max_body)
            if truncated:
                response.close()  # drop the connection rather than drain an unbounded body
            return OutboundResponse(
                response.status,
                CIMultiDict(response.headers),
                data,
                time.perf_counter() - started,
                truncated,
            )


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    chunks = bytearray()
    while len(chunks) <= limit:
        chunk = await response.content.read(limit + 1 - len(chunks))
        if not chunk:
            return bytes(chunks), False
        chunks += chunk
    return bytes(chunks[:limit]), True


def _describe(exc: BaseException) -> str:
    cause: Any = exc
    while cause.__cause__ is not None or getattr(cause, "os_error", None) is not None:
        cause = getattr(cause, "os_error", None) or cause.__cause__
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    return str(cause) or type(cause).__name__
