"""The outbound address policy (DESIGN §7): only globally routable addresses, unless allowed.

Callback URLs are chosen by strangers, so every outbound call resolves the host once, judges
every address it got, and connects only to an address that passed. IPv6 forms that embed an
IPv4 address (mapped, compatible, NAT64, 6to4, Teredo) are judged by the embedded address too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Protocol

from gateway.errors import AddressNotAllowed

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Specific addresses first: the first matching rule names the reason.
_NAMED_V4: list[tuple[str, str]] = [
    ("169.254.169.254/32", "cloud metadata"),
    ("100.100.100.200/32", "cloud metadata"),
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private network"),
    ("100.64.0.0/10", "shared address space (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private network"),
    ("192.0.0.0/24", "reserved"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "reserved"),
    ("192.168.0.0/16", "private network"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
]
_NAMED_V6: list[tuple[str, str]] = [
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fd00:ec2::254/128", "cloud metadata"),
    ("fc00::/7", "private network"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
    ("2001:db8::/32", "documentation"),
    ("100::/64", "reserved"),
]
_RULES: list[tuple[Network, str]] = [
    (ipaddress.ip_network(net), why) for net, why in _NAMED_V4 + _NAMED_V6
]
_NAT64 = [ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48")]
_6TO4 = ipaddress.ip_network("2002::/16")
_TEREDO = ipaddress.ip_network("2001::/32")


def embedded_v4(ip: IP) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address carries, with the name of the wrapping."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    value = int(ip)
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(value & 0xFFFFFFFF), "NAT64"
    if ip in _6TO4:
        return ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF), "6to4"
    if ip in _TEREDO:
        return ipaddress.IPv4Address(~value & 0xFFFFFFFF), "Teredo"
    if value >> 32 == 0 and value > 1:
        return ipaddress.IPv4Address(value), "IPv4-compatible"
    return None


def _judge(ip: IP) -> str | None:
    for net, why in _RULES:
        if ip.version == net.version and ip in net:
            return why
    if not ip.is_global:
        return "reserved"
    return None


class AddressPolicy:
    """Decides which addresses outbound calls may reach."""

    def __init__(self, allowed_networks: Iterable[str | Network] = ()) -> None:
        self.allowed = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]

    def _allowed(self, ip: IP) -> bool:
        return any(ip.version == n.version and ip in n for n in self.allowed)

    def refusal(self, ip: IP) -> str | None:
        """None if `ip` may be reached, else why not ("private network", ...)."""
        inner = embedded_v4(ip)
        if self._allowed(ip) or (inner is not None and self._allowed(inner[0])):
            return None
        if inner is not None:
            why = _judge(inner[0])
            if why is not None:
                return f"{why} (via {inner[1]})"
        return _judge(ip)


def message(ip: IP, reason: str) -> str:
    """The refusal as users see it."""
    return f"callback address {ip} is not allowed ({reason})"


def parse_ip_literal(host: str) -> IP | None:
    """The address a host spelled as an IP means, in any spelling resolvers accept."""
    text = host.strip().strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(parts):
        return None
    try:
        numbers = [int(p, 0) if not _octal(p) else int(p, 8) for p in parts]
    except ValueError:
        return None
    return _inet_aton(numbers)


def _octal(part: str) -> bool:
    return len(part) > 1 and part.startswith("0") and part[1:2].isdigit()


def _inet_aton(numbers: list[int]) -> ipaddress.IPv4Address | None:
    """Classic inet_aton: the last part fills the remaining bytes (127.1 is 127.0.0.1)."""
    *head, last = numbers
    if any(not 0 <= n <= 255 for n in head) or last < 0 or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    return ipaddress.IPv4Address(value * 256 ** (4 - len(head)) + last)


class Resolver(Protocol):
    """Turns a host name into addresses (the system's, or a fake in tests)."""

    async def resolve(self, host: str, port: int) -> list[IP]: ...


class SystemResolver:
    """getaddrinfo through the event loop."""

    async def resolve(self, host: str, port: int) -> list[IP]:
        """Every address the system resolver gives for host."""
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


async def check_host(host: str, port: int, policy: AddressPolicy, resolver: Resolver) -> list[IP]:
    """The addresses to connect to; AddressNotAllowed if any address of the host is refused."""
    literal = parse_ip_literal(host)
    addresses = [literal] if literal is not None else await resolver.resolve(host, port)
    if not addresses:
        raise AddressNotAllowed(f"callback host {host} has no address")
    for ip in addresses:
        reason = policy.refusal(ip)
        if reason is not None:
            raise AddressNotAllowed(message(ip, reason))
    return addresses
