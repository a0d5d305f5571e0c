"""The portal's rule pages and event-type catalogue over real HTTP, on both stores: list,
create, edit and delete the group's rules with the API's validation (errors on the form,
nothing changed), the catalogue read-only; another group's rules and event types are never
shown or touched; read-only sessions change nothing."""

from __future__ import annotations

import dataclasses
import html
import re
from typing import Any

import pytest

from gateway.models import EventType, WebhookRule
from gateway.store.base import Query
from tests.factories import make_event_type, make_rule, make_webhook
from tests.gateway_server import RunningGateway
from tests.portal import Partner


@pytest.fixture
async def gateway(gateway_on_each_store: RunningGateway) -> RunningGateway:
    return gateway_on_each_store


def errors_of(page: str, field: str) -> str:
    found = re.findall(rf'<p class="errors" id="errors-rule-{field}">(.*?)</p>', page, re.S)
    return " ".join(html.unescape(f) for f in found)


async def rules_of(gateway: RunningGateway, group: Any) -> list[WebhookRule]:
    return list((await gateway.ctx.store.query_rules(group, Query())).records)


async def test_rules_are_listed_created_edited_and_deleted(gateway: RunningGateway) -> None:
    key, record = await gateway.add_key("acme")
    _, other = await gateway.add_key("other")
    hook = make_webhook(record.group_key, name="invoices")
    theirs = make_webhook(other.group_key, name="their hook")
    await gateway.ctx.store.add_webhooks([hook, theirs])
    their_rule = make_rule(theirs, table_key="Payment")
    await gateway.ctx.store.add_rules([their_rule])
    async with Partner(gateway) as partner:
        await partner.enter(key)
        empty = await partner.page("/portal/rules")
        assert 'id="no-rules"' in empty.text and 'id="rule-create-form"' in empty.text
        assert "their hook" not in empty.text and str(theirs.webhook_id) not in empty.text
        form = {"webhookId": str(hook.webhook_id), "tableKey": "Invoice", "eventType": "U",
                "filter": "total gt 100"}  # fmt: skip
        made = await partner.submit("/portal/rules/new", form)
        assert made.status_code == 200, made.text
        (rule,) = await rules_of(gateway, record.group_key)
        assert (rule.webhook_id, rule.table_key, rule.event_type, rule.filter) == (
            hook.webhook_id, "Invoice", EventType.UPDATE, "total gt 100")  # fmt: skip
        assert f'id="rule-{rule.webhook_rule_id}"' in made.text and "invoices" in made.text
        shown = await partner.page(f"/portal/rules/{rule.webhook_rule_id}")
        assert 'id="rule-edit-form"' in shown.text and 'id="rule-delete-form"' in shown.text
        edit = {"tableKey": "Order", "eventType": "D", "filter": ""}
        saved = await partner.submit(f"/portal/rules/{rule.webhook_rule_id}/edit", edit)
        assert saved.status_code == 200 and "Saved" in saved.text
        (changed,) = await rules_of(gateway, record.group_key)
        assert (changed.table_key, changed.event_type, changed.filter) == (
            "Order", EventType.DELETE, None)  # fmt: skip
        gone = await partner.submit(f"/portal/rules/{rule.webhook_rule_id}/delete")
        assert gone.status_code == 200 and "deleted" in gone.text
        assert await rules_of(gateway, record.group_key) == []
    assert await rules_of(gateway, other.group_key) == [their_rule]


async def test_a_refused_rule_says_why_on_the_form_and_changes_nothing(
    gateway: RunningGateway,
) -> None:
    key, record = await gateway.add_key("acme")
    _, other = await gateway.add_key("other")
    hook = make_webhook(record.group_key)
    theirs = make_webhook(other.group_key)
    await gateway.ctx.store.add_webhooks([hook, theirs])
    rule = make_rule(hook)
    await gateway.ctx.store.add_rules([rule])
    good = {"webhookId": str(hook.webhook_id), "tableKey": "Invoice", "eventType": "U",
            "filter": ""}  # fmt: skip
    async with Partner(gateway) as partner:
        await partner.enter(key)
        await partner.page("/portal/rules")
        cases = [("filter", {"filter": "total gt"}), ("tableKey", {"tableKey": ""}),
                 ("eventType", {"eventType": "X"}),
                 ("webhookId", {"webhookId": str(theirs.webhook_id)})]  # fmt: skip
        for field, change in cases:
            answer = await partner.submit("/portal/rules/new", {**good, **change})
            assert answer.status_code == 400, (field, answer.text)
            assert errors_of(answer.text, field), (field, answer.text)
            assert "Nothing was changed" in answer.text
        assert str(theirs.webhook_id) in errors_of(answer.text, "webhookId")  # as for any unknown
        bad_edit = await partner.submit(
            f"/portal/rules/{rule.webhook_rule_id}/edit",
            {"tableKey": "Invoice", "eventType": "U", "filter": "total eq"},
        )
        assert bad_edit.status_code == 400 and errors_of(bad_edit.text, "filter")
        assert 'value="total eq"' in bad_edit.text  # what was sent stays on the form
    assert await rules_of(gateway, record.group_key) == [rule]
    assert await rules_of(gateway, other.group_key) == []


async def test_an_enforced_catalogue_refuses_an_undeclared_rule(
    gateway: RunningGateway,
) -> None:
    gateway.ctx.settings = dataclasses.replace(gateway.ctx.settings, enforce_event_types=True)
    key, record = await gateway.add_key("acme")
    hook = make_webhook(record.group_key)
    await gateway.ctx.store.add_webhooks([hook])
    await gateway.ctx.store.add_event_types([make_event_type(record.group_key)])
    form = {"webhookId": str(hook.webhook_id), "tableKey": "Payment", "eventType": "U"}
    async with Partner(gateway) as partner:
        await partner.enter(key)
        page = await partner.page("/portal/rules")
        assert '<option value="Invoice">' in page.text  # the declared tables, offered
        refused = await partner.submit("/portal/rules/new", form)
        assert refused.status_code == 400 and errors_of(refused.text, "eventType")
        made = await partner.submit("/portal/rules/new", {**form, "tableKey": "Invoice"})
        assert made.status_code == 200, made.text
    assert [r.table_key for r in await rules_of(gateway, record.group_key)] == ["Invoice"]


async def test_a_session_of_another_group_gets_the_same_page_as_for_no_rule(
    gateway: RunningGateway,
) -> None:
    _, record = await gateway.add_key("acme")
    key_b, _ = await gateway.add_key("other")
    hook = make_webhook(record.group_key)
    await gateway.ctx.store.add_webhooks([hook])
    rule = make_rule(hook)
    await gateway.ctx.store.add_rules([rule])
    async with Partner(gateway) as partner:
        await partner.enter(key_b)
        for path in ("", "/edit", "/delete"):
            where = f"/portal/rules/{rule.webhook_rule_id}{path}"
            edit = {"tableKey": "Hijacked", "eventType": "U"}
            answer = await (partner.page(where) if not path else partner.submit(where, edit))
            assert answer.status_code == 404 and "no webhook rule" in answer.text
    assert await rules_of(gateway, record.group_key) == [rule]


async def test_the_catalogue_shows_the_groups_event_types_read_only(
    gateway: RunningGateway,
) -> None:
    key, record = await gateway.add_key("acme")
    _, other = await gateway.add_key("other")
    mine = make_event_type(record.group_key, name="Invoice updated", category="Billing",
                           description="An invoice changed.", deprecated=True,
                           record_schema={"type": "object"})  # fmt: skip
    second = make_event_type(record.group_key, table_key="Customer", name="Customer updated")
    theirs = make_event_type(other.group_key, name="Secret thing of theirs")
    await gateway.ctx.store.add_event_types([mine, second, theirs])
    async with Partner(gateway) as partner:
        await partner.enter(key, readOnly=True)
        page = await partner.page("/portal/event-types")
    assert page.status_code == 200
    rows = re.findall(r'<tr id="event-type-([0-9a-f-]{36})"', page.text)
    assert rows == [str(second.event_type_id), str(mine.event_type_id)]  # by table
    assert "Secret thing of theirs" not in page.text and str(other.group_key) not in page.text
    assert f'id="event-type-{mine.event_type_id}-deprecated"' in page.text
    assert f'id="event-type-{mine.event_type_id}-schema"' in page.text
    assert "Billing" in page.text and "An invoice changed." in page.text
    assert "<form" not in page.text.split('id="main"')[1]  # nothing to change here


async def test_a_read_only_session_sees_rules_and_changes_none(gateway: RunningGateway) -> None:
    key, record = await gateway.add_key("acme")
    hook = make_webhook(record.group_key, name="invoices")
    await gateway.ctx.store.add_webhooks([hook])
    rule = make_rule(hook)
    await gateway.ctx.store.add_rules([rule])
    async with Partner(gateway) as partner:
        await partner.enter(key, readOnly=True)
        listing = await partner.page("/portal/rules")
        assert f'id="rule-{rule.webhook_rule_id}"' in listing.text
        assert 'id="rule-create-form"' not in listing.text
        shown = await partner.page(f"/portal/rules/{rule.webhook_rule_id}")
        assert shown.status_code == 200 and 'id="rule-edit-form"' not in shown.text
        form = {"webhookId": str(hook.webhook_id), "tableKey": "Order", "eventType": "U"}
        for path in ("/portal/rules/new", f"/portal/rules/{rule.webhook_rule_id}/edit",
                     f"/portal/rules/{rule.webhook_rule_id}/delete"):  # fmt: skip
            refused = await partner.submit(path, form)
            assert refused.status_code == 403 and "read-only" in refused.text
        assert (await partner.submit("/portal/rules/new", form, csrf="")).status_code == 403
    assert await rules_of(gateway, record.group_key) == [rule]
