"""The retry policy (contract §6): how an attempt's result is classified, and how long to wait.

A webhook's successPolicy says which answers are a delivery, its retryPolicy which failures
are retried; 410 Gone is the partner unsubscribing under both, which the lifecycle handles:

    answer                      successPolicy        a failure, by retryPolicy
                                Any2xx    Only200    AllFailures  ServerErrorsOnly
    200                         success   success
    201-299                     success   failure    retried      failed for good
    410                         gone      gone
    429, 5xx, no answer         failure   failure    retried      retried
    any other (1xx, 3xx, 4xx)   failure   failure    retried      failed for good

"No answer" is any OutboundError: a timeout, a connection error, a refused address.

Errors are classified by type (the OutboundError family), never by their text. The
classification is an outcomes.Effect, the one enum for what an attempt came to.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from gateway.errors import OutboundError
from gateway.models import RetryScope, SuccessPolicy
from gateway.outcomes import Effect

_ANY_2XX = SuccessPolicy.ANY_2XX
_DELTA_SECONDS = re.compile(r"[0-9]+")  # RFC 9110 delay-seconds: ASCII digits only


def classify(
    status: int | None,
    error: BaseException | None,
    success: SuccessPolicy = SuccessPolicy.ANY_2XX,
    retry: RetryScope = RetryScope.ALL_FAILURES,
) -> Effect:
    """What a request that went out came to, under a webhook's success and retry policies
    (the table above): a success, a failure that is retried, one that is not, or gone."""
    ok = status is not None and 200 <= status < 300 and (status == 200 or success is _ANY_2XX)
    if ok and error is None:
        return Effect.SUCCESS  # the common case first: classify runs once per attempt
    if error is not None:
        if not isinstance(error, OutboundError):
            # Anything else is a bug on our side, not the partner's failure: don't count it.
            raise TypeError(f"not an outbound failure: {type(error).__name__}") from error
        return Effect.FAILURE  # timeouts, connection errors, refused addresses: transient
    if status is None:
        raise ValueError("classify needs a status or an error")
    if status == 410:
        return Effect.GONE
    if retry is RetryScope.SERVER_ERRORS_ONLY and not _transient(status):
        return Effect.PERMANENT_FAILURE
    return Effect.FAILURE


def succeeded(status: int, policy: SuccessPolicy) -> bool:
    """Whether an answer with this status is a delivery under this success policy."""
    return classify(status, None, policy) is Effect.SUCCESS


def _transient(status: int) -> bool:
    """An answer worth trying again later: too many requests, or a server error."""
    return status == 429 or 500 <= status < 600


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A backoff schedule with jitter; Retry-After is honoured up to a cap."""

    schedule: tuple[float, ...] = (5, 30, 120, 600, 1800, 3600)  # seconds before attempt n+1
    jitter: float = 0.2  # ± this fraction of the scheduled delay
    retry_after_cap: float = 3600

    def __post_init__(self) -> None:
        if not self.schedule or min(self.schedule) < 0:
            raise ValueError("schedule needs at least one delay, none negative")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter is a fraction in [0, 1)")

    def delay(
        self, attempt: int, *, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if attempt < 1:
            raise ValueError("attempt numbers start at 1")
        base = self.schedule[min(attempt - 1, len(self.schedule) - 1)]
        # Jitter spreads retries of many notifications that failed together (an outage).
        jittered = (rng or random).uniform(base * (1 - self.jitter), base * (1 + self.jitter))
        if retry_after is None:
            return jittered
        # The partner may ask for more time, never less than our own backoff; capped so a
        # huge Retry-After cannot stall a notification indefinitely.
        return max(jittered, min(retry_after, self.retry_after_cap))

    @staticmethod
    def parse_retry_after(value: str | None, now: datetime) -> float | None:
        """Seconds from a Retry-After value (delta-seconds or HTTP-date); None if unusable."""
        text = (value or "").strip()
        if not text:
            return None
        if _DELTA_SECONDS.fullmatch(text):
            return float(text)
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # "-0000" dates parse naive; HTTP-dates are always UTC
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
        return seconds if seconds >= 0 else None
