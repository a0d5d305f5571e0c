"""The outbound address policy (DESIGN §7): only globally routable addresses, unless allowed.

Callback URLs are chosen by strangers, so every outbound call resolves the host once, judges
every address it got, and connects only to an address that passed. IPv6 forms that embed an
IPv4 address (mapped, compatible, NAT64, 6to4, Teredo) are judged by the embedded address, and
hosts spelled as IPs in any form a resolver accepts (127.1, 2130706433, 0x7f.0.0.1) are judged
as the address they mean, without being resolved.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from typing import Protocol, TypeAlias

from gateway.errors import AddressNotAllowed

IP: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

# Specific ranges first: the first matching rule names the reason.
_RULES: list[tuple[Network, str]] = [
    (ipaddress.ip_network(net), why)
    for net, why in [
        ("169.254.169.254/32", "cloud metadata"),  # AWS, GCP, Azure, OpenStack
        ("169.254.170.2/32", "cloud metadata"),  # AWS ECS task credentials
        ("100.100.100.200/32", "cloud metadata"),  # Alibaba Cloud
        ("192.0.0.192/32", "cloud metadata"),  # Oracle Cloud
        ("fd00:ec2::254/128", "cloud metadata"),  # AWS over IPv6
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
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fc00::/7", "private network"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("2001:2::/48", "benchmarking"),
    ]
]
# Only this IPv6 block is global unicast; the rest is special-purpose or unassigned.
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_6TO4 = ipaddress.IPv6Network("2002::/16")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_V4 = 0xFFFFFFFF


def embedded_ipv4(ip: IP) -> list[tuple[ipaddress.IPv4Address, str]]:
    """The IPv4 addresses an IPv6 address may carry, each with the name of the wrapping."""
    if isinstance(ip, ipaddress.IPv4Address):
        return []
    value, v4 = int(ip), ipaddress.IPv4Address
    if ip.ipv4_mapped is not None:
        return [(ip.ipv4_mapped, "IPv4-mapped")]
    if ip in _NAT64:
        return [(v4(value & _V4), "NAT64")]
    if ip in _NAT64_LOCAL:
        # RFC 6052 puts the address after the /48 prefix, skipping bits 64-71; operators often
        # carve a /96 out of it instead. Either may be what the translator does: judge both.
        rfc6052 = ((value >> 48) & 0xFFFF0000) | ((value >> 40) & 0xFFFF)
        return [(v4(value & _V4), "NAT64"), (v4(rfc6052), "NAT64")]
    if ip in _6TO4:
        return [(v4((value >> 80) & _V4), "6to4")]
    if ip in _TEREDO:
        # The server, and the client's public address (stored inverted).
        return [(v4((value >> 64) & _V4), "Teredo"), (v4(~value & _V4), "Teredo")]
    if value >> 32 == 0 and value > 1:
        return [(v4(value), "IPv4-compatible")]
    return []


def _judge(ip: IP) -> str | None:
    for net, why in _RULES:
        if ip.version == net.version and ip in net:
            return why
    if isinstance(ip, ipaddress.IPv6Address) and ip not in _GLOBAL_UNICAST:
        return "reserved"
    return None if ip.is_global else "reserved"


class AddressPolicy:
    """Decides which addresses outbound calls may reach."""

    def __init__(self, allowed_networks: Iterable[str | Network] | None = ()) -> None:
        self.allowed = [ipaddress.ip_network(n, strict=False) for n in allowed_networks or ()]

    def _allowed(self, ip: IP) -> bool:
        return any(ip.version == n.version and ip in n for n in self.allowed)

    def refusal(self, ip: IP) -> str | None:
        """None if `ip` may be reached, else why not ("private network", ...)."""
        if self._allowed(ip):
            return None
        inner = embedded_ipv4(ip)
        if not inner:
            return _judge(ip)
        for v4, wrapping in inner:
            why = None if self._allowed(v4) else _judge(v4)
            if why is not None:
                return f"{why} (via {wrapping})"
        return None


def message(ip: IP, reason: str) -> str:
    """The refusal as users see it."""
    return f"callback address {ip} is not allowed ({reason})"


_DECIMAL = re.compile(r"0|[1-9][0-9]*", re.ASCII)
_OCTAL = re.compile(r"0[0-7]+", re.ASCII)
_HEX = re.compile(r"0[xX][0-9a-fA-F]*", re.ASCII)


def parse_ip_literal(host: str) -> IP | None:
    """The address a host spelled as an IP means, in any spelling resolvers accept."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        text = text.split("%", 1)[0]  # the zone id names an interface, not an address
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    # inet_aton's forms: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x); the last
    # part fills the remaining bytes. One trailing dot is allowed, as browsers do.
    parts = text.removesuffix(".").split(".")
    numbers = [_number(p) for p in parts]
    if not 1 <= len(parts) <= 4 or None in numbers:
        return None
    return _inet_aton([n for n in numbers if n is not None])


def _number(part: str) -> int | None:
    if _DECIMAL.fullmatch(part):
        return int(part) if len(part) <= 12 else None
    if _OCTAL.fullmatch(part):
        return int(part, 8) if len(part) <= 13 else None
    if _HEX.fullmatch(part):
        return int(part[2:] or "0", 16) if len(part) <= 10 else None
    return None


def _inet_aton(numbers: list[int]) -> ipaddress.IPv4Address | None:
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    return ipaddress.IPv4Address(value * 256 ** (4 - len(head)) + last)


def _malformed(host: str) -> bool:
    """A host that is not an IP, yet too IP-like to be handed to a resolver.

    Connectors and resolvers take such hosts for addresses and parse them their own way (or
    look them up by name): the guard judges only what it understands.
    """
    last = host.removesuffix(".").rsplit(".", 1)[-1]
    ends_in_number = bool(last) and (last.isdigit() or last[:2].lower() == "0x")
    return ends_in_number or ":" in host or "%" in host or not host.strip(" .[]")


def check_literal(host: str, policy: AddressPolicy) -> IP | None:
    """The judged address if `host` is an IP in any spelling, None if it is a name to resolve."""
    ip = parse_ip_literal(host)
    if ip is None:
        if _malformed(host):
            raise AddressNotAllowed(f"callback host {host!r} is not a valid host name or address")
        return None
    reason = policy.refusal(ip)
    if reason is not None:
        raise AddressNotAllowed(message(ip, reason))
    return ip


class Resolver(Protocol):
    """Turns a host name into addresses (the system's, or a fake in tests)."""

    async def resolve(self, host: str, port: int) -> list[IP]:
        """Every address `host` has; OSError (socket.gaierror) if it has none or lookup fails."""
        ...


class SystemResolver:
    """getaddrinfo through the event loop."""

    async def resolve(self, host: str, port: int) -> list[IP]:
        """Every address the system resolver gives for `host`, in its order."""
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


async def check_host(host: str, port: int, policy: AddressPolicy, resolver: Resolver) -> list[IP]:
    """The addresses to connect to; AddressNotAllowed if any address of the host is refused."""
    literal = check_literal(host, policy)
    if literal is not None:
        return [literal]
    addresses = await resolver.resolve(host, port)
    if not addresses:
        raise AddressNotAllowed(f"callback host {host} has no address")
    for ip in addresses:
        reason = policy.refusal(ip)
        if reason is not None:
            raise AddressNotAllowed(message(ip, reason))
    return addresses
