"""The outbound address policy, judged with a fake resolver: no packet leaves this process."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.errors import AddressNotAllowed
from gateway.netguard import IP, AddressPolicy, check_host, message, parse_ip_literal


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
    ("0.0.0.0", "unspecified"),
    ("0", "unspecified"),
    ("[::1]", "loopback"),
    ("::", "unspecified"),
    ("169.254.169.254", "cloud metadata"),
    ("169.254.1.1", "link-local"),
    ("100.100.100.200", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"),
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
    ("255.255.255.255", "reserved"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("192.0.0.8", "reserved"),
    ("2130706433", "loopback"),
    ("0x7f.0.0.1", "loopback"),
    ("0x7f000001", "loopback"),
    ("017700000001", "loopback"),
    ("0177.0.0.1", "loopback"),
    ("012.0.0.1", "private network"),
    ("167772165", "private network"),
    ("::ffff:127.0.0.1", "loopback (via IPv4-mapped)"),
    ("::ffff:10.0.0.1", "private network (via IPv4-mapped)"),
    ("::ffff:169.254.169.254", "cloud metadata (via IPv4-mapped)"),
    ("64:ff9b::10.0.0.1", "private network (via NAT64)"),
    ("64:ff9b::7f00:1", "loopback (via NAT64)"),
    ("2002:0a00:0001::1", "private network (via 6to4)"),
    ("2002:7f00:1::", "loopback (via 6to4)"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("fc00::1", "private network"),
    ("fd12:3456::1", "private network"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "documentation"),
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001::1"]


@pytest.mark.parametrize(("host", "reason"), REFUSED)
async def test_refused_literals_say_why(host: str, reason: str) -> None:
    resolver = FakeResolver({})
    with pytest.raises(AddressNotAllowed) as caught:
        await check_host(host, 443, AddressPolicy(), resolver)
    assert caught.value.detail.endswith(f"is not allowed ({reason})")
    assert resolver.calls == [], "a literal is judged, never resolved"


@pytest.mark.parametrize("host", ALLOWED)
async def test_global_addresses_pass(host: str) -> None:
    assert await check_host(host, 443, AddressPolicy(), FakeResolver({})) == [
        ipaddress.ip_address(host)
    ]


def test_the_message_users_see() -> None:
    assert message(ipaddress.ip_address("10.0.0.5"), "private network") == (
        "callback address 10.0.0.5 is not allowed (private network)"
    )


@pytest.mark.parametrize(
    ("spelling", "meaning"),
    [
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("[::1]", "::1"),
        ("partner.example", None),
        ("256.1.1.1", None),
        ("1.2.3.4.5", None),
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


async def test_rebinding_cannot_slip_through() -> None:
    # The first answer is public, the second would be loopback: the host is resolved once, and
    # the addresses returned are the only ones the connection may use.
    resolver = FakeResolver({"rebind.example": [["93.184.216.34"], ["127.0.0.1"]]})
    checked = await check_host("rebind.example", 80, AddressPolicy(), resolver)
    assert [str(a) for a in checked] == ["93.184.216.34"] and resolver.calls == ["rebind.example"]
    with pytest.raises(AddressNotAllowed, match="loopback"):
        await check_host("rebind.example", 80, AddressPolicy(), resolver)


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
        (["127.0.0.0/8"], "10.0.0.1", False),
        (["127.0.0.0/8"], "::1", False),
        (["::1/128"], "::1", True),
        (["10.0.0.0/24"], "10.0.0.9", True),
        (["10.0.0.0/24"], "10.0.1.9", False),
        ([], "127.0.0.1", False),
    ],
)
def test_the_operator_allow_list(networks: list[str], host: str, allowed: bool) -> None:
    refusal = AddressPolicy(networks).refusal(ipaddress.ip_address(host))
    assert (refusal is None) is allowed
