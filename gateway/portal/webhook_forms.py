"""The webhook form of the portal: what it shows for a webhook, and the API body (the same
WebhookCreate and WebhookPatch the API parses, so every rule holds) made of what was sent.

An edit sends only the fields whose text differs from what the form shows for the webhook as
stored, so a PATCH names only what the partner changed: an unchanged callback runs no
handshake, and nothing is written over a value the partner did not touch.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from gateway.errors import ValidationError
from gateway.models import Header, Webhook
from gateway.portal.web import Form

# The form's fields, by the API's wire names (their ids are "field-<name>").
FIELDS = (
    "name",
    "callbackUrl",
    "callbackHttpMethod",
    "requestContentType",
    "expirationDate",
    "retryCount",
    "headers",
    "authenticationId",
    "signatureScheme",
    "signatureHeader",
    "deliveryOrder",
)
NEW = {
    "name": "",
    "callbackUrl": "",
    "callbackHttpMethod": "POST",
    "requestContentType": "Full",
    "expirationDate": "",
    "retryCount": "3",
    "headers": "",
    "authenticationId": "",
    "signatureScheme": "StandardWebhooks",
    "signatureHeader": "",
    "deliveryOrder": "Unordered",
}
MINUTE_FORMAT = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends, read as UTC


def shown(hook: Webhook | None) -> dict[str, str]:
    """The form's text for a webhook as stored (or for a new one)."""
    if hook is None:
        return dict(NEW)
    expiry = hook.expiration_date
    return {
        "name": hook.name,
        "callbackUrl": hook.callback_url,
        "callbackHttpMethod": hook.callback_http_method.value,
        "requestContentType": hook.request_content_type.value,
        "expirationDate": expiry.astimezone(UTC).strftime(MINUTE_FORMAT) if expiry else "",
        "retryCount": str(hook.retry_count),
        "headers": _header_lines(hook.headers),
        "authenticationId": str(hook.authentication_id or ""),
        "signatureScheme": hook.signature_scheme.value,
        "signatureHeader": hook.signature_header or "",
        "deliveryOrder": hook.delivery_order.value,
    }


def _header_lines(headers: tuple[Header, ...]) -> str:
    return "\n".join(f"{h.name}: {h.value}" for h in headers)


def submitted(form: Form) -> dict[str, str]:
    """The form's fields as sent (those it sent), line ends made plain."""
    return {name: form.get(name).replace("\r\n", "\n") for name in FIELDS if form.has(name)}


def create_body(sent: dict[str, str]) -> dict[str, Any]:
    """A WebhookCreate body of the whole form."""
    return _body({**NEW, **sent})


def patch_body(hook: Webhook, sent: dict[str, str]) -> dict[str, Any]:
    """A WebhookPatch body of the fields changed from what the form showed for `hook`."""
    before = shown(hook)
    return _body({name: text for name, text in sent.items() if text != before[name]})


def _body(texts: dict[str, str]) -> dict[str, Any]:
    """Each field's text as the API's JSON takes it: a blank optional one as null, numbers
    and dates as such (text that is neither is passed on for the schema to refuse)."""
    body: dict[str, Any] = {}
    for name, text in texts.items():
        if name in ("expirationDate", "authenticationId", "signatureHeader") and not text:
            body[name] = None
        elif name == "retryCount":
            body[name] = int(text) if re.fullmatch(r"-?\d{1,6}", text) else text
        elif name == "expirationDate":
            body[name] = _instant(text)
        elif name == "headers":
            body[name] = _headers(text)
        else:
            body[name] = text
    return body


def _instant(text: str) -> str:
    try:
        moment = datetime.strptime(text, MINUTE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return text
    return moment.isoformat().replace("+00:00", "Z")


def _headers(text: str) -> list[dict[str, str]]:
    out = []
    for line in filter(None, (raw.strip() for raw in text.split("\n"))):
        name, colon, value = line.partition(":")
        if not colon:
            raise ValidationError.field("headers", f"write each header as Name: value ({line!r})")
        out.append({"name": name.strip(), "value": value.strip()})
    return out


def field_errors(exc: ValidationError) -> dict[str, list[str]]:
    """A validation error's messages by form field ("[0].headers.1.name" -> "headers"); those
    of no field under "form"."""
    out: dict[str, list[str]] = {}
    for where, messages in (exc.errors or {"form": [exc.detail]}).items():
        head = re.sub(r"^\[\d+\]\.", "", where).split(".")[0]
        out.setdefault(head if head in FIELDS else "form", []).extend(messages)
    return out
