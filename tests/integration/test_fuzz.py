"""Schemathesis against a running gateway's own /openapi.json: no 5xx, every answer has a
status code, content type and body that the document declares, input the document calls valid
is accepted, and input it calls invalid is refused.

Every request carries a valid key. Each operation is fuzzed with valid (positive) and invalid
(negative) generated input, whose path ids are mostly unknown; operations that take ids or
create things are fuzzed a third time with the ids of a webhook, rule, history row and
authentication seeded fresh for every example, and callback URLs that pass the handshake, so
updates, deletes, retries, test sends and creates reach real records. Generation is
derandomized and bounded.

Valid input may still be refused where the document cannot describe the rule (SEMANTIC: the
filter language, dates that must be in the future; PATCH_SEMANTIC: a PATCH judged with stored
values), and, in the unseeded run, where it names records that do not exist (UNSEEDED). Any
other refusal of valid input is a disagreement between the document and the server, and fails
the test. The hypothesis health checks are on (all but the timed one), and an unsatisfiable
strategy fails.

Every response schema is closed (tests/unit/test_resources.py), so the response conformance
check fails an answer that carries a field its schema does not declare; the last test makes a
handler do that and watches the fuzzing fail.

No fuzzed callback may reach the network: the address policy allows loopback only, host names
resolve through a fake resolver to 192.0.2.1 (documentation range, always refused), and every
address the policy let through is recorded and checked to be loopback.
"""

from __future__ import annotations

import collections
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.openapi.checks import JsonSchemaError
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.api import status as status_api
from gateway.api.common import json_response
from gateway.app import API_ROUTES
from gateway.models import NotificationState
from gateway.netguard import IP
from tests.factories import (
    make_authentication,
    make_event,
    make_event_type,
    make_notification,
    make_rule,
    make_webhook,
)
from tests.gateway_server import ThreadedGateway, gateway_settings, run_gateway_in_thread
from tests.receiver import run_receiver

MAX_EXAMPLES = 25
# Valid input the server may refuse with a 400 naming one of these, because no JSON schema can
# say what it needs.
SEMANTIC = {
    "filter": "the filter language's grammar and field names (contract §3)",
    "order": "the order clause's field names, each named once",
    "expirationDate": "must be in the future",
    "schema": "an event type's schema must be a JSON Schema that compiles (gateway.catalogue)",
    "headers": "no header name twice, in any letter case",
    "config": "at most 2048 bytes as compact JSON, nesting at most 32 levels",
}
# And for a PATCH, because it is judged with the stored values too.
PATCH_SEMANTIC = {
    "requestContentType": "a GET webhook needs Id, and the method may be stored",
    "signatureHeader": "only an HMAC scheme takes one, and the scheme may be stored",
    "username": "an authentication's fields are its kind's, and the kind may be stored",
    "password": "a change of kind gives all of the new kind's fields",
    "headerName": "an authentication's fields are its kind's, and the kind may be stored",
    "headerValue": "a change of kind gives all of the new kind's fields",
}
# And a 409, which says the request is valid but for what is stored: an event type's
# (tableKey, eventType) declared already, as generated input repeats them.
CONFLICTS = {"POST /api/v1/EventTypes"}
# And, in the unseeded run, because it names records or callbacks that do not exist.
UNSEEDED = {
    "callbackUrl": "a generated callback fails its handshake",
    "webhookId": "a generated webhookId names no webhook",
    "authenticationId": "a generated authenticationId names no authentication",
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    ignored_auth,  # sends the case again without the key: it must be refused
]
NEGATIVE_CHECKS = [*CHECKS, negative_data_rejection]  # invalid input must get a 4xx
REFUSED_ADDRESS = ipaddress.ip_address("192.0.2.1")


class DocumentationResolver:
    """Resolves every host name to 192.0.2.1, which the policy refuses: a fuzzed name never
    reaches the system resolver and never gets a connection."""

    def __init__(self) -> None:
        self.names: list[str] = []

    async def resolve(self, host: str, port: int) -> list[IP]:
        """192.0.2.1 for any name."""
        self.names.append(host)
        return [REFUSED_ADDRESS]


@dataclass
class Tally:
    """What the fuzzing sent and got, for the printed summary and the sanity assertions."""

    statuses: collections.Counter[tuple[str, int]] = field(default_factory=collections.Counter)
    allowed: list[IP] = field(default_factory=list)  # addresses the policy let through
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, label: str, status: int) -> None:
        with self.lock:
            self.statuses[(label, status)] += 1

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


def record_allowed_addresses(threaded: ThreadedGateway, tally: Tally) -> None:
    """Wrap the gateway's address policy so every address it allows is recorded."""
    policy = threaded.gateway.ctx.outbound.policy
    judge: Callable[[IP], str | None] = policy.refusal

    def refusal(ip: IP) -> str | None:
        reason = judge(ip)
        if reason is None:
            tally.allowed.append(ip)
        return reason

    policy.refusal = refusal  # type: ignore[method-assign]


@dataclass
class Fuzzer:
    threaded: ThreadedGateway
    key: str
    group_key: UUID
    tally: Tally
    callback: str  # a loopback receiver that passes handshakes
    resolver: DocumentationResolver

    @property
    def headers(self) -> dict[str, str]:
        return {"Api-Key": self.key}

    def seed(self) -> dict[str, str]:
        """A fresh webhook, rule, failed history row and (unused) authentication of the key's
        group; their ids."""
        hook = make_webhook(self.group_key, callback_url=self.callback)
        rule = make_rule(hook)
        event = make_event(self.group_key)
        note = make_notification(hook, event, state=NotificationState.FAILED, attempts=1)
        auth = make_authentication(self.group_key)
        # A table of its own, so that seeding never repeats a declared pair.
        declared = make_event_type(self.group_key, table_key=f"T{uuid4().hex}")

        async def store() -> None:
            db = self.threaded.gateway.ctx.store
            await db.add_authentications([auth])
            await db.add_webhooks([hook])
            await db.add_rules([rule])
            await db.add_events([event], [note])
            await db.add_event_types([declared])

        self.threaded.call(store())
        return {
            "webhookId": str(hook.webhook_id),
            "webhookRuleId": str(rule.webhook_rule_id),
            "webhookHistoryId": str(note.notification_id),
            "authenticationId": str(auth.authentication_id),
            "eventTypeId": str(declared.event_type_id),
        }

    def point_at_real_records(self, case: Any) -> None:
        """Fill the case's ids with fresh seeded ones and callback URLs with the receiver's, so
        the request can get past "not found" and the handshake."""
        ids = self.seed()
        case.path_parameters = {name: ids[name] for name in case.path_parameters}
        items = case.body if isinstance(case.body, list) else [case.body]
        for item in (i for i in items if isinstance(i, dict)):
            if "callbackUrl" in item:
                item["callbackUrl"] = self.callback
            if "webhookId" in item:
                item["webhookId"] = ids["webhookId"]
            if item.get("authenticationId") is not None:
                item["authenticationId"] = ids["authenticationId"]

    def run(self, operation: Any, *, seeded: bool, mode: Any = None) -> None:
        """Fuzz one operation with bounded, derandomized examples."""
        mode = mode or schemathesis.GenerationMode.POSITIVE

        positive = mode is schemathesis.GenerationMode.POSITIVE

        # The health checks stay on: a strategy that filters most of what it draws, or that
        # cannot be satisfied at all, is a document the fuzzer cannot use, and says so. Only
        # too_slow is off, like the deadline: it fails when drawing the first examples takes
        # over a second, which on a loaded shared runner measures the load, not a fault (and
        # this suite makes no timed assertions). max_examples bounds the time instead.
        @hypothesis.settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=[HealthCheck.too_slow],
        )
        @hypothesis.given(case=operation.as_strategy(mode, headers=self.headers))
        def fuzz(case: Any) -> None:
            if seeded:
                self.point_at_real_records(case)
            response = case.call(base_url=self.threaded.url, headers=self.headers, timeout=10)
            self.tally.record(operation.label, response.status_code)
            case.validate_response(
                response,
                checks=CHECKS if positive else NEGATIVE_CHECKS,
                headers=self.headers,
                transport_kwargs={"base_url": self.threaded.url, "headers": self.headers},
            )
            if positive:
                check_valid_input_accepted(response, seeded=seeded, label=operation.label)

        fuzz()


def refused_fields(response: Any) -> set[str]:
    """The properties a 400 names, without item indexes or nested paths ("[0].name" -> name);
    a failed handshake names the callback, and a refusal naming nothing names the body."""
    body = response.json()
    if body.get("title") == "Callback verification failed":
        return {"callbackUrl"}
    return {_refused(key) for key in body.get("errors") or {"body": []}}


def _refused(key: str) -> str:
    """The property an error names: a create's rule's own ("[0].webhookRules.1.filter" ->
    filter), judged as POST WebhookRules judges it, else the top-level one."""
    parts = key.split("].")[-1].split(".")
    return parts[2] if parts[0] == "webhookRules" and len(parts) > 2 else parts[0]


def check_valid_input_accepted(response: Any, *, seeded: bool, label: str) -> None:
    """Input the document calls valid is accepted, but for what the document cannot describe
    (SEMANTIC, PATCH_SEMANTIC, CONFLICTS) or, unseeded, for records that do not exist
    (UNSEEDED, and 404)."""
    status = response.status_code
    if status < 300 or (status == 404 and not seeded) or (status == 409 and label in CONFLICTS):
        return
    allowed = SEMANTIC.keys() | (set() if seeded else UNSEEDED.keys())
    if response.request.method == "PATCH":
        allowed |= PATCH_SEMANTIC.keys()
    if status == 400 and refused_fields(response) <= allowed:
        return
    request = response.request
    raise AssertionError(
        f"valid input refused: {request.method} {request.url} {request.body!r}\n"
        f"-> {status} {response.text}"
    )


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail any lookup of a name (an IP literal needs no DNS packet); returns what was asked."""
    lookup = socket.getaddrinfo
    asked: list[str] = []

    def numeric_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        text = host.decode() if isinstance(host, bytes) else str(host)
        try:
            ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            asked.append(text)
            raise OSError(f"test forbids resolving {text!r}") from None
        return lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", numeric_only)
    return asked


@pytest.fixture
def fuzzer(tmp_path: Path, no_dns: list[str]) -> Iterator[Fuzzer]:
    settings = gateway_settings(tmp_path, handshake_timeout=0.5, delivery_timeout=0.5)
    resolver = DocumentationResolver()
    with run_gateway_in_thread(settings, resolver=resolver) as threaded:
        key, record = threaded.call(threaded.gateway.add_key("fuzz"))
        tally = Tally()
        record_allowed_addresses(threaded, tally)
        # The receiver lives on the gateway's loop, so handshakes reach it while we block.
        receiving = run_receiver()
        receiver = threaded.call(receiving.__aenter__())
        try:
            callback = receiver.url + "/hook"
            yield Fuzzer(threaded, key, record.group_key, tally, callback, resolver)
        finally:
            threaded.call(receiving.__aexit__(None, None, None))


def fuzzing_config() -> SchemathesisConfig:
    """Schemathesis's defaults, but invalid input refused with a 413 is refused too: a body over
    the request limit is refused for its size before anything else in it is read. (Hypothesis
    draws constants from the project's loaded modules, so whether a draw grows that large changes
    with unrelated code changes.)"""
    defaults = SchemathesisConfig().projects.default.checks.negative_data_rejection
    rejected = {"expected-statuses": [*defaults.expected_statuses, "413"]}
    return SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": rejected}})


def operations(fuzzer: Fuzzer) -> list[Any]:
    url = f"{fuzzer.threaded.url}/openapi.json"
    schema = schemathesis.openapi.from_url(url, config=fuzzing_config(), timeout=10)
    return [result.ok() for result in schema.get_all_operations()]


# Its time grows with the operations (21: about 90 s on a loaded 2-core runner), past the
# default per-test timeout; generation stays bounded by MAX_EXAMPLES.
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fuzzing_finds_no_server_errors_and_no_undocumented_answers(
    fuzzer: Fuzzer, no_dns: list[str]
) -> None:
    ops = operations(fuzzer)
    served = {f"{m} {r.path}" for r in API_ROUTES for m in (r.methods or ()) if m != "HEAD"}
    assert {op.label for op in ops} == served
    for operation in ops:
        fuzzer.run(operation, seeded=False)
        # An operation without parameters or body (GET /Status) has nothing to make invalid:
        # negative generation is unsatisfiable there, so only there is it left out.
        if any(len(part) for part in (operation.path_parameters, operation.query, operation.body)):
            fuzzer.run(operation, seeded=False, mode=schemathesis.GenerationMode.NEGATIVE)
        if "{" in operation.path or operation.method.upper() == "POST":
            fuzzer.run(operation, seeded=True)
    tally = fuzzer.tally
    print(f"\nfuzzing: {tally.requests} requests over {len(ops)} operations;", end=" ")
    print(f"{len(fuzzer.resolver.names)} callback host names answered by the fake resolver")
    for (label, status), count in sorted(tally.statuses.items()):
        print(f"  {count:4d} x {status} {label}")
    assert tally.requests > len(ops) * 10
    # Every operation got through authentication and validation to a real answer at least once.
    succeeded = {label for (label, status), _ in tally.statuses.items() if status < 300}
    assert succeeded == {op.label for op in ops}
    assert all(ip.is_loopback for ip in tally.allowed), tally.allowed
    assert no_dns == [], "a name went to the system resolver"


@pytest.mark.slow
def test_an_answer_with_a_field_its_schema_does_not_declare_fails_the_fuzzing(
    fuzzer: Fuzzer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def with_an_extra_field(data: Any, code: int = 200) -> Any:
        return json_response({**data, "undeclared": 1}, code)

    monkeypatch.setattr(status_api, "json_response", with_an_extra_field)
    (operation,) = [op for op in operations(fuzzer) if op.label == "GET /api/v1/Status"]
    with pytest.raises((JsonSchemaError, FailureGroup)) as caught:
        fuzzer.run(operation, seeded=False)
    assert "undeclared" in str(caught.value)
