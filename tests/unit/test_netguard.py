"""The outbound address policy, judged with a fake resolver: no packet leaves this process."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from yarl import URL

from gateway import config
from gateway.errors import AddressNotAllowed, GatewayError
from gateway.netguard import (
    IP,
    AddressPolicy,
    check_host,
    check_literal,
    embedded_ipv4,
    message,
    parse_ip_literal,
)
from gateway.outbound import GuardedResolver, Outbound


class FakeResolver:
    """Answers from a table; each call takes the next answer for that name (for rebinding)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def resolve(self, host: str, port: int) -> list[IP]:
        self.calls.append(host)
        queue = self.answers[host]
        current = queue.pop(0) if len(queue) > 1 else queue[0]
        return [ipaddress.ip_address(a) for a in current]


REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.1", "loopback"),
    ("127.0.1", "loopback"),
    ("127.0.0.1.", "loopback"),
    (" 127.0.0.1 ", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("0", "unspecified"),
    ("[::1]", "loopback"),
    ("::", "unspecified"),
    ("169.254.169.254", "cloud metadata"),
    ("169.254.170.2", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("192.0.0.192", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"),
    ("169.254.1.1", "link-local"),
    ("10.0.0.5", "private network"),
    ("10.255.255.255", "private network"),
    ("172.16.0.1", "private network"),
    ("172.31.255.255", "private network"),
    ("192.168.1.1", "private network"),
    ("100.64.0.1", "shared address space (CGNAT)"),
    ("100.127.255.255", "shared address space (CGNAT)"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("192.0.0.8", "reserved"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("2130706433", "loopback"),
    ("0x7f.0.0.1", "loopback"),
    ("0x7f000001", "loopback"),
    ("0X7F.1", "loopback"),
    ("017700000001", "loopback"),
    ("0177.0.0.1", "loopback"),
    ("012.0.0.1", "private network"),
    ("167772165", "private network"),
    ("::ffff:127.0.0.1", "loopback (via IPv4-mapped)"),
    ("[::ffff:7f00:1]", "loopback (via IPv4-mapped)"),
    ("::ffff:10.0.0.1", "private network (via IPv4-mapped)"),
    ("::ffff:169.254.169.254", "cloud metadata (via IPv4-mapped)"),
    ("::10.0.0.1", "deprecated IPv4-compatible form"),
    ("::8.8.8.8", "deprecated IPv4-compatible form"),
    ("64:ff9b::10.0.0.1", "private network (via NAT64)"),
    ("64:ff9b::7f00:1", "loopback (via NAT64)"),
    ("64:ff9b:1::808:808", "local-use NAT64"),
    ("2002:0a00:0001::1", "private network (via 6to4)"),
    ("2002:7f00:1::", "loopback (via 6to4)"),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "Teredo"),
    ("fe80::1", "link-local"),
    ("[fe80::1%eth0]", "link-local"),
    ("fc00::1", "private network"),
    ("fd12:3456::1", "private network"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("2001:2::1", "benchmarking"),
    ("2001:1::1", "reserved"),
    ("2001:20::1", "reserved"),
    ("100::1", "reserved"),
    ("5f00::1", "reserved"),
]
# Each with the address dialled: an IPv4-mapped one goes out over IPv4.
PASSING = [
    ("8.8.8.8", "8.8.8.8"),
    ("1.1.1.1", "1.1.1.1"),
    ("93.184.216.34", "93.184.216.34"),
    ("134744072", "8.8.8.8"),  # spelled as one number: judged and dialled as what it means
    ("2606:4700:4700::1111", "2606:4700:4700::1111"),
    ("2a00:1450:4001::1", "2a00:1450:4001::1"),
    ("::ffff:8.8.8.8", "8.8.8.8"),
    ("[::ffff:808:808]", "8.8.8.8"),
    ("64:ff9b::8.8.8.8", "64:ff9b::808:808"),
    ("2002:0808:0808::1", "2002:808:808::1"),
    ("2001:200::1", "2001:200::1"),  # just past the IETF protocol block 2001::/23
]
# Not addresses, but numeric enough that a resolver or connector would read them its own way.
MALFORMED = [
    "08.0.0.1",
    "1.2.3.4.5",
    "1.2.3.4.0",  # five parts: never 1.2.3.4
    "256.1.1.1",
    "8.8.8.256",  # past the last byte: never 8.8.9.0
    "8.8.65536",
    "8.16777216",
    "4294967296",
    "42949672950",
    "999999999999",
    "0x100000000",
    "0x0ffffffff",
    "0377777777777",
    "1" * 5000,  # never handed to int(), which refuses so many digits
    "host.123",
    "host.123.",
    "host.0x1",
    "host.0X1",
    "host.\u0661",  # a digit, though not an ASCII one
    "exa%41mple.com",
    "127.0.0.1%25eth0",  # a zone id on an IPv4 address: not an address, not a name
    "a:b",
    "[::1",
    "::1]",
    "[]",
    ".",
    " ",
    "",
]
# Host names that are not IP-like: they go to the resolver.
NAMES = [
    "partner.example",
    "localhost",
    "0x7f.example",
    "123.example",
    "a1.example.",
    "host.0y",
    "host.x1",
    "X",
]


@pytest.mark.parametrize(("host", "reason"), REFUSED)
async def test_refused_literals_say_why(host: str, reason: str) -> None:
    resolver = FakeResolver({})
    with pytest.raises(AddressNotAllowed) as caught:
        await check_host(host, 443, AddressPolicy(), resolver)
    assert caught.value.detail.endswith(f"is not allowed ({reason})")
    assert resolver.calls == [], "a literal is judged, never resolved"


@pytest.mark.parametrize(("host", "dialled"), PASSING)
async def test_globally_routable_addresses_pass(host: str, dialled: str) -> None:
    resolver = FakeResolver({})
    checked = await check_host(host, 443, AddressPolicy(), resolver)
    assert [str(a) for a in checked] == [dialled] and resolver.calls == []


@pytest.mark.parametrize("host", MALFORMED)
async def test_ip_like_hosts_that_are_not_ips_are_refused_unresolved(host: str) -> None:
    resolver = FakeResolver({})
    with pytest.raises(AddressNotAllowed) as caught:
        await check_host(host, 443, AddressPolicy(), resolver)
    assert caught.value.detail == f"callback host {host!r} is not a valid host name or address"
    assert resolver.calls == []


@pytest.mark.parametrize("host", NAMES)
async def test_host_names_go_to_the_resolver(host: str) -> None:
    resolver = FakeResolver({host: [["93.184.216.34"]]})
    checked = await check_host(host, 443, AddressPolicy(), resolver)
    assert [str(a) for a in checked] == ["93.184.216.34"] and resolver.calls == [host]


def test_the_message_users_see() -> None:
    assert message(ipaddress.ip_address("10.0.0.5"), "private network") == (
        "callback address 10.0.0.5 is not allowed (private network)"
    )


async def test_the_refusal_names_the_address_meant() -> None:
    with pytest.raises(AddressNotAllowed) as caught:
        await check_host("10.0.0.5", 80, AddressPolicy(), FakeResolver({}))
    assert caught.value.detail == "callback address 10.0.0.5 is not allowed (private network)"
    with pytest.raises(AddressNotAllowed) as caught:
        await check_host("2130706433", 80, AddressPolicy(), FakeResolver({}))
    assert caught.value.detail == "callback address 127.0.0.1 is not allowed (loopback)"
    with pytest.raises(AddressNotAllowed) as caught:
        await check_host("[::ffff:10.0.0.5]", 80, AddressPolicy(), FakeResolver({}))
    assert caught.value.detail == (
        "callback address ::ffff:a00:5 is not allowed (private network (via IPv4-mapped))"
    )


@pytest.mark.parametrize(
    ("spelling", "meaning"),
    [
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0177.0.0.01", "127.0.0.1"),
        ("0x.0.0.0", "0.0.0.0"),
        ("00.0.0.0", "0.0.0.0"),
        (" 127.0.0.1 ", "127.0.0.1"),
        # The largest value each part can hold, and one more (not an address at all).
        ("255.255.255.255", "255.255.255.255"),
        ("255.1.1.1", "255.1.1.1"),
        ("0xff.1.1.1", "255.1.1.1"),
        ("255.1.257", "255.1.1.1"),
        ("256.1.1.1", None),
        ("0x100.1.1.1", None),
        ("1.0x100.1.1", None),
        ("1.256.1.1", None),
        ("8.8.8.255", "8.8.8.255"),
        ("8.8.8.256", None),
        ("8.8.65535", "8.8.255.255"),
        ("8.8.65536", None),
        ("8.16777215", "8.255.255.255"),
        ("8.16777216", None),
        ("4294967295", "255.255.255.255"),
        ("4294967296", None),
        ("0xffffffff", "255.255.255.255"),
        ("0x100000000", None),
        ("037777777777", "255.255.255.255"),
        ("040000000000", None),
        ("1.2.3.4", "1.2.3.4"),
        ("1.2.3.4.0", None),
        ("1.2.3.4.5", None),
        ("[::1]", "::1"),
        ("[::1", None),
        ("::1]", None),
        ("[fe80::1%25eth0]", "fe80::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("127.0.0.1%25eth0", None),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
        ("partner.example", None),
        ("localhost", None),
        ("0x7f.example", None),
        ("08.0.0.1", None),
        ("1_0.0.0.1", None),
        ("0b1.0.0.1", None),
        ("\u0661\u0662\u0667.0.0.1", None),
        ("", None),
    ],
)
def test_ip_spellings(spelling: str, meaning: str | None) -> None:
    parsed = parse_ip_literal(spelling)
    assert (str(parsed) if parsed else None) == meaning


async def test_a_name_with_a_public_and_a_private_address_is_refused() -> None:
    resolver = FakeResolver({"mixed.example": [["93.184.216.34", "10.1.2.3"]]})
    with pytest.raises(AddressNotAllowed, match=r"10\.1\.2\.3 is not allowed \(private network\)"):
        await check_host("mixed.example", 443, AddressPolicy(), resolver)


async def test_a_name_with_only_public_addresses_passes() -> None:
    resolver = FakeResolver({"partner.example": [["93.184.216.34", "2606:4700::1"]]})
    checked = await check_host("partner.example", 443, AddressPolicy(), resolver)
    assert [str(a) for a in checked] == ["93.184.216.34", "2606:4700::1"]
    assert resolver.calls == ["partner.example"]


async def test_a_name_is_dialled_once_per_address_it_reaches() -> None:
    answer = ["::ffff:8.8.8.8", "8.8.8.8", "2606:4700::1", "8.8.4.4"]
    resolver = FakeResolver({"partner.example": [answer]})
    checked = await check_host("partner.example", 443, AddressPolicy(), resolver)
    assert [str(a) for a in checked] == ["8.8.8.8", "2606:4700::1", "8.8.4.4"]


async def test_rebinding_cannot_slip_through() -> None:
    # The first answer is public, the second would be loopback: the host is resolved once per
    # check, and the addresses returned are the only ones that connection may use.
    resolver = FakeResolver({"rebind.example": [["93.184.216.34"], ["127.0.0.1"]]})
    checked = await check_host("rebind.example", 80, AddressPolicy(), resolver)
    assert [str(a) for a in checked] == ["93.184.216.34"]
    assert resolver.calls == ["rebind.example"]
    with pytest.raises(AddressNotAllowed, match="loopback"):
        await check_host("rebind.example", 80, AddressPolicy(), resolver)


async def test_the_guard_hands_aiohttp_only_the_checked_address() -> None:
    # What aiohttp connects to is `host` of each result; the name stays for Host and TLS.
    resolver = FakeResolver({"rebind.example": [["93.184.216.34"], ["127.0.0.1"]]})
    guard = GuardedResolver(AddressPolicy(), resolver)
    results = await guard.resolve("rebind.example", 443)
    assert [(r["host"], r["hostname"], r["port"]) for r in results] == [
        ("93.184.216.34", "rebind.example", 443)
    ]
    assert results[0]["family"] == socket.AF_INET
    assert resolver.calls == ["rebind.example"]
    with pytest.raises(AddressNotAllowed, match="loopback"):
        await guard.resolve("rebind.example", 443)


async def test_the_resolver_is_asked_for_the_host_and_port_being_reached() -> None:
    seen: list[tuple[str, int]] = []

    class Recording:
        async def resolve(self, host: str, port: int) -> list[IP]:
            seen.append((host, port))
            return [ipaddress.ip_address("93.184.216.34")]

    await check_host("partner.example", 8443, AddressPolicy(), Recording())
    assert seen == [("partner.example", 8443)]


async def test_a_name_without_addresses_is_refused() -> None:
    with pytest.raises(AddressNotAllowed) as caught:
        await check_host(
            "empty.example", 80, AddressPolicy(), FakeResolver({"empty.example": [[]]})
        )
    assert caught.value.detail == "callback host empty.example has no address"


# --- The address dialled is the address judged (issue 17 §7) --------------------------------

DEV = ["127.0.0.0/8"]  # what a developer allows, and all it may open
DIALLED = [
    # (allow-list, address, dialled, refusal)
    (DEV, "127.0.0.1", "127.0.0.1", None),
    (DEV, "::ffff:127.0.0.1", "127.0.0.1", None),  # the kernel sends it over IPv4 anyway
    (DEV, "::ffff:127.9.9.9", "127.9.9.9", None),
    (DEV, "::ffff:10.0.0.1", "10.0.0.1", "private network (via IPv4-mapped)"),
    (DEV, "::127.0.0.1", "::7f00:1", "deprecated IPv4-compatible form"),
    (DEV, "64:ff9b::7f00:1", "64:ff9b::7f00:1", "loopback (via NAT64)"),
    (DEV, "64:ff9b:1::7f00:1", "64:ff9b:1::7f00:1", "local-use NAT64"),
    (DEV, "2002:7f00:1::", "2002:7f00:1::", "loopback (via 6to4)"),
    (DEV, "2001:0:7f00:1:0:0:f7f7:f7f7", "2001:0:7f00:1::f7f7:f7f7", "Teredo"),
    (DEV, "::1", "::1", "loopback"),
    # An IPv6 allow-list opens IPv6 only: never an IPv4 address, mapped or not.
    (["::/0"], "::ffff:127.0.0.1", "127.0.0.1", "loopback (via IPv4-mapped)"),
    (["::/0"], "127.0.0.1", "127.0.0.1", "loopback"),
    (["::/0"], "::127.0.0.1", "::7f00:1", "deprecated IPv4-compatible form"),
    (["::/0"], "fd00::1", "fd00::1", None),
    # ... and what an IPv6 network opens still carries no refused IPv4 address.
    (["::/0"], "64:ff9b::7f00:1", "64:ff9b::7f00:1", "loopback (via NAT64)"),
    (["2002::/16"], "2002:7f00:1::", "2002:7f00:1::", "loopback (via 6to4)"),
    (["2002::/16"], "2002:808:808::", "2002:808:808::", None),
    (["64:ff9b::/96"], "64:ff9b::a00:1", "64:ff9b::a00:1", "private network (via NAT64)"),
    (["fd00::/8"], "fd00::1", "fd00::1", None),
    (["fd00::/8"], "fe80::1", "fe80::1", "link-local"),
    (["::1/128"], "::1", "::1", None),
    (["::1/128"], "::ffff:127.0.0.1", "127.0.0.1", "loopback (via IPv4-mapped)"),
    (["::fffe:0:0/95"], "::ffff:127.0.0.1", "127.0.0.1", "loopback (via IPv4-mapped)"),
]


@pytest.mark.parametrize(("allowed", "address", "dialled", "refusal"), DIALLED)
async def test_literals_and_names_dial_the_address_judged(
    allowed: list[str], address: str, dialled: str, refusal: str | None
) -> None:
    policy = AddressPolicy(allowed)
    ip = ipaddress.ip_address(address)
    assert policy.refusal(ip) == refusal
    literal = f"[{address}]" if ":" in address else address
    resolver = FakeResolver({"partner.example": [[address]]})
    guard = GuardedResolver(policy, resolver)
    if refusal is not None:
        expected = message(ip, refusal)
        for attempt in (
            lambda: check_literal(literal, policy),
            lambda: policy.dial(ip),
            lambda: Outbound(policy=policy)._pin_literal(_url(literal)),
        ):
            with pytest.raises(AddressNotAllowed) as caught:
                attempt()
            assert caught.value.detail == expected
        for name_path in (
            check_host("partner.example", 80, policy, resolver),
            guard.resolve("partner.example", 80),
        ):
            with pytest.raises(AddressNotAllowed) as caught:
                await name_path
            assert caught.value.detail == expected
        return
    assert str(check_literal(literal, policy)) == dialled
    assert str(policy.dial(ip)) == dialled
    assert Outbound(policy=policy)._pin_literal(_url(literal)).raw_host == dialled
    assert [str(a) for a in await check_host("partner.example", 80, policy, resolver)] == [dialled]
    [result] = await guard.resolve("partner.example", 80)
    family = socket.AF_INET if "." in dialled else socket.AF_INET6
    assert (result["host"], result["family"]) == (dialled, family)


def _url(host: str) -> URL:
    return URL(f"http://{host}:8080/hook?a=1", encoded=True)


# --- Issue 23's guard breaks ---------------------------------------------------------------

# Teredo: 2001:0:<server>:<flags>:<port ^ 0xffff>:<client ^ 0xffffffff>. Refused unless the
# allow-list opens Teredo, and then both IPv4 addresses must be global.
TEREDO = [
    ("2001:0:808:808:8000:63bf:f7f7:f7f7", None),  # server 8.8.8.8, client 8.8.8.8
    ("2001:0:a00:1:8000:63bf:f7f7:f7f7", "private network (via Teredo)"),  # server 10.0.0.1
    ("2001:0:7f00:1:8000:63bf:f7f7:f7f7", "loopback (via Teredo)"),  # server 127.0.0.1
    ("2001:0:808:808:8000:63bf:f5ff:fffe", "private network (via Teredo)"),  # client 10.0.0.1
    ("2001:0:808:808:8000:63bf:80ff:fffe", "loopback (via Teredo)"),  # client 127.0.0.1
]


@pytest.mark.parametrize(("address", "refusal"), TEREDO)
def test_teredo_is_judged_by_its_server_and_its_client(address: str, refusal: str | None) -> None:
    ip = ipaddress.ip_address(address)
    assert AddressPolicy(["2001::/32"]).refusal(ip) == refusal
    assert AddressPolicy().refusal(ip) == "Teredo"
    # The allow-list never opens what a relay would dial for us.
    assert AddressPolicy(["2001::/32", "10.0.0.0/8", "127.0.0.0/8"]).refusal(ip) == refusal


# The local-use NAT64 prefix: RFC 6052 puts the IPv4 address after the prefix and skips bits
# 64-71, so where it sits depends on the translator's prefix length, which the allow-list entry
# that opens the address gives.
NAT64_LOCAL = [
    # (entry, address, refusal)
    ("64:ff9b:1::/48", "64:ff9b:1:7f00:0:100:808:808", "loopback (via NAT64)"),  # issue 23
    ("64:ff9b:1::/48", "64:ff9b:1:808:8:800::", None),  # 8.8.8.8 after a /48
    ("64:ff9b:1::/48", "64:ff9b:1:a00:0:100::", "private network (via NAT64)"),
    ("64:ff9b:1:ab00::/56", "64:ff9b:1:ab7f:0:1:0:0", "loopback (via NAT64)"),
    ("64:ff9b:1:ab00::/56", "64:ff9b:1:ab08:8:808::", None),
    ("64:ff9b:1:ab::/64", "64:ff9b:1:ab:7f:0:100:0", "loopback (via NAT64)"),
    ("64:ff9b:1:ab::/64", "64:ff9b:1:ab:8:808:800:0", None),
    ("64:ff9b:1:ab::/96", "64:ff9b:1:ab::7f00:1", "loopback (via NAT64)"),
    ("64:ff9b:1:ab::/96", "64:ff9b:1:ab::808:808", None),
    # An entry of another length says nothing about the translator: every reading is judged.
    ("64:ff9b:1::/52", "64:ff9b:1:808:8:800::", "unspecified (via NAT64)"),  # /96: 0.0.0.0
    ("64:ff9b:1::/52", "64:ff9b:1:808:808:808:808:808", None),
    ("::/0", "64:ff9b:1:808:7f:808:808:808", "loopback (via NAT64)"),  # /64: 127.8.8.8
    ("::/0", "64:ff9b:1:808:808:808:808:808", None),
    ("::/0", "64:ff9b:1:80a:808:808:808:808", "private network (via NAT64)"),  # /56: 10.8.8.8
    ("::/0", "64:ff9b:1:808:808:808:7f08:808", "loopback (via NAT64)"),  # /96: 127.8.8.8
    ("::/0", "64:ff9b:1:7f08:808:808:808:808", "loopback (via NAT64)"),  # /48: 127.8.8.8
]


@pytest.mark.parametrize(("entry", "address", "refusal"), NAT64_LOCAL)
def test_local_use_nat64_is_read_as_rfc_6052_lays_it_out(
    entry: str, address: str, refusal: str | None
) -> None:
    ip = ipaddress.ip_address(address)
    assert AddressPolicy([entry]).refusal(ip) == refusal
    assert AddressPolicy([entry, "127.0.0.0/8", "10.0.0.0/8"]).refusal(ip) == refusal
    assert AddressPolicy().refusal(ip) == "local-use NAT64"


def test_two_entries_each_give_their_reading() -> None:
    ip = ipaddress.ip_address("64:ff9b:1:808:8:800:7f00:1")  # /48: 8.8.8.8, /96: 127.0.0.1
    assert AddressPolicy(["64:ff9b:1::/48"]).refusal(ip) is None
    assert AddressPolicy(["64:ff9b:1:808:8:800::/96"]).refusal(ip) == "loopback (via NAT64)"
    both = AddressPolicy(["64:ff9b:1::/48", "64:ff9b:1:808:8:800::/96"])
    assert both.refusal(ip) == "loopback (via NAT64)"


FOUR_READINGS = [(f"{n}.{n + 1}.{n + 2}.{n + 3}", "NAT64") for n in (1, 2, 3, 6)]


@pytest.mark.parametrize(
    ("address", "lengths", "carried"),
    [
        ("64:ff9b::c000:221", None, [("192.0.2.33", "NAT64")]),
        ("64:ff9b:1:c000:2:2100::", [48], [("192.0.2.33", "NAT64")]),
        ("64:ff9b:1:ffc0:0:221::", [56], [("192.0.2.33", "NAT64")]),
        ("64:ff9b:1:ffff:c0:2:2100:0", [64], [("192.0.2.33", "NAT64")]),
        ("64:ff9b:1:ffff:ffff:ffff:c000:221", [96], [("192.0.2.33", "NAT64")]),
        # Without lengths, every reading: /48, /56, /64, /96; bits 64-71 are never read.
        ("64:ff9b:1:102:3:405:607:809", None, FOUR_READINGS),
        ("64:ff9b:1:102:ff03:405:607:809", None, FOUR_READINGS),
        ("64:ff9b:1:102:ff03:405:607:809", [64, 48], [("3.4.5.6", "NAT64"), ("1.2.3.4", "NAT64")]),
        ("2002:c000:221::", None, [("192.0.2.33", "6to4")]),
        ("2001:0:c000:221::3fff:fdde", None, [("192.0.2.33", "Teredo")] * 2),
        ("2001:0:102:304::f8f7:f6f5", None, [("1.2.3.4", "Teredo"), ("7.8.9.10", "Teredo")]),
        ("2001:db8::1", None, []),
        ("::ffff:192.0.2.33", None, []),  # dialled as IPv4, not carried
    ],
)
def test_what_each_form_carries(
    address: str, lengths: list[int] | None, carried: list[tuple[str, str]]
) -> None:
    ip = ipaddress.IPv6Address(address)
    found = embedded_ipv4(ip) if lengths is None else embedded_ipv4(ip, lengths)
    assert [(str(v4), form) for v4, form in found] == carried


# --- The allow-list as configured ------------------------------------------------------------


@pytest.mark.parametrize(
    ("networks", "host", "allowed"),
    [
        (["127.0.0.0/8"], "127.0.0.1", True),
        (["127.0.0.0/8"], "127.5.5.5", True),
        (["127.0.0.0/8"], "::ffff:127.0.0.1", True),
        (["127.0.0.0/8"], "64:ff9b::7f00:1", False),
        (["127.0.0.0/8"], "::127.0.0.1", False),
        (["127.0.0.0/8"], "2002:7f00:1::", False),
        (["127.0.0.0/8"], "10.0.0.1", False),
        (["127.0.0.0/8"], "::1", False),
        (["::1/128"], "::1", True),
        (["::1/128"], "127.0.0.1", False),
        (["10.0.0.0/24"], "10.0.0.9", True),
        (["10.0.0.0/24"], "10.0.1.9", False),
        (["10.0.0.0/24", "192.168.0.0/16"], "192.168.1.1", True),
        (["10.0.0.0/255.255.255.0"], "10.0.0.9", True),
        (["127.0.0.1"], "127.0.0.1", True),
        (["127.0.0.1"], "127.0.0.2", False),
        ([ipaddress.ip_network("192.168.0.0/16")], "192.168.7.7", True),
        ([], "127.0.0.1", False),
        (None, "127.0.0.1", False),
        (None, "8.8.8.8", True),
    ],
)
def test_the_operator_allow_list(
    networks: list[str | ipaddress.IPv4Network] | None, host: str, allowed: bool
) -> None:
    refusal = AddressPolicy(networks).refusal(ipaddress.ip_address(host))
    assert (refusal is None) is allowed


async def test_the_allow_list_opens_names_too() -> None:
    resolver = FakeResolver({"dev.internal": [["10.0.0.7"]]})
    checked = await check_host("dev.internal", 80, AddressPolicy(["10.0.0.0/8"]), resolver)
    assert [str(a) for a in checked] == ["10.0.0.7"]


NOT_A_NETWORK = "is not a network (such as 10.0.0.0/8 or fd00::/8)"
BAD_ENTRIES = [
    (
        "10.0.0.1/8",
        "allowed network 10.0.0.1/8 has host bits set: write 10.0.0.0/8 for the whole network, "
        "or 10.0.0.1/32 for the one address",
    ),
    (
        "127.0.0.1/8",
        "allowed network 127.0.0.1/8 has host bits set: write 127.0.0.0/8 for the whole "
        "network, or 127.0.0.1/32 for the one address",
    ),
    (
        "fd00::1/8",
        "allowed network fd00::1/8 has host bits set: write fd00::/8 for the whole network, "
        "or fd00::1/128 for the one address",
    ),
    (
        "::ffff:127.0.0.0/104",
        "allowed network ::ffff:127.0.0.0/104 is IPv4-mapped, and such addresses are dialled "
        "as IPv4: write 127.0.0.0/8",
    ),
    (
        "::ffff:0:0/96",
        "allowed network ::ffff:0:0/96 is IPv4-mapped, and such addresses are dialled as IPv4: "
        "write 0.0.0.0/0",
    ),
    ("localhost", f"allowed network 'localhost' {NOT_A_NETWORK}"),
    ("10.0.0.0/33", f"allowed network '10.0.0.0/33' {NOT_A_NETWORK}"),
]


@pytest.mark.parametrize(("entry", "detail"), BAD_ENTRIES)
def test_an_allow_list_entry_must_name_a_network_exactly(entry: str, detail: str) -> None:
    # What `10.0.0.1/8` was meant to open is a guess: refused, with what to write instead.
    with pytest.raises(GatewayError) as caught:
        AddressPolicy(["127.0.0.0/8", entry])
    assert caught.value.detail == detail
    with pytest.raises(GatewayError) as caught:
        config.load(env={"GATEWAY_ALLOWED_CALLBACK_NETWORKS": f"127.0.0.0/8,{entry}"})
    assert caught.value.detail == f"setting allowed_callback_networks: {detail}"


def test_networks_that_merely_hold_mapped_addresses_are_accepted() -> None:
    # Wider than the mapped block: it opens IPv6 addresses, and never a mapped one (see above).
    assert [str(n) for n in AddressPolicy(["::/0", "::fffe:0:0/95"]).allowed] == [
        "::/0",
        "::fffe:0:0/95",
    ]


@pytest.mark.parametrize(
    ("host", "openable"),
    [
        ("127.0.0.1", True),
        ("10.0.0.5", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),  # dialled as 127.0.0.1, which an entry opens
        ("64:ff9b::7f00:1", False),  # carries a loopback address: never opened
        ("::127.0.0.1", False),  # deprecated IPv4-compatible form: never opened
    ],
)
async def test_a_refusal_says_whether_the_allow_list_could_lift_it(
    host: str, openable: bool
) -> None:
    """A refusal the operator's allow-list could lift is told so (the handshake's 400 names
    the setting); one that no entry opens is not."""
    with pytest.raises(AddressNotAllowed) as caught:
        await check_host(host, 443, AddressPolicy(), FakeResolver({}))
    assert caught.value.openable is openable
