"""The OpenAPI 3.1 document: request schemas come from gateway.schemas, responses are below."""

from __future__ import annotations

import copy
import functools
from typing import Any

from gateway import schemas

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_DATE = {"type": ["string", "null"], "format": "date-time"}
_UUID = {"type": "string", "format": "uuid"}
_RULE_REF = {"$ref": "#/components/schemas/WebhookRuleModel"}

RESPONSE_SCHEMAS: dict[str, Any] = {
    "WebhookModel": {
        "type": "object",
        "properties": {
            "webhookId": _UUID,
            "groupKey": _UUID,
            "name": _STR,
            "statusCode": {"enum": ["Active", "Inactive", "Errored"]},
            "statusMessage": _NSTR,
            "clientSecret": _STR,
            "requestContentType": {"enum": ["Full", "Id"]},
            "callbackHttpMethod": {"enum": ["GET", "POST", "PATCH", "PUT"]},
            "callbackUrl": _STR,
            "expirationDate": _DATE,
            "retryCount": {"type": "integer", "minimum": 0, "maximum": 5},
            "created": _DATE,
            "createdUserId": _UUID,
            "modified": _DATE,
            "modifiedUserId": _UUID,
            "partitionKey": _NSTR,
            "webhookRules": {"type": "array", "items": _RULE_REF},
        },
        "required": ["webhookId", "groupKey", "name", "statusCode", "callbackUrl"],
    },
    "WebhookRuleModel": {
        "type": "object",
        "properties": {
            "webhookRuleId": _UUID,
            "webhookId": _UUID,
            "groupKey": _UUID,
            "tableKey": _STR,
            "eventType": {"enum": ["I", "U", "D"]},
            "filter": _NSTR,
            "created": _DATE,
            "createdUserId": _UUID,
            "modified": _DATE,
            "modifiedUserId": _UUID,
        },
        "required": ["webhookRuleId", "webhookId", "tableKey", "eventType"],
    },
    "WebhookHistoryTableStorageModel": {
        "type": "object",
        "properties": {
            "groupKey": _UUID,
            "webhookId": _UUID,
            "webhookHistoryId": _UUID,
            "eventType": _STR,
            "requestSent": {"type": "boolean"},
            "isSuccessful": {"type": "boolean"},
            "responseStatusCode": _NSTR,
            "processResultMessage": _NSTR,
            "failureCount": {"type": "integer"},
            "timestamp": _DATE,
            "records": _NSTR,
            "requestMessage": _NSTR,
            "responseMessage": _NSTR,
        },
    },
    "ActionResultModel": {
        "type": "object",
        "properties": {"messages": {"type": "array", "items": _STR}},
        "required": ["messages"],
    },
    "StatusModel": {
        "type": "object",
        "properties": {
            "groupKey": _UUID,
            "apiKeyId": _UUID,
            "loggedIn": {"type": "boolean"},
            "version": _STR,
        },
        "required": ["groupKey", "apiKeyId", "loggedIn"],
    },
    "RetryResult": {
        "type": "object",
        "properties": {"webhookHistoryId": _UUID, "status": _STR},
        "required": ["webhookHistoryId", "status"],
    },
    "TestResult": {
        "type": "object",
        "properties": {
            "webhookId": _UUID,
            "webhookHistoryId": _UUID,
            "delivered": {"type": "boolean"},
            "statusCode": {"type": ["integer", "null"]},
            "latencyMs": {"type": ["number", "null"]},
            "body": _NSTR,
            "error": _NSTR,
        },
        "required": ["webhookId", "delivered"],
    },
    "EventsAccepted": {
        "type": "object",
        "properties": {
            "eventIds": {"type": "array", "items": _UUID},
            "notificationCount": {"type": "integer"},
        },
        "required": ["eventIds"],
    },
    "Problem": {
        "type": "object",
        "properties": {
            "type": _STR,
            "title": _STR,
            "status": {"type": "integer"},
            "detail": _STR,
            "instance": _STR,
            "errors": {"type": "object", "additionalProperties": {"type": "array", "items": _STR}},
        },
        "required": ["title", "status"],
    },
}


def _fetch(model: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "records": {"type": "array", "items": {"$ref": f"#/components/schemas/{model}"}},
            "totalCount": {"type": "integer"},
            "pageSize": {"type": "integer"},
            "pageNumber": {"type": "integer"},
        },
        "required": ["records", "totalCount", "pageSize", "pageNumber"],
    }


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    problem = {"content": {"application/problem+json": {"schema": _ref("Problem")}}}
    return {str(c): {"description": "Problem", **problem} for c in (*codes, 401, 403, 413, 429)}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _STR}


# A query parameter left empty or spelled None or null counts as absent (gateway.api.common.param):
# lockstep-sdk sends "None" for a parameter its caller left unset.
_ABSENT = {"type": "string", "pattern": r"^\s*([Nn][Oo][Nn][Ee]|[Nn][Uu][Ll][Ll])?\s*$"}
_WHOLE_NUMBER = {"anyOf": [{"type": "integer"}, _ABSENT]}


def _query(*names: str) -> list[dict[str, Any]]:
    types = {"pageSize": _WHOLE_NUMBER, "pageNumber": _WHOLE_NUMBER}
    return [
        {"name": n, "in": "query", "required": False, "schema": types.get(n, _STR)} for n in names
    ]


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, ok: dict[str, Any], *errors: int, **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": {"200": ok, **_errors(*errors)}, **extra}


def _array(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name), "minItems": 1}


def _paths() -> dict[str, Any]:
    hook_id = [_path_param("webhookId")]
    rule_id = [_path_param("webhookRuleId")]
    return {
        "/api/v1/Webhooks": {
            "post": _op(
                "Create webhooks (each passes the handshake)",
                _json(_array("WebhookModel")),
                400,
                requestBody=_body(_array("WebhookCreate")),
            )
        },
        "/api/v1/Webhooks/query": {
            "get": _op(
                "Query webhooks",
                _json(_fetch("WebhookModel")),
                400,
                parameters=_query("filter", "include", "order", "pageSize", "pageNumber"),
            )
        },
        "/api/v1/Webhooks/{webhookId}": {
            "get": _op(
                "Retrieve a webhook",
                _json(_ref("WebhookModel")),
                400,
                404,
                parameters=hook_id + _query("include"),
            ),
            "patch": _op(
                "Update a webhook",
                _json(_ref("WebhookModel")),
                400,
                404,
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
                requestBody=_body(_array("RuleCreate")),
            )
        },
        "/api/v1/WebhookRules/query": {
            "get": _op(
                "Query rules",
                _json(_fetch("WebhookRuleModel")),
                400,
                parameters=_query("filter", "include", "order", "pageSize", "pageNumber"),
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
                + _query("filter", "select", "include", "pageSize", "pageNumber"),
            )
        },
        "/api/v1/Webhooks/{webhookId}/history/{webhookHistoryId}/retry": {
            "get": _op(
                "Queue a failed notification again now",
                _json(_ref("RetryResult")),
                400,
                404,
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
                "requestBody": _body({"oneOf": [_ref("EventIn"), _array("EventIn")]}),
                "responses": {"202": _json(_ref("EventsAccepted"), "Accepted"), **_errors(400)},
            }
        },
        "/api/v1/Status": {"get": _op("Who am I", _json(_ref("StatusModel")))},
    }


@functools.cache
def _cached(version: str) -> dict[str, Any]:
    components = {**schemas.openapi_schemas(), **RESPONSE_SCHEMAS}
    # pydantic nests enum definitions under $defs; lift them to components.
    nested = [schema.pop("$defs", {}) for schema in components.values()]
    for defs in nested:
        components.update(defs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Webhook gateway", "version": version},
        "paths": _paths(),
        "components": {
            "schemas": components,
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "Api-Key"}},
        },
        "security": [{"ApiKey": []}],
    }


def document(version: str) -> dict[str, Any]:
    """The OpenAPI document (a fresh copy each call)."""
    return copy.deepcopy(_cached(version))
