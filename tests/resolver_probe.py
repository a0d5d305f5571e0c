"""Run by tests/integration/test_system_resolver.py inside a network namespace of its own.

The namespace has only a loopback interface, and its /etc/hosts and /etc/resolv.conf are the
test's: the system resolver answers the test's names from that hosts file, and no lookup or
connection can leave it. This process starts a receiver on 127.0.0.1, reaches it by name through
`Outbound` with the real `SystemResolver`, and prints what happened as one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any
from uuid import uuid4

from gateway.errors import GatewayError
from gateway.handshake import HandshakeCodes, verify_callback
from gateway.netguard import AddressPolicy, SystemResolver
from gateway.outbound import Outbound
from gateway.store import store_for_url
from tests.receiver import run_receiver


async def probe(names: list[str]) -> dict[str, Any]:
    """Resolve and send to each name; hand-shake with the first."""
    loop = asyncio.get_running_loop()
    real_connect = loop.sock_connect
    dialled: list[list[Any]] = []

    async def sock_connect(sock: Any, address: Any) -> None:
        dialled.append(list(address[:2]))
        await real_connect(sock, address)

    loop.sock_connect = sock_connect  # type: ignore[method-assign]
    policy = AddressPolicy(["127.0.0.0/8", "::1/128"])
    report: dict[str, Any] = {"resolved": {}, "sent": {}}
    async with (
        run_receiver() as receiver,
        Outbound(policy=policy) as outbound,
        store_for_url("memory://") as store,
    ):
        port = int(receiver.url.rsplit(":", 1)[1])
        report["port"] = port
        for name in names:
            try:
                found = await SystemResolver().resolve(name, port)
                report["resolved"][name] = [str(ip) for ip in found]
            except OSError as exc:
                report["resolved"][name] = type(exc).__name__
            try:
                response = await outbound.send("POST", f"http://{name}:{port}/n", timeout=5)
                report["sent"][name] = f"HTTP {response.status}"
            except GatewayError as exc:
                report["sent"][name] = f"{type(exc).__name__}: {exc.detail}"
        url = f"http://{names[0]}:{port}/handshake"
        await verify_callback(outbound, HandshakeCodes("probe", store), uuid4(), "POST", url)
        report["seen"] = [[s.path, s.headers["host"]] for s in receiver.seen]
    report["dialled"] = dialled
    return report


if __name__ == "__main__":
    print(json.dumps(asyncio.run(probe(sys.argv[1:]))))
