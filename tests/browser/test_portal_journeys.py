"""The partner portal's journeys in Chromium: open a link, create a webhook against a loopback
receiver, send it a test event, see a published event's delivery in its history, rotate its
secret, pause and resume it, make its delivery order Strict and see what waits behind a failed
notification; a read-only session, and links the portal refuses.

Every journey ends with no console error (a Content-Security-Policy violation is one) and no
request to any host but the gateway; its last page is kept as a screenshot (conftest.py).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from playwright.sync_api import Dialog, Page, expect

from gateway.delivery import Worker
from gateway.models import DeliveryOrder, Scope, utcnow
from gateway.portal.tokens import portal_link
from tests.browser.conftest import BrowserPage
from tests.gateway_server import ThreadedGateway
from tests.receiver import Answer, Receiver

HOME = "**/portal/webhooks"
# What Chromium logs to the console for a page that came with a 4xx status (a form sent back
# with what to fix, a refusal page), by status.
STATUS_LOG = "Failed to load resource: the server responded with a status of {}"
UNAUTHORIZED = STATUS_LOG.format("401 (Unauthorized)")
BAD_REQUEST = STATUS_LOG.format("400 (Bad Request)")


def _api(gateway: ThreadedGateway, key: str, path: str, body: Any = None) -> Any:
    """POST to the gateway's API as the platform or a partner's script would; the JSON answer."""
    answer = httpx.post(gateway.url + path, json=body, headers={"Api-Key": key}, timeout=10.0)
    assert answer.status_code in (200, 201, 202), answer.text
    return answer.json()


def _link(gateway: ThreadedGateway, key: str, **body: Any) -> str:
    """A portal link from POST /api/v1/PortalSessions."""
    url: str = _api(gateway, key, "/api/v1/PortalSessions", body or None)["url"]
    assert url.startswith(gateway.url + "/portal/#token="), url
    return url


def _enter(page: Page, url: str) -> None:
    """Open a portal link and land on the webhooks page, the token gone from the address."""
    page.goto(url)
    page.wait_for_url(HOME)
    assert "token" not in page.url


def _webhook(
    gateway: ThreadedGateway, key: str, receiver: Receiver, retry_count: int = 3
) -> dict[str, Any]:
    """A webhook made through the API (handshake with the receiver passed); its answer."""
    body = [
        {
            "name": "invoices",
            "callbackUrl": receiver.plan("/hook"),
            "callbackHttpMethod": "POST",
            "requestContentType": "Full",
            "retryCount": retry_count,
        }
    ]
    created: dict[str, Any] = _api(gateway, key, "/api/v1/Webhooks", body)[0]
    assert created["statusCode"] == "Active", created
    return created


def _clean(opened: BrowserPage, gateway: ThreadedGateway, *statuses: str) -> None:
    """What every journey ends with: nothing left the gateway's origin, and no console error
    but Chromium's own line for each page the portal answered with a 4xx (`statuses`, in
    turn): no Content-Security-Policy violation, no script error."""
    assert opened.off_origin(gateway.url) == []
    assert opened.errors == list(statuses)


def test_partner_opens_the_link_creates_a_webhook_and_sends_a_test_event(
    browser_page: BrowserPage, live_gateway: ThreadedGateway, live_receiver: Receiver
) -> None:
    key, _ = live_gateway.call(live_gateway.gateway.add_key("acme"))
    page = browser_page.page

    # 1. The link opens the portal: the token is exchanged for a session, and the group has
    #    no webhook yet.
    _enter(page, _link(live_gateway, key))
    expect(page.locator("#no-webhooks")).to_be_visible()
    expect(page.locator("#read-only-badge")).to_have_count(0)

    # 2. Create a webhook against the loopback receiver. First with a mistake in the form:
    #    the field says what to fix, and what was typed is kept.
    page.click("#new-webhook-link")
    page.fill("#field-name", "invoices")
    page.fill("#field-callbackUrl", live_receiver.plan("/wrong", Answer(body="not the code")))
    page.select_option("#field-callbackHttpMethod", "GET")
    page.fill("#field-retryCount", "2")
    page.click("#webhook-create")
    notice = page.locator("#notice")
    expect(notice).to_have_class("notice bad")
    expect(page.locator("#error-requestContentType")).to_contain_text("must use Id")
    expect(page.locator("#field-name")).to_have_value("invoices")
    expect(page.locator("#field-retryCount")).to_have_value("2")

    #    Then a callback that answers the handshake wrongly: refused, said in words.
    page.select_option("#field-callbackHttpMethod", "PUT")
    page.click("#webhook-create")
    expect(notice).to_contain_text("did not pass the verification handshake")
    expect(notice).to_contain_text("Nothing was changed")

    #    Then the right callback, in strict order: the handshake passes, said in words, and
    #    the secret is shown once.
    page.fill("#field-callbackUrl", live_receiver.url + "/hook")
    expect(page.locator("#field-deliveryOrder")).to_have_value("Unordered")
    page.select_option("#field-deliveryOrder", "Strict")
    page.click("#webhook-create")
    expect(notice).to_have_class("notice ok")
    expect(notice).to_contain_text("passed the verification handshake")
    expect(page.locator("#webhook-status")).to_have_text("Active")
    expect(page.locator("#webhook-method")).to_have_text("PUT")
    expect(page.locator("#webhook-delivery-order")).to_contain_text("Strict: one at a time")
    expect(page.locator("#field-deliveryOrder")).to_have_value("Strict")
    expect(page.locator("#new-secret")).to_contain_text("whsec_")
    handshakes = [seen.path for seen in live_receiver.seen if seen.is_handshake]
    assert handshakes == ["/wrong", "/hook"]

    # The new webhook is in the group's list, and its row leads back to its page.
    page.click("#nav-webhooks")
    row = page.locator("#webhooks-table .webhook-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("invoices")
    expect(row).to_contain_text("Active")
    row.locator(".webhook-link").click()
    expect(page.locator("#new-secret")).to_have_count(0)  # shown once only

    # 3. A test event: the page shows what the receiver answered.
    live_receiver.plan("/hook", Answer(body="thanks from acme's receiver"))
    page.click("#webhook-test-send")
    expect(page.locator("#test-result-verdict")).to_have_text("Delivered")
    expect(page.locator("#test-result-body")).to_have_text("thanks from acme's receiver")
    expect(page.locator("#notice")).to_contain_text("answered HTTP 200")
    (sent,) = live_receiver.notifications("/hook")
    assert sent.method == "PUT" and sent.headers["webhook-signature"].startswith("v1,")

    # A receiver that refuses: the page says it was not delivered, and what it answered.
    live_receiver.plan("/hook", Answer(status=503, body="down for maintenance"))
    page.click("#webhook-test-send")
    expect(page.locator("#test-result-verdict")).to_have_text("Not delivered")
    expect(page.locator("#test-result-body")).to_have_text("down for maintenance")
    expect(page.locator("#notice")).to_have_class("notice bad")
    _clean(browser_page, live_gateway, BAD_REQUEST, BAD_REQUEST)


def test_partner_sees_a_published_event_delivered_in_history(
    browser_page: BrowserPage, live_gateway: ThreadedGateway, live_receiver: Receiver
) -> None:
    gateway = live_gateway.gateway
    key, _ = live_gateway.call(gateway.add_key("acme", frozenset({Scope.WEBHOOKS})))
    platform, _ = live_gateway.call(gateway.add_key("acme", frozenset({Scope.EVENTS})))
    hook = _webhook(live_gateway, key, live_receiver)
    rule = {"webhookId": hook["webhookId"], "tableKey": "Invoice", "eventType": "U"}
    _api(live_gateway, key, "/api/v1/WebhookRules", [rule])
    event = {"tableKey": "Invoice", "eventType": "U", "records": [{"id": "42", "total": 10}]}
    _api(live_gateway, platform, "/api/v1/Events", event)
    live_receiver.plan("/hook", Answer(body="invoice 42 received"))
    _deliver(live_gateway)
    (delivered,) = live_receiver.notifications("/hook")
    assert b'"42"' in delivered.body

    page = browser_page.page
    _enter(page, _link(live_gateway, key))
    row = page.locator(f"#webhook-{hook['webhookId']}")
    expect(row.locator(".last-delivery")).to_contain_text("delivered")
    row.locator(".webhook-link").click()
    expect(page.locator("#webhook-last-delivery")).to_contain_text("HTTP 200")

    # The history, failures only: there are none.
    page.click("#webhook-history-link")
    page.click("#history-failures")
    expect(page.locator("#no-history")).to_contain_text("Nothing failed")

    # All of it: the delivery, with what was sent and what the receiver answered.
    page.click("#history-all")
    entries = page.locator("#history-table .history-row")
    expect(entries).to_have_count(1)
    entry = entries.first
    expect(entry.locator(".history-result")).to_have_text("delivered")
    expect(entry).to_contain_text("Invoice.U")
    entry.locator("summary").click()
    expect(entry.locator(".history-request")).to_contain_text('"42"')
    expect(entry.locator(".history-response")).to_contain_text("invoice 42 received")
    expect(entry.locator("button")).to_have_count(0)  # delivered: nothing to send again
    _clean(browser_page, live_gateway)


def test_partner_brings_back_an_errored_webhook_and_sends_a_failure_again(
    browser_page: BrowserPage, live_gateway: ThreadedGateway, live_receiver: Receiver
) -> None:
    gateway = live_gateway.gateway
    key, _ = live_gateway.call(gateway.add_key("acme", frozenset({Scope.WEBHOOKS})))
    platform, _ = live_gateway.call(gateway.add_key("acme", frozenset({Scope.EVENTS})))
    hook = _webhook(live_gateway, key, live_receiver, retry_count=0)
    rule = {"webhookId": hook["webhookId"], "tableKey": "Invoice", "eventType": "U"}
    _api(live_gateway, key, "/api/v1/WebhookRules", [rule])
    live_receiver.plan("/hook", Answer(status=500, body="database down"))
    event = {"tableKey": "Invoice", "eventType": "U", "records": [{"id": "7"}]}
    _api(live_gateway, platform, "/api/v1/Events", event)
    _deliver(live_gateway)

    # 1. The failure shows: Errored, with why, on the list and the webhook's page.
    page = browser_page.page
    _enter(page, _link(live_gateway, key))
    row = page.locator(f"#webhook-{hook['webhookId']}")
    expect(row.locator(".badge")).to_have_text("Errored")
    row.locator(".webhook-link").click()
    expect(page.locator("#webhook-status")).to_have_text("Errored")
    expect(page.locator("#webhook-status-message")).not_to_be_empty()
    expect(page.locator("#webhook-last-delivery")).to_contain_text("failed")

    # 2. In the history, failures only: the entry with the receiver's answer. Sending it
    #    again is refused while the webhook is Errored, saying what to do.
    page.click("#webhook-history-link")
    page.click("#history-failures")
    failed = page.locator("#history-table .history-row")
    expect(failed).to_have_count(1)
    expect(failed.locator(".history-result")).to_have_text("failed")
    failed.locator("summary").click()
    expect(failed.locator(".history-response")).to_contain_text("database down")
    failed.locator("button").click()
    expect(page.locator("#notice")).to_contain_text("Resume or reactivate it first")
    expect(page.locator("#history-all")).to_be_visible()  # still failures only

    # 3. The receiver is fixed; reactivate: the handshake passes and it is Active again.
    live_receiver.plan("/hook")
    page.click("#back-to-webhook")
    page.click("#webhook-reactivate")
    expect(page.locator("#webhook-status")).to_have_text("Active")
    expect(page.locator("#notice")).to_contain_text("passed the verification handshake")

    # 4. Send the failure again: queued, then delivered.
    page.click("#webhook-history-link")
    page.click("#history-failures")
    page.locator("#history-table .history-row button").click()
    expect(page.locator("#notice")).to_contain_text("Queued")
    _deliver(live_gateway)
    page.click("#back-to-webhook")
    expect(page.locator("#webhook-last-delivery")).to_contain_text("delivered")
    page.click("#webhook-history-link")
    expect(page.locator("#history-table .history-result")).to_have_text(["delivered"])
    assert [seen.body for seen in live_receiver.notifications("/hook")][-1].count(b'"7"') == 1
    _clean(browser_page, live_gateway, STATUS_LOG.format("409 (Conflict)"))


def _deliver(gateway: ThreadedGateway, retry_in: float | None = None) -> None:
    """Let a delivery worker send everything due, and wait until it has; `retry_in` seconds
    before a failed one is tried again (the test gateway's own schedule: at once)."""

    async def drain() -> None:
        worker = gateway.gateway.worker()
        if retry_in is not None:
            ctx = gateway.gateway.ctx
            later = dataclasses.replace(ctx.settings, retry_schedule=(retry_in,))
            worker = Worker(later, ctx.store, ctx.outbound)
        await worker.drain()

    gateway.call(drain(), timeout=30)


def test_partner_makes_a_webhook_strict_and_sees_what_waits_behind_a_failure(
    browser_page: BrowserPage, live_gateway: ThreadedGateway, live_receiver: Receiver
) -> None:
    gateway = live_gateway.gateway
    key, record = live_gateway.call(gateway.add_key("acme", frozenset({Scope.WEBHOOKS})))
    platform, _ = live_gateway.call(gateway.add_key("acme", frozenset({Scope.EVENTS})))
    hook = _webhook(live_gateway, key, live_receiver, retry_count=5)
    rule = {"webhookId": hook["webhookId"], "tableKey": "Invoice", "eventType": "U"}
    _api(live_gateway, key, "/api/v1/WebhookRules", [rule])

    # 1. The webhook delivers unordered, as every webhook does unless told; the edit form
    #    makes it Strict.
    page = browser_page.page
    _enter(page, _link(live_gateway, key))
    page.locator(f"#webhook-{hook['webhookId']} .webhook-link").click()
    expect(page.locator("#webhook-delivery-order")).to_contain_text("Unordered")
    page.select_option("#field-deliveryOrder", "Strict")
    page.click("#webhook-save")
    expect(page.locator("#notice")).to_have_text("Saved: deliveryOrder.")
    expect(page.locator("#webhook-delivery-order")).to_contain_text("Strict: one at a time")
    store = gateway.ctx.store
    stored = live_gateway.call(store.get_webhook(record.group_key, UUID(hook["webhookId"])))
    assert stored is not None and stored.delivery_order is DeliveryOrder.STRICT

    # 2. Three events while the receiver is down: the first fails (tried again in an hour)
    #    and the other two wait behind it, which the history says in words.
    live_receiver.plan("/hook", Answer(status=503, body="down for maintenance"))
    events = [{"tableKey": "Invoice", "eventType": "U", "records": [{"id": str(i)}]}
              for i in (1, 2, 3)]  # fmt: skip
    _api(live_gateway, platform, "/api/v1/Events", events)
    _deliver(live_gateway, retry_in=3600)
    assert len(live_receiver.notifications("/hook")) == 1
    page.click("#webhook-history-link")
    rows = page.locator("#history-table .history-row")
    expect(rows).to_have_count(3)
    waiting = rows.filter(has=page.locator(".history-waiting"))
    expect(waiting).to_have_count(2)
    expect(waiting.first).to_contain_text("Waiting behind an earlier notification")
    expect(waiting.locator("button")).to_have_count(0)  # it goes out in its turn anyway
    failed = rows.filter(has_not=page.locator(".history-waiting"))
    expect(failed.locator(".history-result")).to_have_text("failed")

    # 3. The receiver is back; the failed one is sent again by hand, and all three arrive in
    #    the order they were published.
    live_receiver.plan("/hook", Answer(body="back"))
    failed.locator("button").click()
    expect(page.locator("#notice")).to_contain_text("Queued")
    _deliver(live_gateway)
    page.reload()
    expect(page.locator("#history-table .history-result")).to_have_text(["delivered"] * 3)
    arrived = [seen.body for seen in live_receiver.notifications("/hook")]
    assert len(arrived) == 4  # the failure, then each one once
    assert [_record_id(body) for body in arrived] == ["1", "1", "2", "3"]
    _clean(browser_page, live_gateway)


def _record_id(body: bytes) -> str:
    """The id of a notification body's one record."""
    (record,) = httpx.Response(200, content=body).json()["records"]
    found: str = record["id"]
    return found


def test_partner_rotates_the_secret_then_pauses_and_resumes(
    browser_page: BrowserPage, live_gateway: ThreadedGateway, live_receiver: Receiver
) -> None:
    key, record = live_gateway.call(live_gateway.gateway.add_key("acme"))
    hook = _webhook(live_gateway, key, live_receiver)
    page = browser_page.page
    asked: list[str] = []
    answers: list[bool] = []  # what the partner answers each confirm(), in turn

    def confirm(dialog: Dialog) -> None:
        asked.append(dialog.message)
        if answers.pop(0):
            dialog.accept()
        else:
            dialog.dismiss()

    page.on("dialog", confirm)
    _enter(page, _link(live_gateway, key))
    page.locator(f"#webhook-{hook['webhookId']} .webhook-link").click()

    # 1. Rotate the secret: asked first; the new one is shown once, with when the old one
    #    stops signing; both sign meanwhile.
    answers.append(True)
    page.click("#webhook-rotate-secret")
    secret = page.locator("#new-secret")
    expect(secret).to_contain_text("whsec_")
    assert secret.inner_text().strip() != hook["clientSecret"]
    expect(page.locator("#previous-secret-until")).to_contain_text("keeps signing too until")
    assert asked == ["Make a new signing secret? The old one keeps signing for a grace period."]
    shown = secret.inner_text().strip()
    # A reload shows the secret no more and rotates nothing: the form was not sent again.
    page.reload()
    expect(page.locator("#webhook-status")).to_have_text("Active")
    expect(page.locator("#new-secret")).to_have_count(0)
    store = live_gateway.gateway.ctx.store
    stored = live_gateway.call(store.get_webhook(record.group_key, UUID(hook["webhookId"])))
    assert stored is not None and stored.client_secret == shown
    page.click("#webhook-test-send")
    expect(page.locator("#test-result-verdict")).to_have_text("Delivered")
    (tested,) = live_receiver.notifications("/hook")
    assert len(tested.headers["webhook-signature"].split()) == 2  # new and previous secret

    # 2. Pause, but answer "cancel": nothing changes.
    answers.append(False)
    page.click("#webhook-pause")
    expect(page.locator("#webhook-status")).to_have_text("Active")
    assert len(asked) == 2 and asked[-1].startswith("Pause this webhook?")

    # 3. Pause for real: the status shown changes, and the notice says what that means.
    answers.append(True)
    page.click("#webhook-pause")
    expect(page.locator("#webhook-status")).to_have_text("Inactive")
    expect(page.locator("#notice")).to_contain_text("Paused")
    expect(page.locator("#webhook-pause")).to_have_count(0)
    page.click("#nav-webhooks")
    row = page.locator(f"#webhook-{hook['webhookId']}")
    expect(row.locator(".badge")).to_have_text("Inactive")
    row.locator(".webhook-link").click()

    # 4. Resume (no question asked): the handshake passes and it is Active again.
    page.click("#webhook-resume")
    expect(page.locator("#webhook-status")).to_have_text("Active")
    expect(page.locator("#notice")).to_contain_text("passed the verification handshake")
    expect(page.locator("#webhook-pause")).to_be_visible()
    assert len(asked) == 3 and answers == []
    _clean(browser_page, live_gateway)


def test_a_read_only_session_sees_the_webhook_and_has_no_forms(
    browser_page: BrowserPage, live_gateway: ThreadedGateway, live_receiver: Receiver
) -> None:
    key, _ = live_gateway.call(live_gateway.gateway.add_key("acme"))
    hook = _webhook(live_gateway, key, live_receiver)
    page = browser_page.page
    # The operator's way: `gateway portal-link`, on the gateway's database and secret.
    _enter(page, _cli_link(live_gateway, "--group", "acme", "--read-only"))
    expect(page.locator("#read-only-badge")).to_have_text("read-only")
    expect(page.locator("#new-webhook-link")).to_have_count(0)
    page.goto(live_gateway.url + "/portal/webhooks/new")  # typed in: no form either
    expect(page.locator("#read-only-note")).to_be_visible()
    expect(page.locator("#webhook-create-form")).to_have_count(0)

    page.click("#nav-webhooks")
    row = page.locator(f"#webhook-{hook['webhookId']}")
    expect(row).to_contain_text("invoices")
    row.locator(".webhook-link").click()
    page.click("#webhook-history-link")
    expect(page.locator("#no-history")).to_be_visible()
    page.click("#back-to-webhook")
    expect(page.locator("#webhook-status")).to_have_text("Active")
    expect(page.locator("#webhook-callback")).to_have_text(live_receiver.url + "/hook")
    # Everything is shown, and the only form is signing out.
    assert page.locator("form").evaluate_all("forms => forms.map(f => f.id)") == ["sign-out-form"]
    _clean(browser_page, live_gateway)


def _cli_link(gateway: ThreadedGateway, *args: str) -> str:
    """A portal link printed by `gateway portal-link` for this gateway."""
    settings = gateway.gateway.ctx.settings
    env = {
        **os.environ,
        "GATEWAY_DATABASE_URL": settings.database_url,
        "GATEWAY_SECRET_KEY": settings.secret_key or "",
        "GATEWAY_PUBLIC_URL": gateway.url,
    }
    gateway_cli = Path(sys.executable).with_name("gateway")
    done = subprocess.run(
        [gateway_cli, "portal-link", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    url: str = httpx.Response(200, content=done.stdout).json()["url"]
    return url


def test_links_the_portal_refuses_show_a_page_saying_what_to_do(
    browser_page: BrowserPage, live_gateway: ThreadedGateway
) -> None:
    key, record = live_gateway.call(live_gateway.gateway.add_key("acme"))
    page = browser_page.page
    settings = live_gateway.gateway.ctx.settings

    # Forged: a token the gateway did not sign.
    page.goto(live_gateway.url + "/portal/#token=forged.token.value")
    expect(page.locator("#refused-title")).to_be_visible()
    expect(page.locator("#refused-advice")).to_contain_text("new portal link")
    assert "token" not in page.url

    # Expired: a link made an hour ago was to be opened within minutes.
    old, _ = portal_link(
        settings.secret_key or "", live_gateway.url, record.group_key,
        read_only=False, session_seconds=600, now=utcnow() - timedelta(hours=1),
    )  # fmt: skip
    page.goto(old)
    expect(page.locator("#refused-title")).to_be_visible()
    expect(page.locator("#refused-advice")).to_contain_text("new portal link")

    # Used: a link opens one session; after signing out, it does not open another.
    used = _link(live_gateway, key)
    _enter(page, used)
    page.click("#sign-out")
    expect(page.locator("#signed-out")).to_be_visible()
    assert page.context.cookies() == []
    page.goto(used)
    expect(page.locator("#refused-title")).to_be_visible()
    expect(page.locator("#refused-detail")).to_contain_text("already been used")
    # Without a session, a portal page says to open the link again.
    page.goto(live_gateway.url + "/portal/webhooks")
    expect(page.locator("#refused-title")).to_be_visible()
    expect(page.locator("#refused-advice")).to_contain_text("portal link")
    _clean(browser_page, live_gateway, *[UNAUTHORIZED] * 4)
