"""The retry policy: backoff with jitter, Retry-After, and what counts as a failed attempt."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from gateway.errors import (
    AddressNotAllowed,
    OutboundConnectionError,
    OutboundTimeout,
    ValidationError,
)
from gateway.outcomes import Effect
from gateway.retry import RetryPolicy, classify

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy()


@pytest.mark.parametrize(
    ("attempt", "base"), [(1, 5), (2, 30), (3, 120), (4, 600), (5, 1800), (6, 3600), (40, 3600)]
)
def test_delay_follows_the_schedule_within_jitter(attempt: int, base: float) -> None:
    rng = random.Random(7)
    delays = [POLICY.delay(attempt, rng=rng) for _ in range(200)]
    assert all(base * 0.8 <= d <= base * 1.2 for d in delays)
    # Really jittered, and across most of the band, not a constant.
    assert max(delays) - min(delays) > base * 0.3


def test_delay_is_reproducible_with_a_seeded_rng() -> None:
    first = [POLICY.delay(n, rng=random.Random(42)) for n in range(1, 7)]
    assert first == [POLICY.delay(n, rng=random.Random(42)) for n in range(1, 7)]


def test_without_jitter_the_delay_is_the_schedule() -> None:
    policy = RetryPolicy(schedule=(1, 2), jitter=0)
    assert [policy.delay(n) for n in (1, 2, 3)] == [1, 2, 2]


def test_retry_after_longer_than_backoff_wins() -> None:
    assert POLICY.delay(1, retry_after=90, rng=random.Random(1)) == 90


def test_retry_after_shorter_than_backoff_does_not_shorten_it() -> None:
    delay = POLICY.delay(3, retry_after=1, rng=random.Random(1))
    assert 96 <= delay <= 144


def test_retry_after_is_capped() -> None:
    policy = RetryPolicy(schedule=(5,), retry_after_cap=600)
    assert policy.delay(1, retry_after=86_400, rng=random.Random(1)) == 600


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempt_numbers_start_at_one(attempt: int) -> None:
    with pytest.raises(ValueError, match=r"^attempt numbers start at 1$"):
        POLICY.delay(attempt)


SCHEDULE_REFUSED = r"^schedule needs at least one delay, none negative$"
JITTER_REFUSED = r"^jitter is a fraction in \[0, 1\)$"


@pytest.mark.parametrize(
    ("schedule", "jitter", "message"),
    [
        ((), 0.2, SCHEDULE_REFUSED),
        ((5, -1), 0.2, SCHEDULE_REFUSED),
        ((-0.5,), 0.2, SCHEDULE_REFUSED),
        ((5,), 1.0, JITTER_REFUSED),
        ((5,), -0.1, JITTER_REFUSED),
    ],
)
def test_nonsense_policies_are_refused(
    schedule: tuple[float, ...], jitter: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(schedule=schedule, jitter=jitter)


@pytest.mark.parametrize(("schedule", "jitter"), [((0,), 0.2), ((5, 0), 0.0), ((5,), 0.99)])
def test_policies_at_the_edges_are_accepted(schedule: tuple[float, ...], jitter: float) -> None:
    policy = RetryPolicy(schedule=schedule, jitter=jitter)
    assert (policy.schedule, policy.jitter) == (schedule, jitter)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Tue, 01 Jan 2030 12:02:00 GMT", 120.0),
        ("Tue, 01 Jan 2030 12:00:30 -0000", 30.0),
        ("Tuesday, 01-Jan-30 12:01:00 GMT", 60.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("²", None),
        ("Tue, 01 Jan 2030 12:00:00 GMT", 0.0),  # now: no wait asked, but a usable answer
        ("Tue, 01 Jan 2030 11:59:59 GMT", None),  # already past
        ("Tue, 01 Jan 2030 99:00:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert RetryPolicy.parse_retry_after(value, NOW) == expected


def test_parse_retry_after_date_is_relative_to_now() -> None:
    later = NOW + timedelta(seconds=20)
    assert RetryPolicy.parse_retry_after("Tue, 01 Jan 2030 12:02:00 GMT", later) == 100.0
    # Less than a second ahead still counts: HTTP-dates are whole seconds, clocks are not.
    just_before = NOW - timedelta(seconds=0.5)
    assert RetryPolicy.parse_retry_after("Tue, 01 Jan 2030 12:00:00 GMT", just_before) == 0.5


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Effect.SUCCESS),
        (204, Effect.SUCCESS),
        (299, Effect.SUCCESS),
        (410, Effect.GONE),
        (100, Effect.FAILURE),
        (199, Effect.FAILURE),
        (300, Effect.FAILURE),
        (301, Effect.FAILURE),
        (304, Effect.FAILURE),
        (400, Effect.FAILURE),
        (404, Effect.FAILURE),
        (409, Effect.FAILURE),
        (411, Effect.FAILURE),
        (429, Effect.FAILURE),
        (500, Effect.FAILURE),
        (503, Effect.FAILURE),
    ],
)
def test_classify_status(status: int, outcome: Effect) -> None:
    assert classify(status, None) is outcome


@pytest.mark.parametrize(
    "error",
    [
        OutboundTimeout("timed out after 10 s"),
        OutboundConnectionError("connection refused"),
        AddressNotAllowed("callback address 10.0.0.5 is not allowed (private network)"),
    ],
)
def test_every_outbound_error_is_a_failed_attempt(error: Exception) -> None:
    assert classify(None, error) is Effect.FAILURE


def test_classification_is_by_type_not_message() -> None:
    # A message that reads like success changes nothing; a non-outbound error is our bug.
    assert classify(None, OutboundTimeout("200 OK")) is Effect.FAILURE
    with pytest.raises(TypeError, match=r"^not an outbound failure: ValidationError$") as caught:
        classify(None, ValidationError("timed out after 10 s"))
    assert isinstance(caught.value.__cause__, ValidationError)
    with pytest.raises(TypeError, match=r"^not an outbound failure: KeyError$"):
        classify(None, KeyError("x"))


def test_an_error_decides_even_with_a_status() -> None:
    assert classify(200, OutboundTimeout("timed out after 10 s")) is Effect.FAILURE


def test_classify_needs_something_to_classify() -> None:
    with pytest.raises(ValueError, match=r"^classify needs a status or an error$"):
        classify(None, None)
