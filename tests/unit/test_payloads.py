"""Notification rendering: Full vs Id, JSON body vs GET query string, and what is signed."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from gateway import payloads
from gateway.errors import ValidationError
from gateway.models import ContentType, HttpMethod
from tests.factories import make_notification, make_webhook

RECORDS = ({"id": "42", "total": 10}, {"ID": 43, "total": 11})


def _pair(method: HttpMethod, content: ContentType, url: str = "https://p.example/hook"):  # type: ignore[no-untyped-def]
    hook = make_webhook(callback_http_method=method, request_content_type=content, callback_url=url)
    note = make_notification(hook, records=RECORDS, sequence=7)
    return hook, note


@pytest.mark.parametrize("method", [HttpMethod.POST, HttpMethod.PUT, HttpMethod.PATCH])
def test_full_sends_the_records_in_a_json_body(method: HttpMethod) -> None:
    hook, note = _pair(method, ContentType.FULL)
    rendered = payloads.render(hook, note)
    body = orjson.loads(rendered.body or b"")
    assert rendered.method == method.value
    assert body["records"] == list(RECORDS)
    assert "ids" not in body
    assert rendered.signed_payload == rendered.body
    assert body["sequence"] == note.sequence
    assert body["webhookId"] == str(hook.webhook_id)
    assert body["triggeredAt"].endswith("Z")


def test_id_sends_only_the_ids() -> None:
    hook, note = _pair(HttpMethod.POST, ContentType.ID)
    body = orjson.loads(payloads.render(hook, note).body or b"")
    assert body["ids"] == ["42", "43"]
    assert "records" not in body


def test_get_carries_the_fields_as_query_parameters_and_signs_the_query_string() -> None:
    hook, note = _pair(HttpMethod.GET, ContentType.ID, "https://p.example/hook?tenant=7")
    rendered = payloads.render(hook, note)
    parts = urlsplit(rendered.url)
    query = parse_qs(parts.query)
    assert rendered.body is None
    assert query["tenant"] == ["7"]
    assert query["ids"] == ["42,43"]
    assert query["eventType"] == ["U"]
    assert rendered.signed_payload == parts.query.encode()


def test_record_ids_come_from_id_or_table_key_id() -> None:
    assert payloads.record_id({"invoiceId": "9"}, "Invoice") == "9"
    assert payloads.record_id({"INVOICEID": 9, "total": 1}, "Invoice") == "9"
    # `id` wins wherever it stands; an id of another type does not count.
    assert payloads.record_id({"invoiceId": "9", "Id": "1"}, "Invoice") == "1"
    assert payloads.record_id({"id": True, "invoiceId": "9"}, "Invoice") == "9"
    with pytest.raises(ValidationError, match="'id' or 'InvoiceId'"):
        payloads.record_id({"total": 1}, "Invoice")
