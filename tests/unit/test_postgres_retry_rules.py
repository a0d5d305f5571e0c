"""The rule that decides what becomes of a failed PostgreSQL transaction (gateway.store.
postgres_retry.verdict), case by case; the integration tests provoke each case for real."""

from __future__ import annotations

import asyncpg
import pytest

from gateway.store.postgres_retry import FIRST_PAUSE, Verdict, connection_lost, pause, verdict

exc = asyncpg.exceptions
CONFLICTS = [exc.DeadlockDetectedError("deadlock"), exc.SerializationError("conflict")]
LOST = [
    exc.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    exc.AdminShutdownError("terminating connection due to administrator command"),
    exc.CrashShutdownError("crash"),
    exc.CannotConnectNowError("the database system is starting up"),
    ConnectionRefusedError(111, "refused"),
    ConnectionResetError(104, "reset"),
    OSError(113, "no route to host"),
]
NOT_LOST = [
    TimeoutError(),  # a server that does not answer is not helped by asking again
    exc.UniqueViolationError("duplicate key"),
    exc.InterfaceError("cannot perform operation: another operation is in progress"),
    exc.TransactionRollbackError("40000 in general"),
]


@pytest.mark.parametrize("error", LOST, ids=lambda e: type(e).__name__)
def test_lost_connections(error: BaseException) -> None:
    assert connection_lost(error)


@pytest.mark.parametrize("error", NOT_LOST, ids=lambda e: type(e).__name__)
def test_errors_that_are_not_a_lost_connection(error: BaseException) -> None:
    assert not connection_lost(error)


@pytest.mark.parametrize("error", CONFLICTS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("committing", [False, True])
def test_a_conflict_runs_again_even_at_commit(error: BaseException, committing: bool) -> None:
    assert verdict(error, lost=False, committing=committing) is Verdict.AGAIN


@pytest.mark.parametrize("error", LOST, ids=lambda e: type(e).__name__)
def test_a_connection_lost_before_commit_runs_again(error: BaseException) -> None:
    assert verdict(error, lost=True, committing=False) is Verdict.AGAIN


@pytest.mark.parametrize("error", LOST, ids=lambda e: type(e).__name__)
def test_a_connection_lost_during_commit_is_looked_up(error: BaseException) -> None:
    assert verdict(error, lost=True, committing=True) is Verdict.LOOK_UP


@pytest.mark.parametrize("error", NOT_LOST, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("committing", [False, True])
def test_anything_else_is_an_error(error: BaseException, committing: bool) -> None:
    assert verdict(error, lost=False, committing=committing) is Verdict.ERROR


@pytest.mark.parametrize("tries", [1, 2, 3, 4])
def test_pauses_are_jittered_under_a_doubling_ceiling(tries: int) -> None:
    ceiling = FIRST_PAUSE * 2 ** (tries - 1)
    pauses = [pause(tries) for _ in range(200)]
    assert all(0 <= p <= ceiling for p in pauses)
    assert max(pauses) > ceiling / 2 and len(set(pauses)) > 100  # spread, not one fixed value
