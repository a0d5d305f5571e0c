"""The OpenAPI 3.1 document: request schemas come from gateway.schemas, responses are below.

It says what this server does: every response schema is closed (additionalProperties: false)
and names each field the server sends, every query parameter a handler reads is declared (and
none it ignores), and the limits that are settings (batch sizes, records per event, filter
length) are those the server runs with. tests/integration/test_openapi.py and schemathesis
(test_fuzz.py) hold it to that.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable
from typing import Any

from gateway import schemas
from gateway.api.common import DEFAULT_PAGE_SIZE, MAX_PAGE_NUMBER, MAX_PAGE_SIZE
from gateway.api.webhooks import WEBHOOK_INCLUDES
from gateway.config import Settings
from gateway.models import Scope
from gateway.store.base import HISTORY_FIELDS
from gateway.wire import HISTORY_INCLUDES

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_DATE = {"type": "string", "format": "date-time"}
_NDATE = {"type": ["string", "null"], "format": "date-time"}
_UUID = {"type": "string", "format": "uuid"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _closed(properties: dict[str, Any], *optional: str) -> dict[str, Any]:
    """An object with exactly these properties, each always sent unless named optional."""
    required = [name for name in properties if name not in optional]
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


_AUDIT = {"created": _DATE, "createdUserId": _UUID, "modified": _DATE, "modifiedUserId": _UUID}
_HISTORY = {
    "groupKey": _UUID,
    "webhookId": _UUID,
    "webhookHistoryId": _UUID,
    "eventType": _STR,
    "requestSent": _BOOL,
    "isSuccessful": _BOOL,
    "responseStatusCode": _NSTR,
    "processResultMessage": _NSTR,
    "failureCount": _INT,
    "timestamp": _DATE,
    "records": _STR,
    "requestMessage": _NSTR,
    "responseMessage": _NSTR,
    "attempts": {"type": "array", "items": _ref("AttemptModel")},
}
RESPONSE_SCHEMAS: dict[str, Any] = {
    "WebhookModel": _closed(
        {
            "webhookId": _UUID,
            "groupKey": _UUID,
            "name": _STR,
            "statusCode": {"enum": ["Active", "Inactive", "Errored"]},
            "statusMessage": _NSTR,
            "clientSecret": _STR,
            "requestContentType": {"enum": ["Full", "Id"]},
            "callbackHttpMethod": {"enum": ["GET", "POST", "PATCH", "PUT"]},
            "callbackUrl": _STR,
            "expirationDate": _NDATE,
            "retryCount": {"type": "integer", "minimum": 0, "maximum": 5},
            **_AUDIT,
            "partitionKey": _NSTR,
            "webhookRules": {"type": "array", "items": _ref("WebhookRuleModel")},
        },
        "webhookRules",  # with include=WebhookRules
    ),
    "WebhookRuleModel": _closed(
        {
            "webhookRuleId": _UUID,
            "webhookId": _UUID,
            "groupKey": _UUID,
            "tableKey": _STR,
            "eventType": {"enum": ["I", "U", "D"]},
            "filter": _NSTR,
            **_AUDIT,
        }
    ),
    # Every property is optional: `select` picks which are sent, `include` adds the last four.
    "WebhookHistoryTableStorageModel": _closed(_HISTORY, *_HISTORY),
    # One attempt of a notification (history include=Attempts): the failed ones, then the
    # success, oldest first.
    "AttemptModel": _closed(
        {
            "attempt": {"type": "integer", "minimum": 1},
            "timestamp": _DATE,
            "isSuccessful": _BOOL,
            "responseStatusCode": _NSTR,
            "processResultMessage": _NSTR,
            "requestMessage": _NSTR,
            "responseMessage": _NSTR,
        }
    ),
    "ActionResultModel": _closed({"messages": {"type": "array", "items": _STR}}),
    "StatusModel": _closed(
        {
            "groupKey": _UUID,
            "apiKeyId": _UUID,
            "loggedIn": _BOOL,
            "userName": _STR,
            "roles": {"type": "array", "items": {"enum": [s.value for s in Scope]}},
            "environment": _STR,
            "version": _STR,
        }
    ),
    "RetryResult": _closed({"webhookHistoryId": _UUID, "status": _STR}),
    "TestResult": _closed(
        {
            "webhookId": _UUID,
            "webhookHistoryId": _UUID,
            "delivered": _BOOL,
            "statusCode": {"type": ["integer", "null"]},
            "latencyMs": {"type": ["number", "null"]},
            "body": _NSTR,
            "error": _NSTR,
        }
    ),
    "EventsAccepted": _closed(
        {"eventIds": {"type": "array", "items": _UUID}, "notificationCount": _INT}
    ),
    "Problem": _closed(
        {
            "type": _STR,
            "title": _STR,
            "status": _INT,
            "detail": _STR,
            "instance": _STR,
            "errors": {"type": "object", "additionalProperties": {"type": "array", "items": _STR}},
        },
        "errors",  # validation problems only
    ),
}


def _fetch(model: str) -> dict[str, Any]:
    return _closed(
        {
            "records": {"type": "array", "items": _ref(model)},
            "totalCount": _INT,
            "pageSize": _INT,
            "pageNumber": _INT,
        }
    )


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    problem = {"content": {"application/problem+json": {"schema": _ref("Problem")}}}
    return {str(c): {"description": "Problem", **problem} for c in (*codes, 401, 403, 413, 429)}


def _path_param(name: str) -> dict[str, Any]:
    # Any other text names nothing: gateway.api.common.path_id answers it with a 404.
    return {"name": name, "in": "path", "required": True, "schema": _UUID}


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


# A query parameter left empty or spelled None or null counts as absent (gateway.api.common.param):
# lockstep-sdk sends "None" for a parameter its caller left unset.
_ABSENT_RE = rf"^\s*(({_any_case('none')}|{_any_case('null')})\s*)?$"
_ABSENT = {"type": "string", "pattern": _ABSENT_RE}


def _names(names: Iterable[str]) -> dict[str, Any]:
    """A comma-separated list of these names, in any case (gateway.api.common.includes)."""
    item = "(" + "|".join(_any_case(n) for n in sorted(names)) + ")"
    # Names are letters only, so no two parts can match the same text: a string that does not
    # match fails in polynomial time (a nested "\s*(,\s*x?\s*)*" took exponential time in
    # Python's re, which hypothesis-jsonschema uses to generate and check strings).
    listed = rf"^[\s,]*({item}(\s*,[\s,]*{item})*)?[\s,]*$"
    return {"type": "string", "pattern": f"{listed}|{_ABSENT_RE}"}


def _whole(low: int, high: int, default: int) -> dict[str, Any]:
    number = {"type": "integer", "minimum": low, "maximum": high, "default": default}
    return {"anyOf": [number, _ABSENT]}


def _parameters(settings: Settings, includes: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Every query parameter's schema, by name."""
    text = {"type": "string", **schemas.NO_NUL}
    return {
        "filter": {
            **text,
            "maxLength": settings.max_filter_length,
            "description": "A filter (DESIGN §3): field op value, AND/OR, parentheses",
        },
        "order": {**text, "description": "field [ASC|DESC], ..."},
        "include": _names(includes),
        "select": _names({*HISTORY_FIELDS, *HISTORY_INCLUDES}),  # gateway.api.history._select
        "pageSize": _whole(1, MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE),
        "pageNumber": _whole(0, MAX_PAGE_NUMBER, 0),
    }


def _query(settings: Settings, *names: str, includes: Iterable[str] = ()) -> list[dict[str, Any]]:
    known = _parameters(settings, includes)
    return [{"name": n, "in": "query", "required": False, "schema": known[n]} for n in names]


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, ok: dict[str, Any], *errors: int, **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": {"200": ok, **_errors(*errors)}, **extra}


def _array(name: str, most: int | None = None) -> dict[str, Any]:
    limit = {} if most is None else {"maxItems": most}
    return {"type": "array", "items": _ref(name), "minItems": 1, **limit}


def _one_or_many(name: str, most: int) -> dict[str, Any]:
    """One object, or an array of them (the handlers take either)."""
    return {"oneOf": [_ref(name), _array(name, most)]}


def _paths(settings: Settings) -> dict[str, Any]:
    hook_id = [_path_param("webhookId")]
    rule_id = [_path_param("webhookRuleId")]
    batch = settings.max_batch_size
    paging = ("filter", "order", "pageSize", "pageNumber")
    return {
        "/api/v1/Webhooks": {
            "post": _op(
                "Create webhooks (each passes the handshake)",
                _json(_array("WebhookModel")),
                400,
                requestBody=_body(_one_or_many("WebhookCreate", batch)),
            )
        },
        "/api/v1/Webhooks/query": {
            "get": _op(
                "Query webhooks",
                _json(_fetch("WebhookModel")),
                400,
                parameters=_query(settings, "include", *paging, includes=WEBHOOK_INCLUDES),
            )
        },
        "/api/v1/Webhooks/{webhookId}": {
            "get": _op(
                "Retrieve a webhook",
                _json(_ref("WebhookModel")),
                400,
                404,
                parameters=hook_id + _query(settings, "include", includes=WEBHOOK_INCLUDES),
            ),
            "patch": _op(
                "Update a webhook (409 when a value it relied on changed meanwhile)",
                _json(_ref("WebhookModel")),
                400,
                404,
                409,
                parameters=hook_id,
                requestBody=_body(_ref("WebhookPatch")),
            ),
            "delete": _op(
                "Delete a webhook", _json(_ref("ActionResultModel")), 404, parameters=hook_id
            ),
        },
        "/api/v1/Webhooks/{webhookId}/regenerate-client-secret": {
            "patch": _op("New client secret", _json(_ref("WebhookModel")), 404, parameters=hook_id)
        },
        "/api/v1/WebhookRules": {
            "post": _op(
                "Create rules",
                _json(_array("WebhookRuleModel")),
                400,
                requestBody=_body(_one_or_many("RuleCreate", batch)),
            )
        },
        "/api/v1/WebhookRules/query": {
            "get": _op(
                "Query rules",
                _json(_fetch("WebhookRuleModel")),
                400,
                parameters=_query(settings, *paging),
            )
        },
        "/api/v1/WebhookRules/{webhookRuleId}": {
            "get": _op("Retrieve a rule", _json(_ref("WebhookRuleModel")), 404, parameters=rule_id),
            "patch": _op(
                "Update a rule",
                _json(_ref("WebhookRuleModel")),
                400,
                404,
                parameters=rule_id,
                requestBody=_body(_ref("RulePatch")),
            ),
            "delete": _op(
                "Delete a rule", _json(_ref("ActionResultModel")), 404, parameters=rule_id
            ),
        },
        "/api/v1/Webhooks/{webhookId}/history/query": {
            "get": _op(
                "Query a webhook's delivery history",
                _json(_fetch("WebhookHistoryTableStorageModel")),
                400,
                404,
                parameters=hook_id
                + _query(settings, "select", "include", *paging, includes=HISTORY_INCLUDES),
            )
        },
        "/api/v1/Webhooks/{webhookId}/history/{webhookHistoryId}/retry": {
            "get": _op(
                "Queue a notification that was not delivered to go out now (409 while its "
                "webhook is not Active)",
                _json(_ref("RetryResult")),
                400,
                404,
                409,
                parameters=[*hook_id, _path_param("webhookHistoryId")],
            )
        },
        "/api/v1/Webhooks/{webhookId}/test": {
            "post": _op(
                "Send a signed sample notification now",
                _json(_ref("TestResult")),
                404,
                parameters=hook_id,
            )
        },
        "/api/v1/Events": {
            "post": {
                "summary": "Publish record changes (scope events)",
                "requestBody": _body(_one_or_many("EventIn", settings.max_events_per_request)),
                "responses": {"202": _json(_ref("EventsAccepted"), "Accepted"), **_errors(400)},
            }
        },
        "/api/v1/Status": {"get": _op("Who am I", _json(_ref("StatusModel")))},
    }


def _request_schemas(settings: Settings) -> dict[str, Any]:
    """The request bodies' schemas, with the limits these settings set."""
    components = schemas.openapi_schemas()
    components["EventIn"]["properties"]["records"]["maxItems"] = settings.max_records_per_event
    for rule in ("RuleCreate", "RulePatch"):
        text = components[rule]["properties"]["filter"]["anyOf"][0]
        text["maxLength"] = min(text["maxLength"], settings.max_filter_length)
    return components


@functools.cache
def _cached(version: str, settings: Settings) -> dict[str, Any]:
    components = {**_request_schemas(settings), **copy.deepcopy(RESPONSE_SCHEMAS)}
    # pydantic nests enum definitions under $defs; lift them to components.
    nested = [schema.pop("$defs", {}) for schema in components.values()]
    for defs in nested:
        components.update(defs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Webhook gateway", "version": version},
        "paths": _paths(settings),
        "components": {
            "schemas": components,
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "Api-Key"}},
        },
        "security": [{"ApiKey": []}],
    }


def document(version: str, settings: Settings) -> dict[str, Any]:
    """The OpenAPI document of a server with these settings (a fresh copy each call)."""
    return copy.deepcopy(_cached(version, settings))
