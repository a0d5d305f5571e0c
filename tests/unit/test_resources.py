"""Each resource defined once: the answers' wire shape, the fields filter and order may name,
the rules between a body's fields, and the closed schemas the OpenAPI document is made of."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic.alias_generators import to_camel

from gateway import openapi, signing, wire, wire_values
from gateway.app import API
from gateway.config import Settings
from gateway.errors import ValidationError
from gateway.models import NotificationState, Webhook, WebhookStatus, marked, settable
from gateway.resource import Resource
from gateway.schemas import (
    Circumstances,
    EventIn,
    RuleCreate,
    RulePatch,
    WebhookCreate,
    WebhookPatch,
    parse,
    parse_batch,
)
from gateway.store import base
from tests.factories import make_notification, make_rule, make_webhook

NOW = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
HOOK = {
    "name": "n",
    "requestContentType": "Full",
    "callbackHttpMethod": "POST",
    "callbackUrl": "https://partner.example/hook",
}


def test_a_webhook_answers_every_field_in_its_wire_spelling() -> None:
    hook = make_webhook(partition_key="p", expiration_date=NOW + timedelta(days=1))
    rule = make_rule(hook, filter="total gt 5")
    answer = wire.webhook(hook, NOW, [rule])
    assert answer == {
        "webhookId": str(hook.webhook_id),
        "groupKey": str(hook.group_key),
        "name": hook.name,
        "statusCode": "Active",
        "statusMessage": None,
        "clientSecret": hook.client_secret,
        "requestContentType": hook.request_content_type.value,
        "callbackHttpMethod": hook.callback_http_method.value,
        "callbackUrl": hook.callback_url,
        "expirationDate": "2030-01-03T03:04:05.678901Z",
        "retryCount": hook.retry_count,
        "created": wire_values.timestamp(hook.created),
        "createdUserId": str(hook.created_user_id),
        "modified": wire_values.timestamp(hook.modified),
        "modifiedUserId": str(hook.modified_user_id),
        "partitionKey": "p",
        "signatureScheme": "StandardWebhooks",
        "signatureHeader": None,
        "publicKey": None,
        "successPolicy": "Any2xx",
        "retryPolicy": "AllFailures",
        "authenticationId": None,
        "headers": [],
        "failureWindow": None,
        "deliveryOrder": "Unordered",
        "webhookRules": [wire.rule(rule)],
    }
    assert wire.rule(rule)["filter"] == "total gt 5"
    assert "webhookRules" not in wire.webhook(hook, NOW)  # only on request


def test_an_expired_active_webhook_reads_as_inactive() -> None:
    hook = make_webhook(expiration_date=NOW - timedelta(seconds=1))
    answer = wire.webhook(hook, NOW)
    assert answer["statusCode"] == "Inactive"
    assert answer["statusMessage"]


def test_a_history_entry_computes_its_event_type_and_failure_count() -> None:
    note = make_notification(
        state=NotificationState.SUCCEEDED, attempts=3, is_successful=True, request_message="x"
    )
    entry = wire.history(note, set(), None, 100)
    assert entry["eventType"] == "Invoice.U"
    assert entry["failureCount"] == 2
    assert entry["webhookHistoryId"] == str(note.notification_id)
    assert "requestMessage" not in entry  # only with include
    included = wire.history(note, {"requestMessage"}, {"eventtype", "requestmessage"}, 100)
    assert included == {"eventType": "Invoice.U", "requestMessage": "x"}


def test_the_webhook_record_says_what_an_owner_sets_and_the_wire_shows() -> None:
    """Issue 18: a field marked Settable on the record is taken by both bodies under its wire
    name and written by a PATCH unless the lifecycle decides it; every field but the INTERNAL
    ones is answered; and the document describes each settable one."""
    marks = settable(Webhook)
    for body, more in ((WebhookCreate, ["webhookRules"]), (WebhookPatch, [])):
        fields = [f.alias for f in body.model_fields.values()]
        assert fields == [to_camel(n) for n in marks] + more  # rules come with a create only
    # And beside the scheme, what a change of scheme writes (its header, its key pair).
    written = (set(marks) - {"status_code"}) | signing.SCHEME_FIELDS
    # A request's handshake records when it verified the callback.
    assert (
        base.EDITABLE - {"modified", "modified_user_id", "verified_at", "reverify_due"} == written
    )
    internal = {name for name, f in marked(Webhook).items() if f.internal}
    assert internal == {"failure_count", "previous_secret", "previous_secret_expires",
                        "status_reason", "signing_key", "previous_signing_key",
                        "window_start", "expiry_warned_for", "verified_at",
                        "reverify_due"}  # fmt: skip
    write_only = {name for name, (_, mark) in marks.items() if mark.write_only}
    assert write_only == {"config"}
    answer = wire.webhook(make_webhook(failure_count=2, previous_secret="whsec_old"), NOW)
    assert set(answer) == {to_camel(name) for name in marked(Webhook)} - {
        to_camel(name) for name in internal | write_only
    }
    components = openapi.document("test", Settings(), API)["components"]["schemas"]
    for model in ("WebhookCreate", "WebhookPatch", "WebhookModel"):
        properties = components[model]["properties"]
        shown = set(marks) - (write_only if model == "WebhookModel" else set())
        assert all(properties[to_camel(name)]["description"] for name in shown), model
    assert "config" not in components["WebhookModel"]["properties"]


# What a query may filter and order by (the store compiles exactly these): every scalar field
# the wire shows, never the client secret, nothing sent only on request.
QUERYABLE = [
    (wire.WebhookModel, "webhookId groupKey name statusCode statusMessage requestContentType "
     "callbackHttpMethod callbackUrl expirationDate retryCount created createdUserId modified "
     "modifiedUserId partitionKey signatureScheme signatureHeader publicKey successPolicy "
     "retryPolicy authenticationId deliveryOrder"),
    (wire.WebhookRuleModel, "webhookRuleId webhookId groupKey tableKey eventType filter created "
     "createdUserId modified modifiedUserId"),
    (wire.WebhookHistoryTableStorageModel, "webhookHistoryId webhookId groupKey eventType "
     "requestSent isSuccessful responseStatusCode processResultMessage failureCount timestamp "
     "isTest"),
    # Never the sealed secret, which the model does not even have.
    (wire.AuthenticationModel, "authenticationId groupKey name kind username headerName created "
     "createdUserId modified modifiedUserId"),
]  # fmt: skip


@pytest.mark.parametrize(("model", "names"), QUERYABLE)
def test_a_query_may_name_the_scalar_fields_the_wire_shows(
    model: type[Resource], names: str
) -> None:
    assert set(model.queryable()) == {name.lower() for name in names.split()}


def refusal(model: Any, body: Any, **given: Any) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        parse(model, body, given=Circumstances(**given))
    return caught.value.errors


def test_an_expiration_date_must_lie_ahead_of_the_request() -> None:
    past = {"expirationDate": "2030-01-02T03:04:05Z"}
    assert refusal(WebhookCreate, {**HOOK, **past}, now=NOW) == {
        "expirationDate": ["must be in the future"]
    }
    assert refusal(WebhookPatch, past, now=NOW) == {"expirationDate": ["must be in the future"]}
    spec, given = parse(WebhookPatch, {"expirationDate": None}, given=Circumstances(NOW))
    assert (spec.expiration_date, given) == (None, {"expiration_date"})


def test_errored_cannot_be_asked_for() -> None:
    errored = {"statusCode": "Errored"}
    for model, body in [(WebhookCreate, {**HOOK, **errored}), (WebhookPatch, errored)]:
        assert refusal(model, body) == {
            "statusCode": ["Errored is set by the gateway, not by a request"]
        }
    spec, _ = parse(WebhookCreate, {**HOOK, "statusCode": "Inactive"})
    assert spec.status_code is WebhookStatus.INACTIVE


def test_a_get_webhook_must_send_ids() -> None:
    body = {**HOOK, "callbackHttpMethod": "GET"}
    assert refusal(WebhookCreate, body) == {
        "requestContentType": ["a GET webhook carries no body, so it must use Id"]
    }
    parse(WebhookCreate, {**body, "requestContentType": "Id"})


@pytest.mark.parametrize(
    ("model", "name"),
    [(WebhookPatch, "name"), (WebhookPatch, "retryCount"), (RulePatch, "tableKey")],
)
def test_a_patch_may_not_null_a_required_field(model: Any, name: str) -> None:
    assert refusal(model, {name: None}) == {name: ["cannot be null"]}


def test_a_rule_filter_is_checked_against_the_settings() -> None:
    rule = {"webhookId": str(make_webhook().webhook_id), "tableKey": "Invoice", "eventType": "U"}
    deep = "(" * 3 + "a eq 1" + ")" * 3
    parse(RuleCreate, {**rule, "filter": deep})
    shallow = dataclasses.replace(Settings(), max_filter_depth=2)
    assert set(refusal(RuleCreate, {**rule, "filter": deep}, settings=shallow)) == {"filter"}
    assert set(refusal(RulePatch, {"filter": "a eq"})) == {"filter"}


def test_an_event_keeps_within_the_records_limit_and_each_record_has_an_id() -> None:
    event = {"tableKey": "Invoice", "eventType": "U", "records": [{"id": 1}, {"id": 2}]}
    one = dataclasses.replace(Settings(), max_records_per_event=1)
    assert refusal(EventIn, event, settings=one) == {"records": ["at most 1 records"]}
    for records in ([{"total": 1}], [{"id": False}]):  # the schema's id is a string or number
        no_id = {**event, "records": records}
        assert refusal(EventIn, no_id) == {"records": ["each record needs an 'id' or 'InvoiceId'"]}


def test_a_batch_names_the_item_that_failed_and_keeps_its_bounds() -> None:
    given = Circumstances(NOW)
    with pytest.raises(ValidationError) as caught:
        parse_batch(WebhookCreate, [HOOK, {**HOOK, "name": ""}], most=5, noun="x", given=given)
    assert set(caught.value.errors) == {"[1].name"}
    for body in ([], [HOOK] * 3):
        with pytest.raises(ValidationError, match="send between 1 and 2 webhooks"):
            parse_batch(WebhookCreate, body, most=2, noun="webhooks", given=given)


def objects(schema: Any, components: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object schema an answer's schema reaches, following references."""
    found: list[dict[str, Any]] = []
    pending, seen = [schema], set()
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            if "$ref" in item:
                name = item["$ref"].rsplit("/", 1)[1]
                if name not in seen:
                    seen.add(name)
                    pending.append(components[name])
                continue
            if item.get("type") == "object" and "properties" in item:
                found.append(item)
            pending.extend(item.values())
    return found


def test_every_answer_schema_is_closed() -> None:
    """So schemathesis's response conformance check fails an answer with an undeclared field."""
    doc = openapi.document("test", Settings(), API)
    components = doc["components"]["schemas"]
    answers = [
        response["content"]
        for operations in doc["paths"].values()
        for operation in operations.values()
        for response in operation["responses"].values()
    ]
    reached = objects(answers, components)
    assert len(reached) > 10
    assert [o for o in reached if o.get("additionalProperties") is not False] == []
