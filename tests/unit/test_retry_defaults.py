"""The retry defaults, case by case: the tables a mutation tool never changes.

mutmut mutates code inside functions, not a class's default values or module-level settings,
so a default that drifts would survive every mutation run. Each documented default is checked
here at its exact value and at the edges of its band.
"""

from __future__ import annotations

import random

import pytest

from gateway import config
from gateway.retry import RetryPolicy

DOCUMENTED_SCHEDULE = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)  # config/gateway.toml


class _Edge(random.Random):
    """An rng whose uniform(a, b) is always one end of the band."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


@pytest.mark.parametrize(
    ("attempt", "seconds"),
    [(1, 5), (2, 30), (3, 120), (4, 600), (5, 1800), (6, 3600), (7, 3600), (100, 3600)],
)
def test_default_schedule_step_by_step(attempt: int, seconds: float) -> None:
    assert RetryPolicy(jitter=0).delay(attempt) == seconds


@pytest.mark.parametrize(("high", "factor"), [(False, 0.8), (True, 1.2)])
@pytest.mark.parametrize("attempt", [1, 3, 6])
def test_default_jitter_spreads_twenty_percent_each_way(
    attempt: int, high: bool, factor: float
) -> None:
    base = DOCUMENTED_SCHEDULE[attempt - 1]
    assert RetryPolicy().delay(attempt, rng=_Edge(high)) == pytest.approx(base * factor)


@pytest.mark.parametrize(
    ("retry_after", "expected"), [(3599.0, 3599.0), (3600.0, 3600.0), (3601.0, 3600.0)]
)
def test_default_retry_after_cap_is_an_hour(retry_after: float, expected: float) -> None:
    # Attempt 1 waits 4-6 s, so the Retry-After (capped) is what decides here.
    assert RetryPolicy().delay(1, retry_after=retry_after, rng=_Edge(True)) == expected


def test_the_policy_defaults_are_the_documented_settings() -> None:
    settings = config.Settings()
    policy = RetryPolicy()
    assert policy.schedule == settings.retry_schedule == DOCUMENTED_SCHEDULE
    assert policy.jitter == settings.retry_jitter == 0.2
    assert policy.retry_after_cap == settings.retry_after_cap == 3600.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("delivery_timeout", 10.0),
        ("handshake_timeout", 10.0),  # contract §4: "default 10 s"
        ("lease_seconds", 60.0),
        ("secret_grace_period", 86_400.0),
        ("history_message_limit", 4096),
        ("max_response_bytes", 65_536),
        ("per_webhook_concurrency", 8),
    ],
)
def test_delivery_defaults(name: str, value: float) -> None:
    assert getattr(config.Settings(), name) == value
    assert getattr(config.load(env={}), name) == value
