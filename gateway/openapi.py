"""The OpenAPI 3.1 document, generated from the routes and the models that define each resource.

Each route's handlers say what they take and answer (gateway.api.common.operation); the request
bodies' schemas come from gateway.schemas, the responses' from gateway.wire, whose models are
closed (additionalProperties: false) and name each field the server sends. Every query
parameter a handler reads is declared (and none it ignores), and the limits that are settings
(batch sizes, records per event, filter length) are those the server runs with.
tests/integration/test_openapi.py and schemathesis (test_fuzz.py) hold it to that.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import TypeAdapter

from gateway import schemas, wire
from gateway.api.common import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_NUMBER,
    MAX_PAGE_SIZE,
    OPERATIONS,
    Endpoint,
    Operation,
)
from gateway.config import Settings
from gateway.resource import Resource

# The API: each path's handlers by method (gateway.app wires the same table).
Paths = Mapping[str, Mapping[str, Endpoint]]
_UUID = {"type": "string", "format": "uuid"}
_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF.format(model=name)}


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


def _parameter(name: str, op: Operation, settings: Settings) -> dict[str, Any]:
    """One query parameter's schema."""
    text = {"type": "string", **schemas.NO_NUL}
    if name == "filter":
        return {
            **text,
            "maxLength": settings.max_filter_length,
            "description": "A filter (docs/contract.md §3): field op value, AND/OR, parentheses",
        }
    if name == "order":
        return {**text, "description": "field [ASC|DESC], ..."}
    if name == "include":
        return _names(op.includes)
    if name == "select":  # gateway.api.history._select
        return _names({*wire.WebhookHistoryTableStorageModel.queryable(), *op.includes})
    if name == "pageSize":
        return _whole(1, MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE)
    if name == "pageNumber":
        return _whole(0, MAX_PAGE_NUMBER, 0)
    raise ValueError(f"no schema for the query parameter {name!r}")


def _parameters(path: str, op: Operation, settings: Settings) -> list[dict[str, Any]]:
    # Any text but a UUID names nothing: gateway.api.common.path_id answers it with a 404.
    ids = [
        {"name": name, "in": "path", "required": True, "schema": _UUID}
        for name in re.findall(r"{(\w+)}", path)
    ]
    asked = [
        {"name": n, "in": "query", "required": False, "schema": _parameter(n, op, settings)}
        for n in op.query
    ]
    return ids + asked


def _schema(model: Any, components: dict[str, Any]) -> dict[str, Any]:
    """The schema of an answer's type; the models it names go to `components`."""
    schema = TypeAdapter(model).json_schema(ref_template=_REF, mode="serialization")
    components.update(schema.pop("$defs", {}))
    if "title" in schema and schema["title"] in {m.__name__ for m in _named()}:
        components[schema["title"]] = schema
        return _ref(schema["title"])
    return schema


@functools.cache
def _named() -> tuple[type[Any], ...]:
    """The answers' models that the document names (the others are written inline)."""
    return tuple(m for m in vars(wire).values() if isinstance(m, type) and issubclass(m, Resource))


def _body(op: Operation, settings: Settings) -> dict[str, Any]:
    """One object, or (a batch) one or an array of them, as the handlers take either."""
    schema = _ref(op.body.__name__)
    if op.batch is not None:
        most = getattr(settings, op.batch)
        array = {"type": "array", "items": schema, "minItems": 1, "maxItems": most}
        schema = {"oneOf": [schema, array]}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _responses(op: Operation, components: dict[str, Any]) -> dict[str, Any]:
    ok = {"application/json": {"schema": _schema(op.ok, components)}}
    problem = {"application/problem+json": {"schema": _ref("Problem")}}
    out = {str(op.status): {"description": "Accepted" if op.status == 202 else "OK", "content": ok}}
    for code in (*op.errors, 401, 403, 413, 429):
        out[str(code)] = {"description": "Problem", "content": problem}
    return out


def _operation(path: str, op: Operation, settings: Settings, components: dict[str, Any]) -> Any:
    out: dict[str, Any] = {"summary": op.summary}
    if parameters := _parameters(path, op, settings):
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = _body(op, settings)
    out["responses"] = _responses(op, components)
    return out


def _request_schemas(settings: Settings) -> dict[str, Any]:
    """The request bodies' schemas, with the limits these settings set."""
    components = schemas.openapi_schemas()
    components["EventIn"]["properties"]["records"]["maxItems"] = settings.max_records_per_event
    inline = components["WebhookCreate"]["properties"]["webhookRules"]["anyOf"][0]
    inline["maxItems"] = settings.max_batch_size
    if settings.require_https_callbacks:
        for body in ("WebhookCreate", "WebhookPatch"):
            components[body]["properties"]["callbackUrl"]["pattern"] = schemas.HTTPS_URL_PATTERN
    # pydantic nests enum definitions under $defs; lift them to components.
    for schema in list(components.values()):
        components.update(schema.pop("$defs", {}))
    for rule in ("RuleCreate", "RulePatch", "WebhookRuleIn"):
        text = components[rule]["properties"]["filter"]["anyOf"][0]
        text["maxLength"] = min(text["maxLength"], settings.max_filter_length)
    return components


@functools.cache
def _cached(version: str, settings: Settings, api: tuple[Any, ...]) -> dict[str, Any]:
    components = _request_schemas(settings)
    _schema(wire.Problem, components)
    paths = {
        path: {
            method.lower(): _operation(path, OPERATIONS[handler], settings, components)
            for method, handler in handlers
        }
        for path, handlers in api
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Webhook gateway", "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "Api-Key"}},
        },
        "security": [{"ApiKey": []}],
    }


def document(version: str, settings: Settings, api: Paths) -> dict[str, Any]:
    """The OpenAPI document of a server with these settings and paths (a fresh copy each
    call)."""
    key = tuple((path, tuple(handlers.items())) for path, handlers in api.items())
    return copy.deepcopy(_cached(version, settings, key))
