"""How serve adds its worker processes' counters to its own metrics (gateway.metrics)."""

from __future__ import annotations

from prometheus_client.metrics_core import Metric

from gateway import metrics


def _family(*samples: tuple[str, dict[str, str], float]) -> Metric:
    family = Metric("gateway_delivery_attempts", "Delivery attempts", "counter")
    for name, labels, value in samples:
        family.add_sample(name, labels, value)
    return family


def test_totals_add_up_series_by_series_and_creation_times_stay_ours() -> None:
    ours = _family(
        ("gateway_delivery_attempts_total", {"outcome": "success"}, 2.0),
        ("gateway_delivery_attempts_created", {"outcome": "success"}, 1000.0),
    )
    theirs = _family(
        ("gateway_delivery_attempts_total", {"outcome": "success"}, 40.0),
        ("gateway_delivery_attempts_total", {"outcome": "failure"}, 3.0),
        ("gateway_delivery_attempts_created", {"outcome": "success"}, 5.0),
    )
    merged = {(s.name, s.labels["outcome"]): s.value for s in metrics._summed(ours, theirs)}
    assert merged == {
        ("gateway_delivery_attempts_total", "success"): 42.0,
        ("gateway_delivery_attempts_total", "failure"): 3.0,  # a series only they have
        ("gateway_delivery_attempts_created", "success"): 1000.0,  # not a total: ours
    }
