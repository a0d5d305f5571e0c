"""The outbound address policy, judged with a fake resolver: no packet leaves this process."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from gateway.errors import AddressNotAllowed
from gateway.netguard import IP, AddressPolicy, check_host, message, parse_ip_literal
from gateway.outbound import GuardedResolver


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
    ("::10.0.0.1", "private network (via IPv4-compatible)"),
    ("64:ff9b::10.0.0.1", "private network (via NAT64)"),
    ("64:ff9b::7f00:1", "loopback (via NAT64)"),
    ("64:ff9b:1::a00:1", "private network (via NAT64)"),
    ("2002:0a00:0001::1", "private network (via 6to4)"),
    ("2002:7f00:1::", "loopback (via 6to4)"),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private network (via Teredo)"),
    ("fe80::1", "link-local"),
    ("[fe80::1%eth0]", "link-local"),
    ("fc00::1", "private network"),
    ("fd12:3456::1", "private network"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("2001:2::1", "benchmarking"),
    ("100::1", "reserved"),
    ("5f00::1", "reserved"),
]
PASSING = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "134744072",  # 8.8.8.8 spelled as one number: judged by what it means
    "2606:4700:4700::1111",
    "2a00:1450:4001::1",
    "::ffff:8.8.8.8",
    "64:ff9b::8.8.8.8",
    "2002:0808:0808::1",
]
# Not addresses, but numeric enough that a resolver or connector would read them its own way.
MALFORMED = ["08.0.0.1", "1.2.3.4.5", "256.1.1.1", "999999999999", "host.123", "exa%41mple.com"]


@pytest.mark.parametrize(("host", "reason"), REFUSED)
async def test_refused_literals_say_why(host: str, reason: str) -> None:
    resolver = FakeResolver({})
    with pytest.raises(AddressNotAllowed) as caught:
        await check_host(host, 443, AddressPolicy(), resolver)
    assert caught.value.detail.endswith(f"is not allowed ({reason})")
    assert resolver.calls == [], "a literal is judged, never resolved"


@pytest.mark.parametrize("host", PASSING)
async def test_globally_routable_addresses_pass(host: str) -> None:
    resolver = FakeResolver({})
    checked = await check_host(host, 443, AddressPolicy(), resolver)
    assert checked == [parse_ip_literal(host)] and resolver.calls == []


@pytest.mark.parametrize("host", MALFORMED)
async def test_ip_like_hosts_that_are_not_ips_are_refused_unresolved(host: str) -> None:
    resolver = FakeResolver({})
    with pytest.raises(AddressNotAllowed, match="is not a valid host name or address"):
        await check_host(host, 443, AddressPolicy(), resolver)
    assert resolver.calls == []


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
        ("[::1]", "::1"),
        ("[fe80::1%25eth0]", "fe80::1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
        ("partner.example", None),
        ("localhost", None),
        ("0x7f.example", None),
        ("256.1.1.1", None),
        ("1.2.3.4.5", None),
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


async def test_a_name_without_addresses_is_refused() -> None:
    with pytest.raises(AddressNotAllowed, match="has no address"):
        await check_host(
            "empty.example", 80, AddressPolicy(), FakeResolver({"empty.example": [[]]})
        )


@pytest.mark.parametrize(
    ("networks", "host", "allowed"),
    [
        (["127.0.0.0/8"], "127.0.0.1", True),
        (["127.0.0.0/8"], "127.5.5.5", True),
        (["127.0.0.0/8"], "::ffff:127.0.0.1", True),
        (["127.0.0.0/8"], "64:ff9b::7f00:1", True),
        (["127.0.0.0/8"], "10.0.0.1", False),
        (["127.0.0.0/8"], "::1", False),
        (["::1/128"], "::1", True),
        (["::1/128"], "127.0.0.1", False),
        (["10.0.0.0/24"], "10.0.0.9", True),
        (["10.0.0.0/24"], "10.0.1.9", False),
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
