"""Tenant isolation, generated from the route table: group B can neither see nor change group A.

Group A's webhook, rule, history row and authentication are seeded straight into the store (no
handshake), then
every (method, path) of `gateway.app.API_ROUTES` is called with group B's key aimed at A's ids.
MATRIX says how each route is exercised, and a test checks it covers exactly the served routes,
so a new endpoint cannot slip past. Authentication (401) and scopes (403) are generated too.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from gateway.app import API_ROUTES
from gateway.models import ApiKey, NotificationState, Scope, utcnow
from gateway.portal.routes import PAGES
from gateway.portal.web import PREFIX as PORTAL_PREFIX
from gateway.store.base import Query
from tests.factories import (
    make_authentication,
    make_event,
    make_event_type,
    make_notification,
    make_rule,
    make_webhook,
)
from tests.gateway_server import RunningGateway
from tests.portal import Partner
from tests.receiver import Receiver

PROBLEM = "application/problem+json"
A_HOOK_PATH = "/a-hook"


def served_routes() -> list[tuple[str, str]]:
    """Every (method, path) the API serves; HEAD is left out: Starlette adds it to each GET
    route and it runs the GET handler, which the GET case already exercises."""
    pairs = {(m, r.path) for r in API_ROUTES for m in (r.methods or ()) if m != "HEAD"}
    return sorted(pairs, key=lambda pair: (pair[1], pair[0]))


def route_id(pair: tuple[str, str]) -> str:
    return f"{pair[0]} {pair[1].removeprefix('/api/v1/')}"


ROUTES = served_routes()


@dataclass
class World:
    """Two groups on one gateway; A owns a webhook, a rule, a failed history row, an
    authentication and an event type."""

    gateway: RunningGateway
    receiver: Receiver
    key_a: str
    key_b: str
    record_a: ApiKey
    record_b: ApiKey
    ids_a: dict[str, UUID]  # path parameter name -> A's id
    hook_b: UUID

    def path(self, template: str, ids: dict[str, UUID] | None = None) -> str:
        """The route's path with its parameters filled (with A's ids by default)."""
        chosen = ids or self.ids_a
        return re.sub(r"\{(\w+)\}", lambda m: str(chosen[m.group(1)]), template)

    async def call(
        self, key: str | None, method: str, path: str, body: Any = None, **params: Any
    ) -> httpx.Response:
        async with self.gateway.client(key) as api:
            return await api.request(method, path, json=body, params=params or None)

    async def state_of_a(self) -> tuple[Any, ...]:
        """Everything A owns, as the store holds it (frozen records compare by value)."""
        store, group = self.gateway.ctx.store, self.record_a.group_key
        hooks = await store.query_webhooks(group, Query())
        rules = await store.query_rules(group, Query())
        history = await store.query_history(group, self.ids_a["webhookId"], Query())
        auths = await store.query_authentications(group, Query())
        declared = await store.event_types_of_group(group)
        return (hooks.records, rules.records, history.records, hooks.total_count, auths.records,
                declared)  # fmt: skip

    def a_hook_contacted(self) -> bool:
        return any(seen.path == A_HOOK_PATH for seen in self.receiver.seen)


@pytest.fixture
async def world(gateway: RunningGateway, receiver: Receiver) -> World:
    key_a, record_a = await gateway.add_key("group-a")
    key_b, record_b = await gateway.add_key("group-b")
    store = gateway.ctx.store
    hook = make_webhook(record_a.group_key, callback_url=receiver.plan(A_HOOK_PATH))
    rule = make_rule(hook)
    event = make_event(record_a.group_key)
    note = make_notification(
        hook, event, state=NotificationState.FAILED, attempts=1, request_sent=True
    )
    hook_b = make_webhook(record_b.group_key, callback_url=receiver.plan("/b-hook"))
    auth = make_authentication(record_a.group_key)
    await store.add_authentications([auth])
    await store.add_webhooks([hook, hook_b])
    await store.add_rules([rule])
    await store.add_events([event], [note])
    declared = make_event_type(record_a.group_key)
    await store.add_event_types([declared])
    ids = {
        "webhookId": hook.webhook_id,
        "webhookRuleId": rule.webhook_rule_id,
        "webhookHistoryId": note.notification_id,
        "authenticationId": auth.authentication_id,
        "eventTypeId": declared.event_type_id,
    }
    return World(gateway, receiver, key_a, key_b, record_a, record_b, ids, hook_b.webhook_id)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


# -- How each route is exercised with B's key ------------------------------------------------

Runner = Callable[[World, str, str], Awaitable[None]]


async def owned(world: World, method: str, template: str) -> None:
    """B names A's ids in the path: 404, as for an id that does not exist."""
    body = BODIES.get((method, template))
    answer = await world.call(world.key_b, method, world.path(template), body)
    problem = assert_problem(answer, 404)
    # The handler said it, not the router: its detail names what was not found.
    assert problem["detail"].startswith("no ")


async def query(world: World, method: str, template: str) -> None:
    """B queries, filtering on A's ids and unfiltered: none of A's records come back."""
    field = next(f for prefix, f in QUERIED.items() if template.startswith(prefix))
    target = world.ids_a[field]
    filtered = await world.call(world.key_b, method, template, filter=f"{field} eq '{target}'")
    assert filtered.status_code == 200, filtered.text
    assert filtered.json()["totalCount"] == 0 and filtered.json()["records"] == []
    everything = await world.call(world.key_b, method, template)
    assert everything.status_code == 200, everything.text
    for a_id in world.ids_a.values():
        assert str(a_id) not in everything.text
    assert str(world.record_a.group_key) not in everything.text


async def create_rule(world: World, method: str, template: str) -> None:
    """A rule on A's webhook is refused exactly as one on a webhook that never existed."""

    def attempt(webhook_id: UUID) -> dict[str, Any]:
        return {"webhookId": str(webhook_id), "tableKey": "Invoice", "eventType": "U"}

    known = await world.call(world.key_b, method, template, [attempt(world.ids_a["webhookId"])])
    unknown_id = uuid4()
    unknown = await world.call(world.key_b, method, template, [attempt(unknown_id)])
    seen = assert_problem(known, 400)
    baseline = assert_problem(unknown, 400)
    neutral = str(seen).replace(str(world.ids_a["webhookId"]), "<id>")
    assert neutral == str(baseline).replace(str(unknown_id), "<id>")
    rules_b = await world.gateway.ctx.store.query_rules(world.record_b.group_key, Query())
    assert rules_b.total_count == 0


async def create_authentication(world: World, method: str, template: str) -> None:
    """B cannot plant an authentication in A's group by sending A's groupKey: it lands in B's."""
    body = {"name": "planted", "groupKey": str(world.record_a.group_key), "kind": "Basic",
            "username": "u", "password": "p"}  # fmt: skip
    answer = await world.call(world.key_b, method, template, [body])
    assert answer.status_code == 200, answer.text
    assert answer.json()[0]["groupKey"] == str(world.record_b.group_key)


async def create_webhook(world: World, method: str, template: str) -> None:
    """B cannot plant a webhook in A's group by sending A's groupKey: it lands in B's."""
    body = {
        "name": "planted",
        "groupKey": str(world.record_a.group_key),
        "requestContentType": "Full",
        "callbackHttpMethod": "POST",
        "callbackUrl": world.receiver.plan("/planted"),
    }
    answer = await world.call(world.key_b, method, template, [body])
    assert answer.status_code == 200, answer.text
    assert answer.json()[0]["groupKey"] == str(world.record_b.group_key)


async def declare_event_type(world: World, method: str, template: str) -> None:
    """B declares the pair A declared, with A's groupKey: no conflict (nothing of A's shows),
    and it lands in B's own group."""
    body = {"tableKey": "Invoice", "eventType": "U", "name": "planted",
            "groupKey": str(world.record_a.group_key)}  # fmt: skip
    answer = await world.call(world.key_b, method, template, [body])
    assert answer.status_code == 200, answer.text
    assert answer.json()[0]["groupKey"] == str(world.record_b.group_key)


async def publish(world: World, method: str, template: str) -> None:
    """B's event on A's table and event type notifies none of A's webhooks."""
    event = {"tableKey": "Invoice", "eventType": "U", "records": [{"id": "42"}]}
    answer = await world.call(world.key_b, method, template, event)
    assert answer.status_code == 202, answer.text
    assert answer.json()["notificationCount"] == 0


async def status(world: World, method: str, template: str) -> None:
    """Status answers for B's own group and key."""
    answer = await world.call(world.key_b, method, template)
    assert answer.status_code == 200, answer.text
    assert answer.json()["groupKey"] == str(world.record_b.group_key)
    assert answer.json()["apiKeyId"] == str(world.record_b.api_key_id)


async def portal_link(world: World, method: str, template: str) -> None:
    """B's portal link opens a session of B's group, whose pages show nothing of A's."""
    async with Partner(world.gateway) as partner:
        link = await partner.link(world.key_b)
        assert link["groupKey"] == str(world.record_b.group_key)
        assert (await partner.open(link["url"])).status_code == 303
        listing = await partner.page("/portal/webhooks")
    assert listing.status_code == 200
    assert str(world.hook_b) in listing.text
    for a_id in world.ids_a.values():
        assert str(a_id) not in listing.text


async def revoke_portal(world: World, method: str, template: str) -> None:
    """B's revocation ends B's portal sessions, never A's."""
    key_a, _ = await world.gateway.add_key("group-a")
    async with Partner(world.gateway) as a, Partner(world.gateway) as b:
        await a.enter(key_a)
        await b.enter(world.key_b)
        answer = await world.call(world.key_b, method, template)
        assert answer.status_code == 200, answer.text
        assert (await b.page("/portal/webhooks")).status_code == 401
        assert (await a.page("/portal/webhooks")).status_code == 200


# The id each query filters on, by the start of its path.
QUERIED = {
    "/api/v1/Webhooks": "webhookId",
    "/api/v1/WebhookRules": "webhookRuleId",
    "/api/v1/Authentications": "authenticationId",
    "/api/v1/EventTypes": "eventTypeId",
}

# Bodies that would succeed for the owner, so a 404 can only come from the group check.
BODIES: dict[tuple[str, str], Any] = {
    ("PATCH", "/api/v1/Webhooks/{webhookId}"): {"name": "hijacked"},
    ("PATCH", "/api/v1/WebhookRules/{webhookRuleId}"): {"tableKey": "Hijacked"},
    ("PATCH", "/api/v1/Authentications/{authenticationId}"): {"password": "hijacked"},
    ("PATCH", "/api/v1/EventTypes/{eventTypeId}"): {"name": "hijacked", "schema": {}},
}

MATRIX: dict[tuple[str, str], Runner] = {
    ("POST", "/api/v1/Webhooks"): create_webhook,
    ("GET", "/api/v1/Webhooks/query"): query,
    ("GET", "/api/v1/Webhooks/{webhookId}"): owned,
    ("PATCH", "/api/v1/Webhooks/{webhookId}"): owned,
    ("DELETE", "/api/v1/Webhooks/{webhookId}"): owned,
    ("PATCH", "/api/v1/Webhooks/{webhookId}/regenerate-client-secret"): owned,
    ("GET", "/api/v1/Webhooks/{webhookId}/history/query"): owned,
    ("GET", "/api/v1/Webhooks/{webhookId}/history/{webhookHistoryId}/retry"): owned,
    ("POST", "/api/v1/Webhooks/{webhookId}/test"): owned,
    ("POST", "/api/v1/WebhookRules"): create_rule,
    ("GET", "/api/v1/WebhookRules/query"): query,
    ("GET", "/api/v1/WebhookRules/{webhookRuleId}"): owned,
    ("PATCH", "/api/v1/WebhookRules/{webhookRuleId}"): owned,
    ("DELETE", "/api/v1/WebhookRules/{webhookRuleId}"): owned,
    ("POST", "/api/v1/Authentications"): create_authentication,
    ("GET", "/api/v1/Authentications/query"): query,
    ("GET", "/api/v1/Authentications/{authenticationId}"): owned,
    ("PATCH", "/api/v1/Authentications/{authenticationId}"): owned,
    ("DELETE", "/api/v1/Authentications/{authenticationId}"): owned,
    ("POST", "/api/v1/EventTypes"): declare_event_type,
    ("GET", "/api/v1/EventTypes/query"): query,
    ("GET", "/api/v1/EventTypes/{eventTypeId}"): owned,
    ("PATCH", "/api/v1/EventTypes/{eventTypeId}"): owned,
    ("DELETE", "/api/v1/EventTypes/{eventTypeId}"): owned,
    ("POST", "/api/v1/Events"): publish,
    ("GET", "/api/v1/Status"): status,
    ("POST", "/api/v1/PortalSessions"): portal_link,
    ("DELETE", "/api/v1/PortalSessions"): revoke_portal,
}


def test_the_matrix_covers_exactly_the_served_routes() -> None:
    assert set(MATRIX) == set(ROUTES)
    # Every route with an id in its path must be an `owned` case: those are the 404s.
    with_ids = {pair for pair in ROUTES if "{" in pair[1]}
    assert with_ids == {pair for pair, runner in MATRIX.items() if runner is owned}


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=map(route_id, ROUTES))
async def test_group_b_cannot_reach_group_a(world: World, method: str, path: str) -> None:
    before = await world.state_of_a()
    await MATRIX[(method, path)](world, method, path)
    assert await world.state_of_a() == before
    assert not world.a_hook_contacted(), "B's request made the gateway call A's callback"


OWNED = [pair for pair, runner in MATRIX.items() if runner is owned]


@pytest.mark.parametrize(("method", "path"), OWNED, ids=map(route_id, OWNED))
async def test_the_owner_reaches_the_same_ids(world: World, method: str, path: str) -> None:
    """The control for the 404s above: the same request with A's own key succeeds."""
    body = BODIES.get((method, path))
    answer = await world.call(world.key_a, method, world.path(path), body)
    assert answer.status_code == 200, answer.text


async def test_b_cannot_send_with_a_authentication(world: World) -> None:
    """A webhook of B naming A's authentication, on create or PATCH, is refused exactly as one
    naming an authentication that never existed, before any handshake."""
    a_auth, unknown_id = world.ids_a["authenticationId"], uuid4()

    async def attempts(method: str, path: str, body: dict[str, Any]) -> None:
        batch = method == "POST"
        answers = []
        for auth_id in (a_auth, unknown_id):
            sent = {**body, "authenticationId": str(auth_id)}
            answer = await world.call(world.key_b, method, path, [sent] if batch else sent)
            answers.append(str(assert_problem(answer, 400)).replace(str(auth_id), "<id>"))
        assert answers[0] == answers[1]

    before = await world.state_of_a()
    new_hook = {"name": "borrower", "requestContentType": "Full", "callbackHttpMethod": "POST",
                "callbackUrl": world.receiver.plan("/b-hook")}  # fmt: skip
    await attempts("POST", "/api/v1/Webhooks", new_hook)
    await attempts("PATCH", f"/api/v1/Webhooks/{world.hook_b}", {"name": "borrower"})
    hook_b = await world.gateway.ctx.store.get_webhook(world.record_b.group_key, world.hook_b)
    assert hook_b is not None and hook_b.authentication_id is None
    hooks_b = await world.gateway.ctx.store.query_webhooks(world.record_b.group_key, Query())
    assert hooks_b.total_count == 1
    assert await world.state_of_a() == before
    assert not world.receiver.seen


async def test_a_history_id_under_b_own_webhook_is_not_found(world: World) -> None:
    ids = {**world.ids_a, "webhookId": world.hook_b}
    template = "/api/v1/Webhooks/{webhookId}/history/{webhookHistoryId}/retry"
    before = await world.state_of_a()
    assert_problem(await world.call(world.key_b, "GET", world.path(template, ids)), 404)
    assert await world.state_of_a() == before


# -- Authentication and scopes ---------------------------------------------------------------


def body_for(method: str, path: str) -> Any:
    """A well-formed body for routes that read one (authentication comes first anyway)."""
    if (method, path) in BODIES:
        return BODIES[(method, path)]
    return {
        "/api/v1/Webhooks": [{"name": "x", "callbackUrl": "http://127.0.0.1:9/"}],
        "/api/v1/WebhookRules": [{"webhookId": str(uuid4()), "tableKey": "T", "eventType": "U"}],
        "/api/v1/Authentications": [
            {"name": "x", "kind": "Basic", "username": "u", "password": "p"}
        ],
        "/api/v1/Events": {"tableKey": "Invoice", "eventType": "U", "records": [{"id": "1"}]},
        "/api/v1/EventTypes": [{"tableKey": "T", "eventType": "U", "name": "x"}],
    }.get(path)


async def revoked_key(world: World) -> str | None:
    await world.gateway.ctx.store.revoke_api_key(world.record_a.api_key_id, utcnow())
    return world.key_a


async def unknown_key(world: World) -> str | None:
    return f"gwk_test_{uuid4().hex}"


async def no_key(world: World) -> str | None:
    return None


CREDENTIALS = {"revoked": revoked_key, "unknown": unknown_key, "missing": no_key}


async def refusals(world: World, key: str | None, status: int) -> list[str]:
    """Call every served route with this key aimed at A's ids; list the routes that did not
    answer `status` problem+json or that changed A's state. (One gateway for all routes:
    starting one per route would cost seconds for no extra coverage.)"""
    wrong = []
    for method, path in ROUTES:
        before = await world.state_of_a()
        answer = await world.call(key, method, world.path(path), body_for(method, path))
        if answer.status_code != status or answer.headers["content-type"] != PROBLEM:
            wrong.append(f"{method} {path}: {answer.status_code} {answer.text[:100]}")
        elif await world.state_of_a() != before:
            wrong.append(f"{method} {path}: changed A's state")
    return wrong


@pytest.mark.parametrize("credential", sorted(CREDENTIALS))
async def test_bad_credentials_get_401_on_every_route(world: World, credential: str) -> None:
    key = await CREDENTIALS[credential](world)
    assert await refusals(world, key, 401) == []
    assert not world.receiver.seen


async def test_a_revoked_key_worked_before_it_was_revoked(world: World) -> None:
    """The control for the revoked case: the same key answers 200 until revoked."""
    assert (await world.call(world.key_a, "GET", "/api/v1/Status")).status_code == 200
    await revoked_key(world)
    assert_problem(await world.call(world.key_a, "GET", "/api/v1/Status"), 401)


# The routes of the `webhooks` scope: the webhooks', their rules' and history's, the
# authentications' they send with, and the portal's links.
WEBHOOK_ROUTES = [
    pair
    for pair in ROUTES
    if pair[1].startswith(("/api/v1/Webhook", "/api/v1/Authentications", "/api/v1/PortalSessions"))
]


async def test_a_key_without_the_webhooks_scope_gets_403_on_webhook_routes(
    world: World,
) -> None:
    events_only, _ = await world.gateway.add_key("group-a", frozenset({Scope.EVENTS}))
    for method, path in WEBHOOK_ROUTES:
        before = await world.state_of_a()
        answer = await world.call(events_only, method, world.path(path), body_for(method, path))
        problem = assert_problem(answer, 403)
        assert "'webhooks' scope" in problem["detail"], (method, path)
        assert await world.state_of_a() == before, (method, path)
    assert not world.receiver.seen


async def test_a_key_without_the_events_scope_gets_403_on_events(world: World) -> None:
    webhooks_only, _ = await world.gateway.add_key("group-a", frozenset({Scope.WEBHOOKS}))
    before = await world.state_of_a()
    body = body_for("POST", "/api/v1/Events")
    problem = assert_problem(await world.call(webhooks_only, "POST", "/api/v1/Events", body), 403)
    assert "'events' scope" in problem["detail"]
    assert await world.state_of_a() == before
    # Scopes are per route: the same key still manages webhooks, and any key may ask Status.
    assert (await world.call(webhooks_only, "GET", "/api/v1/Webhooks/query")).status_code == 200
    assert (await world.call(webhooks_only, "GET", "/api/v1/Status")).status_code == 200


async def test_an_events_key_publishes_to_its_own_group(world: World) -> None:
    """The control for the scope and cross-group event cases: A's event does notify A."""
    events_only, _ = await world.gateway.add_key("group-a", frozenset({Scope.EVENTS}))
    body = body_for("POST", "/api/v1/Events")
    answer = await world.call(events_only, "POST", "/api/v1/Events", body)
    assert answer.status_code == 202 and answer.json()["notificationCount"] == 1


def test_webhook_routes_are_every_route_but_events_event_types_and_status() -> None:
    rest = set(ROUTES) - set(WEBHOOK_ROUTES)
    catalogue = {pair for pair in ROUTES if pair[1].startswith("/api/v1/EventTypes")}
    assert len(catalogue) == 5
    assert rest == {("POST", "/api/v1/Events"), ("GET", "/api/v1/Status"), *catalogue}


async def test_a_webhooks_key_reads_the_catalogue_and_only_an_events_key_changes_it(
    world: World,
) -> None:
    """Partners (webhooks scope) read their group's catalogue; the platform (events) writes."""
    webhooks_only, _ = await world.gateway.add_key("group-a", frozenset({Scope.WEBHOOKS}))
    events_only, _ = await world.gateway.add_key("group-a", frozenset({Scope.EVENTS}))
    catalogue = [pair for pair in ROUTES if pair[1].startswith("/api/v1/EventTypes")]
    for method, path in sorted(catalogue, key=lambda pair: pair[0] == "DELETE"):  # it last
        before = await world.state_of_a()
        answer = await world.call(webhooks_only, method, world.path(path), body_for(method, path))
        if method == "GET":
            assert answer.status_code == 200, (method, path, answer.text)
        else:
            assert "'events' scope" in assert_problem(answer, 403)["detail"], (method, path)
            assert await world.state_of_a() == before, (method, path)
        answer = await world.call(events_only, method, world.path(path), body_for(method, path))
        assert answer.status_code == 200, (method, path, answer.text)


# -- The portal: a session of group B, aimed at A's ids ---------------------------------------


def portal_routes() -> list[tuple[str, str]]:
    """Every (method, path) the portal serves, from its route table."""
    pairs = {(m, f"{PORTAL_PREFIX}{path}") for path, handlers in PAGES.items() for m in handlers}
    return sorted(pairs, key=lambda pair: (pair[1], pair[0]))


PORTAL_ROUTES = portal_routes()
PortalRunner = Callable[[World, Partner, str, str], Awaitable[None]]

# Forms that would succeed for A on A's webhook, so a 404 can only come from the group check.
PORTAL_FORMS: dict[str, dict[str, str]] = {
    "/portal/webhooks/{webhookId}/edit": {"name": "hijacked"},
    "/portal/webhooks/{webhookId}/status": {"action": "pause"},
    "/portal/webhooks/{webhookId}/rotate-secret": {},
    "/portal/webhooks/{webhookId}/test": {},
    "/portal/webhooks/{webhookId}/history/{webhookHistoryId}/retry": {},
    "/portal/rules/{webhookRuleId}/edit": {"tableKey": "Hijacked", "eventType": "U"},
    "/portal/rules/{webhookRuleId}/delete": {},
}


async def portal_owned(world: World, partner: Partner, method: str, template: str) -> None:
    """B's session names A's webhook: a 404 page, the same as for a webhook that never
    existed (but for the id it names)."""
    pages = []
    for webhook_id in (world.ids_a["webhookId"], uuid4()):
        path = world.path(template, {**world.ids_a, "webhookId": webhook_id})
        if method == "GET":
            answer = await partner.page(path)
        else:
            answer = await partner.submit(path, PORTAL_FORMS[template])
        assert answer.status_code == 404, answer.text
        assert "no webhook" in answer.text
        pages.append(answer.text.replace(str(webhook_id), "<id>"))
    assert pages[0] == pages[1]
    assert_nothing_of_a(world, pages[0])


async def portal_owned_rule(world: World, partner: Partner, method: str, template: str) -> None:
    """B's session names A's rule: a 404 page, the same as for a rule that never existed."""
    pages = []
    for rule_id in (world.ids_a["webhookRuleId"], uuid4()):
        path = world.path(template, {**world.ids_a, "webhookRuleId": rule_id})
        if method == "GET":
            answer = await partner.page(path)
        else:
            answer = await partner.submit(path, PORTAL_FORMS[template])
        assert answer.status_code == 404, answer.text
        assert "no webhook rule" in answer.text
        pages.append(answer.text.replace(str(rule_id), "<id>"))
    assert pages[0] == pages[1]
    assert_nothing_of_a(world, pages[0])


async def portal_create_rule(world: World, partner: Partner, method: str, template: str) -> None:
    """B's rule on A's webhook is refused as one on a webhook that never existed; B's group
    gets no rule."""
    seen = []
    for webhook_id in (world.ids_a["webhookId"], uuid4()):
        form = {"webhookId": str(webhook_id), "tableKey": "Invoice", "eventType": "U"}
        answer = await partner.submit(template, form)
        assert answer.status_code == 400, answer.text
        seen.append(answer.text.replace(str(webhook_id), "<id>").replace(partner.csrf, "<csrf>"))
    assert seen[0] == seen[1]
    assert_nothing_of_a(world, seen[0].replace("<id>", ""))
    rules_b = await world.gateway.ctx.store.query_rules(world.record_b.group_key, Query())
    assert rules_b.total_count == 0


async def portal_listing(world: World, partner: Partner, method: str, template: str) -> None:
    """B's pages that list or offer things show nothing of A's (not A's authentication in
    the create form's choices either)."""
    answer = await partner.page(template)
    assert answer.status_code in (200, 303), answer.text  # the entry page forwards a session
    assert_nothing_of_a(world, answer.text)


async def portal_create(world: World, partner: Partner, method: str, template: str) -> None:
    """B's create naming A's authentication is refused as one naming an unknown one, before
    any handshake; what B creates lands in B's group."""
    form = {"name": "planted", "callbackUrl": world.receiver.plan("/planted"),
            "callbackHttpMethod": "POST", "requestContentType": "Full"}  # fmt: skip
    seen = []
    for auth_id in (world.ids_a["authenticationId"], uuid4()):
        answer = await partner.submit(template, {**form, "authenticationId": str(auth_id)})
        assert answer.status_code == 400, answer.text
        seen.append(answer.text.replace(str(auth_id), "<id>").replace(partner.csrf, "<csrf>"))
    assert seen[0] == seen[1]
    made = await partner.submit(template, form)
    assert made.status_code == 200, made.text
    hooks_b = await world.gateway.ctx.store.query_webhooks(world.record_b.group_key, Query())
    assert "planted" in {h.name for h in hooks_b.records}


async def portal_exchange(world: World, partner: Partner, method: str, template: str) -> None:
    """A link of B's opens a session of B's group only."""
    async with Partner(world.gateway) as fresh:
        url = (await fresh.link(world.key_b))["url"]
        assert (await fresh.open(url)).status_code == 303
        assert_nothing_of_a(world, (await fresh.page("/portal/webhooks")).text)


async def portal_sign_out(world: World, partner: Partner, method: str, template: str) -> None:
    """B signing out ends B's session only: A's goes on."""
    async with Partner(world.gateway) as partner_a:
        await partner_a.enter(world.key_a)
        assert (await partner.submit(template)).status_code == 200
        assert (await partner_a.page("/portal/webhooks")).status_code == 200
        assert (await partner.page("/portal/webhooks")).status_code == 401


def assert_nothing_of_a(world: World, text: str) -> None:
    for a_id in world.ids_a.values():
        assert str(a_id) not in text
    assert str(world.record_a.group_key) not in text


PORTAL_MATRIX: dict[tuple[str, str], PortalRunner] = {
    ("GET", "/portal/"): portal_listing,
    ("POST", "/portal/session"): portal_exchange,
    ("POST", "/portal/sign-out"): portal_sign_out,
    ("GET", "/portal/webhooks"): portal_listing,
    ("GET", "/portal/webhooks/new"): portal_listing,
    ("POST", "/portal/webhooks/new"): portal_create,
    ("GET", "/portal/webhooks/{webhookId}"): portal_owned,
    ("POST", "/portal/webhooks/{webhookId}/edit"): portal_owned,
    ("POST", "/portal/webhooks/{webhookId}/status"): portal_owned,
    ("POST", "/portal/webhooks/{webhookId}/rotate-secret"): portal_owned,
    ("GET", "/portal/webhooks/{webhookId}/history"): portal_owned,
    ("POST", "/portal/webhooks/{webhookId}/test"): portal_owned,
    ("POST", "/portal/webhooks/{webhookId}/history/{webhookHistoryId}/retry"): portal_owned,
    ("GET", "/portal/webhooks/{webhookId}/activity.svg"): portal_owned,
    ("GET", "/portal/rules"): portal_listing,
    ("POST", "/portal/rules/new"): portal_create_rule,
    ("GET", "/portal/rules/{webhookRuleId}"): portal_owned_rule,
    ("POST", "/portal/rules/{webhookRuleId}/edit"): portal_owned_rule,
    ("POST", "/portal/rules/{webhookRuleId}/delete"): portal_owned_rule,
    ("GET", "/portal/event-types"): portal_listing,
}
PORTAL_OWNED = [
    pair for pair, runner in PORTAL_MATRIX.items() if runner in (portal_owned, portal_owned_rule)
]


def test_the_portal_matrix_covers_exactly_the_portal_routes() -> None:
    assert set(PORTAL_MATRIX) == set(PORTAL_ROUTES)
    with_ids = {pair for pair in PORTAL_ROUTES if "{" in pair[1]}
    assert with_ids == set(PORTAL_OWNED)


@pytest.mark.parametrize(("method", "path"), PORTAL_ROUTES, ids=map(route_id, PORTAL_ROUTES))
async def test_a_portal_session_of_b_cannot_reach_group_a(
    world: World, method: str, path: str
) -> None:
    before = await world.state_of_a()
    async with Partner(world.gateway) as partner_b:
        await partner_b.enter(world.key_b)
        await PORTAL_MATRIX[(method, path)](world, partner_b, method, path)
    assert await world.state_of_a() == before
    assert not world.a_hook_contacted(), "B's session made the gateway call A's callback"


async def test_a_history_id_of_a_under_a_webhook_of_b_is_not_found_in_the_portal(
    world: World,
) -> None:
    before = await world.state_of_a()
    ids = {**world.ids_a, "webhookId": world.hook_b}
    template = "/portal/webhooks/{webhookId}/history/{webhookHistoryId}/retry"
    async with Partner(world.gateway) as partner_b:
        await partner_b.enter(world.key_b)
        answer = await partner_b.submit(world.path(template, ids))
    assert answer.status_code == 404 and "no history entry" in answer.text
    assert await world.state_of_a() == before


@pytest.mark.parametrize(("method", "path"), PORTAL_OWNED, ids=map(route_id, PORTAL_OWNED))
async def test_a_portal_session_of_a_reaches_the_same_ids(
    world: World, method: str, path: str
) -> None:
    """The control for the 404s above: A's own session gets the page."""
    async with Partner(world.gateway) as partner_a:
        await partner_a.enter(world.key_a)
        target = world.path(path)
        if method == "GET":
            answer = await partner_a.page(target)
        else:
            answer = await partner_a.submit(target, PORTAL_FORMS[path])
    assert answer.status_code == 200, answer.text
