"""The outbound client against a real loopback receiver: the guard, redirects, caps, timeouts."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import pytest

from gateway.errors import AddressNotAllowed, OutboundConnectionError, OutboundTimeout
from gateway.netguard import IP, AddressPolicy
from gateway.outbound import Outbound
from tests.acceptance.processes import free_port
from tests.receiver import Answer, Receiver

LOOPBACK = AddressPolicy(["127.0.0.0/8", "::1/128"])


class MapResolver:
    """A fake resolver: the only way names resolve in these tests."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table

    async def resolve(self, host: str, port: int) -> list[IP]:
        return [ipaddress.ip_address(self.table[host])]


@pytest.fixture
async def outbound() -> AsyncIterator[Outbound]:
    async with Outbound(policy=LOOPBACK) as client:
        yield client


async def test_an_answer_comes_back(outbound: Outbound, receiver: Receiver) -> None:
    url = receiver.plan("/ok", Answer(status=201, body="created"))
    response = await outbound.send("POST", url, body=b"{}", timeout=2)
    assert (response.status, response.body, response.truncated) == (201, b"created", False)


async def test_redirects_are_returned_not_followed(outbound: Outbound, receiver: Receiver) -> None:
    url = receiver.plan("/from", Answer(status=307, headers={"location": "/to"}))
    response = await outbound.send("POST", url, body=b"{}", timeout=2)
    assert response.status == 307
    assert [s.path for s in receiver.seen] == ["/from"]


async def test_large_bodies_are_cut_at_the_cap(outbound: Outbound, receiver: Receiver) -> None:
    url = receiver.plan("/big", Answer(body="x" * 100_000))
    response = await outbound.send("GET", url, timeout=2, max_body=1000)
    assert (len(response.body), response.truncated) == (1000, True)


async def test_a_slow_receiver_times_out(outbound: Outbound, receiver: Receiver) -> None:
    url = receiver.plan("/slow", Answer(delay=2.0))
    with pytest.raises(OutboundTimeout, match=r"^timed out after 0\.5 s$"):
        await outbound.send("POST", url, body=b"{}", timeout=0.5)


async def test_a_closed_port_is_a_connection_error(outbound: Outbound) -> None:
    with pytest.raises(OutboundConnectionError, match="connection refused"):
        await outbound.send("POST", f"http://127.0.0.1:{free_port()}/", timeout=2)


async def test_connections_are_reused(outbound: Outbound, receiver: Receiver) -> None:
    url = receiver.plan("/ok")
    for _ in range(5):
        await outbound.send("POST", url, body=b"{}", timeout=2)
    connector = outbound._session.connector  # type: ignore[union-attr]
    assert connector is not None and sum(len(v) for v in connector._conns.values()) == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "2130706433", "127.1", "[::1]"])
async def test_without_an_allow_list_loopback_is_refused_before_connecting(
    receiver: Receiver, host: str
) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    resolver = MapResolver({"localhost": "127.0.0.1"})
    async with Outbound(policy=AddressPolicy(), resolver=resolver) as strict:
        with pytest.raises(AddressNotAllowed, match="is not allowed"):
            await strict.send("POST", f"http://{host}:{port}/x", body=b"{}", timeout=2)
    assert receiver.seen == []


async def test_the_checked_address_is_used_with_the_partners_host_name(
    receiver: Receiver,
) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    resolver = MapResolver({"partner.example": "127.0.0.1"})
    async with Outbound(policy=LOOPBACK, resolver=resolver) as client:
        response = await client.send("POST", f"http://partner.example:{port}/hi", timeout=2)
    assert response.status == 200
    assert receiver.seen[0].headers["host"] == f"partner.example:{port}"


async def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    resolver = MapResolver({"evil.example": "10.0.0.1"})
    async with Outbound(policy=AddressPolicy(), resolver=resolver) as strict:
        with pytest.raises(AddressNotAllowed, match=r"10\.0\.0\.1 is not allowed \(private"):
            await strict.send("POST", "http://evil.example/hook", timeout=2)
