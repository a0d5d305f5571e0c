"""What serve writes to its worker processes, and what a worker makes of it (`_follow_parent`):
a line per message over a real pipe, read by the event loop."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest

from gateway import supervisor, wakeup, worker_main


class Heard:
    """Stands in for the Worker: records the calls `_follow_parent` makes."""

    def __init__(self) -> None:
        self.wakes = 0
        self.changed: list[uuid.UUID] = []

    def wake(self) -> None:
        self.wakes += 1

    def webhook_changed(self, webhook_id: uuid.UUID) -> None:
        self.changed.append(webhook_id)


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read, write = os.pipe()
    yield read, write
    for fd in (read, write):
        try:
            os.close(fd)
        except OSError:
            pass


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


async def test_lines_wake_the_worker_and_name_changed_webhooks(pipe: tuple[int, int]) -> None:
    read, write = pipe
    heard, stop = Heard(), asyncio.Event()
    worker_main._follow_parent(asyncio.get_running_loop(), heard, stop, read)  # type: ignore[arg-type]
    changed = uuid.uuid4()
    os.write(write, wakeup.WAKE)
    os.write(write, changed.hex[:10].encode())  # a line split across reads
    await settle()
    assert (heard.wakes, heard.changed) == (1, [])
    os.write(write, changed.hex[10:].encode() + b"\n" + wakeup.WAKE)
    await settle()
    assert (heard.wakes, heard.changed) == (2, [changed])
    os.write(write, b"not a webhook id\n")  # logged and skipped
    await settle()
    assert (heard.wakes, heard.changed, stop.is_set()) == (2, [changed], False)
    os.close(write)  # serve ended, however it ended
    await asyncio.wait_for(stop.wait(), 1.0)
    asyncio.get_running_loop().remove_reader(read)


class Child:
    """Stands in for a worker process: the end of a pipe, as Popen(stdin=PIPE) gives it."""

    def __init__(self, fd: int) -> None:
        self.stdin = os.fdopen(fd, "wb", buffering=0)


async def test_what_the_pool_writes_the_worker_reads(pipe: tuple[int, int]) -> None:
    read, write = pipe
    pool = object.__new__(supervisor.WorkerPool)  # no processes started: one pipe stands in
    pool._procs = [Child(os.dup(write))]  # type: ignore[list-item]
    heard, stop = Heard(), asyncio.Event()
    worker_main._follow_parent(asyncio.get_running_loop(), heard, stop, read)  # type: ignore[arg-type]
    changed = uuid.uuid4()
    pool.webhook_changed(changed)
    pool.wake()
    await settle()
    assert (heard.wakes, heard.changed) == (1, [changed])
    pool._procs[0].stdin.close()  # type: ignore[union-attr]
    asyncio.get_running_loop().remove_reader(read)
