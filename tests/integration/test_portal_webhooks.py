"""The portal's webhook pages over real HTTP, on both stores, against a real loopback
receiver: list, create (the handshake's result in words), edit, pause and resume, reactivate,
rotate the secret, make the delivery order Strict and back; CSRF and read-only sessions refuse
every change and change nothing."""

from __future__ import annotations

import base64
import binascii
import contextlib
import html
import re
import zlib
from typing import Any

import pytest

from gateway.models import DeliveryOrder, NotificationState, Webhook, WebhookStatus
from gateway.store.base import Query
from tests.factories import make_event, make_notification, make_webhook
from tests.gateway_server import RunningGateway
from tests.portal import Partner
from tests.receiver import Answer, Receiver


@pytest.fixture
async def gateway(gateway_on_each_store: RunningGateway) -> RunningGateway:
    return gateway_on_each_store


def form_for(receiver: Receiver, path: str = "/hook", **fields: str) -> dict[str, str]:
    """A full webhook form, as the page sends it."""
    return {"name": "invoices", "callbackUrl": receiver.url + path, "callbackHttpMethod": "POST",
            "requestContentType": "Full", "expirationDate": "", "retryCount": "3", "headers": "",
            "authenticationId": "", "signatureScheme": "StandardWebhooks", "signatureHeader": "",
            **fields}  # fmt: skip


def text_of(page: str, element_id: str) -> str:
    """The text inside the element with this id (tags removed, whitespace squeezed)."""
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</(?:p|dd|div|span|section|h1)>', page, re.S)
    assert found, f"no #{element_id}"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split())


async def hooks_of(gateway: RunningGateway, group: Any) -> list[Webhook]:
    return list((await gateway.ctx.store.query_webhooks(group, Query())).records)


async def partner_of(gateway: RunningGateway, group: str = "acme", **body: Any) -> Partner:
    key, _ = await gateway.add_key(group)
    partner = Partner(gateway)
    await partner.enter(key, **body)
    return partner


async def test_create_runs_the_handshake_and_shows_the_secret_once(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key, record = await gateway.add_key("acme")
    async with Partner(gateway) as partner:
        await partner.enter(key)
        form = await partner.page("/portal/webhooks/new")
        assert 'id="webhook-create-form"' in form.text
        answer = await partner.submit(
            "/portal/webhooks/new", form_for(receiver, headers="X-Env: prod")
        )
        assert answer.status_code == 200, answer.text
        assert "passed the verification handshake" in text_of(answer.text, "notice")
        (hook,) = await hooks_of(gateway, record.group_key)
        assert text_of(answer.text, "new-secret") == hook.client_secret
        assert hook.status_code is WebhookStatus.ACTIVE and hook.name == "invoices"
        assert [(h.name, h.value) for h in hook.headers] == [("X-Env", "prod")]
        assert [s.path for s in receiver.seen if s.is_handshake] == ["/hook"]
        # Shown once: the webhook's page does not show it again.
        again = await partner.page(f"/portal/webhooks/{hook.webhook_id}")
        assert hook.client_secret not in again.text
        assert text_of(again.text, "webhook-status") == "Active"


async def test_a_failed_handshake_is_said_in_words_and_creates_nothing(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key, record = await gateway.add_key("acme")
    async with Partner(gateway) as partner:
        await partner.enter(key)
        receiver.plan("/broken", Answer(status=500))
        answer = await partner.submit("/portal/webhooks/new", form_for(receiver, "/broken"))
        assert answer.status_code == 400
        words = text_of(answer.text, "notice")
        assert "did not pass the verification handshake" in words and "HTTP 500" in words
        assert 'value="invoices"' in answer.text  # the form keeps what was typed
    assert await hooks_of(gateway, record.group_key) == []


async def test_bad_fields_are_named_and_nothing_is_called(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key, record = await gateway.add_key("acme")
    async with Partner(gateway) as partner:
        await partner.enter(key)
        sent = form_for(receiver, callbackHttpMethod="GET", retryCount="9", headers="no colon")
        answer = await partner.submit("/portal/webhooks/new", sent)
        assert answer.status_code == 400
        assert 'id="error-headers"' in answer.text
        sent["headers"] = ""
        answer = await partner.submit("/portal/webhooks/new", sent)
        assert answer.status_code == 400
        assert (
            'id="error-requestContentType"' in answer.text or 'id="error-retryCount"' in answer.text
        )
    assert await hooks_of(gateway, record.group_key) == []
    assert receiver.seen == []


@pytest.mark.parametrize("csrf", ["", "wrong"])
async def test_a_change_without_the_csrf_token_is_refused(
    gateway: RunningGateway, receiver: Receiver, csrf: str
) -> None:
    key, record = await gateway.add_key("acme")
    hook = make_webhook(record.group_key, callback_url=receiver.plan("/hook"))
    await gateway.ctx.store.add_webhooks([hook])
    async with Partner(gateway) as partner:
        await partner.enter(key)
        actions = [("/portal/webhooks/new", form_for(receiver, "/new")),
                   (f"/portal/webhooks/{hook.webhook_id}/edit", {"name": "changed"}),
                   (f"/portal/webhooks/{hook.webhook_id}/status", {"action": "pause"}),
                   (f"/portal/webhooks/{hook.webhook_id}/rotate-secret", {})]  # fmt: skip
        for path, data in actions:
            answer = await partner.submit(path, data, csrf=csrf)
            assert answer.status_code == 403, path
            assert "nothing was changed" in answer.text
        # The control: the same edit with the session's token is written.
        assert (await partner.submit(actions[1][0], actions[1][1])).status_code == 200
    assert await hooks_of(gateway, record.group_key) == [
        h for h in await hooks_of(gateway, record.group_key) if h.name == "changed"
    ]
    (stored,) = await hooks_of(gateway, record.group_key)
    assert stored.client_secret == hook.client_secret
    assert stored.status_code is WebhookStatus.ACTIVE
    assert receiver.seen == []


async def test_edit_writes_only_what_changed(gateway: RunningGateway, receiver: Receiver) -> None:
    key, record = await gateway.add_key("acme")
    hook = make_webhook(record.group_key, callback_url=receiver.plan("/hook"))
    await gateway.ctx.store.add_webhooks([hook])
    path = f"/portal/webhooks/{hook.webhook_id}"
    async with Partner(gateway) as partner:
        await partner.enter(key)
        page = await partner.page(path)
        assert 'id="webhook-edit-form"' in page.text
        sent = form_for(receiver, "/hook", name="renamed", retryCount="5",
                        headers="X-One: 1\r\nX-Two: 2", signatureScheme="HmacSha256Hex",
                        signatureHeader="X-Acme-Signature")  # fmt: skip
        answer = await partner.submit(f"{path}/edit", sent)
        assert answer.status_code == 200, answer.text
        assert text_of(answer.text, "notice").startswith("Saved: ")
        assert receiver.seen == []  # the callback did not change: no handshake
        (stored,) = await hooks_of(gateway, record.group_key)
        assert (stored.name, stored.retry_count) == ("renamed", 5)
        assert [h.name for h in stored.headers] == ["X-One", "X-Two"]
        assert stored.signature_scheme.value == "HmacSha256Hex"
        assert stored.signature_header == "X-Acme-Signature"
        # A new callback passes the handshake first; one that fails leaves all as it was.
        receiver.plan("/moved-broken", Answer(status=404))
        refused = await partner.submit(
            f"{path}/edit", {**sent, "callbackUrl": receiver.url + "/moved-broken"}
        )
        assert refused.status_code == 400 and "HTTP 404" in text_of(refused.text, "notice")
        assert (await hooks_of(gateway, record.group_key)) == [stored]
        moved = await partner.submit(
            f"{path}/edit", {**sent, "callbackUrl": receiver.plan("/moved")}
        )
        assert moved.status_code == 200
        assert "callbackUrl" in text_of(moved.text, "notice")
    (after,) = await hooks_of(gateway, record.group_key)
    assert after.callback_url.endswith("/moved")
    assert [s.path for s in receiver.seen if s.is_handshake] == ["/moved-broken", "/moved"]


async def test_the_delivery_order_is_set_on_create_and_changed_by_edit(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key, record = await gateway.add_key("acme")
    async with Partner(gateway) as partner:
        await partner.enter(key)
        form = await partner.page("/portal/webhooks/new")
        assert '<option value="Unordered" selected>' in form.text  # the API's default
        created = await partner.submit(
            "/portal/webhooks/new", form_for(receiver, deliveryOrder="Strict")
        )
        assert created.status_code == 200, created.text
        (hook,) = await hooks_of(gateway, record.group_key)
        assert hook.delivery_order is DeliveryOrder.STRICT
        assert text_of(created.text, "webhook-delivery-order").startswith("Strict: one at a time")
        assert '<option value="Strict" selected>' in created.text  # the edit form shows it
        path = f"/portal/webhooks/{hook.webhook_id}"
        sent = form_for(receiver, deliveryOrder="Sideways")
        refused = await partner.submit(f"{path}/edit", sent)
        assert refused.status_code == 400 and 'id="error-deliveryOrder"' in refused.text
        assert '<option value="Sideways"' not in refused.text  # only the two choices
        back = await partner.submit(f"{path}/edit", {**sent, "deliveryOrder": "Unordered"})
        assert back.status_code == 200
        assert text_of(back.text, "notice") == "Saved: deliveryOrder."
        assert text_of(back.text, "webhook-delivery-order").startswith("Unordered: several")
    (after,) = await hooks_of(gateway, record.group_key)
    assert after.delivery_order is DeliveryOrder.UNORDERED
    assert len([s for s in receiver.seen if s.is_handshake]) == 1  # the create's only


async def test_an_expiry_date_is_set_and_cleared(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key, record = await gateway.add_key("acme")
    hook = make_webhook(record.group_key, callback_url=receiver.plan("/hook"))
    await gateway.ctx.store.add_webhooks([hook])
    path = f"/portal/webhooks/{hook.webhook_id}"
    async with Partner(gateway) as partner:
        await partner.enter(key)
        sent = form_for(receiver, "/hook", name=hook.name, expirationDate="2099-01-02T03:04")
        assert (await partner.submit(f"{path}/edit", sent)).status_code == 200
        (stored,) = await hooks_of(gateway, record.group_key)
        assert stored.expiration_date is not None
        assert stored.expiration_date.isoformat().startswith("2099-01-02T03:04:00")
        assert (
            await partner.submit(f"{path}/edit", {**sent, "expirationDate": ""})
        ).status_code == 200
        (cleared,) = await hooks_of(gateway, record.group_key)
        assert cleared.expiration_date is None


async def test_pause_resume_and_reactivate(gateway: RunningGateway, receiver: Receiver) -> None:
    key, record = await gateway.add_key("acme")
    hook = make_webhook(record.group_key, callback_url=receiver.plan("/hook"))
    errored = make_webhook(record.group_key, callback_url=receiver.plan("/errored"),
                           status_code=WebhookStatus.ERRORED, status_message="failing")  # fmt: skip
    await gateway.ctx.store.add_webhooks([hook, errored])
    path = f"/portal/webhooks/{hook.webhook_id}"
    async with Partner(gateway) as partner:
        await partner.enter(key)
        assert 'id="webhook-pause"' in (await partner.page(path)).text
        paused = await partner.submit(f"{path}/status", {"action": "pause"})
        assert paused.status_code == 200 and text_of(paused.text, "webhook-status") == "Inactive"
        assert 'id="webhook-resume"' in paused.text
        stored = await gateway.ctx.store.get_webhook(record.group_key, hook.webhook_id)
        assert stored is not None and stored.status_code is WebhookStatus.INACTIVE
        assert receiver.seen == []
        resumed = await partner.submit(f"{path}/status", {"action": "activate"})
        assert resumed.status_code == 200 and text_of(resumed.text, "webhook-status") == "Active"
        assert "passed the verification handshake" in text_of(resumed.text, "notice")
        errored_path = f"/portal/webhooks/{errored.webhook_id}"
        assert 'id="webhook-reactivate"' in (await partner.page(errored_path)).text
        receiver.plan("/errored", Answer(status=503), Answer())
        failed = await partner.submit(f"{errored_path}/status", {"action": "activate"})
        assert failed.status_code == 400 and "HTTP 503" in text_of(failed.text, "notice")
        assert text_of(failed.text, "webhook-status") == "Errored"
        back = await partner.submit(f"{errored_path}/status", {"action": "activate"})
        assert text_of(back.text, "webhook-status") == "Active"
        unknown = await partner.submit(f"{path}/status", {"action": "delete"})
        assert unknown.status_code == 400
    assert [s.path for s in receiver.seen if s.is_handshake] == ["/hook", "/errored", "/errored"]


async def test_rotate_shows_the_new_secret_once_and_when_the_old_one_stops(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key, record = await gateway.add_key("acme")
    hook = make_webhook(record.group_key, callback_url=receiver.plan("/hook"))
    await gateway.ctx.store.add_webhooks([hook])
    async with Partner(gateway) as partner:
        await partner.enter(key)
        answer = await partner.submit(f"/portal/webhooks/{hook.webhook_id}/rotate-secret")
    assert answer.status_code == 200
    stored = await gateway.ctx.store.get_webhook(record.group_key, hook.webhook_id)
    assert stored is not None and stored.client_secret != hook.client_secret
    assert text_of(answer.text, "new-secret") == stored.client_secret
    assert stored.previous_secret_expires is not None
    until = stored.previous_secret_expires.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert until in text_of(answer.text, "previous-secret-until")


async def test_a_read_only_session_sees_everything_and_changes_nothing(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key, record = await gateway.add_key("acme")
    hook = make_webhook(record.group_key, callback_url=receiver.plan("/hook"), name="seen")
    await gateway.ctx.store.add_webhooks([hook])
    before = await hooks_of(gateway, record.group_key)
    path = f"/portal/webhooks/{hook.webhook_id}"
    async with Partner(gateway) as partner:
        await partner.enter(key, readOnly=True)
        listing = await partner.page("/portal/webhooks")
        assert "seen" in listing.text and 'id="new-webhook-link"' not in listing.text
        page = await partner.page(path)
        assert page.status_code == 200 and text_of(page.text, "webhook-status") == "Active"
        for form in ("webhook-edit-form", "webhook-pause-form", "webhook-rotate-form"):
            assert f'id="{form}"' not in page.text
        assert 'id="webhook-create-form"' not in (await partner.page("/portal/webhooks/new")).text
        for action, data in [("/portal/webhooks/new", form_for(receiver, "/new")),
                             (f"{path}/edit", {"name": "changed"}),
                             (f"{path}/status", {"action": "pause"}),
                             (f"{path}/rotate-secret", {})]:  # fmt: skip
            answer = await partner.submit(action, data)  # with the session's own CSRF token
            assert answer.status_code == 403, action
            assert "read-only" in answer.text
        assert (await partner.submit("/portal/sign-out")).status_code == 200  # leaving is no change
    assert await hooks_of(gateway, record.group_key) == before
    assert receiver.seen == []


async def test_the_list_shows_each_webhook_and_its_last_delivery(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key, record = await gateway.add_key("acme")
    hook = make_webhook(record.group_key, callback_url=receiver.plan("/hook"), name="billing")
    quiet = make_webhook(record.group_key, name="quiet", status_code=WebhookStatus.INACTIVE,
                         status_message="paused by its owner")  # fmt: skip
    event = make_event(record.group_key)
    note = make_notification(
        hook, event, state=NotificationState.SUCCEEDED, attempts=1, request_sent=True,
        is_successful=True, response_status_code="200",
    )  # fmt: skip
    await gateway.ctx.store.add_webhooks([hook, quiet])
    await gateway.ctx.store.add_events([event], [note])
    async with Partner(gateway) as partner:
        await partner.enter(key)
        listing = (await partner.page("/portal/webhooks")).text
    row = listing.split(f'id="webhook-{hook.webhook_id}"')[1].split("</tr>")[0]
    assert "billing" in row and "Active" in row and receiver.url in row
    assert "delivered" in row and "HTTP 200" in row
    quiet_row = listing.split(f'id="webhook-{quiet.webhook_id}"')[1].split("</tr>")[0]
    assert (
        "Inactive" in quiet_row and "paused by its owner" in quiet_row and "none yet" in quiet_row
    )


async def test_another_group_webhook_page_is_not_found(gateway: RunningGateway) -> None:
    _, other = await gateway.add_key("other")
    theirs = make_webhook(other.group_key)
    await gateway.ctx.store.add_webhooks([theirs])
    async with await partner_of(gateway) as partner:
        answer = await partner.page(f"/portal/webhooks/{theirs.webhook_id}")
        assert answer.status_code == 404 and "no webhook" in answer.text
        assert (await partner.page("/portal/webhooks/not-an-id")).status_code == 404


def assert_flash_cookie(answer: Any, secret: str) -> None:
    """The one-time result rides in a sealed cookie only scripts of no page can read, sent
    back only to the portal, never from another site; the secret it carries cannot be read
    from it, as text or decoded from Base64."""
    (cookie,) = [
        v for v in answer.headers.get_list("set-cookie") if v.startswith("gateway_portal_flash=")
    ]
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/portal"} <= flags, cookie
    value = cookie.split(";")[0].removeprefix("gateway_portal_flash=").strip('"')
    assert secret not in value, "the secret is readable in the cookie"
    for part in value.split("."):  # whatever Base64 the value holds, decoded (and inflated)
        try:
            decoded = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except (binascii.Error, ValueError):
            continue
        with contextlib.suppress(zlib.error):
            decoded = zlib.decompress(decoded)
        assert secret.encode() not in decoded, "the secret is readable in the cookie"


async def test_rotate_redirects_so_a_reload_shows_the_secret_no_more_and_rotates_nothing(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key, record = await gateway.add_key("acme")
    hook = make_webhook(record.group_key, callback_url=receiver.plan("/hook"))
    await gateway.ctx.store.add_webhooks([hook])
    path = f"/portal/webhooks/{hook.webhook_id}"
    async with Partner(gateway) as partner:
        await partner.enter(key)
        posted = await partner.submit(f"{path}/rotate-secret", follow=False)
        assert posted.status_code == 303 and posted.headers["location"] == path
        rotated = await gateway.ctx.store.get_webhook(record.group_key, hook.webhook_id)
        assert rotated is not None and rotated.client_secret != hook.client_secret
        assert_flash_cookie(posted, rotated.client_secret)
        assert rotated.client_secret not in posted.headers["location"]
        shown = await partner.page(path)  # the redirect's GET
        assert shown.status_code == 200
        assert text_of(shown.text, "new-secret") == rotated.client_secret
        assert "new signing secret" in text_of(shown.text, "notice")
        reloaded = await partner.page(path)
        assert reloaded.status_code == 200
        assert rotated.client_secret not in reloaded.text
        assert 'id="new-secret"' not in reloaded.text and 'id="notice"' not in reloaded.text
    stored = await gateway.ctx.store.get_webhook(record.group_key, hook.webhook_id)
    assert stored is not None and stored.client_secret == rotated.client_secret


async def test_create_redirects_so_a_reload_makes_no_second_webhook(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    key, record = await gateway.add_key("acme")
    async with Partner(gateway) as partner:
        await partner.enter(key)
        await partner.page("/portal/webhooks/new")
        posted = await partner.submit("/portal/webhooks/new", form_for(receiver), follow=False)
        assert posted.status_code == 303, posted.text
        (hook,) = await hooks_of(gateway, record.group_key)
        assert posted.headers["location"] == f"/portal/webhooks/{hook.webhook_id}"
        assert_flash_cookie(posted, hook.client_secret)
        shown = await partner.page(posted.headers["location"])
        assert text_of(shown.text, "new-secret") == hook.client_secret
        reloaded = await partner.page(posted.headers["location"])
        assert reloaded.status_code == 200 and hook.client_secret not in reloaded.text
    assert [h.webhook_id for h in await hooks_of(gateway, record.group_key)] == [hook.webhook_id]
    assert len([s for s in receiver.seen if s.is_handshake]) == 1
