"""What every endpoint shares: the context, authentication, reading bodies and parameters, and
the description of each endpoint that gateway.openapi writes the document from."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway import filters, wire
from gateway.catalogue import Catalogue
from gateway.config import Settings
from gateway.errors import (
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    ValidationError,
)
from gateway.management import Management
from gateway.models import Scope, utcnow
from gateway.outbound import Outbound
from gateway.publishing import Publishing
from gateway.ratelimit import RateLimiter
from gateway.rules import Rules
from gateway.schemas import Circumstances, M, parse, parse_batch
from gateway.store import Store
from gateway.store.base import Page, Query
from gateway.wakeup import Wakeup

if TYPE_CHECKING:
    from gateway.delivery import Worker

Endpoint = Callable[[Request], Awaitable[Response]]
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 250
MAX_PAGE_NUMBER = 1_000_000
ABSENT = ("", "none", "null")
# The query parameters of every query endpoint (page_query and filter_param read them).
PAGING = ("filter", "order", "pageSize", "pageNumber")


@dataclass(frozen=True)
class Operation:
    """What an endpoint takes and answers, for the OpenAPI document: its answer's model (a
    pydantic type) with its status, the problems it may answer beyond those of every
    endpoint, the query parameters it reads, the names `include` takes, and its body's model,
    taken one at a time or, with `batch` naming the setting that bounds them, as an array
    too. Its summary is its handler's docstring."""

    summary: str
    ok: Any
    errors: tuple[int, ...] = ()
    query: tuple[str, ...] = ()
    includes: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    batch: str | None = None
    status: int = 200


# Every endpoint's Operation, by handler.
OPERATIONS: dict[Endpoint, Operation] = {}


def operation(ok: Any, *errors: int, **described: Any) -> Callable[[Endpoint], Endpoint]:
    """Describe an endpoint (see Operation) for the OpenAPI document."""

    def register(handler: Endpoint) -> Endpoint:
        summary = " ".join((handler.__doc__ or "").split("\n\n")[0].split())
        OPERATIONS[handler] = Operation(summary, ok, errors, **described)
        return handler

    return register


@dataclass
class Context:
    """The long-lived parts every request uses, and the services the handlers call; opened in
    the app's lifespan."""

    settings: Settings
    store: Store
    outbound: Outbound
    limiter: RateLimiter
    wakeup: Wakeup
    publishing: Publishing
    management: Management
    catalogue: Catalogue  # the event types each group declared, as enforced
    metrics_dir: str | None = None  # where serve's worker processes write theirs, if any
    clock: Callable[[], datetime] = field(default=utcnow)
    _worker: Worker | None = field(default=None, init=False, repr=False)

    @property
    def rules(self) -> Rules:
        """Creating and changing rules (gateway.rules), as the API and the portal do it."""
        return Rules(self.settings, self.store, self.catalogue)

    @property
    def worker(self) -> Worker | None:
        """The delivery worker of this process, if it runs one."""
        return self._worker

    @worker.setter
    def worker(self, worker: Worker | None) -> None:
        """Attach the worker of this process: publishes hand it their notifications, and
        the wake-up tells it of new work and changed webhooks."""
        if self._worker is not None:
            self.wakeup.detach(self._worker)
        self._worker = worker
        if worker is not None:
            self.wakeup.attach(worker)
        self.publishing.handoff = worker.handoff if worker is not None else None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: one API key of one group."""

    api_key_id: UUID
    group_key: UUID
    scopes: frozenset[Scope]


def context(request: Request) -> Context:
    """The application's context."""
    ctx: Context = request.app.state.ctx
    return ctx


def hash_key(key: str) -> str:
    """How API keys are stored: SHA-256 hex (keys are 256-bit random, so no slow hash needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


def presented_key(request: Request) -> str | None:
    """The key from Api-Key, ApiKey or Authorization: Bearer."""
    for header in ("api-key", "apikey"):
        if value := request.headers.get(header):
            return value.strip()
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


async def authenticate(request: Request, scope: Scope | None) -> Principal:
    """The caller's principal; 401 for a missing/unknown/revoked key, 403 without `scope`
    (None: any scope will do)."""
    ctx = context(request)
    key = presented_key(request)
    if key is None:
        raise Unauthorized("no API key: send it in the Api-Key header or as a Bearer token")
    record = await ctx.store.api_key_by_hash(hash_key(key))
    if record is None or record.revoked is not None:
        raise Unauthorized("the API key is unknown or revoked")
    ctx.limiter.check(str(record.api_key_id))
    if scope is not None and scope not in record.scopes:
        raise Forbidden(f"the API key lacks the '{scope.value}' scope")
    principal = Principal(record.api_key_id, record.group_key, record.scopes)
    request.state.principal = principal
    return principal


async def read_json(request: Request) -> Any:
    """The JSON body, within the size limit (413) and well-formed (400)."""
    limit = context(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    if not body.strip():
        raise ValidationError.field("body", "a JSON body is required")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationError.field("body", f"malformed JSON: {exc}") from exc


def param(request: Request, name: str) -> str | None:
    """A query parameter by case-insensitive name; empty or 'None' counts as absent."""
    lowered = name.lower()
    for key, value in request.query_params.multi_items():
        if key.lower() == lowered and value.strip().lower() not in ABSENT:
            return value.strip()
    return None


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high]."""
    raw = param(request, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValidationError.field(name, f"must be a whole number, not {raw!r}") from exc
    if not low <= value <= high:
        raise ValidationError.field(name, f"must be between {low} and {high}")
    return value


def page_query(request: Request, filter_node: Any) -> Query:
    """The order and page parameters with an already parsed filter."""
    size = int_param(request, "pageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    number = int_param(request, "pageNumber", 0, 0, MAX_PAGE_NUMBER)
    return Query(filter_node, param(request, "order"), size, number)


def includes(request: Request, allowed: dict[str, str]) -> set[str]:
    """The `include` names, each one of `allowed` (lowercase -> wire name)."""
    raw = param(request, "include")
    if raw is None:
        return set()
    chosen = set()
    for part in (p.strip().lower() for p in raw.split(",") if p.strip()):
        if part not in allowed:
            names = ", ".join(sorted(allowed.values()))
            raise ValidationError.field("include", f"unknown include '{part}'; allowed: {names}")
        chosen.add(allowed[part])
    return chosen


def path_id(request: Request, name: str) -> UUID:
    """A UUID path parameter; a malformed one can name nothing, so it is a 404."""
    raw = request.path_params[name]
    try:
        return UUID(raw)
    except ValueError as exc:
        raise NotFound(f"no {name} {raw!r}") from exc


def json_response(data: Any, status: int = 200) -> Response:
    """A JSON response encoded with orjson."""
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def filter_param(
    request: Request, fields: Iterable[str], *, azure: bool = False
) -> filters.Node | None:
    """The parsed `filter` parameter over these (lowercase) fields, within the limits."""
    settings = context(request).settings
    return filters.parse_filter(
        param(request, "filter") or "",
        fields=set(fields),
        azure_literals=azure,
        max_length=settings.max_filter_length,
        max_depth=settings.max_filter_depth,
    )


R = TypeVar("R")


async def answer_page(
    request: Request,
    queryable: Iterable[str],
    listed: Callable[[Query], Awaitable[Page[R]]],
    shown: Callable[[R], Any],
) -> Response:
    """A resource's `query` answer: the `filter` over its `queryable` (lower-case wire) names,
    the order and page parameters, the page `listed` finds, each record as `shown`."""
    q = page_query(request, filter_param(request, queryable))
    page = await listed(q)
    records = [shown(r) for r in page.records]
    return json_response(wire.fetch_result(records, page.total_count, q.page_size, q.page_number))


async def read_batch(
    request: Request, model: type[M], noun: str, now: datetime, most: int | None = None
) -> list[M]:
    """A batch body: one `model` object or an array of 1 to `most` (max_batch_size) of them
    (`noun` in the error), each checked as of `now`; an error names the item ("[2].name")."""
    settings = context(request).settings
    body = await read_json(request)
    most = settings.max_batch_size if most is None else most
    return parse_batch(model, body, most=most, noun=noun, given=Circumstances(now, settings))


async def read_patch(request: Request, model: type[M], now: datetime) -> tuple[M, set[str]]:
    """A PATCH's body checked as of `now`, and the attributes it gives."""
    given = Circumstances(now, context(request).settings)
    return parse(model, await read_json(request), given=given)


async def owned(
    request: Request,
    principal: Principal,
    name: str,
    noun: str,
    get: Callable[[UUID, UUID], Awaitable[R | None]],
) -> R:
    """The record the path parameter `name` identifies in the caller's group, as `get(group
    key, id)` reads it; a 404 ("no <noun> <id>") if the group has none."""
    record_id = path_id(request, name)
    found = await get(principal.group_key, record_id)
    if found is None:
        raise NotFound(f"no {noun} {record_id}")
    return found
