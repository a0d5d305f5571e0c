"""The one outbound HTTP client, for handshakes, test sends and deliveries (contract §7):
the real gateway.transport.Transport.

aiohttp, chosen by measurement, with one pooled session: posting small bodies to one loopback
receiver on 2 cores, httpx's pooled client slowed as more requests were in flight (984/s with
one, about 400/s with 32), while aiohttp's session sent about 9,000/s with 32. Its resolver is
replaced by the address guard, so a new connection goes to exactly the address that was checked
for it: the guard resolves the name once and hands aiohttp only the addresses to dial as it
decided them (an IPv4-mapped answer as the IPv4 address it carries), and aiohttp's DNS cache is
off. Hosts spelled as IPs never reach a resolver, so `send` judges them itself and rewrites the
host to the address dialled (2130706433 and 127.1 as 127.0.0.1, [::ffff:127.0.0.1] as
127.0.0.1), so both paths dial what the guard judged. Redirects are never followed and at most
`max_body` bytes of an answer are read.

https callbacks' certificates are always verified, against the system's roots and those of
`ca_bundle` (a private CA), and for the URL's host name: aiohttp takes the TLS server name (SNI)
and the name checked from the URL, never from the address the guard pinned, so pinning changes
nothing of TLS. A host spelled as an IP is checked against the certificate's IP addresses.

A client made with `per_group` (the API's: handshakes and test sends) lets each group have at
most that many requests in flight, so one tenant's hanging callbacks cannot fill the pool that
every tenant's requests share. A request of a group over it waits for a slot within its own
timeout (which counts the wait), then fails with OutboundBusy saying so. The worker's client has
no such cap: the worker schedules its sends by group itself (gateway.fairness).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Self
from uuid import UUID

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from gateway.errors import OutboundBusy, OutboundConnectionError, OutboundError, OutboundTimeout
from gateway.netguard import AddressPolicy, Resolver, SystemResolver, check_host, check_literal
from gateway.transport import OutboundResponse

# URLs judged and parsed once each (deliveries repeat a few callback URLs many times over);
# the cache starts over when it is this full.
TARGET_CACHE_SIZE = 10_000


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that returns only addresses the policy allows."""

    def __init__(self, policy: AddressPolicy, resolver: Resolver) -> None:
        self.policy = policy
        self.resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve once; refuse the whole host if any of its addresses is refused."""
        addresses = await check_host(host, port, self.policy, self.resolver)
        # `host` is the IP the socket connects to, as the guard decided it; `hostname` stays the
        # URL's name, and aiohttp takes the Host header and TLS server name from the URL.
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


class GroupSlots:
    """At most `limit` requests in flight per group; a request over it waits for a slot."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # Per group with a request in flight or waiting: its slots and how many use them;
        # dropped when none does, so idle groups cost nothing.
        self._groups: dict[UUID, tuple[asyncio.Semaphore, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, group: UUID, timeout: float) -> AsyncIterator[float]:
        """A slot of `group`, waited for at most `timeout` seconds; yields the seconds left
        of the timeout. OutboundBusy if none frees up in time."""
        slots, users = self._groups.setdefault(group, (asyncio.Semaphore(self.limit), [0]))
        users[0] += 1
        try:
            left = await self._acquire(slots, timeout)
            try:
                yield left
            finally:
                slots.release()
        finally:
            users[0] -= 1
            if not users[0]:
                del self._groups[group]

    async def _acquire(self, slots: asyncio.Semaphore, timeout: float) -> float:
        if not slots.locked():
            await slots.acquire()  # a slot is free: taken without waiting
            return timeout
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                await slots.acquire()
        except TimeoutError as exc:
            raise OutboundBusy(
                f"timed out after {timeout:g} s waiting for one of this group's {self.limit} "
                "outbound request slots (all in flight)"
            ) from exc
        # A slot got at the deadline's edge still leaves aiohttp a positive deadline to miss.
        return max(timeout - (time.monotonic() - started), 1e-3)


class Outbound:
    """A pooled, guarded HTTP client; open it with `async with`. With `per_group`, each group
    (`send(group=...)`) has at most that many requests in flight."""

    def __init__(
        self,
        *,
        policy: AddressPolicy,
        resolver: Resolver | None = None,
        max_connections: int = 256,
        max_per_host: int = 0,
        per_group: int = 0,
        user_agent: str = "webhook-gateway",
        ca_bundle: str | None = None,
    ) -> None:
        self.policy = policy
        self._ca_bundle = ca_bundle
        self.resolver = resolver or SystemResolver()
        self._limits = (max_connections, max_per_host)
        self._slots = GroupSlots(per_group) if per_group else None
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self._targets: dict[str, URL] = {}
        self._deadlines: dict[float, aiohttp.ClientTimeout] = {}  # by seconds: a few values

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(
            limit=self._limits[0],
            limit_per_host=self._limits[1],
            use_dns_cache=False,  # every new connection is checked against a fresh answer
            resolver=GuardedResolver(self.policy, self.resolver),
            ssl=tls_context(self._ca_bundle),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # Bodies are compared byte for byte (the handshake), so ask for them uncompressed:
            # said outright, as leaving the header out means any coding will do (RFC 9110),
            # and cheaper than skip_auto_headers, which aiohttp applies by copying every
            # request's headers.
            headers={"User-Agent": self._user_agent, "Accept-Encoding": "identity"},
            timeout=aiohttp.ClientTimeout(),  # `send` gives each request its total deadline
            auto_decompress=False,
            trust_env=False,  # a proxy from the environment would resolve names unguarded
            # A partner's cookies are never kept, nor sent to it or to anyone else.
            cookie_jar=aiohttp.DummyCookieJar(),
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
        group: UUID | None = None,
    ) -> OutboundResponse:
        """One request, never redirected; OutboundError subclasses when no answer came. With
        `group`, it first takes one of the group's slots, within `timeout`."""
        if self._session is None:
            raise RuntimeError("Outbound is not open")
        target = self._target(url)
        if group is None or self._slots is None:
            return await self._send(method, target, headers, body, timeout, timeout, max_body)
        async with self._slots.hold(group, timeout) as left:
            return await self._send(method, target, headers, body, timeout, left, max_body)

    async def _send(
        self,
        method: str,
        target: URL,
        headers: Mapping[str, str] | None,
        body: bytes | None,
        timeout: float,
        left: float,
        max_body: int,
    ) -> OutboundResponse:
        """The request, with `left` of its `timeout` seconds still to run."""
        assert self._session is not None
        deadline = self._deadlines.get(left)
        if deadline is None:
            deadline = aiohttp.ClientTimeout(total=left)
            if left == timeout:  # a few values; a time left after waiting is one of a kind
                self._deadlines[left] = deadline
        started = time.perf_counter()
        try:
            # aiohttp's total deadline covers connecting, sending and reading the answer.
            async with self._session.request(
                method,
                target,
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=deadline,
            ) as response:
                return await _collect(response, max_body, started)
        except TimeoutError as exc:
            raise OutboundTimeout(f"timed out after {timeout:g} s") from exc
        except OutboundError:
            raise  # the guard refused the address while connecting
        except (aiohttp.ClientError, OSError) as exc:
            raise OutboundConnectionError(_describe(exc)) from exc

    def _target(self, url: str) -> URL:
        """`url` parsed, with a literal IP judged and pinned; a URL refused is never cached."""
        target = self._targets.get(url)
        if target is None:
            target = self._pin_literal(_parse_url(url))
            if len(self._targets) >= TARGET_CACHE_SIZE:
                self._targets.clear()
            self._targets[url] = target
        return target

    def _pin_literal(self, target: URL) -> URL:
        """Judge a host spelled as an IP, and spell it as the address the guard dials."""
        host = target.raw_host or ""
        ip = check_literal(host, self.policy)
        if ip is None or host == str(ip):
            return target
        return target.with_host(str(ip))


def tls_context(ca_bundle: str | None) -> ssl.SSLContext | bool:
    """What verifies https callbacks: aiohttp's verifying default (`True`: the system's roots),
    or with `ca_bundle` a verifying context that trusts that file's roots beside the system's."""
    if not ca_bundle:
        return True
    context = ssl.create_default_context()  # the system's roots, hostname checked
    context.load_verify_locations(cafile=ca_bundle)
    return context


def _parse_url(url: str) -> URL:
    try:
        # encoded=True keeps the query exactly as given: signatures cover it byte for byte.
        target = URL(url, encoded=True)
    except ValueError as exc:
        raise OutboundConnectionError(f"invalid URL: {exc}") from exc
    if target.scheme not in ("http", "https") or not target.raw_host:
        raise OutboundConnectionError(f"not an absolute http(s) URL: {url!r}")
    return target


async def _collect(
    response: aiohttp.ClientResponse, max_body: int, started: float
) -> OutboundResponse:
    body, truncated = await _read_capped(response, max_body)
    if truncated:
        response.close()  # drop the connection rather than drain an unbounded body
    # The parsed headers are the response's own read-only mapping, which outlives the release
    # of its connection: no copy.
    return OutboundResponse(
        response.status, response.headers, body, time.perf_counter() - started, truncated
    )


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    chunks = bytearray()
    while len(chunks) <= limit:
        chunk = await response.content.read(limit + 1 - len(chunks))
        if not chunk:
            return bytes(chunks), False
        chunks += chunk
    return bytes(chunks[:limit]), True


def _describe(exc: Exception) -> str:
    """What went wrong, in words a webhook owner understands."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"could not resolve {exc.host}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate not accepted: {_certificate_problem(exc.certificate_error)}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS handshake failed: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        return f"could not connect: {cause.strerror or cause}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected without answering"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "connection broke while reading the answer"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid URL: {exc}"
    return str(exc) or type(exc).__name__


def _certificate_problem(error: Exception) -> str:
    """Why a certificate was refused, as OpenSSL words it ("certificate has expired",
    "unable to get local issuer certificate", "Hostname mismatch, ...")."""
    reason = getattr(error, "verify_message", None)
    return str(reason) if reason else str(error)
