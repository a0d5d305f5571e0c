"""The wake-up: telling workers that new notifications are due, or that a webhook changed,
rather than leaving them to find out at their next poll (or, for a webhook, when their cached
copy of it is a second old).

    publishing, a hand retry, a reactivation --new_work-------->  Wakeup
    an owner's change, the expiry sweep      --webhook_changed-->    |
        -> the worker of this process (Worker.wake, Worker.webhook_changed)
        -> serve's worker processes: a line each on their standard input (`line_for`),
           which the worker process reads back (`heard`)

Across processes on PostgreSQL the store carries the same signals itself (add_events NOTIFYs,
`Store.watch_new_work`); SQLite has no NOTIFY, so these are all a worker process hears.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Protocol

log = logging.getLogger(__name__)

# What serve writes to its worker processes: lines. An empty line: new notifications are due.
# A webhook id (32 hex digits): that webhook changed (paused, reactivated, new secret).
WAKE = b"\n"


class Listener(Protocol):
    """A worker, or serve's pool of worker processes."""

    def wake(self) -> None:
        """New notifications are due."""

    def webhook_changed(self, webhook_id: uuid.UUID) -> None:
        """The webhook changed: read it afresh before its next send."""


class Wakeup:
    """The workers this process can tell directly."""

    def __init__(self, *listeners: Listener) -> None:
        self._listeners = list(listeners)

    def attach(self, listener: Listener) -> None:
        """Tell `listener` too from now on."""
        self._listeners.append(listener)

    def detach(self, listener: Listener) -> None:
        """Stop telling `listener`."""
        self._listeners.remove(listener)

    def new_work(self) -> None:
        """New notifications are due: the workers claim them now rather than at their next
        poll."""
        for listener in self._listeners:
            listener.wake()

    def webhook_changed(self, webhook_id: uuid.UUID) -> None:
        """An owner (or the expiry sweep) changed this webhook's status or secret: the workers
        read it afresh before its next send, so a webhook that left Active receives nothing
        beyond the requests already in flight."""
        for listener in self._listeners:
            listener.webhook_changed(webhook_id)


def line_for(webhook_id: uuid.UUID) -> bytes:
    """The line that tells a worker process this webhook changed."""
    return webhook_id.hex.encode("ascii") + b"\n"


def heard(listener: Listener, lines: Iterable[bytes | bytearray]) -> None:
    """Act on the lines a worker process read from serve (without their line ends): each
    webhook named is read afresh, and many wake-ups make one."""
    wake = False
    for line in lines:
        if not line:
            wake = True
            continue
        try:
            listener.webhook_changed(uuid.UUID(hex=line.decode("ascii")))
        except ValueError:
            log.warning("unreadable line from serve", extra={"line": line[:64].hex()})
    if wake:
        listener.wake()
