"""The portal's picture, rules and event types in Chromium: the SVG image of a webhook's last
day loads under the portal's Content-Security-Policy (no violation reported), a rule is made
from the rules page, and the catalogue shows; nothing is loaded from another host."""

from __future__ import annotations

import httpx

from tests.browser.conftest import BrowserPage
from tests.factories import make_event_type, make_rule, make_webhook
from tests.gateway_server import ThreadedGateway
from tests.partner import drain_until
from tests.receiver import Answer, Receiver

LOADED = """() => { const i = document.getElementById("activity-picture");
                    return i !== null && i.complete && i.naturalWidth > 0; }"""


def test_the_picture_loads_and_a_rule_is_made_under_the_csp(
    browser_page: BrowserPage, live_gateway: ThreadedGateway, live_receiver: Receiver
) -> None:
    gateway = live_gateway.gateway
    key, record = live_gateway.call(gateway.add_key("acme"))
    url = live_receiver.plan("/hook", Answer(status=500), Answer(status=200))
    hook = make_webhook(record.group_key, name="invoices", callback_url=url, retry_count=3)
    live_gateway.call(gateway.ctx.store.add_webhooks([hook]))
    live_gateway.call(gateway.ctx.store.add_rules([make_rule(hook)]))
    declared = make_event_type(record.group_key, table_key="Order", name="Order updated")
    live_gateway.call(gateway.ctx.store.add_event_types([declared]))
    headers = {"Api-Key": key}
    event = {"tableKey": "Invoice", "eventType": "U", "records": [{"id": "42"}]}
    assert httpx.post(f"{live_gateway.url}/api/v1/Events", json=event, headers=headers).is_success
    delivered = drain_until(gateway.worker(), lambda: len(live_receiver.notifications()) >= 2)
    live_gateway.call(delivered)
    link = httpx.post(f"{live_gateway.url}/api/v1/PortalSessions", headers=headers).json()["url"]

    page = browser_page.page
    page.goto(link)
    page.wait_for_url("**/portal/webhooks")
    page.goto(f"{live_gateway.url}/portal/webhooks/{hook.webhook_id}")
    page.wait_for_function(LOADED)
    page.locator("#webhook-history-link").click()
    page.wait_for_function(LOADED)
    page.locator("#nav-rules").click()
    page.locator("#rule-field-tableKey").fill("Order")
    page.locator("#rule-field-eventType").select_option("U")
    page.locator("#rule-create").click()
    assert "created" in page.locator("#notice").inner_text()
    assert page.locator(".rule-row").count() == 2
    page.locator("#nav-event-types").click()
    assert "Order updated" in page.locator("#event-types-table").inner_text()

    assert browser_page.off_origin(live_gateway.url) == []
    assert browser_page.errors == []  # a CSP violation is reported as a console error
