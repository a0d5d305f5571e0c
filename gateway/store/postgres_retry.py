"""Transactions of the PostgreSQL store that survive conflicts and lost connections.

`atomically` runs a transaction again, whole, after the server rolled it back to break a
deadlock or a serialization conflict, and after its connection was lost before COMMIT was sent
(the server rolls back what a lost connection held). A connection lost while COMMIT was in
flight is different: the transaction may have been applied and only the answer lost. It is never
simply run again: the transaction's id, asked for just before COMMIT (one round trip more per
transaction), is looked up on another connection (`pg_xact_status`): committed, the result
stands; aborted, it runs again; undecidable, the caller gets a StoreError saying the outcome is
unknown. `reading` runs reads outside a
transaction and tries them again after a lost connection. Tries are bounded, with short
jittered pauses between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from gateway.errors import StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")
Work = Callable[[asyncpg.Connection], Awaitable[T]]

DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
# What a try may end in besides our own errors.
BROKEN = (*DRIVER_ERRORS, asyncpg.InternalClientError)
# The server rolled the transaction back and said so: running it again is safe.
CONFLICTS = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
# The connection is gone (08xxx, terminated by an operator or a shutdown, refused while the
# server starts). A timeout is left out: a server that does not answer is not helped by more.
LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    ConnectionError,
)
TRIES = 5  # of one transaction or read, the first included
FIRST_PAUSE = 0.02  # seconds before the second try; each later pause may be twice as long
STATUS_WAIT = 5.0  # seconds to wait for a dying server process to finish its transaction
# Asked after the work, before COMMIT: a transaction that wrote nothing has no id (and needs
# none: it had nothing to commit), and asking does not give it one, which would cost a commit
# record in the WAL for every claim that finds nothing.
XACT_ID = "SELECT pg_current_xact_id_if_assigned()"
XACT_STATUS = "SELECT pg_xact_status($1)"


class Verdict(enum.Enum):
    """What becomes of a try that failed."""

    AGAIN = "run it again"
    LOOK_UP = "ask the server whether it committed"  # COMMIT was sent, no answer came
    ERROR = "a StoreError"


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` says the connection (or getting one) failed, rather than the statement.
    (An InterfaceError may say so too, or a misuse: the caller asks the connection.)"""
    return isinstance(exc, LOST) or (isinstance(exc, OSError) and not isinstance(exc, TimeoutError))


def verdict(exc: BaseException, *, lost: bool, committing: bool) -> Verdict:
    """The rule: a conflict is an answer from the server, COMMIT's included, so the transaction
    was rolled back and can run again. A lost connection (`lost`) is as safe before COMMIT was
    sent; once it was (`committing`), the transaction may have been applied."""
    if isinstance(exc, CONFLICTS) or (lost and not committing):
        return Verdict.AGAIN
    return Verdict.LOOK_UP if lost else Verdict.ERROR


def pause(tries: int) -> float:
    """Seconds to wait after `tries` failed tries: full jitter over a doubling ceiling."""
    return random.uniform(0, FIRST_PAUSE * 2 ** (tries - 1))


class _Try:
    """What one try of a transaction got to: its id, whether COMMIT was sent, and the result
    `work` returned (which stands if the transaction turns out committed)."""

    def __init__(self) -> None:
        self.xact: int | None = None
        self.committing = False
        self.done: Any = None


class _RunAgain(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _CommitUnanswered(Exception):
    def __init__(self, cause: BaseException, state: _Try) -> None:
        super().__init__(str(cause))
        self.cause, self.state = cause, state


async def atomically(pool: asyncpg.Pool, work: Work[T]) -> T:
    """`work(connection)` in one transaction, run again whole after a conflict or a connection
    lost before COMMIT, up to TRIES times; driver errors become StoreError."""
    return await _with_tries(pool, work, transaction=True)


async def reading(pool: asyncpg.Pool, work: Work[T]) -> T:
    """`work(connection)` outside a transaction (reads only), run again after a lost
    connection, up to TRIES times; driver errors become StoreError."""
    return await _with_tries(pool, work, transaction=False)


async def _with_tries(pool: asyncpg.Pool, work: Work[T], *, transaction: bool) -> T:
    tries = 0
    while True:
        tries += 1
        try:
            return await _once(pool, work, transaction)
        except _RunAgain as again:
            cause = again.cause
        except _CommitUnanswered as unanswered:
            if await _committed(pool, unanswered):
                done: T = unanswered.state.done
                return done
            cause = unanswered.cause
        if tries >= TRIES:
            raise StoreError(f"PostgreSQL error: {cause} ({tries} tries)") from cause
        log.info("PostgreSQL %s; trying again", type(cause).__name__, extra={"tries": tries})
        await asyncio.sleep(pause(tries))


async def _once(pool: asyncpg.Pool, work: Work[T], transaction: bool) -> T:
    state = _Try()
    try:
        conn = await pool.acquire()
    except DRIVER_ERRORS as exc:
        raise _failed(exc, connection_lost(exc), state) from exc
    try:
        if not transaction:
            return await work(conn)
        return await _transaction(conn, work, state)
    except BROKEN as exc:
        # InternalClientError: asyncpg lost track of the protocol, the connection is as good as
        # lost (seen when a connection was terminated mid-query).
        lost = _closed(conn) or connection_lost(exc) or isinstance(exc, asyncpg.InternalClientError)
        if lost:
            # It must not go back to the pool as it is; the server rolls back what it held open.
            _terminate(conn)
        raise _failed(exc, lost, state) from exc
    finally:
        await _release(pool, conn)


async def _transaction(conn: asyncpg.Connection, work: Work[T], state: _Try) -> T:
    tx = conn.transaction()
    await tx.start()
    try:
        state.done = await work(conn)
        state.xact = await conn.fetchval(XACT_ID)
    except BaseException:
        await _roll_back(conn, tx)
        raise
    if _closed(conn):  # lost after the last statement: COMMIT was never sent
        raise _RunAgain(ConnectionError("connection lost before COMMIT"))
    state.committing = True
    await tx.commit()
    done: T = state.done
    return done


def _failed(exc: BaseException, lost: bool, state: _Try) -> Exception:
    """What a failed try raises: another try, a look-up, or the StoreError the caller sees."""
    found = verdict(exc, lost=lost, committing=state.committing)
    if found is Verdict.AGAIN:
        return _RunAgain(exc)
    if found is Verdict.LOOK_UP:
        return _CommitUnanswered(exc, state)
    return StoreError(f"PostgreSQL error: {exc}")


async def _committed(pool: asyncpg.Pool, unanswered: _CommitUnanswered) -> bool:
    """Whether the transaction whose COMMIT went unanswered was committed (else it was rolled
    back); a StoreError when the server cannot say."""
    xact, cause = unanswered.state.xact, unanswered.cause
    if xact is None:
        return True  # it wrote nothing, so there was nothing to commit: its reads stand
    unknown = f"PostgreSQL connection lost during COMMIT ({cause}); the transaction may or " \
              "may not have been applied"  # fmt: skip
    deadline = asyncio.get_running_loop().time() + STATUS_WAIT
    while True:
        try:
            status: str | None = await reading(pool, lambda c: c.fetchval(XACT_STATUS, xact))
        except StoreError as exc:
            raise StoreError(unknown) from exc
        if status in ("committed", "aborted"):
            log.warning("the answer to a COMMIT was lost; the transaction was %s", status)
            return status == "committed"
        # "in progress": the server process that held it has not finished ending.
        if status != "in progress" or asyncio.get_running_loop().time() > deadline:
            raise StoreError(unknown) from cause
        await asyncio.sleep(0.02)


async def _roll_back(conn: asyncpg.Connection, tx: Any) -> None:
    """Roll back after `work` failed; a connection that cannot is terminated instead."""
    if _closed(conn):
        return
    try:
        await tx.rollback()
    except BROKEN:
        _terminate(conn)
    except BaseException:  # cancelled mid-rollback
        _terminate(conn)
        raise


async def _release(pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
    """Give the connection back. Resetting it may fail (a connection lost, its state unknown);
    the pool then closes it, and the outcome of the try stands: after a COMMIT that succeeded,
    a failed reset must not become an error, let alone another try."""
    try:
        await pool.release(conn)
    except BROKEN as exc:
        log.info("PostgreSQL connection dropped on release (%s)", exc)


def _terminate(conn: asyncpg.Connection) -> None:
    with contextlib.suppress(asyncpg.InterfaceError):  # detached: closed already
        conn.terminate()


def _closed(conn: asyncpg.Connection) -> bool:
    """Whether the connection the pool lent us is closed. A pooled connection that closes is
    detached from its proxy at once, and the proxy then answers only InterfaceError."""
    try:
        closed: bool = conn.is_closed()
        return closed
    except asyncpg.InterfaceError:
        return True
