"""Which change of status gives which lifecycle notice (gateway.notices), who receives it, and
when each webhook's re-verification falls (gateway.lifecycle.next_reverification)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from uuid import uuid4

import pytest

from gateway import lifecycle, matching, notices
from gateway.models import StatusReason, Webhook, WebhookStatus, utcnow
from tests.factories import make_webhook, recipient

NOW = utcnow()
ACTIVE = (WebhookStatus.ACTIVE, None)
ERRORED = (WebhookStatus.ERRORED, StatusReason.FAILING)
UNVERIFIED = (WebhookStatus.ERRORED, StatusReason.UNVERIFIED)
PAUSED = (WebhookStatus.INACTIVE, StatusReason.PAUSED)
GONE = (WebhookStatus.INACTIVE, StatusReason.UNSUBSCRIBED)
EXPIRED = (WebhookStatus.INACTIVE, StatusReason.EXPIRED)


def hook(state: tuple[WebhookStatus, StatusReason | None], **more: object) -> Webhook:
    status, reason = state
    return make_webhook(status_code=status, status_reason=reason, **more)


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [
        (ACTIVE, ERRORED, "errored"),
        (ACTIVE, UNVERIFIED, "verificationFailed"),
        (ACTIVE, PAUSED, "disabled"),
        (ACTIVE, GONE, "disabled"),
        (ERRORED, PAUSED, "disabled"),  # stopped otherwise now: its owner's pause
        (EXPIRED, PAUSED, "disabled"),
        (ACTIVE, EXPIRED, "expired"),
        (ERRORED, ACTIVE, "reactivated"),
        (PAUSED, ACTIVE, "reactivated"),
        (PAUSED, PAUSED, None),  # paused again: no change
        (ACTIVE, ACTIVE, None),
    ],
)
def test_each_change_of_status_gives_its_notice(
    before: tuple[WebhookStatus, StatusReason | None],
    after: tuple[WebhookStatus, StatusReason | None],
    kind: str | None,
) -> None:
    assert notices.kind_of(hook(before), hook(after), NOW) == kind


def test_renewing_an_expired_webhook_before_the_sweep_is_a_reactivation() -> None:
    expired = hook(ACTIVE, expiration_date=NOW - timedelta(seconds=1))
    renewed = dataclasses.replace(expired, expiration_date=None)
    assert notices.kind_of(expired, renewed, NOW) is notices.Kind.REACTIVATED


def test_a_notice_reaches_every_subscriber_but_the_webhook_it_is_about() -> None:
    subject = hook(ERRORED)
    other = make_webhook(subject.group_key)
    notice = notices.Notice(notices.Kind.ERRORED, subject, NOW)
    subscribers: list[matching.Subscriber] = [(recipient(subject), None), (recipient(other), None)]
    event, notes = notices.publication(notice, subscribers)
    assert [n.webhook_id for n in notes] == [other.webhook_id]
    assert event.records == (notice.record(),) == notes[0].records
    assert (event.table_key, event.event_type.value) == ("WebhookLifecycle", "U")


def test_each_webhook_has_its_own_moment_in_every_interval() -> None:
    interval = 3600.0
    ids = [uuid4() for _ in range(50)]
    first = [lifecycle.next_reverification(i, NOW, interval) for i in ids]
    offsets = sorted((moment - NOW).total_seconds() for moment in first)
    assert 0 < offsets[0] and offsets[-1] <= interval
    assert offsets[-1] - offsets[0] > interval / 2  # spread, not one burst
    for webhook_id, moment in zip(ids, first, strict=True):
        following = lifecycle.next_reverification(webhook_id, moment, interval)
        assert following - moment == timedelta(seconds=interval)  # once per interval
