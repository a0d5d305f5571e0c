"""The system resolver, for real, on names that resolve to loopback only.

Every other guard test resolves through a fake, yet every partner with a host name goes through
`SystemResolver`. Here it answers `localhost` from this host, and the test's own names from an
/etc/hosts inside a network namespace the test creates: nothing there can leave the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

import pytest

from gateway.errors import AddressNotAllowed
from gateway.handshake import HandshakeCodes, verify_callback
from gateway.netguard import AddressPolicy, SystemResolver
from gateway.outbound import Outbound
from gateway.store import Store
from tests.receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = AddressPolicy(["127.0.0.0/8", "::1/128"])
PROBE_TIMEOUT = 45.0


def _by_name(receiver: Receiver, path: str) -> str:
    return receiver.plan(path).replace("://127.0.0.1:", "://localhost:")


async def test_localhost_resolves_to_loopback_only() -> None:
    found = await SystemResolver().resolve("localhost", 443)
    assert found and all(ip.is_loopback for ip in found), found
    assert len(set(found)) == len(found), "each address once"


async def test_a_delivery_and_a_handshake_reach_a_receiver_named_localhost(
    receiver: Receiver, store: Store
) -> None:
    async with Outbound(policy=LOOPBACK) as outbound:  # the system resolver
        response = await outbound.send(
            "POST", _by_name(receiver, "/hook"), body=b'{"a":1}', timeout=5
        )
        await verify_callback(
            outbound,
            HandshakeCodes("k", store),
            uuid4(),
            "POST",
            _by_name(receiver, "/verify"),
        )
    assert (response.status, response.body) == (200, b"ok")
    port = receiver.url.rsplit(":", 1)[1]
    assert [(s.path, s.headers["host"], s.body) for s in receiver.seen] == [
        ("/hook", f"localhost:{port}", b'{"a":1}'),
        ("/verify", f"localhost:{port}", b""),
    ]


async def test_localhost_is_refused_without_an_allow_list(receiver: Receiver) -> None:
    async with Outbound(policy=AddressPolicy()) as strict:
        with pytest.raises(AddressNotAllowed, match=r"is not allowed \(loopback\)$"):
            await strict.send("POST", _by_name(receiver, "/hook"), timeout=5)
    assert receiver.seen == []


HOSTS = """\
127.0.0.1 partner.netguard.test
::ffff:127.0.0.1 mapped.netguard.test
::127.0.0.1 compatible.netguard.test
64:ff9b::7f00:1 nat64.netguard.test
2002:7f00:1:: sixtofour.netguard.test
127.0.0.1 mixed.netguard.test
10.0.0.1 mixed.netguard.test
"""
NAMES = [
    "partner.netguard.test",
    "mapped.netguard.test",
    "compatible.netguard.test",
    "nat64.netguard.test",
    "sixtofour.netguard.test",
    "mixed.netguard.test",
    "missing.netguard.test",
]
SETUP = (
    'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && ip link set lo up'
    ' || exit 97; shift 2; exec "$@"'
)
UNSHARE = ["unshare", "--user", "--map-root-user", "--net", "--mount"]


def _in_namespace(tmp_path: Path, *command: str) -> subprocess.CompletedProcess[str]:
    hosts, resolv = tmp_path / "hosts", tmp_path / "resolv.conf"
    hosts.write_text(HOSTS)
    resolv.write_text("nameserver 127.0.0.1\n")  # nothing listens there: lookups fail at once
    return subprocess.run(
        [*UNSHARE, "sh", "-c", SETUP, "sh", str(hosts), str(resolv), *command],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT,
        check=False,
    )


@pytest.fixture
def namespace(tmp_path: Path) -> Path:
    """Skip, saying why, where this host cannot give a test a network namespace."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip (util-linux, iproute2)")
    tried = _in_namespace(tmp_path, "true")
    if tried.returncode != 0:
        pytest.skip(f"no user and network namespaces here: {tried.stderr.strip()}")
    return tmp_path


def test_names_from_an_etc_hosts_of_our_own(namespace: Path) -> None:
    done = _in_namespace(namespace, sys.executable, "-m", "tests.resolver_probe", *NAMES)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    port = report["port"]
    refused = "AddressNotAllowed: callback address"
    assert report["resolved"] == {
        "partner.netguard.test": ["127.0.0.1"],
        "mapped.netguard.test": ["::ffff:7f00:1"],
        "compatible.netguard.test": ["::7f00:1"],
        "nat64.netguard.test": ["64:ff9b::7f00:1"],
        "sixtofour.netguard.test": ["2002:7f00:1::"],
        "mixed.netguard.test": ["127.0.0.1", "10.0.0.1"],
        "missing.netguard.test": "gaierror",
    }
    assert report["sent"] == {
        "partner.netguard.test": "HTTP 200",
        # The IPv4 address it carries is what is dialled, and what the allow-list judged.
        "mapped.netguard.test": "HTTP 200",
        "compatible.netguard.test": f"{refused} ::7f00:1 is not allowed "
        "(deprecated IPv4-compatible form)",
        "nat64.netguard.test": f"{refused} 64:ff9b::7f00:1 is not allowed (loopback (via NAT64))",
        "sixtofour.netguard.test": f"{refused} 2002:7f00:1:: is not allowed (loopback (via 6to4))",
        "mixed.netguard.test": f"{refused} 10.0.0.1 is not allowed (private network)",
        "missing.netguard.test": "OutboundConnectionError: could not resolve missing.netguard.test",
    }
    assert report["seen"] == [
        ["/n", f"partner.netguard.test:{port}"],
        ["/n", f"mapped.netguard.test:{port}"],
        ["/handshake", f"partner.netguard.test:{port}"],
    ]
    # One connection per name (the handshake reuses the first), each to the IPv4 loopback
    # address: the mapped name's too, not the IPv6 form the resolver answered.
    assert report["dialled"] == [["127.0.0.1", port]] * 2
