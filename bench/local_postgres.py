"""The PostgreSQL server on this machine, as S1 sees it: whether it answers, and the CPU it
spends for one gateway.

The server shares the cores with the gateway, the receiver and the load generator, so its work
for the gateway is part of the gateway's cost. Counting every process of the `postgres` user
would count other clients' work too (on a shared machine, other test suites), and the CPU of
every backend the server has reaped; ServerCpu counts only the backends serving the gateway's
own connections (matched by their client port, which each backend shows in its process title)
and the server's background processes (postmaster, WAL writer, checkpointer, background writer,
autovacuum), which write what those backends commit.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from tests.acceptance.processes import stat_fields

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CLIENT = re.compile(rb"\((\d+)\)")  # a backend's title: "postgres: ... test 127.0.0.1(57322) idle"


async def answers(url: str, timeout: float = 3.0) -> bool:
    """Whether a PostgreSQL server accepts a connection at `url`."""
    try:
        conn = await asyncpg.connect(url, timeout=timeout)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


def is_local(url: str) -> bool:
    """Whether `url` names a server on this machine's loopback and one runs here."""
    return urlsplit(url).hostname in LOOPBACK and _server_uid() is not None


class ServerCpu:
    """CPU seconds the local server spends for the connections of `clients` (process ids),
    counted from the first call: each call adds what its processes used since the one before.
    A backend that ends between two calls loses its last stretch (the gateway's pools keep
    their connections for the run)."""

    def __init__(self, clients: Sequence[int], port: int) -> None:
        self.clients, self.port = list(clients), port
        self.uid = _server_uid()
        self.last: dict[int, float] | None = None
        self.total = 0.0

    def __call__(self) -> float:
        now = self._processes()
        if self.last is not None:
            self.total += sum(cpu - self.last.get(pid, 0.0) for pid, cpu in now.items())
        self.last = now
        return self.total

    def _processes(self) -> dict[int, float]:
        """CPU seconds of the background processes and of the clients' backends, by pid."""
        ports = client_ports(self.clients, self.port)
        found = {}
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if proc.stat().st_uid != self.uid:
                    continue
                client = CLIENT.search((proc / "cmdline").read_bytes())
                if client is not None and int(client.group(1)) not in ports:
                    continue  # another client's backend
                fields = stat_fields(proc / "stat")
            except OSError:
                continue  # it ended while we looked
            found[int(proc.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return found


def client_ports(pids: Sequence[int], server_port: int) -> set[int]:
    """Local ports of the TCP connections that processes `pids` hold to `server_port`."""
    inodes = set().union(*(_sockets(pid) for pid in pids))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            local, remote, inode = cols[1], cols[2], cols[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == server_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def _sockets(pid: int) -> set[str]:
    """The inodes of the sockets a process holds open."""
    found = set()
    with contextlib.suppress(OSError):  # it ended
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):  # it closed that file while we looked
                if (target := os.readlink(fd)).startswith("socket:["):
                    found.add(target[8:-1])
    return found


def _server_uid() -> int | None:
    """The `postgres` user's id, if it has a process here."""
    try:
        uid = pwd.getpwnam("postgres").pw_uid
    except KeyError:
        return None
    for stat in Path("/proc").glob("[0-9]*"):
        try:
            if stat.stat().st_uid == uid:
                return uid
        except OSError:
            continue
    return None
