"""The outbound address policy (contract §7): only globally routable addresses, unless allowed.

Callback URLs are chosen by strangers, so every outbound call resolves the host once, judges
every address it got, and connects only to an address that passed. An address passes only if
the address actually dialled passes, so the guard first decides what will be dialled:

- IPv4-mapped (`::ffff:a.b.c.d`): dialled as the IPv4 address it carries (the kernel would send
  it over IPv4 anyway) and judged as that address, allow-list included.
- IPv4-compatible (`::a.b.c.d`, deprecated by RFC 4291): refused, whatever the allow-list says.
- NAT64 (`64:ff9b::/96`; local-use `64:ff9b:1::/48`, RFC 8215), 6to4 (`2002::/16`) and Teredo
  (`2001::/32`): dialled as IPv6. The IPv6 address must pass (well-known NAT64 and 6to4 are
  global; local-use NAT64 and Teredo pass only if the allow-list opens them), and every IPv4
  address it carries (Teredo: server and client) must be globally routable, allow-list or not:
  a translator or relay elsewhere dials it, and opening 127.0.0.0/8 for local development
  opens no other machine's loopback. RFC 6052 puts the IPv4 address of a local-use NAT64
  address after the translator's prefix, of /48, /56, /64 or /96: it is read after the length
  of the allow-list entry that opened the address (`64:ff9b:1:ab::/96`: the last 32 bits), or
  after each of the four when that entry has another length.
- Every other address is dialled as it is.

The allow-list (`allowed_callback_networks`) opens addresses of its own IP version only: an
IPv4 network never opens an IPv6 address. An entry must name a network exactly: `10.0.0.1/8`
(host bits set) or an IPv4-mapped range is a configuration error that says what to write,
since what it was meant to open is a guess. The rule table below is the whole policy, so the
answers do not depend on the Python version's `is_global`. Hosts spelled as IPs in any form a
resolver accepts (127.1, 2130706433, 0x7f.0.0.1) are judged as the address they mean, without
being resolved.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Protocol, TypeAlias

from gateway.errors import AddressNotAllowed, GatewayError

IP: TypeAlias = IPv4Address | IPv6Address
Network: TypeAlias = ipaddress.IPv4Network | IPv6Network

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
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("fc00::/7", "private network"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("2001:2::/48", "benchmarking"),
        ("2001::/32", "Teredo"),
        ("2001::/23", "reserved"),  # IETF protocol assignments: anycast services, ORCHID
    ]
]
# IPv6 outside these blocks is special-purpose or unassigned. The NAT64 well-known prefix is
# globally reachable (RFC 6052) though it lies outside 2000::/3.
_GLOBAL_IPV6 = [IPv6Network("2000::/3"), IPv6Network("64:ff9b::/96")]
_NAT64 = IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = IPv6Network("64:ff9b:1::/48")
_NAT64_LENGTHS = (48, 56, 64, 96)  # the RFC 6052 prefix lengths that fit in the local-use /48
_6TO4 = IPv6Network("2002::/16")
_TEREDO = IPv6Network("2001::/32")
_MAPPED = IPv6Network("::ffff:0:0/96")
_V4 = 0xFFFFFFFF


def embedded_ipv4(
    ip: IPv6Address, nat64_lengths: Iterable[int] = _NAT64_LENGTHS
) -> list[tuple[IPv4Address, str]]:
    """The IPv4 addresses a NAT64, 6to4 or Teredo address carries, each with its form's name;
    `nat64_lengths` are the prefix lengths a local-use NAT64 address may have been made with."""
    value = int(ip)
    if ip in _NAT64:
        return [(_rfc6052(value, 96), "NAT64")]
    if ip in _NAT64_LOCAL:
        return [(_rfc6052(value, length), "NAT64") for length in nat64_lengths]
    if ip in _6TO4:
        return [(IPv4Address(value >> 80 & _V4), "6to4")]
    if ip in _TEREDO:
        # The server, and the client's public address (stored inverted).
        return [(IPv4Address(value >> 64 & _V4), "Teredo"), (IPv4Address(~value & _V4), "Teredo")]
    return []


def _rfc6052(value: int, length: int) -> IPv4Address:
    """The IPv4 address in a NAT64 address whose prefix has `length` bits (RFC 6052 §2.2)."""
    if length == 96:
        return IPv4Address(value & _V4)
    # Shorter prefixes: bits 64-71 never hold any of the address; squeeze them out, then read
    # the 32 bits after the prefix.
    squeezed = (value >> 64) << 56 | value & (1 << 56) - 1
    return IPv4Address(squeezed >> 88 - length & _V4)


def _judge(ip: IP) -> str | None:
    """Why `ip` is not globally routable, by the rules alone; None if it is."""
    for net, why in _RULES:
        if ip in net:
            return why
    if ip.version == 6 and not any(ip in net for net in _GLOBAL_IPV6):
        return "reserved"
    return None


def allowed_network(entry: str | Network) -> Network:
    """An allow-list entry as the network it names; GatewayError if it names none exactly."""
    try:
        net = ipaddress.ip_network(entry)
    except ValueError:
        raise GatewayError(_not_a_network(entry)) from None
    if isinstance(net, IPv6Network) and net.subnet_of(_MAPPED):
        ipv4 = ipaddress.ip_network(f"{net.network_address.ipv4_mapped}/{net.prefixlen - 96}")
        raise GatewayError(
            f"allowed network {entry} is IPv4-mapped, and such addresses are dialled as IPv4: "
            f"write {ipv4}"
        )
    return net


def _not_a_network(entry: str | Network) -> str:
    try:
        interface = ipaddress.ip_interface(entry)
    except ValueError:
        return f"allowed network {entry!r} is not a network (such as 10.0.0.0/8 or fd00::/8)"
    return (
        f"allowed network {entry} has host bits set: write {interface.network} for the whole "
        f"network, or {interface.ip}/{interface.max_prefixlen} for the one address"
    )


class AddressPolicy:
    """Decides which addresses outbound calls may reach, and what they dial to reach them."""

    def __init__(self, allowed_networks: Iterable[str | Network] | None = ()) -> None:
        self.allowed = [allowed_network(n) for n in allowed_networks or ()]

    def dial(self, ip: IP) -> IP:
        """The address a connection to `ip` goes to; AddressNotAllowed if it is refused."""
        reason = self.refusal(ip)
        if reason is not None:
            raise AddressNotAllowed(message(ip, reason), openable=self._openable(ip))
        return dialled(ip)

    def _openable(self, ip: IP) -> bool:
        """Whether an allow-list entry for this very address would open it (a loopback or
        private one would; one that carries a refused IPv4 address, or a deprecated form,
        would not)."""
        own = ipaddress.ip_network(dialled(ip))
        return AddressPolicy([*self.allowed, own]).refusal(ip) is None

    def refusal(self, ip: IP) -> str | None:
        """None if `ip` may be reached, else why not ("private network", ...)."""
        if isinstance(ip, IPv4Address):
            return self._refuse_ipv4(ip)
        if ip.ipv4_mapped is not None:
            why = self._refuse_ipv4(ip.ipv4_mapped)
            return None if why is None else f"{why} (via IPv4-mapped)"
        return self._refuse_ipv6(ip)

    def _refuse_ipv4(self, ip: IPv4Address) -> str | None:
        return None if any(ip in net for net in self.allowed) else _judge(ip)

    def _refuse_ipv6(self, ip: IPv6Address) -> str | None:
        if int(ip) >> 32 == 0 and int(ip) > 1:
            return "deprecated IPv4-compatible form"
        opened_by = [net for net in self.allowed if ip in net]
        why = None if opened_by else _judge(ip)
        if why is not None:
            return why
        lengths = [n.prefixlen for n in opened_by if n.prefixlen in _NAT64_LENGTHS]
        for ipv4, form in embedded_ipv4(ip, lengths or _NAT64_LENGTHS):
            inner = _judge(ipv4)
            if inner is not None:
                return f"{inner} (via {form})"
        return None


def dialled(ip: IP) -> IP:
    """The address a connection to `ip` goes to: the IPv4 address an IPv4-mapped one carries."""
    mapped = ip.ipv4_mapped if isinstance(ip, IPv6Address) else None
    return ip if mapped is None else mapped


def message(ip: IP, reason: str) -> str:
    """The refusal as users see it."""
    return f"callback address {ip} is not allowed ({reason})"


# inet_aton's spellings of a part, no longer than the largest value a part holds (0xffffffff)
# needs: a longer part is no IP, and int() is never handed thousands of digits.
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,9}", re.ASCII)
_OCTAL = re.compile(r"0[0-7]{1,11}", re.ASCII)
_HEX = re.compile(r"0[xX][0-9a-fA-F]{0,8}", re.ASCII)


def parse_ip_literal(host: str) -> IP | None:
    """The address a host spelled as an IP means, in any spelling resolvers accept."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        text = text.partition("%")[0]  # the zone id names an interface, not an address
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
        return int(part)
    if _OCTAL.fullmatch(part):
        return int(part, 8)
    if _HEX.fullmatch(part):
        return int(part[2:] or "0", 16)
    return None


def _inet_aton(numbers: list[int]) -> IPv4Address | None:
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    return IPv4Address(value * 256 ** (4 - len(head)) + last)


def _malformed(host: str) -> bool:
    """A host that is not an IP, yet too IP-like to be handed to a resolver.

    Connectors and resolvers take such hosts for addresses and parse them their own way (or
    look them up by name): the guard judges only what it understands.
    """
    last = host.removesuffix(".").rpartition(".")[2]
    ends_in_number = bool(last) and (last.isdigit() or last[:2].lower() == "0x")
    return ends_in_number or ":" in host or "%" in host or not host.strip(" .[]")


def check_literal(host: str, policy: AddressPolicy) -> IP | None:
    """The address to dial if `host` is an IP in any spelling, None if it is a name to resolve."""
    ip = parse_ip_literal(host)
    if ip is None:
        if _malformed(host):
            raise AddressNotAllowed(f"callback host {host!r} is not a valid host name or address")
        return None
    return policy.dial(ip)


class Resolver(Protocol):
    """Turns a host name into addresses (the system's, or a fake in tests)."""

    async def resolve(self, host: str, port: int) -> list[IP]:
        """Every address `host` has; OSError (socket.gaierror) if it has none or lookup fails."""
        ...


class SystemResolver:
    """getaddrinfo through the event loop."""

    async def resolve(self, host: str, port: int) -> list[IP]:
        """Every address the system resolver gives for `host`, in its order, each once."""
        # The port plays no part in which addresses come back, and each address comes once
        # per socket type: asked without either, counted once.
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
        return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


async def check_host(host: str, port: int, policy: AddressPolicy, resolver: Resolver) -> list[IP]:
    """The addresses to dial for `host`; AddressNotAllowed if any address it has is refused."""
    literal = check_literal(host, policy)
    if literal is not None:
        return [literal]
    addresses = await resolver.resolve(host, port)
    if not addresses:
        raise AddressNotAllowed(f"callback host {host} has no address")
    # A name with both 127.0.0.1 and ::ffff:127.0.0.1 is dialled at 127.0.0.1 once.
    return list(dict.fromkeys(policy.dial(ip) for ip in addresses))
