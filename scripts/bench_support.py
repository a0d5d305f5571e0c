"""Shared parts of the benchmark scripts: the counting receiver and a gateway subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.acceptance.processes import (
    create_key as _create_key,
)
from tests.acceptance.processes import (
    free_port,
    gateway_process,
    stop,
    wait_until_up,
)

SCRIPTS = Path(__file__).resolve().parent
__all__ = ["Receiver", "create_key", "delivered_count", "gateway_process"]


@dataclass
class Receiver:
    """scripts/count_receiver.py in its own process."""

    url: str

    @classmethod
    @contextlib.contextmanager
    def start(cls) -> Iterator[Receiver]:
        """Start it on a free loopback port; stop it afterwards."""
        port = free_port()
        proc = subprocess.Popen([sys.executable, str(SCRIPTS / "count_receiver.py"), str(port)])
        try:
            wait_until_up(f"http://127.0.0.1:{port}/count", proc)
            yield cls(f"http://127.0.0.1:{port}")
        finally:
            stop(proc)

    async def count(self) -> int:
        """Requests it has seen (handshakes and /count excluded)."""
        async with httpx.AsyncClient() as client:
            return int((await client.get(f"{self.url}/count")).text)

    async def wait_for(self, total: int, timeout: float) -> None:
        """Poll until it has seen `total` requests."""
        deadline = time.monotonic() + timeout
        while await self.count() < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"receiver saw {await self.count()} of {total}")
            await asyncio.sleep(0.05)


def create_key(workdir: Path, database: str, extra_env: Mapping[str, str] | None = None) -> str:
    """A key for group 'bench' with every scope."""
    return _create_key(workdir, database, "bench")["apiKey"]


async def delivered_count(api: httpx.AsyncClient) -> int:
    """Notifications the store records as delivered, read from /metrics."""
    text = (await api.get("/metrics")).text
    found = re.search(r'^gateway_notifications\{state="succeeded"\} ([0-9.e+]+)$', text, re.M)
    return int(float(found.group(1))) if found else 0
