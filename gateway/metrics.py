"""Prometheus metrics: handshakes, delivery attempts, and queue figures read at scrape time.

`gateway serve` exposes them for itself and for the worker processes it starts. Those run
prometheus_client's multiprocess mode (serve sets PROMETHEUS_MULTIPROC_DIR in their
environment, which the library reads when it is imported): each writes its counters to files
in that directory, and serve adds them to its own at every scrape (`exposition`).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

HANDSHAKES = Counter("gateway_handshakes_total", "Verification handshakes", ["outcome"])
ATTEMPTS = Counter("gateway_delivery_attempts_total", "Delivery attempts", ["outcome"])
LEFT_UNSENT = Counter(
    "gateway_claims_left_unsent_total",
    "Claimed notifications left for a later claim because too little of their lease was left",
)
INVARIANT_REPAIRS = Counter(
    "gateway_invariant_repairs_total",
    "Notifications found breaking a lifecycle invariant by the periodic check, and repaired",
    ["invariant"],
)
LIFECYCLE_NOTICES = Counter(
    "gateway_lifecycle_notices_total",
    "Lifecycle notices issued (gateway.notices), one per change, whether or not a webhook "
    "subscribes to them",
    ["event"],
)
NOTIFICATIONS = Gauge("gateway_notifications", "Notifications by state", ["state"])
OVERDUE = Gauge(
    "gateway_pending_overdue_seconds",
    "How long the longest-waiting due notification has been due (0 when none is due)",
)


def observe_queue(stats: dict[str, float]) -> None:
    """Copy the store's queue figures into the gauges."""
    for state in ("pending", "parked", "waiting", "failed", "succeeded"):
        NOTIFICATIONS.labels(state=state).set(stats.get(state, 0))
    OVERDUE.set(stats.get("overdue_seconds", 0))


def exposition(worker_files: str | None = None) -> tuple[bytes, str]:
    """The text exposition format and its content type: this process's metrics, plus the
    counters that worker processes wrote to the directory `worker_files`, if given."""
    if worker_files is None:
        return generate_latest(), CONTENT_TYPE_LATEST
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_WithWorkers(worker_files))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _WithWorkers(Collector):
    """This process's metrics with the worker processes' counters added in. Only counters:
    the gauges are figures of the store that serve reads itself at scrape time."""

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Iterable[Metric]:
        families = {family.name: family for family in REGISTRY.collect()}
        workers = MultiProcessCollector(None, self.path)  # type: ignore[no-untyped-call]
        for theirs in workers.collect():  # type: ignore[no-untyped-call]
            if theirs.type != "counter":
                continue
            ours = families.setdefault(theirs.name, theirs)
            if ours is not theirs:
                ours.samples = _summed(ours, theirs)
        return families.values()


def _summed(ours: Metric, theirs: Metric) -> list[Sample]:
    """Our samples with theirs added to the same series (`_total`); a series only they have is
    taken as it is, and ours that are not totals (`_created`) are kept."""
    samples = {(s.name, tuple(sorted(s.labels.items()))): s for s in ours.samples}
    for sample in theirs.samples:
        key = (sample.name, tuple(sorted(sample.labels.items())))
        mine = samples.get(key)
        if mine is None:
            samples[key] = sample
        elif sample.name.endswith("_total"):
            samples[key] = mine._replace(value=mine.value + sample.value)
    return list(samples.values())
