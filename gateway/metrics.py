"""Prometheus metrics: handshakes, delivery attempts, and queue figures read at scrape time."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

HANDSHAKES = Counter("gateway_handshakes_total", "Verification handshakes", ["outcome"])
ATTEMPTS = Counter("gateway_delivery_attempts_total", "Delivery attempts", ["outcome"])
LEFT_UNSENT = Counter(
    "gateway_claims_left_unsent_total",
    "Claimed notifications left for a later claim because too little of their lease was left",
)
NOTIFICATIONS = Gauge("gateway_notifications", "Notifications by state", ["state"])
OLDEST_PENDING = Gauge(
    "gateway_oldest_pending_age_seconds", "Age of the oldest pending notification"
)


def observe_queue(stats: dict[str, float]) -> None:
    """Copy the store's queue figures into the gauges."""
    for state in ("pending", "parked", "failed", "succeeded"):
        NOTIFICATIONS.labels(state=state).set(stats.get(state, 0))
    OLDEST_PENDING.set(stats.get("oldest_pending_age_seconds", 0))


def exposition() -> tuple[bytes, str]:
    """The text exposition format and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
