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
OVERDUE = Gauge(
    "gateway_pending_overdue_seconds",
    "How long the longest-waiting due notification has been due (0 when none is due)",
)


def observe_queue(stats: dict[str, float]) -> None:
    """Copy the store's queue figures into the gauges."""
    for state in ("pending", "parked", "failed", "succeeded"):
        NOTIFICATIONS.labels(state=state).set(stats.get(state, 0))
    OVERDUE.set(stats.get("overdue_seconds", 0))


def exposition() -> tuple[bytes, str]:
    """The text exposition format and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
