"""The picture of a webhook's last 24 hours over real HTTP, on both stores, against a real
loopback receiver: an SVG image of ours with its attempts by hour (delivered and failed) and
the receiver's answer times, no inline style or script, shown on the webhook's page and its
history's, to read-only sessions too."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from gateway.models import Webhook
from gateway.portal.web import CONTENT_SECURITY_POLICY
from tests.factories import make_rule, make_webhook
from tests.gateway_server import RunningGateway
from tests.partner import drain_until
from tests.portal import Partner
from tests.receiver import Answer, Receiver


@pytest.fixture
async def gateway(gateway_on_each_store: RunningGateway) -> RunningGateway:
    return gateway_on_each_store


def text_of(page: str, element_id: str) -> str:
    """The text inside the element with this id (tags removed, whitespace squeezed)."""
    found = re.search(
        rf'id="{element_id}"[^>]*>(.*?)</(?:p|dd|div|span|section|h1|pre|td)>', page, re.S
    )
    assert found, f"no #{element_id}"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split())


def row_ids(page: str) -> list[str]:
    """The history entries' ids, in the page's order."""
    return re.findall(r'<tr id="history-([0-9a-f-]{36})" class="history-row', page)


async def hook_for(
    gateway: RunningGateway, group_key: Any, receiver: Receiver, path: str, *answers: Answer,
    **overrides: Any,
) -> Webhook:  # fmt: skip
    """A webhook of this group to the receiver (Active unless told), with an Invoice rule."""
    hook = make_webhook(group_key, callback_url=receiver.plan(path, *answers), **overrides)
    await gateway.ctx.store.add_webhooks([hook])
    await gateway.ctx.store.add_rules([make_rule(hook)])
    return hook


async def publish(gateway: RunningGateway, key: str, *ids: str) -> None:
    """Invoice updates, one event per id, as the platform publishes them; then delivered."""
    async with gateway.client(key) as api:
        for record_id in ids:
            body = {"tableKey": "Invoice", "eventType": "U", "records": [{"id": record_id}]}
            answer = await api.post("/api/v1/Events", json=body)
            assert answer.status_code == 202, answer.text
    await gateway.worker().drain()


async def test_the_picture_counts_the_last_day_by_hour_with_answer_times(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key, record = await gateway.add_key("acme")
    answers = [Answer(status=500), Answer(status=200, delay=0.05), Answer(status=200)]
    hook = await hook_for(gateway, record.group_key, receiver, "/hook", *answers, retry_count=3)
    await publish(gateway, key, "1", "2", "3")  # one attempt fails, and is retried
    await drain_until(gateway.worker(), lambda: len(receiver.notifications("/hook")) >= 4)
    async with Partner(gateway) as partner:
        await partner.enter(key)
        svg = await partner.page(f"/portal/webhooks/{hook.webhook_id}/activity.svg")
    assert svg.status_code == 200
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "style=" not in svg.text and "<script" not in svg.text and "<style" not in svg.text
    hours = re.findall(
        r'<g class="hour" data-hour="([^"]+)" data-delivered="(\d+)" data-failed="(\d+)" '
        r'data-mean-ms="([^"]*)"',
        svg.text,
    )
    assert len(hours) == 24
    assert [(d, f) for _, d, f, _ in hours[:-1]] == [("0", "0")] * 23
    _, delivered, failed, mean = hours[-1]  # this hour
    assert (delivered, failed) == ("3", "1")
    assert float(mean) > 0  # the receiver's answer times were recorded
    assert 'id="activity-latency"' in svg.text and "<polyline" in svg.text
    assert 'data-delivered="3" data-failed="1"' in svg.text  # the day's totals


async def test_a_quiet_day_is_drawn_empty_and_says_so(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key, record = await gateway.add_key("acme")
    hook = await hook_for(gateway, record.group_key, receiver, "/hook")
    async with Partner(gateway) as partner:
        await partner.enter(key, readOnly=True)
        svg = await partner.page(f"/portal/webhooks/{hook.webhook_id}/activity.svg")
        detail = await partner.page(f"/portal/webhooks/{hook.webhook_id}")
        history = await partner.page(f"/portal/webhooks/{hook.webhook_id}/history")
    assert svg.status_code == 200 and 'data-delivered="0" data-failed="0"' in svg.text
    assert "No answer times recorded" in svg.text and 'id="activity-latency"' not in svg.text
    picture = f'<img id="activity-picture" src="/portal/webhooks/{hook.webhook_id}/activity.svg"'
    assert picture in detail.text and picture in history.text
