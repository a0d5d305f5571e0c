"""Domain records -> the camelCase JSON the ADS Platform clients expect (DESIGN §2)."""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import orjson

from gateway import lifecycle
from gateway.models import Attempt, Notification, Webhook, WebhookRule

ATTEMPTS = "attempts"
# include=... names for history rows, lowercase -> wire property.
HISTORY_INCLUDES = {
    "records": "records",
    "requestmessage": "requestMessage",
    "responsemessage": "responseMessage",
    "attempts": ATTEMPTS,
}


@functools.lru_cache(maxsize=1024)
def timestamp(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with a Z, as the ADS API writes dates.

    Cached: every notification's body carries its event's time, and the events of one publish
    share it.
    """
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def webhook(
    hook: Webhook, now: datetime, rules: Sequence[WebhookRule] | None = None
) -> dict[str, Any]:
    """A WebhookModel; an expired Active webhook reads as Inactive."""
    status, message = lifecycle.effective_status(hook, now)
    out: dict[str, Any] = {
        "webhookId": str(hook.webhook_id),
        "groupKey": str(hook.group_key),
        "name": hook.name,
        "statusCode": status.value,
        "statusMessage": message,
        "clientSecret": hook.client_secret,
        "requestContentType": hook.request_content_type.value,
        "callbackHttpMethod": hook.callback_http_method.value,
        "callbackUrl": hook.callback_url,
        "expirationDate": timestamp(hook.expiration_date),
        "retryCount": hook.retry_count,
        "created": timestamp(hook.created),
        "createdUserId": str(hook.created_user_id),
        "modified": timestamp(hook.modified),
        "modifiedUserId": str(hook.modified_user_id),
        "partitionKey": hook.partition_key,
    }
    if rules is not None:
        out["webhookRules"] = [rule(r) for r in rules]
    return out


def rule(item: WebhookRule) -> dict[str, Any]:
    """A WebhookRuleModel."""
    return {
        "webhookRuleId": str(item.webhook_rule_id),
        "webhookId": str(item.webhook_id),
        "groupKey": str(item.group_key),
        "tableKey": item.table_key,
        "eventType": item.event_type.value,
        "filter": item.filter,
        "created": timestamp(item.created),
        "createdUserId": str(item.created_user_id),
        "modified": timestamp(item.modified),
        "modifiedUserId": str(item.modified_user_id),
    }


def history(
    row: Notification,
    include: Collection[str],
    select: Collection[str] | None,
    limit: int,
    logged: Sequence[Attempt] = (),
) -> dict[str, Any]:
    """A WebhookHistoryTableStorageModel; large strings only with include, truncated. With
    include=Attempts, every attempt in order: the failed ones from the attempt log (`logged`),
    then the successful one, which is the row's own."""
    out: dict[str, Any] = {
        "groupKey": str(row.group_key),
        "webhookId": str(row.webhook_id),
        "webhookHistoryId": str(row.notification_id),
        "eventType": f"{row.table_key}.{row.event_type.value}",
        "requestSent": row.request_sent,
        "isSuccessful": row.is_successful,
        "responseStatusCode": row.response_status_code,
        "processResultMessage": row.process_result_message,
        "failureCount": row.attempts - (1 if row.is_successful else 0),
        "timestamp": timestamp(row.timestamp),
    }
    for name in include:
        if name == ATTEMPTS:
            out[name] = attempts(row, logged, limit)
        elif name == "records":
            out[name] = truncate(orjson.dumps(list(row.records)).decode(), limit)
        else:
            text = row.request_message if name == "requestMessage" else row.response_message
            out[name] = truncate(text, limit)
    if select:
        out = {k: v for k, v in out.items() if k.lower() in select}
    return out


def attempts(row: Notification, logged: Sequence[Attempt], limit: int) -> list[dict[str, Any]]:
    """Every attempt of a notification, oldest first."""
    out = [
        _attempt(a.attempt, a.timestamp, False, a.response_status_code,
                 a.process_result_message, a.request_message, a.response_message, limit)
        for a in logged
    ]  # fmt: skip
    if row.is_successful:
        out.append(
            _attempt(row.attempts, row.timestamp, True, row.response_status_code,
                     row.process_result_message, row.request_message, row.response_message,
                     limit)
        )  # fmt: skip
    return out


def _attempt(
    number: int, when: datetime, ok: bool, status: str | None, message: str | None,
    request: str | None, response: str | None, limit: int,
) -> dict[str, Any]:  # fmt: skip
    return {
        "attempt": number, "timestamp": timestamp(when), "isSuccessful": ok,
        "responseStatusCode": status, "processResultMessage": message,
        "requestMessage": truncate(request, limit), "responseMessage": truncate(response, limit),
    }  # fmt: skip


def truncate(text: str | None, limit: int) -> str | None:
    """At most `limit` characters, marked with how many were cut.

    History keeps request and response messages cut (the sender cuts them) and cuts again when
    it shows them, in case the limit has been lowered since: a text that ends in our mark and
    is cut again says how many characters the original lost, not how many the kept text lost.
    """
    if text is None or len(text) <= limit:
        return text
    cut = _CUT_MARK.search(text)
    if cut is not None and cut.start() >= limit:
        if cut.start() == limit:
            return text  # already cut at this limit
        dropped = cut.start() - limit + int(cut.group(1))
        return text[:limit] + f"…[truncated {dropped} characters]"
    return text[:limit] + f"…[truncated {len(text) - limit} characters]"


# How `truncate` marks a cut text, after its first `limit` characters.
_CUT_MARK = re.compile(r"…\[truncated ([0-9]+) characters\]\Z")


def fetch_result(
    records: list[dict[str, Any]], total: int, size: int, number: int
) -> dict[str, Any]:
    """A FetchResult page."""
    return {"records": records, "totalCount": total, "pageSize": size, "pageNumber": number}
