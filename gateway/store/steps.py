"""A transaction written once for both SQL dialects: a script of steps that each runs its way.

A script is a generator that yields steps and receives what each gave (`rows = yield Fetch(sql,
params)`). SQLite runs it whole on its writer's thread between BEGIN IMMEDIATE and COMMIT, so
the file stays locked only while SQLite works; PostgreSQL awaits it step by step inside
`postgres_retry.atomically`, which may start again after a deadlock, a serialization failure
or a lost connection. So a script keeps its state inside and is made afresh for each try.

`Lock` and `Notify` are for PostgreSQL, where other processes write the same rows and listen for
changes; SQLite, whose writer holds the whole file and whose workers poll, skips both.
Parameters are Python values, which each dialect makes its driver's unless `encoded`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Params = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement and its named parameters."""

    sql: Any
    params: Params


class Fetch(Statement):
    """Run a statement; answers its rows."""

    __slots__ = ()


class Execute(Statement):
    """Run a statement; answers how many rows it changed."""

    __slots__ = ()


class Lock(Statement):
    """Read rows to lock them until commit: answers them on PostgreSQL, None on SQLite (what
    the script read before stands)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ExecuteMany:
    """Run a statement once for each set of parameters (none: nothing runs); answers None."""

    sql: Any
    rows: Sequence[Any]
    encoded: bool = False  # the rows are the driver's values already


@dataclass(frozen=True, slots=True)
class Notify:
    """Tell listening processes, once the transaction commits (PostgreSQL's NOTIFY)."""

    channel: str
    payload: str = ""


Step = Fetch | Execute | ExecuteMany | Lock | Notify
Script = Generator[Step, Any, T]
MakeScript = Callable[[], Script[T]]


class Run(Generic[T]):
    """One try of a script: `step = run.send(answer)` (None first) until it gives None, the
    script having returned `run.result`."""

    __slots__ = ("_steps", "result")

    def __init__(self, script: MakeScript[T]) -> None:
        self._steps = script()
        self.result: T

    def send(self, answer: Any) -> Step | None:
        """The next step, given what the last one answered; None once the script is done."""
        try:
            return self._steps.send(answer)
        except StopIteration as done:
            self.result = done.value
            return None
