"""What a notification carries, field by field: the envelope's exact names and values, the
URL it goes to, and what a GET puts in its query string (contract §6).

Receivers read these names; a renamed or emptied field breaks every partner at once, so each
one is checked exactly, not only that a body came out.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from gateway import payloads
from gateway.errors import ValidationError
from gateway.models import ContentType, HttpMethod
from tests.factories import T0, make_notification, make_webhook

RECORDS = ({"id": "42", "total": 10}, {"invoiceId": 43, "total": 11})


def _pair(method: HttpMethod, content: ContentType, url: str):  # type: ignore[no-untyped-def]
    hook = make_webhook(callback_http_method=method, request_content_type=content, callback_url=url)
    return hook, make_notification(hook, records=RECORDS, sequence=7, triggered_at=T0)


@pytest.mark.parametrize("content", [ContentType.FULL, ContentType.ID])
def test_the_envelope_names_every_field_exactly(content: ContentType) -> None:
    hook, note = _pair(HttpMethod.POST, content, "https://p.example/hook")
    rendered = payloads.render(hook, note)
    expected = {
        "webhookId": str(hook.webhook_id),
        "eventId": str(note.event_id),
        "notificationId": str(note.notification_id),
        "tableKey": "Invoice",
        "eventType": "U",
        "triggeredAt": "2030-01-01T12:00:00Z",
        "sequence": 7,
    }
    if content is ContentType.FULL:
        expected["records"] = list(RECORDS)
    else:
        expected["ids"] = ["42", "43"]
    assert orjson.loads(rendered.body or b"") == expected
    assert (rendered.method, rendered.url) == ("POST", "https://p.example/hook")


@pytest.mark.parametrize("method", [HttpMethod.PUT, HttpMethod.PATCH])
def test_a_body_goes_with_the_webhooks_own_method_to_its_url(method: HttpMethod) -> None:
    hook, note = _pair(method, ContentType.ID, "https://p.example/in?tenant=7")
    rendered = payloads.render(hook, note)
    assert (rendered.method, rendered.url) == (method.value, "https://p.example/in?tenant=7")
    assert rendered.signed_payload == rendered.body


def test_a_get_puts_the_same_fields_in_the_query_and_signs_exactly_that() -> None:
    hook, note = _pair(HttpMethod.GET, ContentType.ID, "https://p.example/hook")
    rendered = payloads.render(hook, note)
    assert rendered.method == "GET" and rendered.body is None
    parts = urlsplit(rendered.url)
    assert rendered.url.startswith("https://p.example/hook?webhookId=")
    assert rendered.signed_payload == parts.query.encode()
    assert parse_qs(parts.query, keep_blank_values=True) == {
        "webhookId": [str(hook.webhook_id)],
        "eventId": [str(note.event_id)],
        "notificationId": [str(note.notification_id)],
        "tableKey": ["Invoice"],
        "eventType": ["U"],
        "triggeredAt": ["2030-01-01T12:00:00Z"],
        "sequence": ["7"],
        "ids": ["42,43"],
    }


def test_a_get_keeps_the_partners_own_parameters_first() -> None:
    hook, note = _pair(HttpMethod.GET, ContentType.ID, "https://p.example/hook?tenant=7&a=b")
    rendered = payloads.render(hook, note)
    query = urlsplit(rendered.url).query
    assert query.startswith("tenant=7&a=b&webhookId=")
    assert rendered.signed_payload == query.encode()


def test_a_get_never_carries_records_in_its_url() -> None:
    # The API refuses GET with Full (contract §6); a row stored so anyway still sends only ids.
    hook, note = _pair(HttpMethod.GET, ContentType.FULL, "https://p.example/hook")
    query = parse_qs(urlsplit(payloads.render(hook, note).url).query)
    assert "records" not in query
    assert "total" not in urlsplit(payloads.render(hook, note).url).query


@pytest.mark.parametrize("record", [{"total": 1}, {"id": False}, {"invoiceId": True}])
def test_a_record_without_an_id_is_refused_as_a_records_error(record: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as caught:
        payloads.record_id(record, "Invoice")
    assert caught.value.errors == {"records": ["each record needs an 'id' or 'InvoiceId'"]}


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"ID": 5}, "5"),
        ({"INVOICEID": "x"}, "x"),
        ({"id": None, "invoiceId": "9"}, "9"),  # a null id is no id
        ({"id": {"nested": 1}, "invoiceId": "9"}, "9"),  # nor is an object or a list
        ({"id": [1], "invoiceId": "8"}, "8"),
        ({"id": 0}, "0"),
        ({"id": False, "invoiceId": 7}, "7"),  # nor is a boolean, though bool is an int
        ({"id": True, "invoiceId": 1.5}, "1.5"),
    ],
)
def test_which_property_is_the_id(record: dict[str, object], expected: str) -> None:
    assert payloads.record_id(record, "Invoice") == expected
