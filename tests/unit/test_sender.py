"""One delivery attempt on the mock transport and a memory:// store: exactly what the
transport is asked to send (method, URL, headers, signed body, limits, group), how each answer
or failure is classified, and what the attempt records. The same over real loopback HTTP:
tests/integration/test_sender.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import standardwebhooks

from gateway import payloads, signing
from gateway.config import Settings
from gateway.errors import (
    AddressNotAllowed,
    OutboundConnectionError,
    OutboundError,
    OutboundTimeout,
)
from gateway.models import (
    ContentType,
    Header,
    HttpMethod,
    Notification,
    SignatureScheme,
    Webhook,
    WebhookStatus,
    utcnow,
)
from gateway.outcomes import AttemptOutcome, Effect
from gateway.sender import NOT_ACTIVE, Sender
from gateway.signing import generate_secret
from gateway.store import Store
from gateway.transport import MockTransport, OutboundRequest, OutboundResponse, respond
from gateway.wire_values import truncate
from tests.factories import make_notification, make_webhook

OWNER = "worker-1"
SCHEDULE = (5.0, 30.0, 120.0)
SETTINGS = dataclasses.replace(
    Settings(),
    retry_schedule=SCHEDULE,
    retry_jitter=0.0,
    retry_after_cap=600.0,
    delivery_timeout=2.0,
    history_message_limit=4096,
    max_response_bytes=65_536,
)


class Clock:
    """The gateway's clock, held still; near real time, since verifiers refuse old stamps."""

    def __init__(self) -> None:
        self.now = utcnow().replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def stored(store: Store, **overrides: Any) -> Webhook:
    hook = make_webhook(callback_url="https://partner.example/hook", **overrides)
    await store.add_webhooks([hook])
    return hook


def answering(response: OutboundResponse) -> MockTransport:
    return MockTransport(lambda request: response)


def failing(error: Exception) -> MockTransport:
    def raises(request: OutboundRequest) -> OutboundResponse:
        raise error

    return MockTransport(raises)


async def attempt(
    transport: MockTransport,
    store: Store,
    clock: Clock,
    note: Notification,
    **config: Any,
) -> AttemptOutcome:
    settings = dataclasses.replace(SETTINGS, **config)
    return await Sender(settings, transport, store, clock).attempt(note, OWNER)


def named(request: OutboundRequest) -> dict[str, str]:
    """The request's headers by lower-case name (HTTP names are case-insensitive)."""
    return {name.lower(): value for name, value in request.headers.items()}


def verified(request: OutboundRequest, secret: str) -> Any:
    """The request as a Standard Webhooks receiver holding `secret` reads it (raises if its
    signature does not verify)."""
    payload = request.body if request.body is not None else request.url.split("?", 1)[1].encode()
    verifier = standardwebhooks.Webhook(secret)
    return verifier.verify(payload, named(request), json_parse=request.body is not None)


# -- What is sent --------------------------------------------------------------------------------


async def test_a_delivery_is_the_rendered_body_signed_and_sent_with_the_settings_limits(
    store: Store, clock: Clock
) -> None:
    hook = await stored(store)
    note = make_notification(hook)
    transport = answering(respond(200))
    await attempt(transport, store, clock, note)
    [request] = transport.requests
    assert (request.method, request.url) == ("POST", hook.callback_url)
    assert request.body == payloads.render(hook, note).body
    headers = named(request)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type",
                            "idempotency-key"}  # fmt: skip
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == headers["idempotency-key"] == str(note.notification_id)
    assert headers["webhook-timestamp"] == str(int(clock.now.timestamp()))
    assert verified(request, hook.client_secret)["notificationId"] == str(note.notification_id)
    # The API's client caps each group's requests in flight: a send names its webhook's group.
    assert (request.timeout, request.max_body, request.group) == (2.0, 65_536, hook.group_key)


async def test_the_owners_headers_go_along_and_the_config_is_sent_but_not_recorded(
    store: Store, clock: Clock
) -> None:
    config = {"partnerSecret": "s3cr3t"}
    hook = await stored(store, headers=(Header("X-Tribe-Key", "k1"),), config=config)
    note = make_notification(hook)
    transport = answering(respond(200))
    outcome = await attempt(transport, store, clock, note)
    [request] = transport.requests
    assert request.headers["X-Tribe-Key"] == "k1"  # as its owner spelled it
    assert named(request)["idempotency-key"] == str(note.notification_id)
    assert verified(request, hook.client_secret)["config"] == config
    assert outcome.request_message is not None and "s3cr3t" not in outcome.request_message
    assert '"config":"(write-only)"' in outcome.request_message


async def test_the_gateways_own_header_wins_over_an_owners_of_the_same_name(
    store: Store, clock: Clock
) -> None:
    """Validation refuses such a header, but a PATCH of the headers racing one of
    signatureHeader could store one: the signature still goes out alone."""
    hook = await stored(
        store, signature_scheme=SignatureScheme.HMAC_SHA256_HEX,
        signature_header="X-Webhook-Signature", headers=(Header("x-webhook-SIGNATURE", "forged"),),
    )  # fmt: skip
    transport = answering(respond(200))
    await attempt(transport, store, clock, make_notification(hook))
    [request] = transport.requests
    sent = [name for name in request.headers if name.lower() == "x-webhook-signature"]
    assert len(sent) == 1 and request.headers[sent[0]].startswith("sha256=")


async def test_a_get_delivery_has_no_body_and_signs_the_query_it_calls(
    store: Store, clock: Clock
) -> None:
    hook = await stored(
        store, callback_http_method=HttpMethod.GET, request_content_type=ContentType.ID
    )
    transport = answering(respond(200))
    await attempt(transport, store, clock, make_notification(hook))
    [request] = transport.requests
    assert (request.method, request.body) == ("GET", None)
    assert request.url.startswith(hook.callback_url + "?")
    assert parse_qs(urlsplit(request.url).query)["ids"] == ["42"]
    verified(request, hook.client_secret)


async def test_during_the_grace_period_both_secrets_sign_and_after_it_only_the_new_one(
    store: Store, clock: Clock
) -> None:
    old = generate_secret()
    expires = clock.now + timedelta(seconds=1)
    hook = await stored(store, previous_secret=old, previous_secret_expires=expires)
    transport = answering(respond(200))
    sender = Sender(SETTINGS, transport, store, clock)
    await sender.attempt(make_notification(hook), OWNER)
    clock.now = expires  # the grace period ends at its expiry, not after it
    await sender.attempt(make_notification(hook), OWNER)
    during, after = transport.requests
    assert len(named(during)["webhook-signature"].split()) == 2
    verified(during, old)
    verified(during, hook.client_secret)
    assert len(named(after)["webhook-signature"].split()) == 1
    verified(after, hook.client_secret)


async def test_a_send_is_signed_at_the_time_given(store: Store, clock: Clock) -> None:
    hook = await stored(store)
    transport = answering(respond(200))
    at = clock.now - timedelta(seconds=30)
    await Sender(SETTINGS, transport, store, clock).send(hook, make_notification(hook), at)
    [request] = transport.requests
    assert named(request)["webhook-timestamp"] == str(int(at.timestamp()))
    verified(request, hook.client_secret)


class Stamp:
    """A signature scheme of the test's own: one header naming the secrets it was given."""

    def headers(
        self, secrets: Sequence[str], msg_id: str, timestamp: int, payload: bytes
    ) -> dict[str, str]:
        return {"x-signed-by": " ".join(secrets)}


async def test_a_delivery_is_signed_by_the_scheme_chosen_for_its_webhook(
    store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = await stored(store)
    monkeypatch.setattr(signing, "signer_for", lambda chosen: Stamp())
    transport = answering(respond(200))
    note = make_notification(hook)
    await attempt(transport, store, clock, note)
    [request] = transport.requests
    # Idempotency-Key goes with every scheme.
    assert named(request) == {"x-signed-by": hook.client_secret, "content-type": "application/json",
                              "idempotency-key": str(note.notification_id)}  # fmt: skip


# -- How each answer is classified, and what is recorded ----------------------------------------


@pytest.mark.parametrize("status", [200, 201, 204, 299])
async def test_a_2xx_is_a_success_recording_what_went_and_what_came_back(
    store: Store, clock: Clock, status: int
) -> None:
    hook = await stored(store)
    note = make_notification(hook)
    transport = answering(respond(status, b"thanks"))
    outcome = await attempt(transport, store, clock, note)
    [request] = transport.requests
    assert request.body is not None
    assert outcome == AttemptOutcome(
        notification_id=note.notification_id,
        lease_owner=OWNER,
        effect=Effect.SUCCESS,
        cause=f"HTTP {status}",
        retry_at=None,
        response_status_code=str(status),
        request_message=f"POST {hook.callback_url}\n\n{request.body.decode()}",
        response_message=f"HTTP {status}\n\nthanks",
        elapsed_ms=0.0,  # the mock transport's answers take no time
    )


async def test_410_is_the_partner_unsubscribing_and_nothing_is_retried(
    store: Store, clock: Clock
) -> None:
    hook = await stored(store)
    outcome = await attempt(answering(respond(410, b"gone")), store, clock, make_notification(hook))
    assert (outcome.effect, outcome.cause, outcome.retry_at) == (Effect.GONE, "HTTP 410", None)
    assert (outcome.response_status_code, outcome.response_message) == ("410", "HTTP 410\n\ngone")


@pytest.mark.parametrize("status", [100, 199, 301, 304, 400, 404, 409, 411, 429, 500, 503])
async def test_any_other_answer_is_a_failure_retried_on_the_schedule(
    store: Store, clock: Clock, status: int
) -> None:
    hook = await stored(store)
    note = make_notification(hook, attempts=1)
    outcome = await attempt(answering(respond(status, b"no")), store, clock, note)
    assert (outcome.effect, outcome.cause) == (Effect.FAILURE, f"HTTP {status}")
    assert outcome.retry_at == clock.now + timedelta(seconds=30)  # the second attempt's delay
    assert outcome.response_status_code == str(status)
    assert outcome.response_message == f"HTTP {status}\n\nno"


async def test_a_failed_answers_retry_after_is_honoured(store: Store, clock: Clock) -> None:
    hook = await stored(store)
    answer = respond(503, headers={"Retry-After": "300"})
    outcome = await attempt(answering(answer), store, clock, make_notification(hook))
    assert outcome.retry_at == clock.now + timedelta(seconds=300)


@pytest.mark.parametrize(
    "error",
    [
        OutboundTimeout("timed out after 2 s"),
        OutboundConnectionError("connection refused"),
        AddressNotAllowed("address 10.0.0.1 is not allowed"),
    ],
)
async def test_no_answer_is_a_failure_saying_why_with_no_response_recorded(
    store: Store, clock: Clock, error: OutboundError
) -> None:
    hook = await stored(store)
    note = make_notification(hook)
    transport = failing(error)
    outcome = await attempt(transport, store, clock, note)
    [request] = transport.requests
    assert request.body is not None
    assert outcome == AttemptOutcome(
        notification_id=note.notification_id,
        lease_owner=OWNER,
        effect=Effect.FAILURE,
        cause=error.detail,
        retry_at=clock.now + timedelta(seconds=5),
        response_status_code=None,
        request_message=f"POST {hook.callback_url}\n\n{request.body.decode()}",
        response_message=None,
    )


async def test_a_bug_below_the_sender_is_raised_not_recorded_as_the_partners_failure(
    store: Store, clock: Clock
) -> None:
    hook = await stored(store)
    with pytest.raises(KeyError):
        await attempt(failing(KeyError("oops")), store, clock, make_notification(hook))


async def test_a_test_send_reports_the_answer_or_the_error(store: Store, clock: Clock) -> None:
    hook = await stored(store)
    answered = await Sender(SETTINGS, answering(respond(202, b"ok")), store, clock).send(
        hook, make_notification(hook)
    )
    assert answered.response is not None and answered.error is None
    assert (answered.response.status, answered.response.body) == (202, b"ok")
    refused = OutboundConnectionError("connection refused")
    unanswered = await Sender(SETTINGS, failing(refused), store, clock).send(
        hook, make_notification(hook)
    )
    assert (unanswered.response, unanswered.error) == (None, refused)


async def test_messages_are_cut_to_the_history_limit(store: Store, clock: Clock) -> None:
    hook = await stored(store)
    transport = answering(respond(500, b"e" * 300))
    outcome = await attempt(transport, store, clock, make_notification(hook),
                            history_message_limit=100)  # fmt: skip
    [request] = transport.requests
    assert request.body is not None
    assert outcome.request_message == truncate(
        f"POST {hook.callback_url}\n\n{request.body.decode()}", 100
    )
    assert outcome.response_message == truncate("HTTP 500\n\n" + "e" * 300, 100)


async def test_only_max_response_bytes_of_the_answer_are_kept(store: Store, clock: Clock) -> None:
    hook = await stored(store)
    transport = answering(respond(200, b"0123456789" * 10))
    outcome = await attempt(transport, store, clock, make_notification(hook),
                            max_response_bytes=25)  # fmt: skip
    assert transport.requests[0].max_body == 25
    assert outcome.response_message == "HTTP 200\n\n0123456789012345678901234"


async def test_an_answer_that_is_not_text_is_recorded_readably(store: Store, clock: Clock) -> None:
    # NUL cannot be stored in PostgreSQL text; bytes that are not UTF-8 are not text at all.
    hook = await stored(store)
    outcome = await attempt(answering(respond(200, b"a\x00b\xffc")), store, clock,
                            make_notification(hook))  # fmt: skip
    assert outcome.response_message == "HTTP 200\n\na\ufffdb\ufffdc"


# -- When nothing is sent ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [WebhookStatus.INACTIVE, WebhookStatus.ERRORED])
async def test_nothing_is_sent_to_a_webhook_that_is_not_active(
    store: Store, clock: Clock, status: WebhookStatus
) -> None:
    hook = await stored(store, status_code=status)
    note = make_notification(hook)
    transport = answering(respond(200))
    outcome = await attempt(transport, store, clock, note)
    assert outcome == AttemptOutcome(note.notification_id, OWNER, Effect.NOT_SENT, NOT_ACTIVE, None)
    assert transport.requests == []


async def test_a_notification_that_cannot_be_rendered_fails_for_good_unsent(
    store: Store, clock: Clock
) -> None:
    hook = await stored(store, request_content_type=ContentType.ID)
    transport = answering(respond(200))
    outcome = await attempt(transport, store, clock,
                            make_notification(hook, records=({"name": "no id"},)))  # fmt: skip
    assert (outcome.effect, outcome.retry_at, outcome.request_message) == (
        Effect.UNDELIVERABLE,
        None,
        None,
    )
    assert outcome.cause.startswith("cannot be rendered: ")
    assert transport.requests == []
