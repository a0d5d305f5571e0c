"""The outbound client against a real loopback partner: the guard, redirects, caps, timeouts.

A tripwire on the event loop fails any test that tries to resolve a name through the system or
to connect beyond loopback, so the refusals here are shown without a packet leaving the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn

from gateway.errors import AddressNotAllowed, OutboundConnectionError, OutboundTimeout
from gateway.netguard import IP, AddressPolicy
from gateway.outbound import Outbound

LOOPBACK = AddressPolicy(["127.0.0.0/8", "::1/128"])
START_TIMEOUT = 10.0


@dataclass(frozen=True)
class Hit:
    """One request as the partner got it, with the address the connection arrived on."""

    path: str
    headers: dict[str, str]
    body: bytes
    local: str
    client: tuple[str, int]


@dataclass
class Partner:
    """A tiny ASGI receiver whose answer depends on the path; it counts every request."""

    port: int = 0
    ipv6: bool = False
    hits: list[Hit] = field(default_factory=list)
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, host: str, path: str = "/ok") -> str:
        """The URL of `path` on this partner, reached as `host`."""
        return f"http://{host}:{self.port}{path}"

    @property
    def connections(self) -> int:
        """How many TCP connections the requests came over."""
        return len({hit.client for hit in self.hits})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        path = scope["path"]
        self.hits.append(Hit(path, headers, body, scope["server"][0], tuple(scope["client"])))
        status, extra, answer = await self._answer(path)
        start = {"type": "http.response.start", "status": status, "headers": extra}
        await send(start)
        if path == "/stall-body":  # the status and part of the body, then nothing
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
            await self._wait_for_closing()
        await send({"type": "http.response.body", "body": answer})

    async def _answer(self, path: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if path == "/redirect":
            return 302, [(b"location", b"/target")], b""
        if path == "/big":
            return 200, [], b"x" * 1_000_000
        if path == "/slow":
            await self._wait_for_closing()
        if path == "/cookie":
            return 200, [(b"set-cookie", b"session=partner-secret; Path=/")], b"hello"
        return 200, [(b"content-type", b"text/plain")], b"hello"

    async def _wait_for_closing(self) -> None:
        # Interruptible, so the shutdown is not held by a request the test gave up on.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), 5)


def _listen_on_loopback() -> tuple[list[socket.socket], bool]:
    """127.0.0.1 and, when the host has it, ::1, on one port."""
    v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    v4.bind(("127.0.0.1", 0))
    port = v4.getsockname()[1]
    v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        v6.bind(("::1", port))
    except OSError:
        v6.close()
        return [v4], False
    return [v4, v6], True


@pytest.fixture
async def partner() -> AsyncIterator[Partner]:
    """A partner endpoint served by uvicorn on loopback."""
    sockets, ipv6 = _listen_on_loopback()
    app = Partner(port=sockets[0].getsockname()[1], ipv6=ipv6)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=sockets))
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield app
    finally:
        app.closing.set()
        server.should_exit = True
        await asyncio.wait_for(task, START_TIMEOUT)
        for sock in sockets:
            sock.close()


def _is_loopback(host: object) -> bool:
    try:
        ip = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


@pytest.fixture(autouse=True)
async def tripwire(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[object]]:
    """Stop and report any system name lookup or connection beyond loopback."""
    loop = asyncio.get_running_loop()
    real_connect, real_getaddrinfo = loop.sock_connect, loop.getaddrinfo
    strays: list[object] = []

    async def sock_connect(sock: socket.socket, address: Any) -> None:
        if not _is_loopback(address[0]):
            strays.append(address)
            raise ConnectionRefusedError("tripwire: not loopback")
        await real_connect(sock, address)

    async def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_loopback(host):
            strays.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "tripwire: no system lookups")
        return await real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(loop, "sock_connect", sock_connect)
    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    yield strays
    assert strays == [], "something tried to leave loopback"


@pytest.fixture
async def dialled(tripwire: list[object], monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Every address a socket connected to (after the tripwire let it through), as the kernel
    was given it: (host, port) for IPv4, (host, port, flow, scope) for IPv6."""
    loop = asyncio.get_running_loop()
    guarded = loop.sock_connect
    seen: list[tuple[Any, ...]] = []

    async def sock_connect(sock: socket.socket, address: Any) -> None:
        seen.append(tuple(address))
        await guarded(sock, address)

    monkeypatch.setattr(loop, "sock_connect", sock_connect)
    return seen


class MapResolver:
    """A fake resolver: the only way names resolve in these tests. Answers are used in turn."""

    def __init__(self, table: dict[str, list[list[str]]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def resolve(self, host: str, port: int) -> list[IP]:
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answers = self.table[host]
        current = answers.pop(0) if len(answers) > 1 else answers[0]
        return [ipaddress.ip_address(a) for a in current]


@pytest.fixture
async def outbound() -> AsyncIterator[Outbound]:
    async with Outbound(policy=LOOPBACK, resolver=MapResolver({})) as client:
        yield client


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_answer_comes_back(outbound: Outbound, partner: Partner) -> None:
    url = partner.url("127.0.0.1")
    response = await outbound.send("POST", url, body=b'{"a":1}', timeout=2)
    assert (response.status, response.body, response.truncated) == (200, b"hello", False)
    assert response.headers["Content-Type"] == "text/plain" and response.elapsed > 0
    [hit] = partner.hits
    assert hit.body == b'{"a":1}' and hit.headers["user-agent"] == "webhook-gateway"
    # Bodies are compared byte for byte (the handshake): asked for uncompressed.
    assert hit.headers["accept-encoding"] == "identity"


async def test_redirects_are_returned_not_followed(outbound: Outbound, partner: Partner) -> None:
    response = await outbound.send("GET", partner.url("127.0.0.1", "/redirect"), timeout=2)
    assert (response.status, response.headers["location"]) == (302, "/target")
    assert [hit.path for hit in partner.hits] == ["/redirect"]


async def test_large_bodies_are_cut_at_the_cap(outbound: Outbound, partner: Partner) -> None:
    url = partner.url("127.0.0.1", "/big")
    response = await outbound.send("GET", url, timeout=2, max_body=1000)
    assert (response.body, response.truncated) == (b"x" * 1000, True)
    again = await outbound.send("GET", partner.url("127.0.0.1"), timeout=2)
    assert again.body == b"hello", "the pool recovers from the dropped connection"


async def test_a_slow_partner_times_out(outbound: Outbound, partner: Partner) -> None:
    url = partner.url("127.0.0.1", "/slow")
    with pytest.raises(OutboundTimeout, match=r"^timed out after 0\.5 s$"):
        await outbound.send("POST", url, body=b"{}", timeout=0.5)


async def test_an_answer_whose_body_stalls_times_out(outbound: Outbound, partner: Partner) -> None:
    url = partner.url("127.0.0.1", "/stall-body")
    started = asyncio.get_running_loop().time()
    with pytest.raises(OutboundTimeout, match=r"^timed out after 0\.5 s$"):
        await outbound.send("POST", url, body=b"{}", timeout=0.5)
    assert asyncio.get_running_loop().time() - started < 3, "the deadline covers the body too"


async def test_a_partners_cookies_are_never_sent_back(partner: Partner) -> None:
    # By name: a cookie jar keeps no cookies from hosts spelled as IPs anyway.
    resolver = MapResolver({"partner.example": [["127.0.0.1"]]})
    async with Outbound(policy=LOOPBACK, resolver=resolver) as client:
        for path in ("/cookie", "/cookie", "/ok"):
            await client.send("POST", partner.url("partner.example", path), timeout=2)
    assert [hit.headers.get("cookie") for hit in partner.hits] == [None, None, None]


async def test_a_closed_port_is_a_connection_error(outbound: Outbound) -> None:
    with pytest.raises(OutboundConnectionError, match=r"^connection refused$"):
        await outbound.send("POST", f"http://127.0.0.1:{_closed_port()}/", timeout=2)


async def test_an_unknown_name_is_a_connection_error(outbound: Outbound) -> None:
    with pytest.raises(OutboundConnectionError, match=r"could not resolve nowhere\.example"):
        await outbound.send("POST", "http://nowhere.example/", timeout=2)


async def test_connections_are_kept_alive(outbound: Outbound, partner: Partner) -> None:
    for _ in range(5):
        await outbound.send("POST", partner.url("127.0.0.1"), body=b"{}", timeout=2)
    assert (len(partner.hits), partner.connections) == (5, 1)


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("localhost", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
    ],
)
async def test_without_an_allow_list_loopback_is_refused_before_connecting(
    partner: Partner, host: str, address: str
) -> None:
    resolver = MapResolver({"localhost": [["127.0.0.1", "::1"]]})
    async with Outbound(policy=AddressPolicy(), resolver=resolver) as strict:
        with pytest.raises(
            AddressNotAllowed, match=f"^callback address {re.escape(address)} is not"
        ):
            await strict.send("POST", partner.url(host), body=b"{}", timeout=2)
    assert partner.hits == []


@pytest.mark.parametrize("host", ["2130706433", "127.1", "0x7f.0.0.1", "017700000001"])
async def test_odd_spellings_connect_to_the_address_judged(
    outbound: Outbound, partner: Partner, host: str
) -> None:
    for _ in range(2):  # the second send takes the target judged by the first
        response = await outbound.send("GET", partner.url(host), timeout=2)
        assert response.status == 200
    assert [hit.local for hit in partner.hits] == ["127.0.0.1", "127.0.0.1"]


async def test_a_refused_literal_is_refused_every_time(partner: Partner) -> None:
    async with Outbound(policy=AddressPolicy(), resolver=MapResolver({})) as strict:
        for _ in range(2):
            with pytest.raises(AddressNotAllowed):
                await strict.send("POST", partner.url("127.1"), body=b"{}", timeout=2)
    assert partner.hits == []


async def test_ipv6_loopback_when_allowed(outbound: Outbound, partner: Partner) -> None:
    if not partner.ipv6:
        pytest.skip("this host has no ::1")
    response = await outbound.send("GET", partner.url("[::1]"), timeout=2)
    assert response.status == 200 and partner.hits[0].local == "::1"


async def test_the_checked_address_is_used_with_the_partners_host_name(partner: Partner) -> None:
    resolver = MapResolver({"partner.example": [["127.0.0.1"]]})
    async with Outbound(policy=LOOPBACK, resolver=resolver) as client:
        response = await client.send("POST", partner.url("partner.example"), timeout=2)
    assert response.status == 200
    [hit] = partner.hits
    assert (hit.headers["host"], hit.local) == (f"partner.example:{partner.port}", "127.0.0.1")


async def test_each_connection_uses_the_answer_checked_for_it(partner: Partner) -> None:
    # The name rebinds after its first answer, to a loopback address outside the allow-list.
    resolver = MapResolver({"rebind.example": [["127.0.0.1"], ["127.0.0.2"]]})
    policy = AddressPolicy(["127.0.0.1/32"])
    async with Outbound(policy=policy, resolver=resolver) as client:
        for _ in range(2):
            await client.send("GET", partner.url("rebind.example"), timeout=2)
    # One lookup, one connection, to the address that lookup returned.
    assert resolver.calls == ["rebind.example"]
    assert [hit.local for hit in partner.hits] == ["127.0.0.1", "127.0.0.1"]
    assert partner.connections == 1
    async with Outbound(policy=policy, resolver=resolver) as fresh:
        with pytest.raises(AddressNotAllowed, match=r"127\.0\.0\.2 is not allowed \(loopback\)"):
            await fresh.send("GET", partner.url("rebind.example"), timeout=2)
    assert len(partner.hits) == 2


async def test_a_name_with_one_refused_address_is_refused_whole(partner: Partner) -> None:
    resolver = MapResolver({"mixed.example": [["127.0.0.1", "10.0.0.1"]]})
    async with Outbound(policy=LOOPBACK, resolver=resolver) as client:
        with pytest.raises(AddressNotAllowed, match=r"10\.0\.0\.1 is not allowed"):
            await client.send("POST", partner.url("mixed.example"), timeout=2)
    assert partner.hits == []


async def test_a_name_resolving_to_a_private_address_is_refused(
    tripwire: list[object],
) -> None:
    resolver = MapResolver({"evil.example": [["10.0.0.1"]]})
    async with Outbound(policy=AddressPolicy(), resolver=resolver) as strict:
        with pytest.raises(AddressNotAllowed) as caught:
            await strict.send("POST", "http://evil.example/hook", timeout=2)
    assert caught.value.detail == "callback address 10.0.0.1 is not allowed (private network)"
    assert resolver.calls == ["evil.example"] and tripwire == []


# --- IPv6 forms that carry an IPv4 address: the address dialled is the address judged -------

DEV = AddressPolicy(["127.0.0.0/8"])  # opens IPv4 loopback, and nothing else


async def test_a_mapped_literal_is_dialled_as_the_ipv4_address_it_carries(
    partner: Partner, dialled: list[tuple[Any, ...]]
) -> None:
    async with Outbound(policy=DEV, resolver=MapResolver({})) as client:
        response = await client.send("GET", partner.url("[::ffff:127.0.0.1]"), timeout=2)
    assert response.status == 200 and partner.hits[0].local == "127.0.0.1"
    assert dialled == [("127.0.0.1", partner.port)], "over IPv4, as the allow-list judged it"


async def test_a_name_answering_a_mapped_address_is_dialled_over_ipv4(
    partner: Partner, dialled: list[tuple[Any, ...]]
) -> None:
    resolver = MapResolver({"mapped.example": [["::ffff:127.0.0.1"]]})
    async with Outbound(policy=DEV, resolver=resolver) as client:
        response = await client.send("GET", partner.url("mapped.example"), timeout=2)
    assert response.status == 200
    assert partner.hits[0].headers["host"] == f"mapped.example:{partner.port}"
    assert dialled == [("127.0.0.1", partner.port)]


WRAPPED_LOOPBACK = [
    ("::127.0.0.1", "::7f00:1", "deprecated IPv4-compatible form"),
    ("64:ff9b::7f00:1", "64:ff9b::7f00:1", "loopback (via NAT64)"),
    ("64:ff9b:1::7f00:1", "64:ff9b:1::7f00:1", "local-use NAT64"),
    ("2002:7f00:1::", "2002:7f00:1::", "loopback (via 6to4)"),
    ("2001:0:7f00:1::f7f7:f7f7", "2001:0:7f00:1::f7f7:f7f7", "Teredo"),
]


@pytest.mark.parametrize(("address", "shown", "reason"), WRAPPED_LOOPBACK)
async def test_ipv6_wrappers_of_an_allowed_ipv4_address_are_refused_before_connecting(
    partner: Partner, dialled: list[tuple[Any, ...]], address: str, shown: str, reason: str
) -> None:
    # 127.0.0.0/8 is allowed, yet these would be dialled as IPv6, which may leave the host.
    resolver = MapResolver({"wrapped.example": [[address]]})
    expected = f"callback address {shown} is not allowed ({reason})"
    async with Outbound(policy=DEV, resolver=resolver) as client:
        for url in (partner.url(f"[{address}]"), partner.url("wrapped.example")):
            with pytest.raises(AddressNotAllowed) as caught:
                await client.send("POST", url, body=b"{}", timeout=2)
            assert caught.value.detail == expected
    assert partner.hits == [] and dialled == []
