"""The guard's module-level tables, edge by edge.

mutmut mutates only inside functions, so a changed range in the rule table or in the special
prefixes would go unnoticed by mutation testing. Each range is written here again, by hand, with
what its first and last addresses and the addresses just outside it must get; the cases are
generated from this table, never from the module's own (a changed table would test itself).
"""

from __future__ import annotations

import ipaddress

import pytest

from gateway.errors import GatewayError
from gateway.netguard import AddressPolicy, parse_ip_literal

OUTSIDE = "-"  # no address on that side: the range starts or ends the address space
COMPATIBLE = "deprecated IPv4-compatible form"

# (range, first, last, just below, just above): what each of the four addresses gets from the
# default policy (None: allowed). First and last usually get the range's own reason; where a
# more specific rule shadows an end, the table says so.
RANGES: list[tuple[str, str | None, str | None, str | None, str | None]] = [
    # IPv4 rules
    ("169.254.169.254/32", "cloud metadata", "cloud metadata", "link-local", "link-local"),
    ("169.254.170.2/32", "cloud metadata", "cloud metadata", "link-local", "link-local"),
    (
        "100.100.100.200/32",
        "cloud metadata",
        "cloud metadata",
        "shared address space (CGNAT)",
        "shared address space (CGNAT)",
    ),
    ("192.0.0.192/32", "cloud metadata", "cloud metadata", "reserved", "reserved"),
    ("0.0.0.0/8", "unspecified", "unspecified", OUTSIDE, None),
    ("10.0.0.0/8", "private network", "private network", None, None),
    (
        "100.64.0.0/10",
        "shared address space (CGNAT)",
        "shared address space (CGNAT)",
        None,
        None,
    ),
    ("127.0.0.0/8", "loopback", "loopback", None, None),
    ("169.254.0.0/16", "link-local", "link-local", None, None),
    ("172.16.0.0/12", "private network", "private network", None, None),
    ("192.0.0.0/24", "reserved", "reserved", None, None),
    ("192.0.2.0/24", "documentation", "documentation", None, None),
    ("192.88.99.0/24", "reserved", "reserved", None, None),
    ("192.168.0.0/16", "private network", "private network", None, None),
    ("198.18.0.0/15", "benchmarking", "benchmarking", None, None),
    ("198.51.100.0/24", "documentation", "documentation", None, None),
    ("203.0.113.0/24", "documentation", "documentation", None, None),
    ("224.0.0.0/4", "multicast", "multicast", None, "reserved"),
    ("255.255.255.255/32", "broadcast", "broadcast", "reserved", OUTSIDE),
    ("240.0.0.0/4", "reserved", "broadcast", "multicast", OUTSIDE),
    # IPv6 rules
    ("::/128", "unspecified", "unspecified", OUTSIDE, "loopback"),
    ("::1/128", "loopback", "loopback", "unspecified", COMPATIBLE),
    ("fd00:ec2::254/128", "cloud metadata", "cloud metadata", "private network", "private network"),
    ("64:ff9b:1::/48", "local-use NAT64", "local-use NAT64", "reserved", "reserved"),
    ("fc00::/7", "private network", "private network", "reserved", "reserved"),
    ("fe80::/10", "link-local", "link-local", "reserved", "site-local"),
    ("fec0::/10", "site-local", "site-local", "link-local", "multicast"),
    ("ff00::/8", "multicast", "multicast", "site-local", OUTSIDE),
    ("2001:db8::/32", "documentation", "documentation", None, None),
    ("3fff::/20", "documentation", "documentation", None, None),
    ("2001:2::/48", "benchmarking", "benchmarking", "reserved", "reserved"),
    ("2001::/32", "Teredo", "Teredo", None, "reserved"),
    ("2001::/23", "Teredo", "reserved", None, None),
    # Special prefixes: IPv6 is global only inside 2000::/3 and the NAT64 well-known prefix
    ("2000::/3", None, None, "reserved", "reserved"),
    ("64:ff9b::/96", "unspecified (via NAT64)", "broadcast (via NAT64)", "reserved", "reserved"),
    ("2002::/16", "unspecified (via 6to4)", "broadcast (via 6to4)", None, None),
    (
        "::ffff:0:0/96",
        "unspecified (via IPv4-mapped)",
        "broadcast (via IPv4-mapped)",
        "reserved",
        "reserved",
    ),
    # The IPv4-compatible block: ::/96 but for :: and ::1, so from ::2 to ::ffff:ffff.
    ("::2/127", COMPATIBLE, COMPATIBLE, "loopback", COMPATIBLE),
    ("::ffff:fffe/127", COMPATIBLE, COMPATIBLE, COMPATIBLE, "reserved"),
]

# The same edges under allow-lists that open a form, so that what it carries is read.
OPENED: list[tuple[str, str, str | None, str | None, str | None, str | None]] = [
    (
        "2001::/32",
        "2001::/32",
        "unspecified (via Teredo)",  # the server's address is 0.0.0.0
        "broadcast (via Teredo)",
        None,
        "reserved",
    ),
    ("::/0", "64:ff9b:1::/48", "unspecified (via NAT64)", "broadcast (via NAT64)", None, None),
    ("::/0", "64:ff9b::/96", "unspecified (via NAT64)", "broadcast (via NAT64)", None, None),
    ("::/0", "2002::/16", "unspecified (via 6to4)", "broadcast (via 6to4)", None, None),
]


def _edges(network: str, outcomes: tuple[str | None, ...]) -> list[tuple[str, str | None]]:
    net = ipaddress.ip_network(network)
    first, last = int(net.network_address), int(net.broadcast_address)
    top = 2**net.max_prefixlen - 1
    kind = type(net.network_address)
    cases = [(kind(first), outcomes[0]), (kind(last), outcomes[1])]
    if first > 0:
        cases.append((kind(first - 1), outcomes[2]))
    else:
        assert outcomes[2] == OUTSIDE
    if last < top:
        cases.append((kind(last + 1), outcomes[3]))
    else:
        assert outcomes[3] == OUTSIDE
    return [(str(ip), outcome) for ip, outcome in cases]


EDGE_CASES = [
    pytest.param([], address, outcome, id=f"{network}:{address}")
    for network, *outcomes in RANGES
    for address, outcome in _edges(network, tuple(outcomes))
] + [
    pytest.param([allowed], address, outcome, id=f"{allowed}:{network}:{address}")
    for allowed, network, *outcomes in OPENED
    for address, outcome in _edges(network, tuple(outcomes))
]


@pytest.mark.parametrize(("allowed", "address", "refusal"), EDGE_CASES)
def test_each_range_ends_where_the_table_says(
    allowed: list[str], address: str, refusal: str | None
) -> None:
    assert AddressPolicy(allowed).refusal(ipaddress.ip_address(address)) == refusal


def test_the_table_of_edges_covers_every_reason() -> None:
    # Every reason the guard can give appears at some edge above, so a reason renamed in the
    # module fails here rather than only in a message somebody reads.
    reasons = {outcome for _, *outcomes in RANGES for outcome in outcomes}
    assert reasons >= {
        "cloud metadata",
        "unspecified",
        "private network",
        "shared address space (CGNAT)",
        "loopback",
        "link-local",
        "reserved",
        "documentation",
        "benchmarking",
        "multicast",
        "broadcast",
        "site-local",
        "local-use NAT64",
        "Teredo",
        COMPATIBLE,
    }


# Local-use NAT64: the allow-list entry's prefix length says where the IPv4 address is, but only
# the lengths RFC 6052 defines that fit in the /48. This address carries 127.8.8.8 when read
# after a /96 and 8.8.8.8 when read after a /48, /56 or /64.
ONLY_96_IS_LOOPBACK = "64:ff9b:1:808:808:808:7f08:808"
READ_ALONE = {48, 56, 64, 96}


@pytest.mark.parametrize("length", range(32, 129))
def test_which_entry_lengths_say_where_the_ipv4_address_is(length: int) -> None:
    entry = ipaddress.ip_network(f"{ONLY_96_IS_LOOPBACK}/{length}", strict=False)
    refusal = AddressPolicy([str(entry)]).refusal(ipaddress.ip_address(ONLY_96_IS_LOOPBACK))
    # Read after its own length alone, or after every length when the entry names none.
    passes = length in READ_ALONE - {96}
    assert refusal == (None if passes else "loopback (via NAT64)")


# Allow-list entries inside the IPv4-mapped block are refused; the block's edges decide.
@pytest.mark.parametrize(
    ("entry", "refused"),
    [
        ("::ffff:0:0/96", True),
        ("::ffff:0:0/128", True),
        ("::ffff:ffff:ffff/128", True),
        ("::fffe:ffff:ffff/128", False),
        ("::1:0:0:0/128", False),
        ("::fffe:0:0/95", False),
    ],
)
def test_mapped_entries_are_refused_at_the_edges_of_the_block(entry: str, refused: bool) -> None:
    if refused:
        with pytest.raises(GatewayError, match="is IPv4-mapped"):
            AddressPolicy([entry])
    else:
        assert [str(n) for n in AddressPolicy([entry]).allowed] == [entry]


# The spellings of one part of an IPv4 address: the longest each may be, and one digit more.
# Octal and hex may pad with zeros, so their bounds show; eleven decimal digits are past 2**32
# whatever the bound, which is there to keep thousands of digits from int() (MALFORMED has them).
@pytest.mark.parametrize(
    ("spelling", "meaning"),
    [
        ("1000000000", "59.154.202.0"),  # ten decimal digits
        ("10000000000", None),
        ("0", "0.0.0.0"),
        ("01", "0.0.0.1"),
        ("000000000001", "0.0.0.1"),  # a leading 0 and eleven octal digits
        ("0000000000001", None),
        ("08", None),
        ("0x", "0.0.0.0"),
        ("0X00000001", "0.0.0.1"),  # 0x and eight hex digits
        ("0x000000001", None),
        ("0xg", None),
        ("+1", None),
        ("1 ", "0.0.0.1"),  # the host is trimmed
        ("1.2.3.-4", None),
    ],
)
def test_the_spellings_of_a_part(spelling: str, meaning: str | None) -> None:
    parsed = parse_ip_literal(spelling)
    assert (str(parsed) if parsed else None) == meaning
