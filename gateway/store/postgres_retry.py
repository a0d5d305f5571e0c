"""Transactions of the PostgreSQL store that survive conflicts and lost connections.

`atomically` runs a transaction again, whole, when the server rolled it back (a deadlock, a
serialization failure) or its connection was lost before COMMIT was sent (the server rolls back
what a lost connection held). Lost while COMMIT was in flight, it may have been applied, so it
is never simply run again: its id, asked for before COMMIT, is looked up on another connection
(`pg_xact_status`). Committed, its result stands; aborted, it runs again; undecidable, a
StoreError says the outcome is unknown. `reading` runs reads outside a transaction, again after
a lost connection. Tries are bounded, with short jittered pauses between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import asyncpg
from asyncpg import exceptions as pg

from gateway.errors import StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")
Work = Callable[[asyncpg.Connection], Awaitable[T]]

# What a driver call may raise.
DRIVER_ERRORS = (pg.PostgresError, pg.InterfaceError, pg.InternalClientError, OSError)
# The server rolled the transaction back and said so: running it again is safe.
CONFLICTS = (pg.DeadlockDetectedError, pg.SerializationError)
# The connection is gone (08xxx, terminated by an operator or a shutdown, refused while the
# server starts), or as good as gone (InternalClientError: asyncpg lost track of the protocol,
# as when a connection is terminated mid-query). Not a timeout: a server that does not answer
# is not helped by asking again.
LOST = (pg.PostgresConnectionError, pg.AdminShutdownError, pg.CrashShutdownError,
        pg.CannotConnectNowError, pg.InternalClientError, ConnectionError)  # fmt: skip
TRIES = 5  # of one transaction or read, the first included
FIRST_PAUSE = 0.02  # seconds before the second try; each later pause may be twice as long
STATUS_WAIT = 5.0  # seconds to wait for a dying server process to finish its transaction
# Asked after the work: a transaction that wrote nothing has no id and needs none, and asking
# does not assign one (which would cost every empty claim a commit record in the WAL).
XACT_ID = "SELECT pg_current_xact_id_if_assigned()"
XACT_STATUS = "SELECT pg_xact_status($1)"


class Verdict(enum.Enum):
    """What becomes of a try that failed."""

    AGAIN = "run it again"
    LOOK_UP = "ask the server whether it committed"  # COMMIT was sent, no answer came
    ERROR = "a StoreError"


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` says the connection (or getting one) failed, not the statement. (So may an
    InterfaceError, or it says a misuse: the caller asks the connection.)"""
    return isinstance(exc, LOST) or (isinstance(exc, OSError) and not isinstance(exc, TimeoutError))


def verdict(exc: BaseException, *, lost: bool, committing: bool) -> Verdict:
    """The rule: after a conflict (COMMIT's too) or a connection lost before COMMIT was sent,
    the server rolled back, so run again; lost after (`committing`), it may have committed."""
    if isinstance(exc, CONFLICTS) or (lost and not committing):
        return Verdict.AGAIN
    return Verdict.LOOK_UP if lost else Verdict.ERROR


def pause(tries: int) -> float:
    """Seconds to wait after `tries` failed tries: full jitter over a doubling ceiling."""
    return random.uniform(0, FIRST_PAUSE * 2 ** (tries - 1))


@dataclasses.dataclass
class _Try:
    """How far one try got; what `work` returned stands if its COMMIT turns out applied."""

    closed: bool = False  # its connection, whatever the error said
    xact: int | None = None  # its transaction's id
    committing: bool = False  # COMMIT was sent
    done: Any = None


async def atomically(pool: asyncpg.Pool, work: Work[T]) -> T:
    """`work(connection)` in one transaction, retried as above; driver errors: StoreError."""
    return await _with_tries(pool, work, transaction=True)


async def reading(pool: asyncpg.Pool, work: Work[T]) -> T:
    """`work(connection)` (reads only) outside a transaction, again after a lost connection."""
    return await _with_tries(pool, work, transaction=False)


async def _with_tries(pool: asyncpg.Pool, work: Work[T], *, transaction: bool) -> T:
    tries = 0
    while True:
        tries, state = tries + 1, _Try()
        try:
            return await _once(pool, work, state, transaction)
        except DRIVER_ERRORS as exc:
            lost = state.closed or connection_lost(exc)
            found = verdict(exc, lost=lost, committing=state.committing)
            if found is Verdict.ERROR:
                raise StoreError(f"PostgreSQL error: {exc}") from exc
            if found is Verdict.LOOK_UP and await _committed(pool, state, exc):
                return cast(T, state.done)
            if tries >= TRIES:
                raise StoreError(f"PostgreSQL error: {exc} ({tries} tries)") from exc
            log.info("PostgreSQL %s; trying again", type(exc).__name__, extra={"tries": tries})
        await asyncio.sleep(pause(tries))


async def _once(pool: asyncpg.Pool, work: Work[T], state: _Try, transaction: bool) -> T:
    conn = await pool.acquire()
    try:
        return await (_transaction(conn, work, state) if transaction else work(conn))
    except DRIVER_ERRORS as exc:
        state.closed = _closed(conn)
        # Not back to the pool as it is; the server rolls back what it held.
        if state.closed or connection_lost(exc):
            _terminate(conn)
        raise
    finally:
        await _release(pool, conn)


async def _transaction(conn: asyncpg.Connection, work: Work[T], state: _Try) -> T:
    tx = conn.transaction()
    await tx.start()
    try:
        state.done = done = await work(conn)
        state.xact = await conn.fetchval(XACT_ID)
    except BaseException:
        await _roll_back(conn, tx)
        raise
    state.committing = True  # a connection already closed refuses it: looked up, found aborted
    await tx.commit()
    return done


async def _committed(pool: asyncpg.Pool, state: _Try, cause: BaseException) -> bool:
    """Whether the transaction whose COMMIT went unanswered was applied (else rolled back)."""
    if state.xact is None:
        return True  # it wrote nothing, so there was nothing to commit: its reads stand
    unknown = StoreError(f"PostgreSQL connection lost during COMMIT ({cause}); the transaction "
                         "may or may not have been applied")  # fmt: skip
    status = "in progress"  # until the server process that held it has finished ending
    try:
        async with asyncio.timeout(STATUS_WAIT):
            while status == "in progress":
                await asyncio.sleep(0.02)
                status = await reading(pool, lambda conn: conn.fetchval(XACT_STATUS, state.xact))
    except (StoreError, TimeoutError) as exc:
        raise unknown from exc
    if status not in ("committed", "aborted"):
        raise unknown from cause
    log.warning("the answer to a COMMIT was lost; the transaction was %s", status)
    return status == "committed"


async def _roll_back(conn: asyncpg.Connection, tx: Any) -> None:
    """Roll back after `work` failed; terminate a connection that cannot (or is cancelled)."""
    try:
        if not _closed(conn):
            await tx.rollback()
    except BaseException as exc:
        _terminate(conn)
        if not isinstance(exc, DRIVER_ERRORS):
            raise


async def _release(pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
    """Give the connection back. If resetting it fails the pool drops it, and the try's outcome
    stands: a COMMIT that succeeded must not become an error, let alone another try."""
    try:
        await pool.release(conn)
    except DRIVER_ERRORS as exc:
        log.info("PostgreSQL connection dropped on release (%s)", exc)


def _terminate(conn: asyncpg.Connection) -> None:
    with contextlib.suppress(pg.InterfaceError):  # detached: closed already
        conn.terminate()


def _closed(conn: asyncpg.Connection) -> bool:
    """Whether it is closed (the pool detaches a closed one; its proxy then raises)."""
    try:
        return bool(conn.is_closed())
    except pg.InterfaceError:
        return True
